"""Helpers of the automatic mask generator: point grids, crops, stability, boxes and RLE.

Frames: "crop frame" means pixel indices inside one crop of the original image; "image frame" means
pixel indices of the original image. A crop box is ``[x0, y0, x1, y1]`` in the image frame with
``x1``/``y1`` exclusive (Python slicing). A *mask box* is ``[x0, y0, x1, y1]`` with ``x1``/``y1`` the last
foreground column/row (inclusive), as in the official code; its XYWH form therefore has
``w = x1 - x0``, one less than the number of columns the mask spans.

Masks are stored as COCO run-length encodings (``pycocotools.mask``): a dict with ``size = [H, W]`` and
byte-string ``counts``, runs counted down the columns (Fortran order).
"""
from __future__ import annotations

import math
from itertools import product
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import torch
from pycocotools import mask as mask_utils
from scipy import ndimage

__all__ = [
    "build_point_grid",
    "build_layer_point_grids",
    "generate_crop_boxes",
    "stability_score",
    "masks_to_boxes_xyxy",
    "box_near_crop_edge",
    "xyxy_to_xywh",
    "encode_rles",
    "decode_rle",
    "segmentation_mask",
    "rle_area",
    "rle_to_uncompressed",
    "uncompressed_to_rle",
    "remove_small_regions",
]


# ----------------------------------------------------------------------------------------------
# Point grids and crops
# ----------------------------------------------------------------------------------------------
def build_point_grid(n_per_side: int) -> np.ndarray:
    """A regular ``n x n`` grid of cell centres in the unit square.

    Returns:
        (n*n) x 2 float64 array of ``(x, y)`` in [0, 1], row by row (x varies fastest).
    """
    if n_per_side < 1:
        raise ValueError(f"a point grid needs at least 1 point per side, got {n_per_side}")
    half_cell = 0.5 / n_per_side
    centres = np.linspace(half_cell, 1.0 - half_cell, n_per_side)
    xs, ys = np.meshgrid(centres, centres, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def build_layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> List[np.ndarray]:
    """One unit-square grid per crop layer; layer ``i`` has ``int(n_per_side / downscale**i)`` points a side.

    Raises:
        ValueError: if a layer would get a grid with zero points.
    """
    grids = []
    for layer in range(n_layers + 1):
        n = int(n_per_side / (downscale ** layer))
        if n < 1:
            raise ValueError(
                f"crop layer {layer} would get a grid with zero points (points_per_side={n_per_side}, "
                f"crop_n_points_downscale_factor={downscale}); lower crop_n_layers or raise points_per_side"
            )
        grids.append(build_point_grid(n))
    return grids


def generate_crop_boxes(image_size: Tuple[int, int], n_layers: int, overlap_ratio: float
                        ) -> Tuple[List[List[int]], List[int]]:
    """Crop boxes for every layer: layer 0 is the whole image, layer ``i`` a ``2**i x 2**i`` grid of
    overlapping crops. The overlap is ``overlap_ratio`` of the short side in layer 1 and halves with
    each further layer.

    Arguments:
        image_size: ``(H, W)`` of the original image.

    Returns:
        crop boxes ``[x0, y0, x1, y1]`` (image frame, exclusive ends) and the layer of each.

    Raises:
        ValueError: if the image is too small for the requested layers (a crop would be empty).
    """
    h, w = image_size
    boxes, layers = [[0, 0, w, h]], [0]
    short_side = min(h, w)
    for layer in range(1, n_layers + 1):
        n_side = 2 ** layer
        overlap = int(overlap_ratio * short_side * 2 / n_side)
        crop_w = int(math.ceil((w + overlap * (n_side - 1)) / n_side))
        crop_h = int(math.ceil((h + overlap * (n_side - 1)) / n_side))
        x_starts = [int((crop_w - overlap) * i) for i in range(n_side)]
        y_starts = [int((crop_h - overlap) * i) for i in range(n_side)]
        for x0, y0 in product(x_starts, y_starts):
            box = [x0, y0, min(x0 + crop_w, w), min(y0 + crop_h, h)]
            if box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(
                    f"the image ({h}x{w} pixels) is smaller than a crop of layer {layer}: crop box {box} "
                    f"is empty; use fewer crop layers (crop_n_layers={n_layers}) or a larger image"
                )
            boxes.append(box)
            layers.append(layer)
    return boxes, layers


# ----------------------------------------------------------------------------------------------
# Scores and boxes
# ----------------------------------------------------------------------------------------------
def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks obtained by thresholding the logits at ``threshold + offset`` and
    ``threshold - offset`` (the first lies inside the second, so IoU = smaller area / larger area).

    Arguments:
        logits: N x H x W mask logits.

    Returns:
        N float32 scores in [0, 1] (NaN where even the looser mask is empty, as in the official code).
    """
    inner = (logits > threshold + offset).flatten(1).sum(dim=1)
    outer = (logits > threshold - offset).flatten(1).sum(dim=1)
    return inner.to(torch.float32) / outer.to(torch.float32)


def masks_to_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of binary masks.

    Arguments:
        masks: N x H x W bool.

    Returns:
        N x 4 int64 ``[x0, y0, x1, y1]`` with inclusive ends (the last foreground column/row);
        ``[0, 0, 0, 0]`` for an empty mask.
    """
    n, h, w = masks.shape
    if n == 0:
        return torch.zeros(0, 4, dtype=torch.int64, device=masks.device)
    rows = masks.any(dim=2)  # N x H
    cols = masks.any(dim=1)  # N x W
    nonempty = rows.any(dim=1)
    # argmax returns the first maximal index; on the flipped vector it finds the last foreground index.
    y0 = rows.to(torch.uint8).argmax(dim=1)
    y1 = h - 1 - rows.flip(1).to(torch.uint8).argmax(dim=1)
    x0 = cols.to(torch.uint8).argmax(dim=1)
    x1 = w - 1 - cols.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.int64)
    return boxes * nonempty[:, None]


