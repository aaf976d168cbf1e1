"""A reader for COCO-format instance segmentation (polygons and RLE), used for NDISPark and COCO itself.

Items have the same keys as :class:`samkit.data.sa1b.SA1B`'s: ``image`` (H x W x 3 uint8 RGB), ``masks``
(N x H x W bool, original pixels), ``boxes`` (N x 4 float32 XYXY from ``pycocotools.mask.toBbox`` of the
decoded mask, ``x1 = x0 + w``), ``ann_ids``, ``image_id``, ``file``; plus ``category_ids`` (N int64) and
``iscrowd`` (N bool).

Segmentations may be polygons (a list of ``[x0, y0, x1, y1, ...]`` lists, merged into one mask),
uncompressed RLE (``counts`` a list of ints, as COCO stores crowd regions) or compressed RLE (``counts``
a string). Crowd annotations (``iscrowd = 1``) are skipped unless ``include_crowd=True``.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
from pycocotools import mask as mask_utils

from .rle import check_image_size, check_polygons, check_rle
from .sa1b import read_image

__all__ = ["COCOInstances", "segmentation_to_mask"]

PathLike = Union[str, os.PathLike]


def segmentation_to_mask(segmentation: Any, height: int, width: int, where: str = "segmentation",
                         source: Union[str, Path] = "") -> np.ndarray:
    """One COCO segmentation (polygons, uncompressed or compressed RLE) -> H x W bool.

    Raises ValueError naming ``source`` and ``where`` when the segmentation is malformed: an RLE whose size
    is not ``[height, width]`` or whose runs do not cover the image exactly, polygons with non-finite
    coordinates or coordinates far outside the image (see :mod:`samkit.data.rle`).
    """
    prefix = f"{source}: " if str(source) else ""
    check_image_size(height, width, "image", source)
    if isinstance(segmentation, list):
        check_polygons(segmentation, height, width, where, source)
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict):
        rle = check_rle(segmentation, height, width, where, source)
    else:
        raise ValueError(f"{prefix}field '{where}' must be a polygon list or an RLE object, "
                         f"got {type(segmentation).__name__}")
    return mask_utils.decode(rle).astype(bool)


def _require(obj: Any, key: str, kind: Any, where: str, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise ValueError(f"{path}: missing field '{where}{key}'")
    value = obj[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ValueError(f"{path}: field '{where}{key}' has the wrong type ({type(value).__name__})")
    return value


class COCOInstances:
    """COCO-format instance masks, images read lazily.

    Arguments:
        images_dir: folder holding the images named by ``images[].file_name``.
        annotation_json: the COCO JSON (``images``, ``annotations``, ``categories``).
        category_ids: keep only annotations of these categories (all when None).
        include_crowd: keep ``iscrowd = 1`` annotations (skipped by default).
        skip_empty: drop images left with no annotation after filtering (kept by default).
        missing_segmentation: what to do with an annotation that has no segmentation (box-only
            annotations): ``"error"`` (default), ``"skip"`` it, or use its ``"box"`` as the mask.
    """

    def __init__(self, images_dir: PathLike, annotation_json: PathLike,
                 category_ids: Optional[Iterable[int]] = None, include_crowd: bool = False,
                 skip_empty: bool = False, missing_segmentation: str = "error") -> None:
        self.images_dir = Path(images_dir)
        self.annotation_json = Path(annotation_json)
        if missing_segmentation not in ("error", "skip", "box"):
            raise ValueError(f"missing_segmentation must be 'error', 'skip' or 'box', got {missing_segmentation!r}")
        if not self.annotation_json.is_file():
            raise FileNotFoundError(f"annotation file not found: {self.annotation_json}")
        if not self.images_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.images_dir}")
        path = self.annotation_json
        try:
            with open(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: top level must be an object with 'images' and 'annotations'")
        images = _require(data, "images", list, "", path)
        anns = _require(data, "annotations", list, "", path)
        self.categories: Dict[int, str] = {}
        for i, cat in enumerate(data.get("categories", [])):
            cid = _require(cat, "id", int, f"categories[{i}].", path)
            self.categories[cid] = str(cat.get("name", cid))

        self.images: Dict[int, Dict[str, Any]] = {}
        for i, img in enumerate(images):
            where = f"images[{i}]."
            for key in ("id", "width", "height"):
                _require(img, key, int, where, path)
            _require(img, "file_name", str, where, path)
            check_image_size(img["height"], img["width"], f"images[{i}]", path)
            if img["id"] in self.images:
                raise ValueError(f"{path}: field '{where}id' = {img['id']} is used by two images")
            self.images[img["id"]] = img

        keep_cats = None if category_ids is None else {int(c) for c in category_ids}
        self.category_ids = keep_cats
        self.include_crowd = include_crowd
        self.missing_segmentation = missing_segmentation
        self._anns: Dict[int, List[Tuple[int, Dict[str, Any]]]] = {k: [] for k in self.images}
        for i, ann in enumerate(anns):
            where = f"annotations[{i}]."
            _require(ann, "id", int, where, path)
            image_id = _require(ann, "image_id", int, where, path)
            category_id = _require(ann, "category_id", int, where, path)
            if image_id not in self.images:
                raise ValueError(f"{path}: field '{where}image_id' = {image_id} names no image in 'images'")
            if keep_cats is not None and category_id not in keep_cats:
                continue
            crowd = ann.get("iscrowd", 0)
            if crowd not in (0, 1) or isinstance(crowd, float):
                raise ValueError(f"{path}: field '{where}iscrowd' must be 0 or 1, got {crowd!r}")
            if crowd and not include_crowd:
                continue
            seg = ann.get("segmentation")
            if seg is None or (isinstance(seg, list) and len(seg) == 0):
                if missing_segmentation == "error":
                    raise ValueError(
                        f"{path}: field '{where}segmentation' is missing or empty (pass "
                        f"missing_segmentation='skip' or 'box' for box-only annotations)")
                if missing_segmentation == "skip":
                    continue
                bbox = _require(ann, "bbox", list, where, path)
                if len(bbox) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                             and math.isfinite(v) for v in bbox) or min(bbox[2:]) < 0:
                    raise ValueError(f"{path}: field '{where}bbox' must be [x, y, w, h]: four finite numbers "
                                     f"with w, h >= 0, got {bbox!r}")
            self._anns[image_id].append((i, ann))

        ids = sorted(self.images)
        if skip_empty:
            ids = [k for k in ids if self._anns[k]]
        self.ids: List[int] = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return (f"COCOInstances(images_dir='{self.images_dir}', annotation_json='{self.annotation_json}', "
                f"images={len(self)})")

    def num_annotations(self) -> int:
        """Annotations kept after the category and crowd filters."""
        return sum(len(self._anns[k]) for k in self.ids)

    def _mask(self, index_in_json: int, ann: Dict[str, Any], height: int, width: int) -> np.ndarray:
        where = f"annotations[{index_in_json}].segmentation"
        seg = ann.get("segmentation")
        if seg is None or (isinstance(seg, list) and len(seg) == 0):
            x, y, w, h = ann["bbox"]
            mask = np.zeros((height, width), dtype=bool)
            mask[int(round(y)):int(round(y + h)), int(round(x)):int(round(x + w))] = True
            return mask
        return segmentation_to_mask(seg, height, width, where, self.annotation_json)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        image_id = self.ids[index]
        info = self.images[image_id]
        h, w = info["height"], info["width"]
        image_file = self.images_dir / info["file_name"]
        if not image_file.is_file():
            raise FileNotFoundError(
                f"{self.annotation_json}: field 'images[].file_name' of image id {image_id} names "
                f"{info['file_name']}, which does not exist in {self.images_dir}")
        image = read_image(image_file)
        if image.shape[:2] != (h, w):
            raise ValueError(
                f"{self.annotation_json}: fields 'height', 'width' of image id {image_id} are [{h}, {w}] "
                f"but {image_file.name} is {list(image.shape[:2])}")
        pairs = self._anns[image_id]
        masks = np.zeros((len(pairs), h, w), dtype=bool)
        for k, (i, ann) in enumerate(pairs):
            masks[k] = self._mask(i, ann, h, w)
        if len(pairs):
            rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
            xywh = np.asarray(mask_utils.toBbox(rles), dtype=np.float32).reshape(-1, 4)
            boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        else:
            boxes = np.zeros((0, 4), dtype=np.float32)
        return {
            "image": image,
            "masks": masks,
            "boxes": boxes,
            "ann_ids": np.asarray([a["id"] for _, a in pairs], dtype=np.int64),
            "category_ids": np.asarray([a["category_id"] for _, a in pairs], dtype=np.int64),
            "iscrowd": np.asarray([bool(a.get("iscrowd", 0)) for _, a in pairs], dtype=bool),
            "image_id": int(image_id),
            "file": str(image_file),
        }
