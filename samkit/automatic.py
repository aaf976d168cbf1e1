"""Segment everything: the automatic mask generator (paper §7.3 / appendix A "automatic stage").

A regular grid of single foreground points is sent to SAM, each point giving three candidate masks.
The candidates are filtered by the model's predicted IoU and by a *stability score*, deduplicated with
box non-maximum suppression, and optionally the whole procedure is repeated on zoomed-in crops of the
image. :class:`AutomaticMaskGenerator` follows the official ``SamAutomaticMaskGenerator``: the same
arguments and defaults, the same order of steps and the same output records, so results match the
official generator mask for mask (``tests/parity/test_amg_parity.py``).

Pipeline, for every crop (layer 0 = the whole image):

1. ``Predictor.set_image(crop)`` computes the image embedding once per crop.
2. The crop's point grid goes through the prompt encoder and mask decoder ``points_per_batch`` points
   at a time (``multimask_output=True``: 3 masks per point), giving full-resolution logits.
3. Keep masks with predicted IoU ``> pred_iou_thresh`` and stability score ``>= stability_score_thresh``.
4. Threshold the logits at the model's ``mask_threshold`` (0.0); compute boxes; drop masks whose box
   touches an inner crop edge (they are probably cut by the crop).
5. Box NMS inside the crop (``box_nms_thresh``, ranked by predicted IoU).

Then, across crops, box NMS (``crop_nms_thresh``) preferring masks from smaller crops; optional
small-region clean-up (``min_mask_region_area``); optional large-mask filter (``max_mask_area_frac``).

The paper's preset (``preset='paper'``)
---------------------------------------
The SA-1B automatic stage (paper appendix B) used 2 crop layers with half as many points per side in
each further layer, removed islands and holes under 100 pixels, and dropped masks covering 95% of the
image or more. ``preset='paper'`` sets ``crop_n_layers=2``, ``crop_n_points_downscale_factor=2``,
``min_mask_region_area=100`` and ``max_mask_area_frac=0.95``. **The last filter is not in the official
code**: with ``max_mask_area_frac=None`` (the default) nothing is dropped for its size, as officially.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torchvision.ops import batched_nms, box_area
from tqdm.auto import tqdm

from .amg_utils import (
    box_near_crop_edge,
    build_layer_point_grids,
    decode_rle,
    encode_rles,
    generate_crop_boxes,
    masks_to_boxes_xyxy,
    remove_small_regions,
    rle_area,
    rle_to_uncompressed,
    segmentation_mask,
    stability_score,
    xyxy_to_xywh,
)
from .predictor import as_predictor, as_rgb_uint8

__all__ = ["AutomaticMaskGenerator", "PRESETS", "render_masks"]

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")

# Named settings. Values you pass explicitly (different from the defaults) win over a preset.
PRESETS: Dict[str, Dict[str, Any]] = {
    "paper": dict(
        crop_n_layers=2,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=100,
        max_mask_area_frac=0.95,
    ),
}

_DEFAULTS = dict(crop_n_layers=0, crop_n_points_downscale_factor=1, min_mask_region_area=0,
                 max_mask_area_frac=None)


@dataclass
class _Candidates:
    """Candidate masks and what is known about each, all with the same length N.

    ``boxes`` are XYXY int64 (inclusive ends) in the image frame, ``points`` N x 2 float64 in the image
    frame, ``crop_boxes`` N x 4 int64 ``[x0, y0, x1, y1]``. ``rles`` are COCO RLEs in the image frame.
    """

    rles: List[Dict[str, Any]] = field(default_factory=list)
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))
    iou_preds: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    stability: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    points: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 2, dtype=torch.float64))
    crop_boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4, dtype=torch.int64))

    def __len__(self) -> int:
        return len(self.rles)

    def select(self, keep: torch.Tensor) -> "_Candidates":
        """Subset (and reorder) by a bool mask or an index tensor."""
        keep = keep.cpu()
        idx = keep.nonzero().flatten() if keep.dtype == torch.bool else keep
        return _Candidates(
            rles=[self.rles[i] for i in idx.tolist()],
            boxes=self.boxes[idx],
            iou_preds=self.iou_preds[idx],
            stability=self.stability[idx],
            points=self.points[idx],
            crop_boxes=self.crop_boxes[idx],
        )

    @staticmethod
    def concat(parts: Sequence["_Candidates"]) -> "_Candidates":
        parts = list(parts)
        if not parts:
            return _Candidates()
        return _Candidates(
            rles=[r for p in parts for r in p.rles],
            boxes=torch.cat([p.boxes for p in parts]),
            iou_preds=torch.cat([p.iou_preds for p in parts]),
            stability=torch.cat([p.stability for p in parts]),
            points=torch.cat([p.points for p in parts]),
            crop_boxes=torch.cat([p.crop_boxes for p in parts]),
        )


def _nms_keep(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices kept by class-agnostic box NMS, best score first."""
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64)
    groups = torch.zeros(len(boxes), dtype=torch.int64, device=boxes.device)
    return batched_nms(boxes.float(), scores.to(boxes.device), groups, iou_threshold=iou_threshold).cpu()


