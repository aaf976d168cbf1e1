import time

import numpy as np
import pytest

from samkit.data.synthetic import DEFAULT_EXCLUDE, SceneGenerator, texture_names


def test_scene_shapes_and_mask_properties():
    gen = SceneGenerator(128, seed=0)
    image, masks = gen(0)
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert masks.ndim == 3 and masks.shape[1:] == (128, 128) and masks.dtype == bool
    assert len(masks) >= 2
    # visible parts of dead leaves never overlap
    assert masks.sum(0).max() <= 1
    assert (masks.reshape(len(masks), -1).sum(1) >= gen.min_area).all()
    assert image.std() > 10  # not a flat picture


def test_deterministic_in_seed_and_index():
    a = SceneGenerator(96, seed=3)
    b = SceneGenerator(96, seed=3)
    for i in (0, 7):
        ia, ma = a(i)
        ib, mb = b(i)
        assert np.array_equal(ia, ib) and np.array_equal(ma, mb)
    # order of calls does not matter
    ib, mb = b(2)
    ia, ma = SceneGenerator(96, seed=3)(2)
    assert np.array_equal(ia, ib)
    assert not np.array_equal(a(0)[0], a(1)[0])
    assert not np.array_equal(a(0)[0], SceneGenerator(96, seed=4)(0)[0])


def test_evaluation_photos_excluded_by_default():
    from samkit.data.photos import SKIMAGE_EVAL_NAMES
    from samkit.data.synthetic import TEXTURE_SOURCES

    pool = texture_names()
    evaluated = [name for name in SKIMAGE_EVAL_NAMES if name in TEXTURE_SOURCES]
    assert {"camera", "rocket", "astronaut"} <= set(evaluated)
    for name in evaluated:  # every photo the real-photo set outlines stays out of training
        assert name in DEFAULT_EXCLUDE and name not in pool
    assert "brick" in pool and "gravel" in pool
    assert "coins" in texture_names(exclude=())
    with pytest.raises(ValueError, match="unknown"):
        texture_names(exclude=("no_such_picture",))
    assert SceneGenerator(64, exclude=("brick",)).textures == texture_names(("brick",))


def test_variety_over_scenes():
    gen = SceneGenerator(128, seed=1)
    counts, sizes = [], []
    for i in range(8):
        _, masks = gen(i)
        counts.append(len(masks))
        sizes += list(masks.reshape(len(masks), -1).mean(1))
    sizes = np.array(sizes)
    assert max(counts) > min(counts)
    assert sizes.min() < 0.005 and sizes.max() > 0.05  # tiny and large objects


def test_speed_report():
    gen = SceneGenerator(512, seed=0).preload()
    gen(0)
    n = 5
    start = time.perf_counter()
    for i in range(1, n + 1):
        gen(i)
    per_image = (time.perf_counter() - start) / n
    print(f"\nscene generation at 512 px: {per_image * 1000:.0f} ms/image "
          f"(~{per_image * 1000:.0f} s per 1,000 images)")
    assert per_image < 3.0  # loose: the machine is shared


def test_objects_made_of_parts_give_nested_masks():
    from samkit.model_card import nested_pairs

    plain = SceneGenerator(128, seed=5)
    assert np.array_equal(plain(0)[1], SceneGenerator(128, seed=5, composite_prob=0.0)(0)[1])
    gen = SceneGenerator(256, seed=5, composite_prob=1.0, min_objects=2, max_objects=4)
    found_whole = found_subpart = 0
    for i in range(6):
        image, masks = gen(i)
        assert image.shape == (256, 256, 3) and masks.dtype == bool
        assert (masks.reshape(len(masks), -1).sum(1) >= gen.min_area).all()
        assert len({m.tobytes() for m in masks}) == len(masks)  # no mask twice
        pairs = nested_pairs(masks)
        found_whole += len(pairs) > 0
        found_subpart += int(masks.sum(0).max() >= 3)  # a subpart inside a part inside a whole
        for part, whole in pairs:
            assert not (masks[part] & ~masks[whole]).any()
            assert masks[part].sum() < masks[whole].sum()
    assert found_whole >= 4 and found_subpart >= 1
    assert np.array_equal(gen(3)[1], SceneGenerator(256, seed=5, composite_prob=1.0, min_objects=2,
                                                    max_objects=4)(3)[1])
    with pytest.raises(ValueError, match="composite_prob"):
        SceneGenerator(64, composite_prob=1.5)


