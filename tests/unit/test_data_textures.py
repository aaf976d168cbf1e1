"""Photo textures: reading pictures out of a Debian package, the fetched folder, and the scene generator's pool."""
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from samkit.data import textures
from samkit.data.synthetic import SceneGenerator


def _png(w, h, colour, mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, (w, h), colour).save(buf, format="PNG")
    return buf.getvalue()


def _tar_xz(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, blob in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def _ar(members):
    out = [b"!<arch>\n"]
    for name, blob in members:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}".encode() + b"`\n"
        out += [header, blob, b"\n" if len(blob) % 2 else b""]
    return b"".join(out)


def _deb(path):
    data = _tar_xz({
        "./usr/share/wallpapers/Leaf/contents/images/640x400.png": _png(64, 40, (10, 200, 10)),
        "./usr/share/wallpapers/Leaf/contents/images/1280x800.png": _png(128, 80, (10, 220, 10)),
        "./usr/share/wallpapers/Sea/contents/images/800x600.png": _png(80, 60, (0, 0, 0, 0), "RGBA"),
        "./usr/share/wallpapers/Sea/metadata.json": b"{}",
        "./usr/share/doc/pkg/copyright": b"GPL",
    })
    path.write_bytes(_ar([("debian-binary", b"2.0\n"), ("control.tar.xz", _tar_xz({})), ("data.tar.xz", data)]))
    return path


PATTERN = ("./usr/share/wallpapers/*/contents/images/*",)


def test_deb_members_takes_the_matching_pictures(tmp_path):
    deb = _deb(tmp_path / "pkg.deb")
    every = textures.deb_members(deb, PATTERN)
    assert sorted(every) == ["./usr/share/wallpapers/Leaf/contents/images/1280x800.png",
                             "./usr/share/wallpapers/Leaf/contents/images/640x400.png",
                             "./usr/share/wallpapers/Sea/contents/images/800x600.png"]
    largest = textures.deb_members(deb, PATTERN, one_per_folder=True)
    assert sorted(largest) == ["./usr/share/wallpapers/Leaf/contents/images/1280x800.png",
                               "./usr/share/wallpapers/Sea/contents/images/800x600.png"]


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"PK\x03\x04" + b[4:], "not a Debian package"),
    (lambda b: b[:len(b) // 2], "truncated Debian package"),
    (lambda b: b[:66] + b"xx" + b[68:], "bad ar member header"),
])
def test_a_broken_package_is_named(tmp_path, damage, message):
    deb = _deb(tmp_path / "pkg.deb")
    deb.write_bytes(damage(deb.read_bytes()))
    with pytest.raises(ValueError, match=message):
        textures.deb_members(deb, PATTERN)


def test_fetch_writes_the_folder_from_a_verified_package(tmp_path):
    deb = _deb(tmp_path / "src.deb")
    blob = deb.read_bytes()
    package = textures.DebPackage("kde", "http://127.0.0.1:9/pool/kde-wallpapers_1_all.deb", len(blob),
                                  hashlib.sha256(blob).hexdigest(), PATTERN, one_per_folder=True)
    dest = tmp_path / "tex"
    (dest / ".debs").mkdir(parents=True)
    (dest / ".debs" / "kde-wallpapers_1_all.deb").write_bytes(blob)  # already downloaded: no network
    assert textures.fetch_photo_textures(dest, packages=[package], progress=False) == dest
    files = textures.texture_files(dest)
    assert [f.name for f in files] == ["kde-Leaf.jpg", "kde-Sea.jpg"]
    with Image.open(files[0]) as leaf, Image.open(files[1]) as sea:
        assert leaf.size == (128, 80) and leaf.mode == "RGB"
        assert np.asarray(sea).min() > 240  # transparent pixels are laid on white
    assert not (dest / ".debs").exists()  # the package and its download records are removed after use
    assert json.loads((dest / textures.MANIFEST).read_text())["files"] == ["kde-Leaf.jpg", "kde-Sea.jpg"]
    # a complete folder is returned as it is, without the package
    assert textures.fetch_photo_textures(dest, packages=[package], progress=False) == dest


def test_texture_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m samkit.data.textures"):
        textures.texture_files(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("no pictures")
    with pytest.raises(ValueError, match="holds no"):
        textures.texture_files(tmp_path)


def test_scene_generator_draws_from_a_texture_folder(tmp_path):
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(tmp_path / f"photo{k}.jpg")
    plain = SceneGenerator(size=64, seed=3)
    photos = SceneGenerator(size=64, seed=3, texture_dir=tmp_path)
    assert photos.textures[:len(plain.textures)] == plain.textures
    assert [t.rsplit("/", 1)[-1] for t in photos.textures[len(plain.textures):]] == \
        ["photo0.jpg", "photo1.jpg", "photo2.jpg"]
    scenes = [photos(i)[0] for i in range(6)]
    assert all(s.shape == (64, 64, 3) and s.dtype == np.uint8 for s in scenes)
    np.testing.assert_array_equal(scenes[0], SceneGenerator(size=64, seed=3, texture_dir=tmp_path)(0)[0])
    assert any(not np.array_equal(a, plain(i)[0]) for i, a in enumerate(scenes))


def test_training_scenes_take_the_config_texture_dir(tmp_path):
    from samkit.train.config import DataConfig
    from samkit.train.data import _scenes

    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    train, val = _scenes(DataConfig(kind="scenes", n_images=2, n_val=1, image_size=64, texture_dir=str(tmp_path)))
    for items in (train, val):
        assert items.generator.textures[-1] == f"file:{(tmp_path / 'grey.png').resolve()}"
    image, masks = train(0)
    assert image.shape == (64, 64, 3) and masks.shape[1:] == (64, 64)


def test_photo_scope_backdrop_keeps_photos_off_objects(tmp_path, monkeypatch):
    from samkit.data import synthetic
    from samkit.train.config import TrainConfig

    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    photo = f"file:{(tmp_path / 'grey.png').resolve()}"
    gen = SceneGenerator(size=64, seed=5, texture_dir=tmp_path, photo_scope="backdrop")
    load = synthetic._load_texture
    for backdrop in (False, True):
        taken = []
        monkeypatch.setattr(synthetic, "_load_texture", lambda name: taken.append(name) or load(name))
        rng = np.random.default_rng(0)
        for _ in range(300):
            gen._colour_fn(rng, big=True, backdrop=backdrop)
        assert (photo in taken) == backdrop
    with pytest.raises(ValueError, match="photo_scope"):
        SceneGenerator(size=64, texture_dir=tmp_path, photo_scope="objects")
    cfg = TrainConfig()
    cfg.data.photo_scope = "objects"
    with pytest.raises(ValueError, match="data.photo_scope"):
        cfg.validate()