def box_near_crop_edge(boxes: torch.Tensor, crop_box: Sequence[int], image_box: Sequence[int],
                       atol: float = 20.0) -> torch.Tensor:
    """Which boxes touch (within ``atol`` pixels) an edge of the crop that is not an edge of the image.

    Such masks are probably cut by the crop, so the generator drops them: the object is better seen
    from a larger crop.

    Arguments:
        boxes: N x 4 XYXY mask boxes in the image frame.
        crop_box, image_box: ``[x0, y0, x1, y1]`` in the image frame.

    Returns:
        N bool.
    """
    boxes = boxes.to(torch.float32)
    crop = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    image = torch.as_tensor(image_box, dtype=torch.float32, device=boxes.device)
    near_crop = (boxes - crop).abs() <= atol
    near_image = (boxes - image).abs() <= atol
    return (near_crop & ~near_image).any(dim=1)


def xyxy_to_xywh(box: Sequence[float]) -> List[float]:
    """``[x0, y0, x1, y1] -> [x0, y0, x1 - x0, y1 - y0]`` (plain Python numbers)."""
    x0, y0, x1, y1 = [v.item() if hasattr(v, "item") else v for v in box]
    return [x0, y0, x1 - x0, y1 - y0]


# ----------------------------------------------------------------------------------------------
# Run-length encoding
# ----------------------------------------------------------------------------------------------
def encode_rles(masks: np.ndarray) -> List[Dict[str, Any]]:
    """COCO RLEs of a stack of binary masks.

    Arguments:
        masks: N x H x W bool (numpy).

    Returns:
        N dicts ``{"size": [H, W], "counts": bytes}`` (``pycocotools`` compressed RLE).
    """
    if len(masks) == 0:
        return []
    stacked = np.asfortranarray(np.moveaxis(masks.astype(np.uint8), 0, -1))  # H x W x N, column-major
    return mask_utils.encode(stacked)


def decode_rle(rle: Dict[str, Any]) -> np.ndarray:
    """H x W bool mask from a COCO RLE (compressed, bytes or str counts, or uncompressed list counts)."""
    counts = rle.get("counts")
    if isinstance(counts, list):
        rle = uncompressed_to_rle(rle)
    elif isinstance(counts, str):  # JSON files hold the compressed counts as text
        rle = {"size": list(rle["size"]), "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def segmentation_mask(segmentation: Any) -> np.ndarray:
    """The ``segmentation`` of a mask record (the generator's ``binary_mask``, ``coco_rle`` or
    ``uncompressed_rle`` output, or a COCO annotation's RLE) as an H x W bool mask."""
    if isinstance(segmentation, dict):
        return decode_rle(segmentation)
    if hasattr(segmentation, "detach"):
        segmentation = segmentation.detach().cpu().numpy()
    return np.asarray(segmentation, dtype=bool)


def rle_area(rle: Dict[str, Any]) -> int:
    """Foreground pixel count of a COCO RLE."""
    if isinstance(rle.get("counts"), list):
        return int(sum(rle["counts"][1::2]))
    return int(mask_utils.area(rle))


def rle_to_uncompressed(rle: Dict[str, Any]) -> Dict[str, Any]:
    """Compressed COCO RLE -> ``{"size": [H, W], "counts": [ints]}`` with plain integer run lengths
    (column-major; the first run counts background pixels and is 0 if the first pixel is foreground)."""
    mask = decode_rle(rle)
    flat = mask.flatten(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def uncompressed_to_rle(rle: Dict[str, Any]) -> Dict[str, Any]:
    """Uncompressed (list counts) RLE -> compressed pycocotools RLE."""
    h, w = rle["size"]
    return mask_utils.frPyObjects(rle, h, w)


# ----------------------------------------------------------------------------------------------
# Small-region clean-up
# ----------------------------------------------------------------------------------------------
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def remove_small_regions(mask: np.ndarray, min_area: int, mode: str) -> Tuple[np.ndarray, bool]:
    """Fill holes (``mode='holes'``) or delete islands (``mode='islands'``) smaller than ``min_area``
    pixels, with 8-connectivity. When every island is small, the largest one is kept.

    Arguments:
        mask: H x W bool.

    Returns:
        the new H x W bool mask and whether anything changed.
    """
    if mode not in ("holes", "islands"):
        raise ValueError(f"mode must be 'holes' or 'islands', got {mode!r}")
    region = ~mask if mode == "holes" else mask
    labels, n = ndimage.label(region, structure=_EIGHT_CONNECTED)
    if n == 0:
        return mask, False
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = np.flatnonzero(sizes < min_area) + 1
    if len(small) == 0:
        return mask, False
    if mode == "holes":
        return mask | np.isin(labels, small), True
    big = np.flatnonzero(sizes >= min_area) + 1
    if len(big) == 0:
        big = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, big), True
