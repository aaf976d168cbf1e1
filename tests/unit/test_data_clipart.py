"""Clip-art objects: emoji split into parts, the fetched folder, and the scene generator drawing them."""
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from samkit.data import clipart
from samkit.data.synthetic import SceneGenerator


def _cairosvg():
    try:
        import cairosvg  # noqa: F401
    except (ImportError, OSError) as err:  # OSError: the cairo library itself is missing
        pytest.skip(f"cairosvg unavailable: {err}")


def test_part_map_merges_specks_and_finds_subparts():
    labels = np.zeros((100, 100), np.int32)
    labels[10:90, 10:70] = 1          # body
    labels[20:35, 20:35] = 2          # an eye inside the body: a subpart
    labels[60:62, 50:52] = 3          # a highlight of 4 px: merged into the body
    labels[40:60, 70:95] = 4          # an arm on the outline: a part
    parts, parents = clipart.part_map(labels)
    assert sorted(np.unique(parts)) == [0, 1, 2, 3]
    assert parents == [-1, -1, -1, 1]  # parts first (body, arm), then the eye, inside part 1
    assert (parts[60:62, 50:52] == parts[50, 50]).all()  # the speck took the body's number
    assert (parts[20:35, 20:35] == 3).all() and (parts[50, 80] == 2)
    np.testing.assert_array_equal(parts > 0, labels > 0)  # the outline is the drawing's


def test_part_map_keeps_at_most_max_parts():
    labels = np.zeros((60, 60), np.int32)
    for i in range(6):
        labels[:, i * 10:(i + 1) * 10] = i + 1
    labels[:, :10] = 1
    labels[:30, 50:] = 7
    parts, parents = clipart.part_map(labels, max_parts=3)
    assert parts.max() == 3 and len(parents) == 4
    assert (parts > 0).all()
    empty, none = clipart.part_map(np.zeros((5, 5), int))
    assert not empty.any() and none == [-1]


@pytest.mark.parametrize("name, wanted", [
    ("1F408", True), ("1F9D1-200D-1F680", True), ("2615", True),
    ("1F9D1-1F3FB", False), ("1F1EB-1F1F7", False), ("0023-FE0F-20E3", False), ("0041", False),
])
def test_which_emoji_are_taken(name, wanted):
    assert clipart._wanted(name) is wanted


SPRITE = """<?xml version="1.0" encoding="utf-8"?><svg viewBox="0 0 2000 2000" xmlns="http://www.w3.org/2000/svg">
<svg viewBox="0 0 128 128" id="1F408"><path fill="#f90" d="M20 40h70v60H20z"/>
<circle cx="40" cy="60" r="8" fill="#000"/><path fill="#963" d="M90 50h30v20H90z"/>
<path fill="#fff" opacity=".2" d="M20 40h70v30H20z"/></svg>
<svg viewBox="0 0 128 128" id="1F536"><path fill="#f60" d="M0 0h128v128H0z"/>
<path fill="#fff" d="M40 40h40v40H40z"/></svg>
<svg viewBox="0 0 128 128" id="1F1EB-1F1F7"><path fill="#00f" d="M10 10h50v50H10z"/></svg>
</svg>"""