# Bytes held per candidate mask and pixel while a point batch is post-processed: float32 logits, the
# filtered copy of them, thresholded and stability masks (crop pixels), and the image-frame mask with its
# column-major copy for RLE encoding (image pixels). Measured peaks stay below this estimate.
_BYTES_PER_CROP_PIXEL = 12
_BYTES_PER_IMAGE_PIXEL = 3
DEFAULT_MEMORY_BUDGET = 1 << 30


def batch_size_for(crop_size: Tuple[int, int], image_size: Tuple[int, int], points_per_batch: int,
                   memory_budget: Optional[int], masks_per_point: int = 3) -> int:
    """How many points of a crop to decode at once so that the batch's full-resolution work fits in
    ``memory_budget`` bytes (at least 1 point, at most ``points_per_batch``; no cap when None)."""
    if memory_budget is None:
        return points_per_batch
    per_point = masks_per_point * (crop_size[0] * crop_size[1] * _BYTES_PER_CROP_PIXEL
                                   + image_size[0] * image_size[1] * _BYTES_PER_IMAGE_PIXEL)
    return int(max(1, min(points_per_batch, memory_budget // per_point)))


def _check_settings(**values: float) -> None:
    """Thresholds and ratios must be finite numbers in their ranges."""
    ranges = {"pred_iou_thresh": (0.0, 1.0), "stability_score_thresh": (0.0, 1.0), "box_nms_thresh": (0.0, 1.0),
              "crop_nms_thresh": (0.0, 1.0), "crop_overlap_ratio": (0.0, 1.0),
              "stability_score_offset": (0.0, float("inf")), "min_mask_region_area": (0.0, float("inf"))}
    for name, value in values.items():
        low, high = ranges[name]
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not np.isfinite(value) or not low <= value <= high:
            raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value!r}")


class AutomaticMaskGenerator:
    """Generate masks for everything in an image from a grid of point prompts.

    Arguments (same names and defaults as the official ``SamAutomaticMaskGenerator``):
        model: a samkit ``Sam`` (any configuration, including ``tiny``) or a ready ``Predictor``.
        points_per_side: the grid has ``points_per_side**2`` points over the image (layer 0).
            ``None`` when ``point_grids`` is given.
        points_per_batch: how many points go through the decoder at once, at most. Each batch holds
            ``3 * points_per_batch`` full-resolution float logit maps of the crop, so for large images
            ``memory_budget`` lowers it.
        pred_iou_thresh: keep masks whose predicted IoU is above this (0 disables the filter).
        stability_score_thresh: keep masks whose stability score is at least this (0 disables).
        stability_score_offset: the logit offset used by the stability score.
        box_nms_thresh: box IoU above which a lower-ranked mask of the same crop is a duplicate.
        crop_n_layers: extra crop layers; layer ``i`` has ``(2**i)**2`` crops.
        crop_nms_thresh: box IoU for the NMS across crops (masks of smaller crops win).
        crop_overlap_ratio: crop overlap in layer 1, as a fraction of the image's short side.
        crop_n_points_downscale_factor: layer ``i`` uses ``points_per_side / factor**i`` points a side.
        point_grids: explicit per-layer grids, each K x 2 in [0, 1] ``(x, y)``; exclusive with
            ``points_per_side``.
        min_mask_region_area: if > 0, fill holes and remove islands smaller than this (pixels), then
            rerun box NMS (uses ``scipy.ndimage`` instead of the official OpenCV; same result).
        output_mode: ``'binary_mask'`` (H x W bool), ``'uncompressed_rle'`` or ``'coco_rle'``.
        preset: ``'paper'`` for the SA-1B settings (see the module docstring). Arguments that you
            change from their defaults take precedence over the preset.
        max_mask_area_frac: drop masks covering at least this fraction of the image (the paper's
            filter; not in the official code). ``None`` keeps everything.
        progress: show a progress bar over point batches.
        memory_budget: bytes that one point batch may use for its full-resolution logits and masks
            (default 1 GiB); the batch size is lowered per crop to fit (:func:`batch_size_for`), so a
            12-megapixel photo is processed a few points at a time. ``None`` always uses
            ``points_per_batch`` (the official behaviour). The result does not depend on it.
    """

    def __init__(
        self,
        model,
        points_per_side: Optional[int] = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: Optional[List[np.ndarray]] = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        preset: Optional[str] = None,
        max_mask_area_frac: Optional[float] = None,
        progress: bool = True,
        memory_budget: Optional[int] = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        if preset is not None:
            if preset not in PRESETS:
                raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
            given = dict(crop_n_layers=crop_n_layers, crop_n_points_downscale_factor=crop_n_points_downscale_factor,
                         min_mask_region_area=min_mask_region_area, max_mask_area_frac=max_mask_area_frac)
            chosen = {k: (given[k] if given[k] != _DEFAULTS[k] else v) for k, v in PRESETS[preset].items()}
            crop_n_layers = chosen["crop_n_layers"]
            crop_n_points_downscale_factor = chosen["crop_n_points_downscale_factor"]
            min_mask_region_area = chosen["min_mask_region_area"]
            max_mask_area_frac = chosen["max_mask_area_frac"]

        if (points_per_side is None) == (point_grids is None):
            raise ValueError("give exactly one of points_per_side and point_grids")
        if crop_n_layers < 0:
            raise ValueError(f"crop_n_layers must be >= 0, got {crop_n_layers}")
        if points_per_side is not None:
            if crop_n_points_downscale_factor < 1:
                raise ValueError(f"crop_n_points_downscale_factor must be >= 1, got {crop_n_points_downscale_factor}")
            self.point_grids = build_layer_point_grids(points_per_side, crop_n_layers,
                                                       crop_n_points_downscale_factor)
        else:
            grids = [np.asarray(g, dtype=np.float64) for g in point_grids]
            if len(grids) < crop_n_layers + 1:
                raise ValueError(f"point_grids has {len(grids)} grids but crop_n_layers={crop_n_layers} "
                                 f"needs {crop_n_layers + 1} (one per layer)")
            for i, g in enumerate(grids):
                if g.ndim != 2 or g.shape[1] != 2:
                    raise ValueError(f"point_grids[{i}] must have shape K x 2, got {g.shape}")
                if len(g) == 0:
                    raise ValueError(f"point_grids[{i}] has zero points")
            self.point_grids = grids
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output_mode {output_mode!r}; choose one of {', '.join(OUTPUT_MODES)}")
        if max_mask_area_frac is not None and not 0.0 < max_mask_area_frac <= 1.0:
            raise ValueError(f"max_mask_area_frac must be in (0, 1], got {max_mask_area_frac}")
        if memory_budget is not None and (isinstance(memory_budget, bool) or memory_budget <= 0):
            raise ValueError(f"memory_budget must be a positive number of bytes or None, got {memory_budget!r}")
        _check_settings(pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
                        stability_score_offset=stability_score_offset, box_nms_thresh=box_nms_thresh,
                        crop_nms_thresh=crop_nms_thresh, crop_overlap_ratio=crop_overlap_ratio,
                        min_mask_region_area=min_mask_region_area)

        self.predictor = as_predictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.preset = preset
        self.max_mask_area_frac = max_mask_area_frac
        self.progress = progress
        self.memory_budget = memory_budget

    # ------------------------------------------------------------------------------------------
    @property
    def mask_threshold(self) -> float:
        return float(self.predictor.model.mask_threshold)

    @torch.no_grad()
    def generate(self, image: np.ndarray) -> List[Dict[str, Any]]:
        """Masks for everything in ``image``.

        Arguments:
            image: H x W x 3 uint8 RGB (grayscale, RGBA and PIL images are converted, as by the predictor).

        Returns:
            one record per mask, in the official format:
            ``segmentation`` (H x W bool, or an RLE dict per ``output_mode``), ``area`` (int pixels),
            ``bbox`` (XYWH in image pixels, ``w = x1 - x0`` with inclusive ``x1``), ``predicted_iou``,
            ``point_coords`` (``[[x, y]]``, the prompt in image pixels), ``stability_score``,
            ``crop_box`` (XYWH of the crop that produced the mask).
        """
        image = as_rgb_uint8(image)
        candidates = self._generate_candidates(image)
        if self.min_mask_region_area > 0:
            candidates = self._clean_small_regions(candidates)
        if self.max_mask_area_frac is not None:
            limit = self.max_mask_area_frac * image.shape[0] * image.shape[1]
            areas = torch.tensor([rle_area(r) for r in candidates.rles], dtype=torch.float64)
            candidates = candidates.select(areas < limit)
        return [self._record(candidates, i) for i in range(len(candidates))]

    def _record(self, c: _Candidates, i: int) -> Dict[str, Any]:
        rle = c.rles[i]
        if self.output_mode == "binary_mask":
            segmentation = decode_rle(rle)
        elif self.output_mode == "coco_rle":
            counts = rle["counts"]
            segmentation = {"size": list(rle["size"]),
                            "counts": counts.decode("utf-8") if isinstance(counts, bytes) else counts}
        else:
            segmentation = rle_to_uncompressed(rle)
        return {
            "segmentation": segmentation,
            "area": rle_area(rle),
            "bbox": xyxy_to_xywh(c.boxes[i].tolist()),
            "predicted_iou": float(c.iou_preds[i]),
            "point_coords": [c.points[i].tolist()],
            "stability_score": float(c.stability[i]),
            "crop_box": xyxy_to_xywh(c.crop_boxes[i].tolist()),
        }

    # ------------------------------------------------------------------------------------------
    def _generate_candidates(self, image: np.ndarray) -> _Candidates:
        """All crops, then NMS across crops. Everything in the image frame."""
        image_size = image.shape[:2]
        crop_boxes, layers = generate_crop_boxes(image_size, self.crop_n_layers, self.crop_overlap_ratio)
        n_batches = sum(-(-len(self.point_grids[layer]) // self._batch_size(box, image_size))
                        for box, layer in zip(crop_boxes, layers))
        bar = tqdm(total=n_batches, desc="segment everything", unit="batch", disable=not self.progress)
        try:
            per_crop = [self._process_crop(image, box, layer, bar) for box, layer in zip(crop_boxes, layers)]
        finally:
            bar.close()
        candidates = _Candidates.concat(per_crop)
        if len(crop_boxes) > 1 and len(candidates):
            # The same object found in several crops: keep the one from the smallest crop.
            prefer_small = 1.0 / box_area(candidates.crop_boxes).to(torch.float32)
            candidates = candidates.select(_nms_keep(candidates.boxes, prefer_small, self.crop_nms_thresh))
        return candidates

    def _batch_size(self, crop_box: List[int], image_size: Tuple[int, int]) -> int:
        crop_size = (crop_box[3] - crop_box[1], crop_box[2] - crop_box[0])
        return batch_size_for(crop_size, tuple(image_size), self.points_per_batch, self.memory_budget)

    def _process_crop(self, image: np.ndarray, crop_box: List[int], layer: int, bar) -> _Candidates:
        """Masks of one crop: embed it, run its point grid in batches, NMS inside the crop."""
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        crop_h, crop_w = crop.shape[:2]
        self.predictor.set_image(crop)
        # Grid in crop pixels (x, y), float64.
        points = self.point_grids[layer] * np.array([[crop_w, crop_h]], dtype=np.float64)
        parts = []
        batch = self._batch_size(crop_box, image.shape[:2])
        for start in range(0, len(points), batch):
            parts.append(self._process_batch(points[start:start + batch], crop_box, image.shape[:2]))
            bar.update(1)
        self.predictor.reset_image()
        candidates = _Candidates.concat(parts)
        return candidates.select(_nms_keep(candidates.boxes, candidates.iou_preds, self.box_nms_thresh))

    def _process_batch(self, points: np.ndarray, crop_box: List[int], image_size: Tuple[int, int]
                       ) -> _Candidates:
        """Three masks per point, filtered, thresholded, boxed, moved to the image frame and RLE-encoded.

        Arguments:
            points: P x 2 float64 ``(x, y)`` in crop pixels.
        """
        predictor = self.predictor
        crop_h, crop_w = crop_box[3] - crop_box[1], crop_box[2] - crop_box[0]
        image_h, image_w = image_size
        model_points = predictor.transform.apply_coords(points, (crop_h, crop_w))  # model input frame
        coords = torch.as_tensor(model_points, device=predictor.device)[:, None, :]  # P x 1 x 2
        labels = torch.ones(coords.shape[0], 1, dtype=torch.int, device=predictor.device)
        logits, iou_preds, _ = predictor.predict_torch(coords, labels, multimask_output=True, return_logits=True)
        n_masks = logits.shape[1]
        logits = logits.flatten(0, 1)  # (P*3) x crop_h x crop_w, point-major order
        iou_preds = iou_preds.flatten(0, 1)
        point_of_mask = torch.as_tensor(np.repeat(points, n_masks, axis=0))

        keep = torch.ones(len(logits), dtype=torch.bool, device=logits.device)
        if self.pred_iou_thresh > 0.0:
            keep = iou_preds > self.pred_iou_thresh
        logits, iou_preds, point_of_mask = logits[keep], iou_preds[keep], point_of_mask[keep.cpu()]

        stability = stability_score(logits, self.mask_threshold, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            keep = stability >= self.stability_score_thresh
            logits, iou_preds, stability = logits[keep], iou_preds[keep], stability[keep]
            point_of_mask = point_of_mask[keep.cpu()]

        masks = logits > self.mask_threshold
        del logits
        offset = torch.tensor([crop_box[0], crop_box[1]], device=masks.device)
        boxes = masks_to_boxes_xyxy(masks) + offset.repeat(2)  # image frame
        keep = ~box_near_crop_edge(boxes, crop_box, [0, 0, image_w, image_h])
        masks, boxes, iou_preds, stability = masks[keep], boxes[keep], iou_preds[keep], stability[keep]
        point_of_mask = point_of_mask[keep.cpu()]

        full = np.zeros((len(masks), image_h, image_w), dtype=bool)
        full[:, crop_box[1]:crop_box[3], crop_box[0]:crop_box[2]] = masks.cpu().numpy()
        return _Candidates(
            rles=encode_rles(full),
            boxes=boxes.cpu(),
            iou_preds=iou_preds.float().cpu(),
            stability=stability.cpu(),
            points=point_of_mask + torch.tensor([crop_box[0], crop_box[1]], dtype=torch.float64),
            crop_boxes=torch.tensor([list(crop_box)] * len(masks), dtype=torch.int64).reshape(-1, 4),
        )

    def _clean_small_regions(self, c: _Candidates) -> _Candidates:
        """Fill small holes, delete small islands, then NMS again, preferring masks left unchanged."""
        if len(c) == 0:
            return c
        # One mask decoded at a time: a stack of every candidate at full resolution would not fit in
        # memory for large photos.
        boxes, unchanged, cleaned = [], [], {}
        for i, rle in enumerate(c.rles):
            mask = decode_rle(rle)
            mask, holes_changed = remove_small_regions(mask, self.min_mask_region_area, "holes")
            mask, islands_changed = remove_small_regions(mask, self.min_mask_region_area, "islands")
            unchanged.append(not (holes_changed or islands_changed))
            boxes.append(masks_to_boxes_xyxy(torch.from_numpy(mask[None]))[0])
            if not unchanged[i]:
                cleaned[i] = encode_rles(mask[None])[0]
        boxes = torch.stack(boxes)
        scores = torch.tensor(unchanged, dtype=torch.float32)
        keep = _nms_keep(boxes, scores, max(self.box_nms_thresh, self.crop_nms_thresh))
        rles, new_boxes = list(c.rles), c.boxes.clone()
        for i in keep.tolist():
            if not unchanged[i]:
                rles[i] = cleaned[i]
                new_boxes[i] = boxes[i]
        c = _Candidates(rles=rles, boxes=new_boxes, iou_preds=c.iou_preds, stability=c.stability,
                        points=c.points, crop_boxes=c.crop_boxes)
        return c.select(keep)


# ----------------------------------------------------------------------------------------------
def render_masks(image: np.ndarray, records: Sequence[Dict[str, Any]], alpha: float = 0.5,
                 seed: int = 0) -> np.ndarray:
    """Draw every mask over the image in a random colour, largest first so small masks stay visible
    (the picture :func:`samkit.viz.show_anns` draws, as an array).

    Arguments:
        image: H x W x 3 uint8 RGB (or H x W grey).
        records: the generator's output (any ``output_mode``), or dicts with a ``segmentation``.
        alpha: opacity of each mask's colour.
        seed: seed of the colours (the same seed gives the same colours).

    Returns:
        H x W x 3 uint8.
    """
    from .viz import blend, mask_overlay, random_colors

    image = as_rgb_uint8(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    masks = [segmentation_mask(r["segmentation"]) for r in records]
    for mask in masks:
        if mask.shape != image.shape[:2]:
            raise ValueError(f"mask shape {mask.shape} does not match the image {image.shape[:2]}")
    if not masks:
        return image.copy()
    order = np.argsort([-m.sum() for m in masks], kind="stable")
    colours = np.round(random_colors(len(masks), seed) * 255)
    return blend(image, mask_overlay([masks[i] for i in order], colours, alpha, outline=0))
