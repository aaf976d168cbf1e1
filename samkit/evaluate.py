"""The paper's zero-shot evaluations: interactive point prompts (§7.1), box prompts, edge detection (§7.2).

Point prompts
-------------
For every object, the first click is the point farthest from the ground-truth boundary
(:func:`samkit.data.prompts.center_point`); each further click is the farthest point of the larger error
region (:func:`samkit.data.prompts.next_click`, positive on a miss, negative on a false positive). The first
click asks for three masks (``multimask_output=True``) and one is selected: *confident* takes the mask
with the highest predicted IoU, *oracle* the one with the highest IoU against the ground truth. Later
clicks ask for one mask, with all clicks so far and the previous low-res logits as ``mask_input``. The
mIoU after N clicks averages the IoU of the selected mask over objects.

Edge detection
--------------
:func:`edge_map` follows §7.2: a 16 x 16 grid of points gives 768 masks (three per point), no IoU or
stability filter, box NMS ranked by predicted IoU, a Sobel filter on each remaining mask's probability
map (sigmoid of the upsampled logits) kept only on the mask's outer boundary, pixel-wise max over masks,
normalisation to [0, 1] and orientation-aware edge NMS (thinning). :func:`edge_metrics` scores edge maps
against several human boundary maps with the BSDS500 benchmark's pixel correspondence (``pyedgeeval``'s
C++ port of it) at a matching distance of 0.0075 of the image diagonal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from .amg_utils import build_point_grid, masks_to_boxes_xyxy
from .predictor import as_predictor, as_rgb_uint8

__all__ = [
    "ResultTable",
    "point_prompts",
    "box_prompts",
    "plot_miou_vs_points",
    "mask_iou",
    "first_click",
    "edge_map",
    "sobel_edges",
    "canny_edges",
    "felzenszwalb_edges",
    "edge_nms",
    "edge_metrics",
    "recall_at_precision",
]

SELECTIONS = ("confident", "oracle")


# ----------------------------------------------------------------------------------------------
# Result tables
# ----------------------------------------------------------------------------------------------
@dataclass
class ResultTable:
    """Rows of results (dicts with the same keys) that print as a table.

    ``notes`` are extra lines printed under the table (skipped objects, settings).
    ``per_object`` holds the raw per-object numbers where the evaluation has them.
    """

    rows: List[Dict[str, Any]]
    title: str = ""
    notes: List[str] = field(default_factory=list)
    per_object: Dict[str, Any] = field(default_factory=dict)
    # point prompts: each object's first click, ``{"scores": 3 predicted IoUs, "ious": 3 true IoUs}``
    first_clicks: List[Dict[str, np.ndarray]] = field(default_factory=list)

    @property
    def columns(self) -> List[str]:
        return list(self.rows[0]) if self.rows else []

    def _cells(self) -> List[List[str]]:
        def fmt(v):
            return f"{v:.4f}" if isinstance(v, float) else str(v)
        return [[fmt(r[c]) for c in self.columns] for r in self.rows]

    def __str__(self) -> str:
        cols, cells = self.columns, self._cells()
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        line = lambda vals: "  ".join(v.rjust(w) for v, w in zip(vals, widths))  # noqa: E731
        out = [self.title] if self.title else []
        out += [line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells] + self.notes
        return "\n".join(out)

    def to_markdown(self) -> str:
        cols, cells = self.columns, self._cells()
        out = [f"**{self.title}**", ""] if self.title else []
        out += ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
        out += ["| " + " | ".join(r) + " |" for r in cells]
        if self.notes:
            out += [""] + self.notes
        return "\n".join(out)

    def to_dict(self) -> Dict[str, Any]:
        return {"title": self.title, "rows": self.rows, "notes": self.notes}

    def value(self, **where) -> Any:
        """The ``mIoU`` of the one row matching ``where`` (e.g. ``selection='oracle', n_points=1``)."""
        hits = [r for r in self.rows if all(r.get(k) == v for k, v in where.items())]
        if len(hits) != 1:
            raise KeyError(f"{len(hits)} rows match {where}")
        return hits[0]["mIoU"]


# ----------------------------------------------------------------------------------------------
# Shared helpers
# ----------------------------------------------------------------------------------------------
def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two H x W bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def _sample_fields(sample: Dict[str, Any], index: int) -> Tuple[np.ndarray, np.ndarray]:
    if not isinstance(sample, dict) or "image" not in sample or "masks" not in sample:
        raise ValueError(f"dataset item {index} must be a dict with 'image' (HxWx3 uint8) and 'masks' (NxHxW bool)")
    try:
        image = as_rgb_uint8(np.asarray(sample["image"]))
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"dataset item {index}: 'image': {exc}") from None
    masks = sample["masks"]
    masks = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"dataset item {index}: 'masks' must be NxHxW matching the image {image.shape[:2]}, "
                         f"got {masks.shape}")
    return image, masks.astype(bool)


def _iterate_objects(dataset: Iterable, max_objects: Optional[int], progress: bool, desc: str):
    """Yield (image_index, image, mask) per non-empty object; returns counts through a dict."""
    total = len(dataset) if hasattr(dataset, "__len__") else None
    counts = {"objects": 0, "skipped_empty": 0, "images": 0}

    def gen():
        for index, sample in enumerate(tqdm(dataset, total=total, desc=desc, disable=not progress)):
            image, masks = _sample_fields(sample, index)
            counts["images"] += 1
            for mask in masks:
                if max_objects is not None and counts["objects"] >= max_objects:
                    return
                if not mask.any():
                    counts["skipped_empty"] += 1
                    continue
                counts["objects"] += 1
                yield index, image, mask
            if max_objects is not None and counts["objects"] >= max_objects:
                return

    return gen(), counts


# ----------------------------------------------------------------------------------------------
# Point prompts (§7.1)
# ----------------------------------------------------------------------------------------------
def _predict(predictor, refine: bool, **prompts):
    """``predictor.predict(**prompts)``, refined when asked (a predictor-like object without the option
    still serves the plain protocol)."""
    return predictor.predict(**prompts, refine=True) if refine else predictor.predict(**prompts)


def first_click(predictor, gt: np.ndarray, refine: bool = False) -> Dict[str, Any]:
    """The evaluation's first click on the predictor's current image: one positive point at the interior
    centre of ``gt`` (:func:`samkit.data.prompts.center_point`), three masks.

    ``gt``: ``H x W`` bool; ``refine``: masks cut along the image's edges (``Predictor.predict``).
    Returns ``point`` (1 x 2, image pixels), ``masks`` (3 x H x W bool), ``scores`` (3 predicted IoUs),
    ``low_res`` (3 x 256 x 256 logits), ``ious`` (3 true IoUs) and the index each selection picks:
    ``confident`` (highest predicted IoU) and ``oracle`` (highest true IoU).
    """
    from .data.prompts import center_point

    point = np.array([center_point(gt)], dtype=np.float64)
    masks, scores, low_res = _predict(predictor, refine, point_coords=point, point_labels=np.array([1]),
                                      multimask_output=True)
    ious = np.array([mask_iou(m, gt) for m in masks])
    return {"point": point, "masks": masks, "scores": scores, "low_res": low_res, "ious": ious,
            "confident": int(np.argmax(scores)), "oracle": int(np.argmax(ious))}


def _simulate_clicks(predictor, gt: np.ndarray, n_max: int, selections: Sequence[str],
                     record_at: Sequence[int], refine: bool = False,
                     first_clicks: Optional[List[Dict[str, np.ndarray]]] = None) -> Dict[str, Dict[int, float]]:
    """IoU after each number of clicks in ``record_at`` for one object on the predictor's current image,
    per selection (the first click is decoded once and shared; its predicted and true IoUs are appended
    to ``first_clicks`` when given)."""
    from .data.prompts import next_click

    first = first_click(predictor, gt, refine)
    if first_clicks is not None:
        first_clicks.append({"scores": np.asarray(first["scores"], dtype=float), "ious": first["ious"]})
    out: Dict[str, Dict[int, float]] = {}
    for selection in selections:
        best = first[selection]
        coords, labels = [list(first["point"][0])], [1]
        pred, logits = first["masks"][best], first["low_res"][best:best + 1]
        ious = {1: float(first["ious"][best])} if 1 in record_at else {}
        for n in range(2, n_max + 1):
            click = next_click(pred, gt)
            if click is not None:  # otherwise the prediction is exact and stays
                (cx, cy), label = click
                coords.append([cx, cy])
                labels.append(label)
                masks, _, low_res = _predict(predictor, refine, point_coords=np.array(coords),
                                             point_labels=np.array(labels), mask_input=logits,
                                             multimask_output=False)
                pred, logits = masks[0], low_res[0:1]
            if n in record_at:
                ious[n] = mask_iou(pred, gt)
        out[selection] = ious
    return out


def _on_predictor(predictor, objects):
    """Yield each object's mask with its image set on ``predictor`` (one ``set_image`` per image)."""
    current = None
    for index, image, gt in objects:
        if current != index:
            predictor.set_image(image)
            current = index
        yield gt


