"""A reader for SA-1B, the Segment Anything data set, and for folders written in its format.

Layout: one folder holding, per image, ``sa_<id>.jpg`` and ``sa_<id>.json``. The JSON is::

    {"image": {"image_id": int, "width": int, "height": int, "file_name": "sa_<id>.jpg"},
     "annotations": [{"id": int,
                      "segmentation": {"size": [height, width], "counts": "<COCO compressed RLE>"},
                      "bbox": [x, y, w, h], "area": int, "predicted_iou": float,
                      "stability_score": float, "crop_box": [x, y, w, h],
                      "point_coords": [[x, y]]}, ...]}

Boxes. Items carry ``boxes`` as ``N x 4`` float XYXY computed from the masks with
``pycocotools.mask.toBbox`` (``x1 = x0 + w``, so ``x1``/``y1`` lie one past the last foreground
column/row). SA-1B's stored ``bbox`` can be one pixel narrower than that; it is not used. Compare the two
with a tolerance of 1 px.

Licence. SA-1B may not be redistributed: never commit its images or masks. The tests and samples use
look-alike folders written by :func:`samkit.data.synthetic.generate_scenes`.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .rle import check_image_size, check_rle

__all__ = ["SA1B", "select_images", "read_image", "decode_rle", "encode_mask", "rle_boxes_xyxy"]

PathLike = Union[str, os.PathLike]
_NAME = re.compile(r"^sa_(\d+)\.json$")


def read_image(path: PathLike) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot read the image ({type(e).__name__}: {e}); the file is corrupt, "
                         f"truncated or not an image") from e


def encode_mask(mask: np.ndarray) -> Dict[str, Any]:
    """H x W bool mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _coded(rles: Sequence[Dict[str, Any]], height: Optional[int] = None, width: Optional[int] = None,
           where: str = "rles", source: PathLike = "") -> List[Dict[str, Any]]:
    """Check RLEs (:func:`samkit.data.rle.check_rle`) and return them as pycocotools takes them.

    Without ``height``/``width`` each RLE is checked against its own ``size``."""
    out = []
    for i, r in enumerate(rles):
        h, w = height, width
        if h is None or w is None:
            size = r.get("size") if isinstance(r, dict) else None
            h, w = size if isinstance(size, (list, tuple)) and len(size) == 2 else (-1, -1)
        out.append(check_rle(r, h, w, f"{where}[{i}]", source))
    return out


def decode_rle(rles: Sequence[Dict[str, Any]], height: int, width: int, where: str = "rles",
               source: PathLike = "") -> np.ndarray:
    """A list of COCO RLEs -> N x H x W bool (``0 x H x W`` when the list is empty).

    Each RLE is checked first (compressed or uncompressed counts covering exactly ``height x width``);
    a malformed one raises ValueError naming ``source`` and the field ``where[i]``.
    """
    if len(rles) == 0:
        return np.zeros((0, height, width), dtype=bool)
    masks = mask_utils.decode(_coded(rles, height, width, where, source))  # H x W x N, Fortran order
    return np.ascontiguousarray(masks.transpose(2, 0, 1)).astype(bool)


def rle_boxes_xyxy(rles: Sequence[Dict[str, Any]]) -> np.ndarray:
    """Boxes of COCO RLEs as N x 4 float32 XYXY (``pycocotools.mask.toBbox``, converted from XYWH)."""
    if len(rles) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    xywh = np.asarray(mask_utils.toBbox(_coded(rles)), dtype=np.float32).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def _field(obj: Any, key: str, kind: Any, where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{path}: missing field '{where}{key}'")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValueError(f"{path}: field '{where}{key}' must be {names}, got {type(value).__name__}")
    return value


def _check_record(record: Any, path: Path) -> None:
    """Validate an SA-1B JSON record; raise ValueError naming the file and the field."""
    if not isinstance(record, dict):
        raise ValueError(f"{path}: top level must be an object with 'image' and 'annotations'")
    image = _field(record, "image", dict, "", path)
    for key in ("image_id", "width", "height"):
        _field(image, key, int, "image.", path)
    _field(image, "file_name", str, "image.", path)
    check_image_size(image["height"], image["width"], "image", path)
    anns = _field(record, "annotations", list, "", path)
    h, w = image["height"], image["width"]
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]."
        if not isinstance(ann, dict):
            raise ValueError(f"{path}: field 'annotations[{i}]' must be an object")
        seg = _field(ann, "segmentation", dict, where, path)
        size = _field(seg, "size", list, where + "segmentation.", path)
        _field(seg, "counts", (str, list), where + "segmentation.", path)
        if list(size) != [h, w]:
            raise ValueError(
                f"{path}: field '{where}segmentation.size' is {list(size)} but the image is "
                f"[{h}, {w}] (image.height, image.width)")
        check_rle(seg, h, w, where + "segmentation", path)


