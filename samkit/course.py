"""Measurements the course notebooks need that the rest of the package does not offer as one call.

* :func:`validate_items` scores a model on a list of data set items with exactly the function the training
  loop uses for its validation curve (:func:`samkit.train.validate`), so a notebook's table and its training
  curve agree to the last digit;
* :func:`amg_candidates` returns the predicted IoU and stability score of every candidate mask the automatic
  mask generator considers, before any filter (to show *why* a threshold keeps or drops masks);
* :func:`simulate_data_engine` runs the data engine's three stages (paper §4) on generated scenes with a
  simulated annotator: model-assisted clicks, pre-filled automatic masks, fully automatic masks.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from .amg_utils import build_point_grid, stability_score

__all__ = ["validate_items", "amg_candidates", "simulate_data_engine", "annotate_with_clicks", "scene_edge_items",
           "mask_share"]


class _ItemSource:
    """``len()`` + ``__call__(i) -> (image, masks)`` over data set items (dicts with ``image`` and ``masks``)."""

    def __init__(self, items: Sequence[Dict[str, Any]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __call__(self, i: int):
        item = self.items[i]
        return np.asarray(item["image"]), np.asarray(item["masks"], dtype=bool)


@torch.no_grad()
def validate_items(model: torch.nn.Module, items: Sequence[Dict[str, Any]], masks_per_image: Optional[int] = None,
                   max_mask_fraction: float = 0.9) -> Dict[str, float]:
    """One-prompt mIoU of ``model`` on ``items`` as :func:`samkit.train.validate` computes it during training.

    Images and masks are brought to the model's input frame as the training data are (masks covering more
    than ``max_mask_fraction`` of the image dropped, as in training), each embedding is rounded through
    float16 as the training loop's embedding cache stores it, and every mask (or the first
    ``masks_per_image``) is prompted with one centre click (3 masks: ``miou_point_oracle``,
    ``miou_point_confident``) and with its box (``miou_box``). Returns those and ``n_masks``.
    """
    from .train import PreparedImages, validate

    device = next(model.parameters()).device
    dataset = PreparedImages(_ItemSource(items), model.img_size, None, max_mask_fraction)

    def embed(i: int, record) -> torch.Tensor:
        x = model.preprocess(record.image.to(device).float()[None])
        return model.image_encoder(x).to(torch.float16).to(torch.float32)

    return validate(model, dataset, embed, masks_per_image=masks_per_image or 10 ** 9)


@torch.no_grad()
def amg_candidates(model_or_predictor, image: np.ndarray, points_per_side: int = 32, points_per_batch: int = 64,
                   stability_offset: float = 1.0) -> Dict[str, np.ndarray]:
    """Every candidate of the automatic mask generator's grid, before any filter.

    A ``points_per_side``² grid, three masks per point, as :class:`samkit.AutomaticMaskGenerator` decodes them
    (one crop, the whole image). Returns ``predicted_iou`` and ``stability`` (``3 * points_per_side**2`` floats
    each), ``area`` (pixels of each mask, logits above the model's threshold) and ``max_logit``.
    """
    from .predictor import as_predictor

    predictor = as_predictor(model_or_predictor)
    threshold = float(predictor.model.mask_threshold)
    h, w = image.shape[:2]
    predictor.set_image(image)
    points = build_point_grid(points_per_side) * np.array([[w, h]], dtype=np.float64)
    ious, stab, areas, peaks = [], [], [], []
    for start in range(0, len(points), points_per_batch):
        batch = points[start:start + points_per_batch]
        coords = torch.as_tensor(predictor.transform.apply_coords(batch, (h, w)), device=predictor.device)
        labels = torch.ones(len(batch), 1, dtype=torch.int, device=predictor.device)
        logits, iou, _ = predictor.predict_torch(coords[:, None, :], labels, multimask_output=True,
                                                 return_logits=True)
        logits = logits.flatten(0, 1).float()
        ious.append(iou.flatten().float().cpu())
        stab.append(stability_score(logits, threshold, stability_offset).cpu())
        areas.append((logits > threshold).flatten(1).sum(1).cpu())
        peaks.append(logits.flatten(1).amax(1).cpu())
    predictor.reset_image()
    return {"predicted_iou": torch.cat(ious).numpy(), "stability": torch.cat(stab).numpy(),
            "area": torch.cat(areas).numpy(), "max_logit": torch.cat(peaks).numpy()}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def annotate_with_clicks(predictor, gt: np.ndarray, target_iou: float = 0.9, max_clicks: int = 9) -> Dict[str, Any]:
    """A simulated annotator segments ``gt`` with the model on the predictor's current image (paper §4,
    assisted-manual stage): a first click at the object's centre, then clicks at the centre of the largest
    error region with the previous logits fed back, until the mask reaches ``target_iou`` or ``max_clicks``
    were spent (then the annotator finishes with "brush and eraser": the ground truth).

    Returns ``clicks`` (clicks used), ``iou`` (the model's mask IoU when the annotator stopped clicking) and
    ``reached`` (whether the model's mask reached ``target_iou``).
    """
    from .data.prompts import center_point, next_click

    x, y = center_point(gt)
    coords, labels = [[x, y]], [1]
    masks, scores, low = predictor.predict(point_coords=np.array(coords), point_labels=np.array(labels),
                                           multimask_output=True)
    best = int(np.argmax(scores))
    pred, logits = masks[best], low[best:best + 1]
    iou = _iou(pred, gt)
    clicks = 1
    while iou < target_iou and clicks < max_clicks:
        click = next_click(pred, gt)
        if click is None:
            break
        (cx, cy), label = click
        coords.append([cx, cy])
        labels.append(label)
        masks, _, low = predictor.predict(point_coords=np.array(coords), point_labels=np.array(labels),
                                          mask_input=logits, multimask_output=False)
        pred, logits = masks[0], low[0:1]
        iou = _iou(pred, gt)
        clicks += 1
    return {"clicks": clicks, "iou": iou, "reached": iou >= target_iou}


def _match(auto: List[np.ndarray], gts: np.ndarray, threshold: float) -> np.ndarray:
    """For each ground-truth object, whether an automatic mask covers it with IoU >= threshold."""
    found = np.zeros(len(gts), dtype=bool)
    for g, gt in enumerate(gts):
        found[g] = any(_iou(a, gt) >= threshold for a in auto)
    return found


def simulate_data_engine(model, scenes: Sequence[Dict[str, Any]], points_per_side: int = 16,
                         pred_iou_thresh: float = 0.88, stability_thresh: float = 0.95,
                         match_iou: float = 0.9, target_iou: float = 0.9, max_clicks: int = 9,
                         progress: bool = False) -> Dict[str, Any]:
    """The data engine's three stages on generated scenes, each scene's masks playing the objects a careful
    annotator would outline.

    * **assisted-manual**: the simulated annotator segments every object with the model
      (:func:`annotate_with_clicks`); reported: clicks per mask and the share the model got to ``target_iou``;
    * **semi-automatic**: the automatic mask generator pre-fills the confident masks (``pred_iou_thresh``,
      ``stability_thresh``); an automatic mask counts as correct when it matches an object at ``match_iou``;
      the annotator then clicks only the objects not pre-filled;
    * **fully automatic**: the automatic masks alone, with their precision (share matching an object) and
      recall (share of objects found).

    Returns per-stage dicts with ``masks_per_image`` and the click and match statistics, and ``per_scene``.
    """
    from tqdm.auto import tqdm

    from .automatic import AutomaticMaskGenerator
    from .predictor import Predictor

    predictor = Predictor(model)
    amg = AutomaticMaskGenerator(predictor, points_per_side=points_per_side, pred_iou_thresh=pred_iou_thresh,
                                 stability_score_thresh=stability_thresh, progress=False)
    per_scene = []
    for item in tqdm(scenes, desc="data engine", disable=not progress):
        image, gts = np.asarray(item["image"]), np.asarray(item["masks"], dtype=bool)
        auto = [a["segmentation"] for a in amg.generate(image)]
        found = _match(auto, gts, match_iou)
        correct = sum(any(_iou(a, g) >= match_iou for g in gts) for a in auto)
        predictor.set_image(image)
        manual = [annotate_with_clicks(predictor, g, target_iou, max_clicks) for g in gts]
        per_scene.append({"objects": len(gts), "automatic": len(auto), "automatic_correct": int(correct),
                          "found": int(found.sum()), "clicks_all": [m["clicks"] for m in manual],
                          "reached": [m["reached"] for m in manual],
                          "clicks_missing": [m["clicks"] for m, f in zip(manual, found) if not f]})
    n = max(len(per_scene), 1)
    objects = sum(s["objects"] for s in per_scene)
    clicks_all = [c for s in per_scene for c in s["clicks_all"]]
    clicks_missing = [c for s in per_scene for c in s["clicks_missing"]]
    automatic = sum(s["automatic"] for s in per_scene)
    correct = sum(s["automatic_correct"] for s in per_scene)
    found = sum(s["found"] for s in per_scene)
    return {
        "scenes": len(per_scene), "objects": objects,
        "assisted_manual": {
            "masks_per_image": objects / n,
            "clicks_per_mask": float(np.mean(clicks_all)) if clicks_all else 0.0,
            "reached_share": float(np.mean([r for s in per_scene for r in s["reached"]])) if objects else 0.0,
        },
        "semi_automatic": {"prefilled_per_image": correct / n, "added_per_image": (objects - found) / n,
                           "masks_per_image": (correct + objects - found) / n,
                           "clicks_per_added_mask": float(np.mean(clicks_missing)) if clicks_missing else 0.0,
                           "clicks_saved_share": 1 - (sum(clicks_missing) / max(sum(clicks_all), 1))},
        "fully_automatic": {"masks_per_image": automatic / n, "precision": correct / automatic if automatic else 0.0,
                            "recall": found / objects if objects else 0.0},
        "per_scene": per_scene,
    }


def _label_map(masks: np.ndarray) -> np.ndarray:
    """N x H x W masks in back-to-front order -> H x W labels (0 = background, k = mask k-1 on top)."""
    label = np.zeros(masks.shape[1:], dtype=np.int32)
    for k, m in enumerate(masks):
        label[m] = k + 1
    return label


def _region_boundaries(label: np.ndarray) -> np.ndarray:
    from skimage.morphology import thin

    b = np.zeros(label.shape, dtype=bool)
    b[:, :-1] |= label[:, :-1] != label[:, 1:]
    b[:-1, :] |= label[:-1, :] != label[1:, :]
    return thin(b)


def scene_edge_items(n: int, size: int = 384, seed: int = 0, start: int = 20_000,
                     coarse_fraction: float = 0.01) -> List[Dict[str, Any]]:
    """Generated scenes as edge-detection ground truth in the BSDS500 item format: ``image`` and
    ``boundaries`` (two "annotators": the boundaries of every visible object, and those of the objects covering
    at least ``coarse_fraction`` of the image, as a less detailed annotator would draw). Scenes ``start`` ...
    ``start + n - 1`` of :class:`samkit.data.synthetic.SceneGenerator` (never used for training)."""
    from .data.synthetic import SceneGenerator

    scenes = SceneGenerator(size=size, seed=seed)
    items = []
    for i in range(start, start + n):
        image, masks = scenes(i)
        big = masks[masks.reshape(len(masks), -1).mean(1) >= coarse_fraction]
        items.append({"image": image, "name": f"scene {i}",
                      "boundaries": [_region_boundaries(_label_map(masks)), _region_boundaries(_label_map(big))]})
    return items


def mask_share(model, items: Sequence[Dict[str, Any]]) -> float:
    """Mean share of the image covered by the most confident of the three masks of one centre click per object
    of ``items`` (a decoder that marks everything scores near 1, the objects' own share is the reference)."""
    from .data.prompts import center_point
    from .predictor import Predictor

    predictor = Predictor(model)
    shares = []
    for item in items:
        predictor.set_image(np.asarray(item["image"]))
        for gt in np.asarray(item["masks"], dtype=bool):
            if not gt.any():
                continue
            masks, scores, _ = predictor.predict(point_coords=np.array([center_point(gt)]), point_labels=np.array([1]),
                                                 multimask_output=True)
            shares.append(float(masks[int(np.argmax(scores))].mean()))
    if not shares:
        raise ValueError("mask_share: no non-empty mask in items")
    return float(np.mean(shares))