def point_prompts(model_or_predictor, dataset: Iterable[Dict[str, Any]],
                  n_points: Sequence[int] = (1, 2, 3, 5, 9),
                  selection: Union[str, Sequence[str]] = ("confident", "oracle"),
                  max_objects: Optional[int] = None, progress: bool = True, refine: bool = False) -> ResultTable:
    """mIoU after N simulated clicks per object (paper §7.1).

    Arguments:
        model_or_predictor: a samkit ``Sam``, a ``Predictor`` or an ``AutomaticMaskGenerator``.
        dataset: iterable of dicts with ``image`` (H x W x 3 uint8) and ``masks`` (N x H x W bool, one per
            object, numpy or torch); SA1B, COCOInstances, NDISPark and the generated data all qualify.
        n_points: click counts at which to report mIoU.
        selection: ``'confident'`` and/or ``'oracle'`` (how the first click's three masks are resolved).
        max_objects: stop after this many (non-empty) objects.
        progress: show a progress bar over images.
        refine: cut each mask along the image's edges before it is scored and the next click is placed
            (``Predictor.predict(refine=True)``; the next prompt still feeds the model's own logits).

    Returns:
        a :class:`ResultTable` with rows ``selection, n_points, mIoU, objects``; empty masks are skipped
        and counted in the notes; ``per_object[selection][n]`` lists each object's IoU.
    """
    selections = [selection] if isinstance(selection, str) else list(selection)
    for s in selections:
        if s not in SELECTIONS:
            raise ValueError(f"unknown selection {s!r}; choose from {SELECTIONS}")
    n_points = sorted(set(int(n) for n in n_points))
    if not n_points or n_points[0] < 1:
        raise ValueError(f"n_points must be positive click counts, got {n_points}")
    predictor = as_predictor(model_or_predictor)
    per_object = {s: {n: [] for n in n_points} for s in selections}
    first_clicks: List[Dict[str, np.ndarray]] = []
    objects, counts = _iterate_objects(dataset, max_objects, progress, "point prompts")
    for gt in _on_predictor(predictor, objects):
        ious = _simulate_clicks(predictor, gt, n_points[-1], selections, n_points, refine, first_clicks)
        for s in selections:
            for n in n_points:
                per_object[s][n].append(ious[s][n])
    if counts["objects"] == 0:
        raise ValueError(f"the dataset has no non-empty object masks ({counts['skipped_empty']} empty skipped)")
    rows = [dict(selection=s, n_points=n, mIoU=float(np.mean(per_object[s][n])), objects=len(per_object[s][n]))
            for s in selections for n in n_points]
    notes = [f"{counts['objects']} objects in {counts['images']} images; "
             f"{counts['skipped_empty']} empty masks skipped"]
    return ResultTable(rows, title="Point prompts: mIoU vs number of clicks", notes=notes, per_object=per_object,
                       first_clicks=first_clicks)


