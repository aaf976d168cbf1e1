"""The predictor's input checks: a refused image forgets the previous one, every prompt number must be
finite, odd image shapes work, and any prompt gives finite scores or a ValueError (fuzzed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import samkit
from samkit.cache import EmbeddingCache

H, W = 60, 80


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    p = samkit.Predictor(samkit.build_model("tiny").eval())
    p.set_image(np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8))
    return p


def _image(h=H, w=W, seed=1):
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_a_refused_image_does_not_leave_the_previous_one_set():
    p = samkit.Predictor(samkit.build_model("tiny").eval())
    p.set_image(_image())
    with pytest.raises(TypeError, match="uint8"):
        p.set_image(_image().astype(np.float32))
    with pytest.raises(RuntimeError, match="no image is set"):
        p.predict(point_coords=np.array([[10, 10]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="image_format"):
        p.set_image(_image(), image_format="HSV")
    assert not p.is_image_set and p.features is None


@pytest.mark.parametrize("prompt, message", [
    (dict(box=np.array([1.0, 2.0, np.nan, 30.0])), "box contains NaN"),
    (dict(box=np.array([1.0, 2.0, np.inf, 30.0])), "box contains NaN or inf"),
    (dict(box=["a", 1, 2, 3]), "box must be numbers"),
    (dict(point_coords=np.array([[np.nan, 3.0]]), point_labels=np.array([1])), "point_coords contain NaN"),
    (dict(point_coords=[["x", 3]], point_labels=[1]), "point_coords must be numbers"),
    (dict(point_coords=np.array([[3.0, 3.0]]), point_labels=np.array([np.nan])), "point_labels must be 1"),
])
def test_non_finite_or_non_numeric_prompts_are_refused(predictor, prompt, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(**prompt)


def test_nan_mask_input_is_refused(predictor):
    _, _, low = predictor.predict(point_coords=np.array([[20, 20]]), point_labels=np.array([1]))
    bad = low[:1].copy()
    bad[0, 5, 5] = np.nan
    with pytest.raises(ValueError, match="mask_input contains 1 NaN"):
        predictor.predict(point_coords=np.array([[20, 20]]), point_labels=np.array([1]), mask_input=bad)
    with pytest.raises(ValueError, match="NaN or inf"):
        predictor.predict_torch(boxes=torch.tensor([[0.0, 0.0, float("nan"), 5.0]]))


@pytest.mark.parametrize("shape", [(1, 4000), (4000, 1), (1, 1), (3, 2000)])
def test_extreme_aspect_ratios_give_masks_of_the_image_size(predictor, shape):
    """Before: a 1 x 4000 image resized to 0 rows and ended in a Pillow error."""
    p = samkit.Predictor(predictor.model, cache=False)
    p.set_image(_image(*shape))
    masks, scores, _ = p.predict(point_coords=np.array([[shape[1] / 2, shape[0] / 2]]), point_labels=np.array([1]))
    assert masks.shape == (3, *shape) and np.isfinite(scores).all()


def test_pil_grayscale_and_rgba_images_are_accepted(predictor):
    from PIL import Image

    p = samkit.Predictor(predictor.model, cache=False)
    for image in (Image.fromarray(_image()[..., 0]), Image.fromarray(_image()).convert("RGBA"), _image()[..., :1]):
        p.set_image(image)
        assert p.original_size == (H, W)


_special = st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e30, -1.0, 1e-300])
_coord = st.one_of(st.floats(0, H), st.floats(0, H), st.floats(0, H), _special)  # a quarter of them odd


@st.composite
def _prompts(draw):
    """Mostly well-formed prompts with odd numbers mixed in: NaN, inf, huge, negative, wrong labels."""
    kwargs = {}
    n = draw(st.integers(0, 4))
    if n or draw(st.booleans()):
        kwargs["point_coords"] = np.array([[draw(_coord), draw(_coord)] for _ in range(n)]).reshape(n, 2)
        kwargs["point_labels"] = np.array([draw(st.sampled_from([1, 1, 0, -1, 2, float("nan")]))
                                           for _ in range(n + draw(st.sampled_from([0, 0, 0, 1])))])
    if draw(st.booleans()):
        x0, y0, w, h = (draw(_coord) for _ in range(4))
        kwargs["box"] = [x0, y0, x0 + w, y0 + h]
    if not kwargs:
        kwargs["box"] = [draw(_coord), draw(_coord), W, H]
    if draw(st.integers(0, 3)) == 0:
        low = np.full((1, *draw(st.sampled_from([(128, 128), (128, 128), (64, 64)]))), draw(_coord), np.float32)
        kwargs["mask_input"] = low
    return kwargs


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=_prompts())
def test_fuzz_any_prompt_gives_finite_scores_or_a_value_error(predictor, prompt):
    try:
        masks, scores, low = predictor.predict(**prompt)
    except ValueError:
        return
    assert masks.shape[1:] == (H, W) and np.isfinite(scores).all() and np.isfinite(low).all(), prompt


# ------------------------------------------------------------------------------- embedding cache
def _flip_inside_tensor(path, value: bytes):
    """Overwrite two bytes inside the stored float16 tensor (the zip's data record, stored uncompressed)."""
    data = bytearray(path.read_bytes())
    start = data.index(b"data/0") + 200  # past the local header, well inside the 2-byte-per-value data
    data[start:start + 2] = value
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("value", [b"\xff\x7f", b"\x00\x3c"])  # float16 NaN; a finite 1.0
def test_damaged_cache_entry_is_dropped_and_recomputed(tmp_path, predictor, value):
    image = _image(seed=7)
    p = samkit.Predictor(predictor.model, cache=EmbeddingCache(tmp_path))
    p.set_image(image)
    ref = p.get_image_embedding().clone()
    (entry,) = tmp_path.glob("*.pt")
    _flip_inside_tensor(entry, value)
    fresh = samkit.Predictor(predictor.model, cache=EmbeddingCache(tmp_path))
    key = next(iter(tmp_path.glob("*.pt"))).stem
    assert key not in fresh.cache  # read, checked against its SHA-256, deleted
    assert fresh.cache.dropped == 1 and not entry.exists()
    fresh.set_image(image)
    assert torch.equal(fresh.get_image_embedding(), ref)  # recomputed (float16 like the first one)
    _, scores, _ = fresh.predict(point_coords=np.array([[20, 20]]), point_labels=np.array([1]))
    assert np.isfinite(scores).all()


def test_cache_entry_in_an_older_layout_is_recomputed(tmp_path, predictor):
    image = _image(seed=8)
    p = samkit.Predictor(predictor.model, cache=EmbeddingCache(tmp_path))
    p.set_image(image)
    (entry,) = tmp_path.glob("*.pt")
    torch.save(torch.full((1, 96, 32, 32), float("nan"), dtype=torch.float16), entry)  # a bare tensor
    fresh = samkit.Predictor(predictor.model, cache=EmbeddingCache(tmp_path))
    fresh.set_image(image)
    assert fresh.cache.dropped == 1 and torch.isfinite(fresh.get_image_embedding()).all()


def test_temporaries_of_a_killed_writer_are_removed(tmp_path):
    dead = tmp_path / "abc.pt.tmp999999999"  # no such process
    mine = tmp_path / "def.pt.tmp1"          # pid 1 is alive: its write may still be under way
    dead.write_bytes(b"half")
    mine.write_bytes(b"half")
    EmbeddingCache(tmp_path)
    assert not dead.exists() and mine.exists()
