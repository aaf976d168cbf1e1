"""Clip-art objects for generated scenes: Google's Noto emoji, split into their drawn parts.

The scene generator's own objects are random silhouettes cut into random parts; nothing in them looks like
the subjects of photos (a person: hair, face, shirt, trousers; a cat: head, body, legs, tail; a cup and its
saucer). Noto's colour emoji are drawings of exactly such things, and each is a stack of vector shapes that
already follows the object's parts. :func:`fetch_clipart` downloads one pinned npm package that holds all of
them as SVG (:data:`NOTO_PACKAGE`: URL, size and SHA-256; the drawings are Google's Noto Emoji, Apache-2.0),
reads the sprite out of the archive with the standard library, and draws each emoji twice with CairoSVG
(``pip install cairosvg``): once in colour (RGBA) and once with every shape in its own flat label colour and
no anti-aliasing, which gives a map of its parts. Small shapes (a highlight, a strand of hair) are merged into
the part they lie on; a part that lies inside another (an eye in a face) becomes its subpart. Flags, keycaps,
symbols on a square and skin-tone variants are left out.

    python -m samkit.data.clipart             # about 5 MB of download, once; prints the folder

Each emoji becomes ``<id>.png`` (RGBA) and ``<id>_parts.png`` (8-bit part labels, 0 = outside) in
``$SAMKIT_HOME/clipart/noto``; :data:`MANIFEST` (written last) lists them with each part's parent.
``SceneGenerator(clipart_dir=..., clipart_prob=...)`` (``data.clipart_dir`` / ``data.clipart_prob`` in a
training config) draws some of its objects made of parts from them. No photo of the evaluation set is among
them. Nothing from the package is executed.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import tarfile
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from scipy import ndimage

__all__ = ["NOTO_PACKAGE", "ClipArt", "clipart_dir", "fetch_clipart", "load_clipart", "clipart_names",
           "part_map"]

PathLike = Union[str, os.PathLike]

MANIFEST = "sources.json"
#: the side, in pixels, each emoji is drawn at.
SIDE = 256


class NpmPackage(NamedTuple):
    url: str
    size: int
    sha256: str
    sprite: str  # the member that holds every drawing


#: ``@svgmoji/noto`` 3.2.0: every Noto colour emoji as one SVG sprite (the drawings: Apache-2.0, Google).
NOTO_PACKAGE = NpmPackage("https://registry.npmjs.org/@svgmoji/noto/-/noto-3.2.0.tgz", 5012882,
                          "4bd1ef9824efaa08f124541a4c3420899a273333169aada20761384f9c7a35d0",
                          "package/sprites/all.svg")

_NS = "{http://www.w3.org/2000/svg}"
_DRAW = {_NS + t for t in ("path", "circle", "ellipse", "rect", "polygon", "polyline", "line")}
_SKIP = {_NS + t for t in ("defs", "clipPath", "mask", "linearGradient", "radialGradient", "pattern", "symbol",
                           "style", "title")}
_SKIN_TONES = ("1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF")


class ClipArt(NamedTuple):
    """One emoji: ``rgb`` H x W x 3 float32 in [0, 1] (outside the drawing, the colour of its nearest drawn
    pixel, so that a bilinear sample at the outline does not darken it), ``parts`` H x W int16 (0 outside,
    ``p >= 1`` part ``p``) and ``parents`` (``parents[p]``: the part that subpart ``p`` lies in, or -1;
    ``parents[0]`` unused), as :meth:`samkit.data.synthetic.SceneGenerator._composite` returns them."""
    rgb: np.ndarray
    parts: np.ndarray
    parents: List[int]


def clipart_dir() -> Path:
    """``$SAMKIT_HOME/clipart/noto``, where :func:`fetch_clipart` writes by default."""
    from samkit.checkpoints import samkit_home

    return samkit_home() / "clipart" / "noto"


def _wanted(name: str) -> bool:
    """Objects, animals, people and food; not flags, keycaps, skin-tone variants or text-like symbols."""
    cps = name.split("-")
    first = int(cps[0], 16)
    if any(c in _SKIN_TONES for c in cps) or "20E3" in cps:
        return False
    if 0x1F1E6 <= first <= 0x1F1FF or first == 0x1F3F4:  # flags
        return False
    return first >= 0x1F300 or 0x2600 <= first <= 0x27BF


def _opacity(el: ET.Element) -> float:
    out = 1.0
    for key in ("opacity", "fill-opacity"):
        try:
            out *= float(el.attrib.get(key, 1.0))
        except ValueError:
            pass
    return out


def _label_svg(el: ET.Element) -> Tuple[bytes, int]:
    """A copy of one emoji's SVG with every visible shape filled with its own flat colour (shape ``i`` is
    ``#RRGG00`` with ``RR * 256 + GG = i``), no transparency and no anti-aliasing. Faint overlays (opacity
    below 0.5: shading, gloss) are hidden; they belong to the part under them."""
    el = ET.fromstring(ET.tostring(el))
    count = 0

    def walk(node: ET.Element, opacity: float) -> None:
        nonlocal count
        for child in list(node):
            if child.tag in _SKIP:
                continue
            op = opacity * _opacity(child)
            child.attrib.pop("opacity", None)
            if child.tag not in _DRAW:
                walk(child, op)
                continue
            for key in ("fill-opacity", "stroke-opacity", "style"):
                child.attrib.pop(key, None)
            child.set("shape-rendering", "crispEdges")
            if op < 0.5 or (child.get("fill") == "none" and child.get("stroke", "none") == "none"):
                child.set("display", "none")
                continue
            count += 1
            colour = f"#{count // 256:02x}{count % 256:02x}00"
            if child.get("fill") != "none":
                child.set("fill", colour)
            if child.get("stroke", "none") != "none":
                child.set("stroke", colour)

    walk(el, 1.0)
    el.set("shape-rendering", "crispEdges")
    return ET.tostring(el), count


def _render(svg: bytes, side: int) -> np.ndarray:
    from PIL import Image

    try:
        import cairosvg
    except (ImportError, OSError) as err:  # OSError: the cairo library itself is missing
        raise ImportError(f"drawing the emoji needs CairoSVG and the cairo library (pip install cairosvg): {err}") \
            from err

    png = cairosvg.svg2png(bytestring=svg, output_width=side, output_height=side)
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGBA"))


def part_map(labels: np.ndarray, min_share: float = 0.015, max_parts: int = 12,
             subpart_share: float = 0.85) -> Tuple[np.ndarray, List[int]]:
    """Turn a map of drawn shapes into parts and subparts.

    ``labels``: H x W ints, 0 outside, ``i > 0`` the visible pixels of shape ``i``. Shapes under ``min_share``
    of the object's pixels are merged into what surrounds them (the nearest larger shape), and then the
    smallest are merged the same way until at most ``max_parts`` remain. A part whose outline touches one
    other part for at least ``subpart_share`` of its length, and not the outside, is that part's subpart (an
    eye in a face, a label on a bottle). Returns ``(parts, parents)`` as :class:`ClipArt` holds them, parts
    numbered ``1..n`` with every part before its subparts.
    """
    labels = np.asarray(labels)
    inside = labels > 0
    total = int(inside.sum())
    if total == 0:
        return np.zeros(labels.shape, np.int16), [-1]
    work = labels.astype(np.int32)
    while True:
        ids, counts = np.unique(work[inside], return_counts=True)
        small = ids[counts < min_share * total]
        if len(ids) > max_parts:
            small = np.union1d(small, ids[np.argsort(counts, kind="stable")[: len(ids) - max_parts]])
        if len(small) == 0 or len(small) == len(ids):
            break
        gone = np.isin(work, small) & inside
        # every merged pixel takes the label of the nearest pixel of a kept shape
        keep = inside & ~gone
        if not keep.any():
            break
        _, (iy, ix) = ndimage.distance_transform_edt(~keep, return_indices=True)
        work[gone] = work[iy[gone], ix[gone]]
    ids = [int(i) for i in np.unique(work[inside])]
    # subparts: a part ringed by one other part
    parent_of: Dict[int, int] = {}
    for i in ids:
        region = work == i
        ring = ndimage.binary_dilation(region) & ~region
        around = work[ring]
        if around.size == 0 or (around == 0).any():
            continue
        values, counts = np.unique(around, return_counts=True)
        if counts.max() >= subpart_share * around.size:
            parent_of[i] = int(values[counts.argmax()])
    for i in list(parent_of):  # one level only: a subpart's parent is a part
        while parent_of.get(parent_of[i]) is not None:
            parent_of[i] = parent_of[parent_of[i]]
    parts_first = [i for i in ids if i not in parent_of] + [i for i in ids if i in parent_of]
    number = {old: new for new, old in enumerate(parts_first, start=1)}
    out = np.zeros(labels.shape, np.int16)
    for old, new in number.items():
        out[work == old] = new
    parents = [-1] + [number[parent_of[i]] if i in parent_of else -1 for i in parts_first]
    return out, parents


def _draw(el: ET.Element, side: int) -> Optional[Tuple[np.ndarray, np.ndarray, List[int]]]:
    """``(rgba, parts, parents)`` of one emoji, or None for one that is not an object (a full square, a
    drawing too small, or a single shape)."""
    rgba = _render(ET.tostring(el), side)
    svg, count = _label_svg(el)
    if count == 0:
        return None
    flat = _render(svg, side)
    labels = flat[:, :, 0].astype(np.int32) * 256 + flat[:, :, 1]
    labels[(flat[:, :, 3] < 128) | (labels > count)] = 0
    inside = labels > 0
    if inside.mean() > 0.8 or inside.mean() < 0.05:  # a symbol on a square, or a speck
        return None
    parts, parents = part_map(labels)
    if len(parents) < 3:  # one part: not an object made of parts
        return None
    return rgba, parts, parents


def fetch_clipart(dest: Optional[PathLike] = None, package: NpmPackage = NOTO_PACKAGE, side: int = SIDE,
                  limit: Optional[int] = None, progress: bool = True) -> Path:
    """Download the pinned package, draw each wanted emoji into ``dest`` and return ``dest``.

    The archive is downloaded by :func:`samkit.checkpoints.download` (resumed, size and SHA-256 checked) into
    ``dest/.npm`` and deleted once every drawing is written. :data:`MANIFEST` is written last: a folder that
    has it is complete, and a second call returns at once. ``limit``: draw only the first N wanted emoji.
    """
    from PIL import Image
    from tqdm.auto import tqdm

    from samkit.checkpoints import download

    dest = Path(dest).expanduser() if dest is not None else clipart_dir()
    manifest = dest / MANIFEST
    if manifest.exists():
        try:
            record = json.loads(manifest.read_text())
            if record.get("package") == package.url and record.get("side") == side \
                    and record.get("limit") == limit \
                    and all((dest / f"{n}.png").exists() for n in record.get("parents", {})):
                return dest
        except (OSError, ValueError):
            pass
    dest.mkdir(parents=True, exist_ok=True)
    archive = download(package.url, dest / ".npm" / Path(package.url).name, sha256=package.sha256,
                       size=package.size, progress=progress)
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(package.sprite)
        if member is None:
            raise ValueError(f"{archive.name}: no {package.sprite}")
        root = ET.parse(member).getroot()
    emoji = [el for el in root if el.tag == _NS + "svg" and _wanted(el.get("id", "0"))]
    if limit is not None:
        emoji = emoji[:limit]
    parents: Dict[str, List[int]] = {}
    for el in tqdm(emoji, desc="drawing emoji", disable=not progress):
        drawn = _draw(el, side)
        if drawn is None:
            continue
        rgba, parts, par = drawn
        name = el.get("id")
        Image.fromarray(rgba).save(dest / f"{name}.png")
        Image.fromarray(parts.astype(np.uint8)).save(dest / f"{name}_parts.png")
        parents[name] = par
    shutil.rmtree(dest / ".npm", ignore_errors=True)
    tmp = manifest.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"package": package.url, "side": side, "limit": limit, "parents": parents}))
    os.replace(tmp, manifest)
    return dest


def clipart_names(folder: PathLike) -> List[str]:
    """The emoji of a clip-art folder, sorted (the order fixes which one a seed draws)."""
    folder = Path(folder).expanduser()
    manifest = folder / MANIFEST
    if not manifest.exists():
        raise FileNotFoundError(f"no clip-art folder at {folder} (python -m samkit.data.clipart fetches it)")
    return sorted(json.loads(manifest.read_text())["parents"])


@lru_cache(maxsize=256)  # about 1 MB a drawing: the most recently drawn ones stay in memory
def _load(folder: str, name: str) -> ClipArt:
    from PIL import Image

    path = Path(folder).expanduser()
    parents = json.loads((path / MANIFEST).read_text())["parents"][name]
    with Image.open(path / f"{name}.png") as im:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    with Image.open(path / f"{name}_parts.png") as im:
        parts = np.asarray(im, dtype=np.int16)
    if parts.max() >= len(parents):
        raise ValueError(f"{path / name}_parts.png: part {parts.max()} but {len(parents) - 1} parts listed")
    return ClipArt(_extend_colours(rgba), parts, list(parents))


def _extend_colours(rgba: np.ndarray) -> np.ndarray:
    """``H x W x 4`` float (straight alpha, as PNG stores it) -> ``H x W x 3``: the colours where the drawing
    is at least half opaque, elsewhere those of the nearest such pixel."""
    from scipy import ndimage

    rgb = rgba[:, :, :3]
    empty = rgba[:, :, 3] < 0.5
    if empty.all() or not empty.any():
        return np.ascontiguousarray(rgb)
    _, (rows, cols) = ndimage.distance_transform_edt(empty, return_indices=True)
    return np.ascontiguousarray(rgb[rows, cols])


def load_clipart(folder: PathLike, name: str) -> ClipArt:
    """One emoji of a clip-art folder (the last 256 read are kept in memory): its colours (extended past its
    outline), parts, parents."""
    return _load(str(folder), name)


def _main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dest", default=None, help="folder to write (default: $SAMKIT_HOME/clipart/noto)")
    args = ap.parse_args(argv)
    folder = fetch_clipart(args.dest)
    print(f"{len(clipart_names(folder))} clip-art objects in {folder}")


if __name__ == "__main__":  # pragma: no cover
    _main()