def box_prompts(model_or_predictor, dataset: Iterable[Dict[str, Any]], max_objects: Optional[int] = None,
                progress: bool = True, refine: bool = False) -> ResultTable:
    """mIoU with the ground truth's tight box as the prompt (one mask per box); ``refine``: the mask cut
    along the image's edges (``Predictor.predict(refine=True)``).

    The box is XYXY in original pixels with inclusive ends (the last foreground column/row), the
    convention of :mod:`samkit.data.prompts`.
    """
    predictor = as_predictor(model_or_predictor)
    ious: List[float] = []
    objects, counts = _iterate_objects(dataset, max_objects, progress, "box prompts")
    for gt in _on_predictor(predictor, objects):
        box = masks_to_boxes_xyxy(torch.from_numpy(gt)[None])[0].numpy().astype(np.float64)
        masks, _, _ = _predict(predictor, refine, box=box, multimask_output=False)
        ious.append(mask_iou(masks[0], gt))
    if counts["objects"] == 0:
        raise ValueError(f"the dataset has no non-empty object masks ({counts['skipped_empty']} empty skipped)")
    rows = [dict(prompt="box", mIoU=float(np.mean(ious)), objects=len(ious))]
    notes = [f"{counts['objects']} objects in {counts['images']} images; "
             f"{counts['skipped_empty']} empty masks skipped"]
    return ResultTable(rows, title="Box prompts: mIoU", notes=notes, per_object={"box": ious})