def _package(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        blob = SPRITE.encode()
        info = tarfile.TarInfo("package/sprites/all.svg")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    blob = buf.getvalue()
    package = clipart.NpmPackage("http://127.0.0.1:9/@svgmoji/noto/-/noto-0.0.1.tgz", len(blob),
                                 hashlib.sha256(blob).hexdigest(), "package/sprites/all.svg")
    return package, blob


def test_fetch_draws_the_objects_of_a_verified_package(tmp_path):
    _cairosvg()
    package, blob = _package(tmp_path)
    dest = tmp_path / "clip"
    (dest / ".npm").mkdir(parents=True)
    (dest / ".npm" / "noto-0.0.1.tgz").write_bytes(blob)  # already downloaded: no network
    assert clipart.fetch_clipart(dest, package=package, side=64, progress=False) == dest
    # the square symbol and the flag are left out; the cat is drawn with its three parts (the faint overlay
    # belongs to the part under it), the eye a subpart of the body
    assert clipart.clipart_names(dest) == ["1F408"]
    art = clipart.load_clipart(dest, "1F408")
    assert art.rgb.shape == (64, 64, 3) and art.parts.shape == (64, 64) and art.parents == [-1, -1, -1, 1]
    body, eye = art.parts[40, 20], art.parts[30, 20]
    assert art.parents[eye] == body and (art.rgb[30, 20] < 0.3).all()  # the black eye, under the faint overlay
    assert not (dest / ".npm").exists()
    assert json.loads((dest / clipart.MANIFEST).read_text())["package"] == package.url
    assert clipart.fetch_clipart(dest, package=package, side=64, progress=False) == dest  # complete: returned


def test_a_damaged_package_is_not_used(tmp_path):
    from samkit.checkpoints import DownloadError

    package, blob = _package(tmp_path)
    dest = tmp_path / "clip"
    (dest / ".npm").mkdir(parents=True)
    (dest / ".npm" / "noto-0.0.1.tgz").write_bytes(blob[:-1] + b"x")  # fails its SHA-256: fetched again
    with pytest.raises(DownloadError, match="noto-0.0.1.tgz"):
        clipart.fetch_clipart(dest, package=package, side=64, progress=False)
    assert not (dest / clipart.MANIFEST).exists()
    with pytest.raises(FileNotFoundError, match="python -m samkit.data.clipart"):
        clipart.clipart_names(dest)


def _folder(tmp_path):
    """A clip-art folder written by hand: one drawing of a red body, a blue arm and a white eye in the body."""
    parts = np.zeros((40, 40), np.uint8)
    parts[5:35, 5:25] = 1
    parts[15:25, 25:38] = 2
    parts[10:16, 10:16] = 3
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[parts == 1] = (220, 30, 30, 255)
    rgba[parts == 2] = (30, 30, 220, 255)
    rgba[parts == 3] = (250, 250, 250, 255)
    Image.fromarray(rgba).save(tmp_path / "1F600.png")
    Image.fromarray(parts).save(tmp_path / "1F600_parts.png")
    (tmp_path / clipart.MANIFEST).write_text(json.dumps({"package": "x", "side": 40,
                                                        "parents": {"1F600": [-1, -1, -1, 1]}}))
    return tmp_path


def test_colours_extend_past_the_outline(tmp_path):
    art = clipart.load_clipart(_folder(tmp_path), "1F600")
    np.testing.assert_allclose(art.rgb[20, 10], np.array([220, 30, 30]) / 255, atol=1e-6)
    # outside the drawing: the nearest drawn colour (red left of the body, blue right of the arm), not black
    np.testing.assert_allclose(art.rgb[20, 1], np.array([220, 30, 30]) / 255, atol=1e-6)
    np.testing.assert_allclose(art.rgb[20, 39], np.array([30, 30, 220]) / 255, atol=1e-6)


def test_scene_generator_draws_clipart_objects_with_nested_masks(tmp_path):
    folder = _folder(tmp_path)
    gen = SceneGenerator(size=128, seed=2, composite_prob=1.0, hero_prob=1.0, clipart_dir=folder, clipart_prob=1.0)
    plain = SceneGenerator(size=128, seed=2, composite_prob=1.0, hero_prob=1.0)
    found = False
    for i in range(6):
        image, masks = gen(i)
        assert image.shape == (128, 128, 3) and masks.dtype == bool
        np.testing.assert_array_equal(image, SceneGenerator(size=128, seed=2, composite_prob=1.0, hero_prob=1.0,
                                                            clipart_dir=folder, clipart_prob=1.0)(i)[0])
        red = (image[:, :, 0].astype(int) - image[:, :, 2] > 60)
        for m in masks:  # a whole that holds a smaller mask (a part) inside it
            inner = [o for o in masks if o.sum() < m.sum() and (o & ~m).sum() == 0 and o.any()]
            if inner and red[m].mean() > 0.3:
                found = True
    assert found
    assert not all(np.array_equal(gen(i)[0], plain(i)[0]) for i in range(3))
    with pytest.raises(ValueError, match="clipart_dir"):
        SceneGenerator(size=64, clipart_prob=0.5)
    with pytest.raises(ValueError, match="clipart_prob"):
        SceneGenerator(size=64, clipart_dir=folder, clipart_prob=1.5)
    with pytest.raises(FileNotFoundError, match="python -m samkit.data.clipart"):
        SceneGenerator(size=64, clipart_dir=tmp_path / "missing", clipart_prob=0.5)


def test_training_scenes_take_the_config_clipart(tmp_path):
    from samkit.train.config import DataConfig, TrainConfig
    from samkit.train.data import _scenes

    folder = _folder(tmp_path)
    train, _ = _scenes(DataConfig(kind="scenes", n_images=2, n_val=1, image_size=64, composite_prob=1.0,
                                  clipart_dir=str(folder), clipart_prob=1.0))
    assert train.generator.clipart == ["1F600"] and train.generator.clipart_prob == 1.0
    cfg = TrainConfig()
    cfg.data.clipart_prob = 2.0
    with pytest.raises(ValueError, match="data.clipart_prob"):
        cfg.validate()
