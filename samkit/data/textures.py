"""Photo textures for generated scenes: wallpapers from Debian's desktop packages.

scikit-image's bundled pictures give the scene generator few natural surfaces (grass, gravel, brick, the rest
microscopy, text and test patterns), and the ones that look most like photos are kept out of training because
samkit evaluates on them. Debian's desktop wallpaper packages hold freely licensed photographs (flowers, leaves,
grass, water, wood, a forest path, cups, boats) and smooth illustrations. :func:`fetch_photo_textures` downloads
the pinned packages (:data:`DEBIAN_PACKAGES`: the URL, size and SHA-256 of each ``.deb``), reads the pictures out of
them with the standard library (a ``.deb`` is an ``ar`` archive holding ``data.tar.xz``), shrinks each to at most
1024 pixels a side and writes them as JPEG files to ``$SAMKIT_HOME/textures/debian``. Nothing from a package is
executed. ``SceneGenerator(texture_dir=...)`` (``data.texture_dir`` in a training config) adds them to its pool.

    python -m samkit.data.textures            # about 170 MB of downloads, once; prints the folder

None of these pictures is in the real-photo evaluation set (scikit-image and matplotlib photos).
"""
from __future__ import annotations

import argparse
import fnmatch
import io
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

__all__ = ["DEBIAN_PACKAGES", "DebPackage", "fetch_photo_textures", "photo_texture_dir", "deb_members",
           "texture_files"]

PathLike = Union[str, os.PathLike]

#: what a finished texture folder holds besides its pictures: the list written last.
MANIFEST = "sources.json"
MAX_SIDE = 1024
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class DebPackage(NamedTuple):
    """One pinned ``.deb`` and the pictures to take from it (``fnmatch`` patterns on member paths)."""
    name: str      # prefix of the written files
    url: str
    size: int
    sha256: str
    patterns: Tuple[str, ...]
    one_per_folder: bool = False  # take only the largest matching file of each folder (wallpaper sizes)


_POOL = "https://deb.debian.org/debian/pool/main"

#: Debian 12 (bookworm) packages: photographs and illustrations under free licences (GPL, LGPL, CC BY-SA).
DEBIAN_PACKAGES: Tuple[DebPackage, ...] = (
    DebPackage("mate", f"{_POOL}/m/mate-backgrounds/mate-backgrounds_1.26.0-1_all.deb", 46638500,
               "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
               ("./usr/share/backgrounds/mate/nature/*.jpg",)),
    DebPackage("plasma", f"{_POOL}/p/plasma-workspace-wallpapers/plasma-workspace-wallpapers_5.27.5-2_all.deb",
               94047772, "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
               ("./usr/share/wallpapers/*/contents/images/*",), one_per_folder=True),
    DebPackage("gnome", f"{_POOL}/g/gnome-backgrounds/gnome-backgrounds_43.1-1_all.deb", 32546832,
               "a670dea21572652127d6e55f9cdb3a226d0037854fdbfd037003c7d00ee0dc4e",
               ("./usr/share/backgrounds/gnome/wood-l.webp",)),
)


def photo_texture_dir() -> Path:
    """``$SAMKIT_HOME/textures/debian``, where :func:`fetch_photo_textures` writes by default."""
    from samkit.checkpoints import samkit_home

    return samkit_home() / "textures" / "debian"