class SA1B:
    """SA-1B (or a folder in its format), read lazily.

    Arguments:
        root: the folder of ``sa_<id>.jpg`` + ``sa_<id>.json`` pairs.
        max_images: keep only the first ``max_images`` images (by id).
        max_masks_per_image: keep only the first ``max_masks_per_image`` annotations of each image
            (in file order).

    Items (``dataset[i]``) are dicts:
        ``image``: H x W x 3 uint8 RGB; ``masks``: N x H x W bool (original image pixels);
        ``boxes``: N x 4 float32 XYXY from ``pycocotools.mask.toBbox`` (see the module docstring);
        ``ann_ids``: N int64; ``image_id``: int; ``file``: path of the image.
    """

    def __init__(self, root: PathLike, max_images: Optional[int] = None,
                 max_masks_per_image: Optional[int] = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"SA-1B folder not found: {self.root}")
        found = []
        for name in os.listdir(self.root):
            match = _NAME.match(name)
            if match:
                found.append((int(match.group(1)), self.root / name))
        if not found:
            raise FileNotFoundError(f"no sa_<id>.json files in {self.root}")
        found.sort()
        if max_images is not None:
            found = found[:max_images]
        self.ids: List[int] = [i for i, _ in found]
        self.json_files: List[Path] = [p for _, p in found]
        self.max_masks_per_image = max_masks_per_image

    def __len__(self) -> int:
        return len(self.json_files)

    def __repr__(self) -> str:
        return f"SA1B(root='{self.root}', images={len(self)})"

    def load_record(self, index: int) -> Dict[str, Any]:
        """The validated JSON record of image ``index`` (annotations cut to ``max_masks_per_image``);
        no image is read and no mask decoded."""
        path = self.json_files[index]
        try:
            with open(path) as f:
                record = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        _check_record(record, path)
        if self.max_masks_per_image is not None:
            record["annotations"] = record["annotations"][: self.max_masks_per_image]
        return record

    def image_path(self, record: Dict[str, Any], index: int) -> Path:
        return self.json_files[index].parent / record["image"]["file_name"]

    def get(self, index: int, ann_indices: Optional[Sequence[int]] = None) -> Dict[str, Any]:
        """Like ``dataset[index]`` but keeping only the annotations at ``ann_indices``."""
        record = self.load_record(index)
        anns = record["annotations"]
        if ann_indices is not None:
            anns = [anns[i] for i in ann_indices]
        info = record["image"]
        image_file = self.image_path(record, index)
        if not image_file.is_file():
            raise FileNotFoundError(
                f"{self.json_files[index]}: field 'image.file_name' names {image_file.name}, "
                f"which does not exist in {image_file.parent}")
        image = read_image(image_file)
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(
                f"{self.json_files[index]}: fields 'image.height', 'image.width' are "
                f"[{info['height']}, {info['width']}] but {image_file.name} is {list(image.shape[:2])}")
        rles = [a["segmentation"] for a in anns]
        return {
            "image": image,
            "masks": decode_rle(rles, info["height"], info["width"], "annotations[].segmentation",
                                self.json_files[index]),
            "boxes": rle_boxes_xyxy(rles),
            "ann_ids": np.asarray([a.get("id", -1) for a in anns], dtype=np.int64),
            "image_id": int(info["image_id"]),
            "file": str(image_file),
        }

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return self.get(index % len(self))


def _areas(anns: Sequence[Dict[str, Any]]) -> np.ndarray:
    rles = [a["segmentation"] for a in anns]
    if not rles:
        return np.zeros(0)
    return np.asarray(mask_utils.area(_coded(rles)), dtype=np.float64)


def select_images(dataset: SA1B, n_images: int = 10, n_masks: int = 10, seed: int = 0,
                  min_area: float = 0.001, max_area: float = 0.9) -> List[Dict[str, Any]]:
    """Pick ``n_images`` images and ``n_masks`` masks of each, deterministically.

    The images are visited in a seeded random order; an image qualifies when it has at least ``n_masks``
    masks whose area is between ``min_area`` and ``max_area`` of the image (the paper drops masks over
    90%); from those a seeded choice of ``n_masks`` is kept. Only the JSON of skipped images is read.

    Returns:
        a list of item dicts as from ``dataset[i]`` (masks N x H x W bool, N = ``n_masks``), plus
        ``index``: the image's index in ``dataset``.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(dataset))
    chosen: List[Dict[str, Any]] = []
    for index in order:
        record = dataset.load_record(int(index))
        info = record["image"]
        frac = _areas(record["annotations"]) / float(info["height"] * info["width"])
        ok = np.flatnonzero((frac >= min_area) & (frac <= max_area))
        if len(ok) < n_masks:
            continue
        picks = np.sort(rng.choice(ok, size=n_masks, replace=False))
        item = dataset.get(int(index), picks.tolist())
        item["index"] = int(index)
        chosen.append(item)
        if len(chosen) == n_images:
            break
    if len(chosen) < n_images:
        raise ValueError(
            f"only {len(chosen)} of {len(dataset)} images in {dataset.root} have {n_masks} masks with "
            f"area between {min_area} and {max_area} of the image; asked for {n_images}")
    return chosen
