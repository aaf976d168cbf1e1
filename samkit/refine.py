"""Edge-aware refinement of a predicted mask with GrabCut, seeded by the model's own mask.

A network trained on generated scenes carries no knowledge of one photo's colours: on a real photo its
mask follows the token grid and spills into background of a similar shade. GrabCut (Rother et al., 2004;
OpenCV's ``cv2.grabCut``) fits a colour model of the object and one of its surroundings *for this image*
and cuts along the image's edges. Seeded by the model's mask rather than by a box alone, it keeps what the
model is sure of and settles the uncertain pixels by colour and contrast.

The seeds, inside a crop around the prompt (the box, or the extent of the clicked parts of the mask and the
positive clicks, widened by ``margin``):

- outside a box prompt: certain background (a box encloses its object);
- the model's probability above ``sure``, and each positive click: certain foreground;
- each negative click: certain background;
- without a box, parts of the mask that hold no positive click (stray fragments): probable background;
- the rest: probable foreground where the model says foreground, probable background elsewhere.

The crop is shrunk to at most ``max_side`` pixels for the cut, so a refinement costs about as much as a
decoder pass on a CPU, and the answer is scaled back to the image.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

__all__ = ["grabcut_refine"]


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("mask refinement needs OpenCV: pip install opencv-python-headless") from e
    return cv2


def _crop_window(shape: Tuple[int, int], mask: np.ndarray, box: Optional[np.ndarray],
                 points: Optional[np.ndarray], margin: float) -> Optional[Tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)``: the box (or the mask's extent and the clicks) widened by ``margin`` of its
    side on each side, inside the image; None when there is nothing to refine."""
    h, w = shape
    if box is not None:
        x0, y0, x1, y1 = [float(v) for v in box]
    else:
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            return None
        y0, y1, x0, x1 = float(ys.min()), float(ys.max()), float(xs.min()), float(xs.max())
        if points is not None and len(points):
            x0, x1 = min(x0, points[:, 0].min()), max(x1, points[:, 0].max())
            y0, y1 = min(y0, points[:, 1].min()), max(y1, points[:, 1].max())
    dy, dx = margin * (y1 - y0 + 1) + 2, margin * (x1 - x0 + 1) + 2
    top, bottom = max(int(np.floor(y0 - dy)), 0), min(int(np.ceil(y1 + dy)) + 1, h)
    left, right = max(int(np.floor(x0 - dx)), 0), min(int(np.ceil(x1 + dx)) + 1, w)
    if bottom - top < 8 or right - left < 8:
        return None
    return top, bottom, left, right


def _clicked_parts(mask: np.ndarray, points: Optional[np.ndarray], labels: Optional[np.ndarray]) -> np.ndarray:
    """The connected parts of ``mask`` that hold a positive click (the largest part when none does): a
    model's mask often carries stray fragments far from the object, which would stretch the crop over the
    whole image and hand GrabCut every region of a similar colour."""
    cv2 = _cv2()
    n, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    h, w = mask.shape
    clicked = set()
    if points is not None:
        for (x, y), lbl in zip(points, labels if labels is not None else np.ones(len(points))):
            r, c = int(np.clip(np.floor(y), 0, h - 1)), int(np.clip(np.floor(x), 0, w - 1))
            if lbl == 1 and parts[r, c] > 0:
                clicked.add(int(parts[r, c]))
    if not clicked:
        clicked = {int(np.argmax(np.bincount(parts.ravel())[1:])) + 1}
    return np.isin(parts, sorted(clicked))