def plot_miou_vs_points(table: ResultTable, ax=None, label_prefix: str = ""):
    """Line plot of mIoU against the number of clicks, one line per selection. Returns the axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 3.5))
    for s in dict.fromkeys(r["selection"] for r in table.rows):
        rows = sorted((r for r in table.rows if r["selection"] == s), key=lambda r: r["n_points"])
        ax.plot([r["n_points"] for r in rows], [r["mIoU"] for r in rows], marker="o", label=f"{label_prefix}{s}")
    ax.set_xlabel("number of points")
    ax.set_ylabel("mIoU")
    ax.set_xticks(sorted({r["n_points"] for r in table.rows}))
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


# ----------------------------------------------------------------------------------------------
# Edge detection (§7.2)
# ----------------------------------------------------------------------------------------------
def _sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of B x H x W maps (replicate padding), B x H x W."""
    kx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], device=x.device, dtype=x.dtype) / 8
    kernels = torch.stack([kx, kx.t()])[:, None]  # 2 x 1 x 3 x 3
    padded = torch.nn.functional.pad(x[:, None], (1, 1, 1, 1), mode="replicate")
    g = torch.nn.functional.conv2d(padded, kernels)
    return g.pow(2).sum(dim=1).sqrt()


def _outer_boundary(masks: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Band of ``width`` pixels on each side of the outer boundary of each mask (holes filled).

    Arguments:
        masks: B x H x W bool. Returns B x H x W bool: dilated minus eroded filled mask.
    """
    filled = torch.stack([torch.from_numpy(ndimage.binary_fill_holes(m)) for m in masks.cpu().numpy()])
    filled = filled.to(masks.device).float()[:, None]
    k = 2 * width + 1
    dilated = torch.nn.functional.max_pool2d(filled, k, stride=1, padding=width)
    eroded = -torch.nn.functional.max_pool2d(-filled, k, stride=1, padding=width)
    return (dilated - eroded)[:, 0] > 0


def edge_nms(edges: np.ndarray, radius: int = 1, border: int = 5, multiplier: float = 1.01,
             smoothing: float = 2.0) -> np.ndarray:
    """Orientation-aware non-maximum suppression of an edge map (thins edges to about one pixel).

    The orientation at each pixel comes from the second derivatives of the Gaussian-smoothed map (the
    normal of the edge); pixels that are not a maximum along it are zeroed, as in Dollar's structured
    edge NMS (``pyedgeeval.nms``, its C++ port, does the suppression).

    Arguments:
        edges: H x W float. Returns H x W float64 (values kept or zeroed).
    """
    from pyEdgeEval import nms

    e = np.asarray(edges, dtype=np.float64)
    smooth = ndimage.gaussian_filter(e, smoothing)
    oy, ox = np.gradient(smooth)
    oxy, oxx = np.gradient(ox)
    oyy, _ = np.gradient(oy)
    oxx = np.where(oxx == 0, 1e-5, oxx)
    orientation = np.mod(np.arctan(oyy * np.sign(-oxy) / oxx), np.pi)
    return nms(e, orientation, r=radius, s=border, m=multiplier)


def edge_map(generator_or_model, image: np.ndarray, points_per_side: int = 16, points_per_batch: int = 64,
             box_nms_thresh: float = 0.7, boundary_width: int = 1, thin: bool = True,
             progress: bool = False) -> np.ndarray:
    """SAM's zero-shot edge map of an image (paper §7.2).

    Arguments:
        generator_or_model: an ``AutomaticMaskGenerator`` (its predictor is used), ``Predictor`` or ``Sam``.
        image: H x W x 3 uint8 RGB.
        points_per_side: the grid (16 in the paper: 256 points, 768 masks).
        points_per_batch: points decoded at once (bounds memory: ``3 * points_per_batch`` H x W maps).
        box_nms_thresh: NMS threshold on the masks' boxes (ranked by predicted IoU; no other filter).
        boundary_width: half-width in pixels of the band around each mask's outer boundary where its
            Sobel response is kept.
        thin: apply :func:`edge_nms` at the end.

    Returns:
        H x W float32 in [0, 1], in original image pixels.

    Two passes keep memory bounded: the first finds every mask's box and score for the NMS, the second
    recomputes only the point batches holding kept masks and accumulates their edge responses.
    """
    image = as_rgb_uint8(image)
    predictor = as_predictor(generator_or_model)
    threshold = float(predictor.model.mask_threshold)
    h, w = image.shape[:2]
    predictor.set_image(image)
    points = build_point_grid(points_per_side) * np.array([[w, h]], dtype=np.float64)
    batches = [points[i:i + points_per_batch] for i in range(0, len(points), points_per_batch)]

    def decode(batch: np.ndarray):
        coords = torch.as_tensor(predictor.transform.apply_coords(batch, (h, w)), device=predictor.device)
        labels = torch.ones(len(batch), 1, dtype=torch.int, device=predictor.device)
        logits, iou, _ = predictor.predict_torch(coords[:, None, :], labels, multimask_output=True,
                                                 return_logits=True)
        return logits.flatten(0, 1), iou.flatten(0, 1)

    boxes, scores = [], []
    with torch.no_grad():
        for batch in tqdm(batches, desc="edge map: masks", disable=not progress):
            logits, iou = decode(batch)
            boxes.append(masks_to_boxes_xyxy(logits > threshold).cpu())
            scores.append(iou.float().cpu())
        boxes_t, scores_t = torch.cat(boxes), torch.cat(scores)
        from torchvision.ops import nms

        keep = torch.zeros(len(boxes_t), dtype=torch.bool)
        keep[nms(boxes_t.float(), scores_t, box_nms_thresh)] = True
        per_batch = 3 * points_per_batch
        response = torch.zeros(h, w, device=predictor.device)
        for b, batch in enumerate(tqdm(batches, desc="edge map: edges", disable=not progress)):
            kept = keep[b * per_batch:(b + 1) * per_batch]
            if not kept.any():
                continue
            logits, _ = decode(batch)
            logits = logits[kept.to(logits.device)]
            probs = torch.sigmoid(logits.float() - threshold)
            band = _outer_boundary(logits > threshold, boundary_width)
            edges = _sobel_magnitude(probs) * band
            response = torch.maximum(response, edges.amax(dim=0))
    predictor.reset_image()
    out = response.cpu().numpy().astype(np.float64)
    if out.max() > 0:
        out = out / out.max()
    if thin:
        out = edge_nms(out)
        if out.max() > 0:
            out = out / out.max()
    return np.clip(out, 0, 1).astype(np.float32)


def _grey(image: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2gray

    image = np.asarray(image)
    if image.ndim == 3:
        return rgb2gray(image)
    return image.astype(np.float64) / (255.0 if image.dtype == np.uint8 else 1.0)


def sobel_edges(image: np.ndarray, thin: bool = True) -> np.ndarray:
    """Baseline: Sobel gradient magnitude of the grey image, normalised to [0, 1] (H x W float32)."""
    from skimage.filters import sobel

    e = sobel(_grey(image))
    if e.max() > 0:
        e = e / e.max()
    if thin:
        e = edge_nms(e)
        if e.max() > 0:
            e = e / e.max()
    return e.astype(np.float32)


def canny_edges(image: np.ndarray, sigma: float = 2.0, levels: Optional[int] = None) -> np.ndarray:
    """Baseline: Canny edges (scikit-image), H x W float32.

    With ``levels=None`` a binary map (scikit-image's default hysteresis thresholds). A binary map has a
    one-point precision-recall curve, so its AP (area under the curve) is 0 by construction; with
    ``levels=K`` the map is graded instead: the mean of K binary maps whose high hysteresis threshold sweeps
    the quantiles 0.50-0.98 of the gradient magnitude (low threshold = half of it), so a pixel's value is the
    share of thresholds at which it is an edge and the benchmark can sweep it like any soft edge map.
    """
    from skimage.feature import canny

    grey = _grey(image)
    if levels is None:
        return canny(grey, sigma=sigma).astype(np.float32)
    if levels < 1:
        raise ValueError(f"levels must be >= 1 or None, got {levels}")
    out = np.zeros(grey.shape, dtype=np.float32)
    for q in np.linspace(0.50, 0.98, levels):
        out += canny(grey, sigma=sigma, low_threshold=q / 2, high_threshold=q, use_quantiles=True)
    return out / levels


def felzenszwalb_edges(image: np.ndarray, scales: Sequence[float] = (50, 100, 200, 400, 800),
                       sigma: float = 0.8, min_size: int = 20) -> np.ndarray:
    """Baseline: boundaries of Felzenszwalb & Huttenlocher's graph-based segmentation (scikit-image), H x W
    float32 in [0, 1]: the share of ``scales`` (the algorithm's ``scale``, larger = coarser regions) at which
    a pixel lies on a region boundary, so that the benchmark can sweep it like a soft edge map.
    """
    from skimage.segmentation import felzenszwalb, find_boundaries

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be H x W x 3, got {img.shape}")
    if not scales:
        raise ValueError("scales must hold at least one value")
    out = np.zeros(img.shape[:2], dtype=np.float32)
    for scale in scales:
        labels = felzenszwalb(img, scale=float(scale), sigma=sigma, min_size=min_size)
        out += find_boundaries(labels, mode="inner")
    return out / len(scales)


# ----------------------------------------------------------------------------------------------
# BSDS metrics
# ----------------------------------------------------------------------------------------------
def _f1(p, r):
    p, r = np.asarray(p, dtype=np.float64), np.asarray(r, dtype=np.float64)
    s = p + r
    return np.where(s > 0, 2 * p * r / np.where(s > 0, s, 1), 0.0)


def _image_counts(pred: np.ndarray, gts: Sequence[np.ndarray], thresholds: np.ndarray, max_dist: float
                  ) -> np.ndarray:
    """Per-threshold (matched gt pixels, gt pixels, matched pred pixels, pred pixels), T x 4.

    For each threshold the binarised prediction is thinned and matched to every human map separately;
    recall counts are summed over the humans, a predicted pixel counts as correct if it matches any.
    """
    from pyEdgeEval import correspond_pixels
    from skimage.morphology import thin

    counts = np.zeros((len(thresholds), 4))
    for t, thr in enumerate(thresholds):
        binary = thin(pred >= thr)
        matched_any = np.zeros(binary.shape, dtype=bool)
        for gt in gts:
            if gt.any() or binary.any():
                m_pred, m_gt, _, _ = correspond_pixels(binary.astype(np.float64), gt.astype(np.float64),
                                                       max_dist=max_dist)
                matched_any |= m_pred > 0
                counts[t, 0] += (m_gt > 0).sum()
            counts[t, 1] += gt.sum()
        counts[t, 2] = matched_any.sum()
        counts[t, 3] = binary.sum()
    return counts


def recall_at_precision(recall: np.ndarray, precision: np.ndarray, target: float = 0.5) -> float:
    """Highest recall at which the (linearly interpolated) precision-recall curve has precision >= target.

    Arguments: recall, precision: the curve's points, one per threshold (any order along the curve).
    Returns 0.0 if the precision never reaches ``target``.
    """
    r, p = np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
    best = max([ri for ri, pi in zip(r, p) if pi >= target], default=0.0)
    for i in range(len(r) - 1):
        p0, p1, r0, r1 = p[i], p[i + 1], r[i], r[i + 1]
        if (p0 - target) * (p1 - target) < 0:
            a = (target - p0) / (p1 - p0)
            best = max(best, r0 + a * (r1 - r0))
    return float(best)


def edge_metrics(predictions: Sequence[np.ndarray], ground_truths: Sequence[Sequence[np.ndarray]],
                 thresholds: Union[int, Sequence[float]] = 99, max_dist: float = 0.0075,
                 progress: bool = True) -> Dict[str, Any]:
    """BSDS500 boundary benchmark: ODS, OIS, AP and R50.

    Arguments:
        predictions: per image an H x W float edge map in [0, 1].
        ground_truths: per image the human boundary maps: a list of H x W bool (or a K x H x W array).
        thresholds: a count (evenly spaced in (0, 1), as the benchmark's 99) or explicit values.
        max_dist: matching tolerance as a fraction of the image diagonal (0.0075 for BSDS500).

    Returns:
        dict with ``ODS`` (best F at one threshold for the dataset, interpolated between thresholds as in
        the benchmark), ``OIS`` (F with each image's best threshold), ``AP`` (area under the
        interpolated precision-recall curve, recall 0 to 1 in steps of 0.01: the benchmark's "Area_PR",
        which pyedgeeval calls AUC), ``R50`` (recall at 50% precision, interpolated),
        ``ODS_threshold`` and the dataset curve ``thresholds``, ``recall``, ``precision``.
    """
    if len(predictions) != len(ground_truths):
        raise ValueError(f"{len(predictions)} predictions but {len(ground_truths)} ground truths")
    if len(predictions) == 0:
        raise ValueError("edge_metrics needs at least one image")
    if isinstance(thresholds, (int, np.integer)):
        thresholds = np.linspace(1.0 / (thresholds + 1), 1.0 - 1.0 / (thresholds + 1), int(thresholds))
    thresholds = np.asarray(thresholds, dtype=np.float64)
    totals = np.zeros((len(thresholds), 4))
    best_counts = np.zeros(4)
    for i, (pred, gts) in enumerate(tqdm(list(zip(predictions, ground_truths)), desc="edge metrics",
                                         disable=not progress)):
        pred = np.asarray(pred, dtype=np.float64)
        gts = [np.asarray(g, dtype=bool) for g in gts]
        if any(g.shape != pred.shape for g in gts) or not gts:
            raise ValueError(f"image {i}: prediction {pred.shape} needs at least one ground truth of the same shape, "
                             f"got {[g.shape for g in gts]}")
        c = _image_counts(pred, gts, thresholds, max_dist)
        totals += c
        rec = c[:, 0] / np.maximum(c[:, 1], 1)
        prec = c[:, 2] / np.maximum(c[:, 3], 1)
        best_counts += c[int(np.argmax(_f1(prec, rec)))]
    recall = totals[:, 0] / np.maximum(totals[:, 1], 1)
    precision = totals[:, 2] / np.maximum(totals[:, 3], 1)

    # ODS: best F along the curve, linearly interpolated between neighbouring thresholds.
    ods, ods_threshold = float(_f1(precision[0], recall[0])), float(thresholds[0])
    d = np.linspace(0, 1, 101)
    for i in range(1, len(thresholds)):
        r = recall[i - 1] + d * (recall[i] - recall[i - 1])
        p = precision[i - 1] + d * (precision[i] - precision[i - 1])
        f = _f1(p, r)
        j = int(np.argmax(f))
        if f[j] > ods:
            ods = float(f[j])
            ods_threshold = float(thresholds[i - 1] + d[j] * (thresholds[i] - thresholds[i - 1]))
    ois = float(_f1(best_counts[2] / max(best_counts[3], 1), best_counts[0] / max(best_counts[1], 1)))

    # AP: precision interpolated at recall 0, 0.01, ..., 1 (0 outside the curve's recall range).
    unique_r, first = np.unique(recall, return_index=True)
    if len(unique_r) > 1:
        grid = np.linspace(0, 1, 101)
        ap = float(np.interp(grid, unique_r, precision[first], left=0.0, right=0.0).sum() * 0.01)
    else:
        ap = 0.0
    return dict(ODS=ods, OIS=ois, AP=ap, R50=recall_at_precision(recall, precision, 0.5),
                ODS_threshold=ods_threshold, thresholds=thresholds, recall=recall, precision=precision)