def test_a_large_subject_in_front_and_larger_objects():
    plain = [SceneGenerator(128, seed=2)(i)[1] for i in range(6)]
    subject = [SceneGenerator(128, seed=2, hero_prob=1.0, object_scale=(0.02, 0.45))(i)[1] for i in range(6)]

    def largest(masks):
        return float(masks.reshape(len(masks), -1).mean(1).max())

    # every scene has a subject of at least a fifth of the side in radius; some of it stays visible
    assert np.median([largest(m) for m in subject]) > np.median([largest(m) for m in plain])
    assert min(largest(m) for m in subject) > 0.04
    with pytest.raises(ValueError, match="object_scale"):
        SceneGenerator(64, object_scale=(0.3, 0.1))
    with pytest.raises(ValueError, match="hero_prob"):
        SceneGenerator(64, hero_prob=-0.1)


def test_min_visible_drops_buried_fragments_and_keeps_the_image():
    kw = dict(size=128, seed=4, composite_prob=0.8, hero_prob=0.5, object_scale=(0.02, 0.45))
    every = SceneGenerator(**kw)
    assert np.array_equal(every(0)[1], SceneGenerator(**kw, min_visible=0.0)(0)[1])
    dropped = 0
    for threshold in (0.5, 0.9):
        gen = SceneGenerator(**kw, min_visible=threshold)
        for i in range(4):
            (image, masks), (image0, masks0) = gen(i), every(i)
            assert np.array_equal(image, image0)  # the same picture, fewer targets
            kept = {m.tobytes() for m in masks0}
            assert all(m.tobytes() in kept for m in masks)
            dropped += len(masks0) - len(masks)
        assert len(gen(0)[1]) <= len(every(0)[1])
    assert dropped > 0
    # a stricter threshold keeps no more masks than a looser one
    assert len(SceneGenerator(**kw, min_visible=0.9)(1)[1]) <= len(SceneGenerator(**kw, min_visible=0.5)(1)[1])
    with pytest.raises(ValueError, match="min_visible"):
        SceneGenerator(64, min_visible=1.5)


def test_detailed_subjects_have_more_parts_and_leave_other_scenes_alone():
    from samkit.model_card import nested_pairs

    kw = dict(size=128, seed=6, composite_prob=0.8, hero_prob=1.0, object_scale=(0.02, 0.45))
    plain, detailed = SceneGenerator(**kw), SceneGenerator(**kw, hero_detail=1.0)
    assert np.array_equal(plain(0)[1], SceneGenerator(**kw, hero_detail=0.0)(0)[1])

    def most_parts(masks):  # the most masks nested in one whole
        pairs = nested_pairs(masks)
        return max([sum(w == k for _, w in pairs) for k in {w for _, w in pairs}] or [0])

    n_plain = [most_parts(plain(i)[1]) for i in range(8)]
    n_detailed = [most_parts(detailed(i)[1]) for i in range(8)]
    assert sum(n_detailed) > 1.3 * sum(n_plain)
    with pytest.raises(ValueError, match="hero_detail"):
        SceneGenerator(64, hero_detail=2.0)


def test_coherent_parts_share_one_light_and_leave_other_scenes_alone():
    from samkit.data.synthetic import _dyed, _lit, _object_light

    kw = dict(size=128, seed=6, composite_prob=0.8, hero_prob=1.0, object_scale=(0.02, 0.45))
    plain = SceneGenerator(**kw)
    assert np.array_equal(plain(0)[0], SceneGenerator(**kw, coherent_parts=0.0)(0)[0])
    coherent = SceneGenerator(**kw, coherent_parts=1.0)
    a, b = coherent(3), coherent(3)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # deterministic in (seed, index)

    # the light is one function of the position on the object: two parts of a flat grey look meet
    # without a step, yet the object is shaded across its outline
    def grey(rows, cols, centre, radius):
        return np.full((len(rows), 3), 0.5, dtype=np.float32)

    light = _object_light(np.random.default_rng(0), 40.0)
    left, right = _lit(grey, light), _lit(_dyed(grey, np.ones(3, dtype=np.float32)), light)
    rows, cols = np.full(81, 64.0), np.arange(24.0, 105.0)
    lit_left = left(rows[:40], cols[:40], (64.0, 64.0), 40.0)
    lit_right = right(rows[40:], cols[40:], (64.0, 64.0), 40.0)
    assert abs(float(lit_left[-1, 0] - lit_right[0, 0])) < 0.02
    whole = np.concatenate([lit_left, lit_right])[:, 0]
    assert whole.max() - whole.min() > 0.05
    dyed = _dyed(grey, np.array([1.0, 0.5, 0.25], dtype=np.float32))(rows[:1], cols[:1], (64.0, 64.0), 40.0)
    assert np.allclose(dyed, [[0.5, 0.25, 0.125]])
    with pytest.raises(ValueError, match="coherent_parts"):
        SceneGenerator(64, coherent_parts=1.5)
