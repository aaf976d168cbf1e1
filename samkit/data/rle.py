"""Checking COCO run-length encodings before they are decoded.

``pycocotools.mask.decode`` trusts its input: compressed counts that sum to less than ``height * width``
(an empty string, ``"0"``, a truncated string) leave the rest of the output uninitialised, and polygons
with huge or non-finite coordinates make ``frPyObjects`` allocate memory in proportion to their length.
The functions here check a segmentation completely, in a few vectorised numpy steps, and return the
object pycocotools expects, so that every decode in samkit sees only well-formed input.

The compressed format (``counts`` a string): each run length is written in 5-bit groups, least
significant first, as the characters ``chr(48 + group)``; bit 0x20 of a group means "more groups follow",
and bit 0x10 of the last group is the sign. From the fourth run on, a run is stored as the difference
to the run two places before it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, Union

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["rle_counts", "check_rle", "check_polygons", "check_image_size", "MAX_PIXELS"]

# pycocotools keeps run lengths in 32-bit unsigned ints; larger images cannot be encoded.
MAX_PIXELS = 2**31 - 1
# A polygon is rasterised at 5x its coordinates, one point per unit of edge length: its total edge
# length is limited to this many times the image's height + width (a traced outline is a few times that).
MAX_POLYGON_LENGTH = 100


def _prefix(source: Union[str, Path]) -> str:
    return f"{source}: " if str(source) else ""


def check_image_size(height: Any, width: Any, where: str = "image", source: Union[str, Path] = "") -> None:
    """Raise ValueError unless ``height`` and ``width`` are positive ints whose product pycocotools can encode."""
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{_prefix(source)}field '{where}.{name}' must be a positive integer, got {value!r}")
    if int(height) * int(width) > MAX_PIXELS:
        raise ValueError(f"{_prefix(source)}fields '{where}.height', '{where}.width' give {height} x {width} = "
                         f"{int(height) * int(width):,} pixels, more than the {MAX_PIXELS:,} a COCO RLE can hold")


def rle_counts(counts: Union[str, bytes]) -> np.ndarray:
    """The run lengths (int64) of a COCO compressed RLE string.

    Raises ValueError saying what is wrong: an empty string, a character outside the format's alphabet
    (``'0'`` to ``'o'``), a string that ends in the middle of a number (truncated), a run longer than
    32 bits, or a negative run.
    """
    if isinstance(counts, str):
        try:
            data = counts.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("counts holds non-ASCII characters; it is not a COCO compressed RLE") from None
    elif isinstance(counts, (bytes, bytearray)):
        data = bytes(counts)
    else:
        raise ValueError(f"counts must be a string, got {type(counts).__name__}")
    if not data:
        raise ValueError("counts is an empty string")
    groups = np.frombuffer(data, dtype=np.uint8).astype(np.int64) - 48
    bad = np.flatnonzero((groups < 0) | (groups > 63))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"counts has character {chr(data[i])!r} at position {i}, outside the RLE alphabet "
                         f"'0'..'o'")
    more = (groups & 0x20) != 0
    if more[-1]:
        raise ValueError("counts ends in the middle of a run length (the string is truncated)")
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > 7:  # 7 groups of 5 bits hold every 32-bit run length
        raise ValueError("counts holds a run length of more than 32 bits")
    run_of = np.repeat(np.arange(len(ends)), lengths)
    shift = 5 * (np.arange(len(groups)) - starts[run_of])
    values = np.zeros(len(ends), dtype=np.int64)
    np.add.at(values, run_of, (groups & 0x1F) << shift)
    negative = (groups[ends] & 0x10) != 0
    values[negative] -= np.left_shift(np.int64(1), 5 * lengths[negative])  # two's complement sign
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])   # run m (m >= 3) is stored as a difference to run m - 2
    runs[2::2] = np.cumsum(values[2::2])
    if (runs < 0).any():
        i = int(np.flatnonzero(runs < 0)[0])
        raise ValueError(f"counts decodes to a negative run length ({int(runs[i])}) at run {i}")
    if runs.max(initial=0) >= 2**32:
        raise ValueError("counts decodes to a run length of more than 32 bits")
    return runs


def check_rle(segmentation: Any, height: int, width: int, where: str = "segmentation",
              source: Union[str, Path] = "") -> Dict[str, Any]:
    """Check an RLE ``{"size": [h, w], "counts": ...}`` against an image of ``height x width``.

    ``counts`` may be a compressed string (or bytes) or a list of run lengths (uncompressed RLE). The runs
    must be non-negative and add up to ``height * width`` exactly. Returns the compressed RLE that
    ``pycocotools.mask.decode`` takes (``counts`` as bytes). Raises ValueError naming ``source`` (the file)
    and ``where`` (the field).
    """
    prefix = _prefix(source)
    if not isinstance(segmentation, dict) or "size" not in segmentation or "counts" not in segmentation:
        raise ValueError(f"{prefix}field '{where}' must be an RLE object with 'size' and 'counts'")
    size = segmentation["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or \
            not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size):
        raise ValueError(f"{prefix}field '{where}.size' must be [height, width] (two integers), got {size!r}")
    if [int(v) for v in size] != [height, width]:
        raise ValueError(f"{prefix}field '{where}.size' is {list(size)} but the image is [{height}, {width}]")
    counts = segmentation["counts"]
    total = height * width
    if isinstance(counts, (list, tuple)):
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in counts):
            raise ValueError(f"{prefix}field '{where}.counts' must be a list of integers (uncompressed RLE)")
        runs = np.asarray(counts, dtype=object)
        if len(runs) and min(counts) < 0:
            raise ValueError(f"{prefix}field '{where}.counts' holds a negative run length ({min(counts)})")
        if sum(counts) != total:
            raise ValueError(f"{prefix}field '{where}.counts' sums to {sum(counts)}, not height*width = {total} "
                             f"(the runs must cover the image exactly)")
        if len(runs) and max(counts) >= 2**32:
            raise ValueError(f"{prefix}field '{where}.counts' holds a run length of more than 32 bits")
        return mask_utils.frPyObjects({"size": [height, width], "counts": [int(v) for v in counts]},
                                      height, width)
    if not isinstance(counts, (str, bytes)):
        raise ValueError(f"{prefix}field '{where}.counts' must be a string (compressed RLE) or a list of "
                         f"integers, got {type(counts).__name__}")
    try:
        runs = rle_counts(counts)
    except ValueError as e:
        raise ValueError(f"{prefix}field '{where}.counts' is not a valid compressed RLE: {e}") from None
    if int(runs.sum()) != total:
        raise ValueError(f"{prefix}field '{where}.counts' decodes to runs summing to {int(runs.sum())}, not "
                         f"height*width = {total} (the string is truncated or belongs to another image size)")
    return {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else bytes(counts)}


def check_polygons(polygons: Any, height: int, width: int, where: str = "segmentation",
                   source: Union[str, Path] = "") -> None:
    """Check COCO polygons ``[[x0, y0, x1, y1, ...], ...]`` before they are rasterised.

    Every polygon needs at least 3 points of finite numbers lying no further outside the image than the
    image's own size, and their total edge length must stay under ``MAX_POLYGON_LENGTH * (height + width)``
    (rasterising costs memory in proportion to it). Raises ValueError naming the file and the field.
    """
    prefix = _prefix(source)
    if not isinstance(polygons, list) or len(polygons) == 0:
        raise ValueError(f"{prefix}field '{where}' must be a non-empty list of polygons")
    length = 0.0
    for j, poly in enumerate(polygons):
        if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in poly)):
            raise ValueError(f"{prefix}field '{where}[{j}]' must be a polygon [x0, y0, x1, y1, ...] with at "
                             f"least 3 points")
        if not all(math.isfinite(v) for v in poly):
            raise ValueError(f"{prefix}field '{where}[{j}]' holds NaN or infinite coordinates")
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        far = (xy[:, 0] < -width) | (xy[:, 0] > 2 * width) | (xy[:, 1] < -height) | (xy[:, 1] > 2 * height)
        if far.any():
            k = int(np.flatnonzero(far)[0])
            raise ValueError(f"{prefix}field '{where}[{j}]' has point {k} at (x={xy[k, 0]:g}, y={xy[k, 1]:g}), "
                             f"far outside the {width} x {height} image; the coordinates must be image pixels")
        edges = np.abs(np.diff(np.vstack([xy, xy[:1]]), axis=0))
        length += float(edges.max(axis=1).sum())
    if length > MAX_POLYGON_LENGTH * (height + width):
        raise ValueError(f"{prefix}field '{where}' has polygons {length:,.0f} pixels long in all, more than "
                         f"{MAX_POLYGON_LENGTH} times the image's height + width; refusing to rasterise them")
