"""The paper's interactive simulation: which prompts each round adds (:func:`round_plan`), the first
prompts of an image (:func:`prompt_image`), and :class:`InteractiveLoss`, the module that runs the
rounds of a micro-batch through the prompt encoder and mask decoder and sums the losses (see
:mod:`samkit.train`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from samkit.data.prompts import noisy_boxes, sample_error_points, sample_points
from samkit.losses import sam_loss
from samkit.train.config import TrainConfig
from samkit.train.data import PreparedImage


def round_plan(
    n_rounds: int = 11,
    no_point_rounds: int = 2,
    placement: str = "random",
    generator: Optional[torch.Generator] = None,
) -> List[str]:
    """What each round of the interactive simulation adds: ``"first"``, ``"point"`` or ``"none"``.

    Round 0 is the first prompt. With the paper's 11 rounds and 2 rounds without a new point, the
    last round is always ``"none"`` and the other ``"none"`` goes at a random position among the 8
    point rounds (``placement="random"``, as in the paper) or in their middle (``"middle"``).

    >>> round_plan(11, 2, "middle")
    ['first', 'point', 'point', 'point', 'point', 'none', 'point', 'point', 'point', 'point',
    'none']
    """
    if n_rounds < 1 or not 0 <= no_point_rounds <= n_rounds - 1:
        raise ValueError(
            "need n_rounds >= 1 and 0 <= no_point_rounds < n_rounds, "
            f"got {n_rounds}, {no_point_rounds}"
        )
    if n_rounds == 1:
        return ["first"]
    n_points = n_rounds - 1 - no_point_rounds
    middle = ["point"] * n_points
    extra = max(no_point_rounds - 1, 0)
    for k in range(extra):
        if placement == "random":
            pos = int(torch.randint(len(middle) + 1, (1,), generator=generator))
        else:
            pos = (len(middle) + 1) // 2 if k == 0 else len(middle)
        middle.insert(pos, "none")
    return ["first"] + middle + (["none"] if no_point_rounds > 0 else [])


# --------------------------------------------------------------------------------------------------
# The interactive simulation (one forward = one micro-batch, so DDP sees one forward per backward)
# --------------------------------------------------------------------------------------------------
@dataclass
class PromptedImage:
    """The prompts of one image in one step (all in the input frame).

    gt: ``P x S x S`` bool; is_box: ``P`` bool; points: ``Pp x 1 x 2`` (rows with ``~is_box``);
    boxes: ``Pb x 4`` XYXY (rows with ``is_box``); generator: this image's generator for error
    points.
    """

    gt: torch.Tensor
    is_box: torch.Tensor
    points: torch.Tensor
    boxes: torch.Tensor
    input_size: Tuple[int, int]
    generator: torch.Generator
    nested: Optional[torch.Tensor] = None  # Pp x 3 x S x S bool, with cfg.nested_targets: the three
    #                                        targets of each click (see nested_targets)
    image: Optional[torch.Tensor] = None  # 3 x h x w uint8 when the encoder runs in the forward
    embedding: Optional[torch.Tensor] = None  # 1 x C x E x E when it is cached


class _Group:
    """Rows of a micro-batch sharing the first prompt's kind (so they share one decoder call)."""

    def __init__(self, is_box: bool) -> None:
        self.is_box = is_box
        self.owner: List[int] = []  # image of each row
        self.slices: List[Tuple[int, slice]] = []  # (image, rows of the group) per image
        self.gt: List[torch.Tensor] = []
        self.first: List[torch.Tensor] = []
        self.nested: List[torch.Tensor] = []

    def add(self, image: int, gt: torch.Tensor, first: torch.Tensor,
            nested: Optional[torch.Tensor] = None) -> None:
        if len(gt) == 0:
            return
        start = len(self.owner)
        self.owner += [image] * len(gt)
        self.slices.append((image, slice(start, start + len(gt))))
        self.gt.append(gt)
        self.first.append(first)
        if nested is not None:
            self.nested.append(nested)