def _ar_members(data: bytes) -> Iterator[Tuple[str, bytes]]:
    """``(name, bytes)`` of each member of an ``ar`` archive (the container of a ``.deb``)."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not a Debian package: the file does not start with an ar archive header")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos: pos + 60]
        if header[58:60] != b"`\n":
            raise ValueError(f"corrupt Debian package: bad ar member header at byte {pos}")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as err:
            raise ValueError(f"corrupt Debian package: bad member size at byte {pos}") from err
        start = pos + 60
        if start + size > len(data):
            raise ValueError(f"truncated Debian package: member {name!r} needs {size} bytes")
        yield name, data[start: start + size]
        pos = start + size + (size % 2)  # members are 2-byte aligned


def deb_members(deb: PathLike, patterns: Sequence[str], one_per_folder: bool = False) -> Dict[str, bytes]:
    """The files of ``deb``'s data archive whose paths match one of ``patterns``: ``{path: bytes}``, sorted.

    With ``one_per_folder``, only the largest matching file of each folder is kept.
    """
    data = Path(deb).read_bytes()
    payload = next((blob for name, blob in _ar_members(data) if name.startswith("data.tar")), None)
    if payload is None:
        raise ValueError(f"{deb}: no data.tar member, not a Debian binary package")
    found: Dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
        for info in tar:
            if info.isfile() and info.name.lower().endswith(SUFFIXES) and \
                    any(fnmatch.fnmatch(info.name, p) for p in patterns):
                found[info.name] = tar.extractfile(info).read()
    if one_per_folder:
        best: Dict[str, str] = {}
        for name, blob in found.items():
            folder = os.path.dirname(name)
            if folder not in best or len(blob) > len(found[best[folder]]):
                best[folder] = name
        found = {name: found[name] for name in best.values()}
    return dict(sorted(found.items()))


def _texture_name(package: str, member: str) -> str:
    parts = Path(member).parts
    # plasma's wallpapers are named by their folder (.../wallpapers/Autumn/contents/images/1920x1080.jpg)
    stem = parts[-4] if "contents" in parts else Path(member).stem
    return f"{package}-{stem}.jpg"


def _write_jpeg(blob: bytes, dest: Path) -> None:
    """Decode a picture, drop its alpha on white, shrink to ``MAX_SIDE`` and write it atomically."""
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as img:
        img.load()
        if img.mode in ("RGBA", "LA", "P"):
            img = img.convert("RGBA")
            white = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(white, img)
        img = img.convert("RGB")
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        tmp = dest.with_name(dest.name + ".tmp")
        img.save(tmp, format="JPEG", quality=92)
    os.replace(tmp, dest)


def texture_files(folder: PathLike) -> List[Path]:
    """The pictures of a texture folder, sorted by name (the order fixes which texture a seed draws)."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"texture folder not found: {folder} (python -m samkit.data.textures fetches "
                                "the photo textures)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"texture folder {folder} holds no .jpg/.png/.webp picture")
    return files


def fetch_photo_textures(dest: Optional[PathLike] = None, packages: Sequence[DebPackage] = DEBIAN_PACKAGES,
                         keep_debs: bool = False, progress: bool = True) -> Path:
    """Download the pinned packages, extract their pictures into ``dest`` and return ``dest``.

    Each ``.deb`` is downloaded by :func:`samkit.checkpoints.download` (resumed, size and SHA-256 checked) into
    ``dest/.debs``, and that folder is deleted once every package is extracted unless ``keep_debs``. The list of
    written pictures (:data:`MANIFEST`) is written last: a folder that has it is complete, and a second call
    returns at once.
    """
    from samkit.checkpoints import download

    dest = Path(dest).expanduser() if dest is not None else photo_texture_dir()
    manifest = dest / MANIFEST
    wanted = [p.url for p in packages]
    if manifest.exists():
        try:
            record = json.loads(manifest.read_text())
            if record.get("packages") == wanted and all((dest / f).exists() for f in record.get("files", [])):
                return dest
        except (OSError, ValueError):
            pass
    dest.mkdir(parents=True, exist_ok=True)
    written: List[str] = []
    for package in packages:
        deb = download(package.url, dest / ".debs" / Path(package.url).name, sha256=package.sha256,
                       size=package.size, progress=progress)
        members = deb_members(deb, package.patterns, package.one_per_folder)
        if not members:
            raise ValueError(f"{deb.name}: no picture matches {list(package.patterns)}")
        for member, blob in members.items():
            name = _texture_name(package.name, member)
            _write_jpeg(blob, dest / name)
            written.append(name)
        if not keep_debs:
            deb.unlink()
    if not keep_debs:  # the download's lock and checksum records go with the packages
        shutil.rmtree(dest / ".debs", ignore_errors=True)
    tmp = manifest.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"packages": wanted, "files": written}, indent=1))
    os.replace(tmp, manifest)
    return dest


def _main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", default=None, help="folder to write (default: $SAMKIT_HOME/textures/debian)")
    ap.add_argument("--keep-debs", action="store_true", help="keep the downloaded .deb files")
    args = ap.parse_args(argv)
    folder = fetch_photo_textures(args.dest, keep_debs=args.keep_debs)
    print(f"{len(texture_files(folder))} photo textures in {folder}")


if __name__ == "__main__":  # pragma: no cover
    _main()