def grabcut_refine(image: np.ndarray, logits: np.ndarray, box: Optional[np.ndarray] = None,
                   points: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
                   iterations: int = 3, max_side: int = 256, margin: float = 0.5, sure: float = 0.9,
                   band: Optional[float] = 0.25) -> np.ndarray:
    """Refine one mask along the image's edges.

    Args:
        image: ``H x W x 3`` uint8 RGB, the image the mask was predicted on.
        logits: ``H x W`` mask logits (``Predictor.predict(..., return_logits=True)``; > 0 is foreground).
        box: ``4`` XYXY pixels, the box prompt if there was one: outside it is certain background.
        points, labels: ``N x 2`` (x, y) pixels and ``N`` labels (1 foreground, 0 background) of the clicks.
        iterations: GrabCut's rounds of colour-model fitting and cutting.
        max_side: the crop is scaled down to at most this many pixels a side for the cut.
        margin: the crop extends this fraction of the prompt's extent beyond it on each side.
        sure: probability above which the model's pixels are certain foreground.
        band: without a box, pixels farther outside the model's mask than this fraction of its size (the
            mean side of the clicked parts' extent) are certain background, so the cut moves the boundary to
            a nearby edge instead of flooding a touching region of the same colour; None: no limit.

    Returns:
        ``H x W`` bool mask. Where GrabCut cannot run (an empty mask with no click, or a degenerate
        colour model) the model's own mask (``logits > 0``) comes back.
    """
    cv2 = _cv2()
    image = np.asarray(image)
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8 RGB, got {image.shape} {image.dtype}")
    if logits.shape != image.shape[:2]:
        raise ValueError(f"logits {logits.shape} do not match the image {image.shape[:2]}")
    mask = logits > 0
    pts = None if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 2)
    lab = None if labels is None else np.asarray(labels).reshape(-1)
    if box is None:  # a click's mask: only the parts that were clicked; stray fragments become uncertain
        parts = _clicked_parts(mask, pts, lab)
        logits = np.where(mask & ~parts, np.float32(-1.0), logits)
        mask, model_mask = parts, mask
    else:
        model_mask = mask
    # the crop follows the positive clicks: a negative click lies outside the object, anywhere in the image
    positive = None if pts is None else (pts if lab is None else pts[lab == 1])
    window = _crop_window(mask.shape, mask, None if box is None else np.asarray(box, float), positive, margin)
    if window is None:
        return model_mask
    top, bottom, left, right = window
    ch, cw = bottom - top, right - left
    scale = min(1.0, max_side / max(ch, cw))
    sh, sw = max(int(round(ch * scale)), 8), max(int(round(cw * scale)), 8)
    crop = np.ascontiguousarray(image[top:bottom, left:right, ::-1])  # OpenCV wants BGR
    prob = 1.0 / (1.0 + np.exp(-np.clip(logits[top:bottom, left:right], -30.0, 30.0)))
    if scale < 1.0:
        crop = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
        prob = cv2.resize(prob, (sw, sh), interpolation=cv2.INTER_AREA)

    seeds = np.ascontiguousarray(np.where(prob > 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD), dtype=np.uint8)
    seeds[prob > sure] = cv2.GC_FGD
    if box is not None:  # outside the box: background
        x0, y0, x1, y1 = [float(v) for v in box]
        ys = (np.arange(sh) + 0.5) / scale + top
        xs = (np.arange(sw) + 0.5) / scale + left
        outside = (ys[:, None] < y0) | (ys[:, None] > y1 + 1) | (xs[None, :] < x0) | (xs[None, :] > x1 + 1)
        seeds[outside] = cv2.GC_BGD
    if box is None and band is not None:  # without a box: the cut may move the boundary only this far out
        reach = band * 0.5 * ((right - left) + (bottom - top)) / (1.0 + 2.0 * margin) * scale
        outside = cv2.distanceTransform((prob <= 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        seeds[outside > max(reach, 2.0)] = cv2.GC_BGD
    if pts is not None:  # a disc of radius 2 around each click
        rr, cc = np.mgrid[:sh, :sw]
        for (x, y), lbl in zip(pts, lab if lab is not None else np.ones(len(pts))):
            r, c = (y + 0.5 - top) * scale, (x + 0.5 - left) * scale
            seeds[(rr + 0.5 - r) ** 2 + (cc + 0.5 - c) ** 2 <= 4.0] = cv2.GC_FGD if lbl == 1 else cv2.GC_BGD
    fg = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    bg = ~fg
    if fg.sum() < 2 or bg.sum() < 2:  # GrabCut needs both colour models
        return model_mask
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means: the same input gives the same cut
    try:
        cv2.grabCut(crop, seeds, None, bgd, fgd, int(iterations), cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return model_mask
    cut = ((seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)).astype(np.float32)
    if scale < 1.0:  # back to the image's pixels, smoothly (no staircase edges)
        cut = cv2.resize(cut, (cw, ch), interpolation=cv2.INTER_LINEAR)
    out = np.zeros_like(mask)
    out[top:bottom, left:right] = cut > 0.5
    return out