class InteractiveLoss(nn.Module):
    """Wraps a :class:`samkit.model.Sam`; ``forward(images, plan)`` runs the interactive simulation
    of a micro-batch and returns the summed losses (so several micro-batches and processes can be
    normalised by the total number of prompts).

    Returns a dict of scalar tensors: ``loss_sum`` (with gradients: sum over rounds and prompts of
    the per-prompt loss), ``focal_sum``, ``dice_sum``, ``iou_mse_sum``, ``first_sum`` (round 0
    only), ``iou_last_sum`` (IoU of the supervised mask in the last round) and ``count`` (prompts).
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    # frames -------------------------------------------------------------------------------------
    def _gt_frame(self, gt: torch.Tensor) -> torch.Tensor:
        """``P x S x S`` bool -> ``P x 1 x F x F`` float targets in the loss frame."""
        m = self.model
        if self.cfg.loss_frame == "input":
            return gt[:, None].float()
        factor = m.img_size // m.config.low_res_size if m.config is not None else 4
        return (F.avg_pool2d(gt[:, None].float(), factor) > 0.5).float()

    def _logits_frame(self, low_res: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss_frame == "input":
            s = self.model.img_size
            return F.interpolate(low_res, (s, s), mode="bilinear", align_corners=False)
        return low_res

    def _embeddings(self, images: List[PromptedImage]) -> torch.Tensor:
        if images[0].embedding is not None:
            return torch.cat([im.embedding for im in images], dim=0)
        m = self.model
        x = torch.stack([m.preprocess(im.image.to(m.device).float()[None])[0] for im in images])
        return m.image_encoder(x)

    def forward(self, images: List[PromptedImage], plan: List[str]) -> Dict[str, torch.Tensor]:
        cfg, m = self.cfg, self.model
        device = m.device
        zero = torch.zeros((), device=device)
        total = {
            k: zero.clone()
            for k in ("focal_sum", "dice_sum", "iou_mse_sum", "first_sum", "iou_last_sum")
        }
        count = sum(int(im.gt.shape[0]) for im in images)
        if count == 0:
            # keep every trainable parameter in the graph so that DDP's reduction still runs
            loss = sum((p.sum() * 0 for p in m.parameters() if p.requires_grad), zero)
            return {"loss_sum": loss, **total, "count": zero}
        emb = self._embeddings(images)
        groups = [_Group(False), _Group(True)]
        for i, im in enumerate(images):
            groups[0].add(i, im.gt[~im.is_box], im.points, im.nested)
            groups[1].add(i, im.gt[im.is_box], im.boxes)

        s = m.img_size
        low = m.config.low_res_size if m.config is not None else s // 4
        scale = s / low if cfg.loss_frame == "low_res" else 1.0
        fs = low if cfg.loss_frame == "low_res" else s
        loss_sum = zero.clone()
        states = []
        for g in groups:
            if not g.owner:
                continue
            gt_in = torch.cat(g.gt)
            valid = torch.zeros(len(g.owner), fs, fs, dtype=torch.bool, device=device)
            for i, rows in g.slices:
                h, w = images[i].input_size
                valid[rows, : math.ceil(h / scale), : math.ceil(w / scale)] = True
            state = {
                "group": g,
                "owner": torch.tensor(g.owner, device=device),
                "target": self._gt_frame(gt_in),
                "nested": None,
                "valid": valid,
                "coords": None,
                "labels": None,
                "boxes": None,
                "mask": None,
            }
            if g.nested and len(g.nested) == len(g.slices):  # P x 3 x S x S -> P x 3 x F x F
                nested = torch.cat(g.nested)
                state["nested"] = self._gt_frame(nested.flatten(0, 1)).view(len(nested), 3, fs, fs)
            first = torch.cat(g.first)
            if g.is_box:
                state["boxes"] = first
            else:
                state["coords"] = first
                state["labels"] = torch.ones(first.shape[:2], dtype=torch.long, device=device)
            states.append(state)

        for r, kind in enumerate(plan):
            if kind == "point":
                for st in states:
                    self._add_error_points(st, images, scale)
            for st in states:
                g = st["group"]
                multimask = r == 0 and (cfg.box_multimask or not g.is_box)
                low_res, iou_pred = m.encode_prompts_and_decode(
                    emb[st["owner"]],
                    st["coords"],
                    st["labels"],
                    st["boxes"],
                    st["mask"] if cfg.mask_feedback else None,
                    multimask,
                )
                nested = r == 0 and multimask and st["nested"] is not None
                out = sam_loss(
                    self._logits_frame(low_res),
                    iou_pred,
                    st["nested"] if nested and cfg.nested_targets else st["target"],
                    cfg.focal_weight,
                    cfg.dice_weight,
                    cfg.iou_weight,
                    iou_on_all=cfg.iou_on_all,
                    aux_gt=st["nested"] if nested and not cfg.nested_targets else None,
                    aux_weight=cfg.nested_weight,
                )
                n = float(len(g.owner))
                loss_sum = loss_sum + out["per_prompt"].sum()
                total["focal_sum"] += out["focal"].detach() * n
                total["dice_sum"] += out["dice"].detach() * n
                total["iou_mse_sum"] += out["iou_mse"].detach() * n
                if r == 0:
                    total["first_sum"] += out["per_prompt"].detach().sum()
                if r == len(plan) - 1:
                    total["iou_last_sum"] += out["iou"].sum()
                best = (
                    iou_pred.detach().argmax(dim=1)
                    if low_res.shape[1] > 1
                    else torch.zeros(low_res.shape[0], dtype=torch.long, device=device)
                )
                chosen = low_res[torch.arange(low_res.shape[0], device=device), best][:, None]
                st["mask"] = chosen.detach() if cfg.detach_feedback else chosen
                st["pred"] = (self._logits_frame(chosen.detach())[:, 0] > m.mask_threshold) & st[
                    "valid"
                ]
        return {"loss_sum": loss_sum, **total, "count": torch.tensor(float(count), device=device)}

    def _add_error_points(
        self, st: Dict[str, Any], images: List[PromptedImage], scale: float
    ) -> None:
        """Append one point per row, drawn from the error region of the previous prediction (input
        frame)."""
        g = st["group"]
        gt = st["target"][:, 0] > 0.5
        coords = torch.zeros(len(g.owner), 1, 2, device=gt.device)
        labels = torch.full((len(g.owner), 1), -1, dtype=torch.long, device=gt.device)
        for i, rows in g.slices:
            c, lab = sample_error_points(
                st["pred"][rows], gt[rows] & st["valid"][rows], images[i].generator
            )
            coords[rows], labels[rows] = c, lab
        if scale != 1.0:  # centre of the low-res pixel, in input-frame pixel indices
            coords = torch.where(
                labels[..., None] >= 0, (coords + 0.5) * scale - 0.5, torch.zeros_like(coords)
            )
        if st["coords"] is None:
            st["coords"], st["labels"] = coords, labels
        else:
            st["coords"] = torch.cat([st["coords"], coords], dim=1)
            st["labels"] = torch.cat([st["labels"], labels], dim=1)


def prompt_image(
    record: PreparedImage,
    cfg: TrainConfig,
    img_size: int,
    generator: torch.Generator,
    device: torch.device,
) -> PromptedImage:
    """Draw this step's masks and first prompts for one image (all randomness from
    ``generator``)."""
    k = record.masks.shape[0]
    candidates = torch.arange(k)
    if cfg.min_mask_area > 0:  # masks too small for the low-res logits to represent
        candidates = torch.nonzero(record.masks.flatten(1).sum(1) >= cfg.min_mask_area).flatten()
    n = len(candidates)
    if cfg.mask_area_power > 0 and n > 0:  # odds proportional to area ** power, without replacement
        odds = record.masks[candidates].flatten(1).sum(1).double().clamp(min=1) ** cfg.mask_area_power
        pick = candidates[torch.multinomial(odds, min(cfg.masks_per_image, n), generator=generator)]
    else:
        pick = candidates[torch.randperm(n, generator=generator)[: min(cfg.masks_per_image, n)]]
    gt = record.masks[pick].to(device)
    is_box = torch.rand(len(pick), generator=generator) < cfg.box_prob
    is_box_dev = is_box.to(device)
    points = torch.zeros(0, 1, 2, device=device)
    boxes = torch.zeros(0, 4, device=device)
    if (~is_box).any():
        points, _ = sample_points(gt[~is_box_dev], 1, generator)
    if is_box.any():
        boxes = noisy_boxes(
            gt[is_box_dev], cfg.box_noise_std, cfg.box_max_noise * img_size / 1024, generator
        )
    nested = None
    if (cfg.nested_targets or cfg.nested_weight > 0) and (~is_box).any():
        nested = nested_targets(record.masks.to(device), points[:, 0], cfg.min_mask_area)
    return PromptedImage(gt, is_box_dev, points, boxes, record.input_size, generator, nested)


def nested_targets(masks: torch.Tensor, points: torch.Tensor, min_area: int = 0) -> torch.Tensor:
    """The three targets of single clicks: ``K x S x S`` masks of an image and ``P x 2`` clicks ``(x, y)``
    (pixel indices) -> ``P x 3 x S x S``: of the masks that contain the click (at least ``min_area``
    pixels), the smallest, the middle one and the largest by area (subpart, part, whole; with two, the
    smaller then the larger twice; with one, it three times). SA-1B's masks nest this way; so do the
    generated scenes' objects made of parts."""
    areas = masks.flatten(1).sum(1)
    x = points[:, 0].round().long().clamp(0, masks.shape[2] - 1)
    y = points[:, 1].round().long().clamp(0, masks.shape[1] - 1)
    contains = masks[:, y, x].t() & (areas >= min_area)[None]      # P x K
    out = torch.zeros(len(points), 3, *masks.shape[1:], dtype=torch.bool, device=masks.device)
    for p in range(len(points)):
        idx = torch.nonzero(contains[p]).flatten()
        if len(idx) == 0:  # a click outside every mask (cannot happen for clicks drawn from a mask)
            continue
        idx = idx[torch.argsort(areas[idx])]
        out[p] = masks[idx[[0, len(idx) // 2, len(idx) - 1]]]
    return out
