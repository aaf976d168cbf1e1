"""The losses SAM is trained with (paper §3 and appendix A, "Losses").

The mask prediction is supervised with a linear combination of focal loss and dice loss in a 20:1 ratio;
the IoU prediction head is trained with the mean-square error between its prediction and the actual IoU of
the predicted mask with the ground truth. With several output masks (the three ambiguity-aware masks of a
single prompt) only the mask with the lowest focal+dice loss receives the mask gradient.

Every function here works on *logits* (before the sigmoid) and on masks in one shared frame; the frame is
the caller's choice (samkit's training loop uses the decoder's low-res frame, see :mod:`samkit.train`).

Shapes: ``... x H x W`` means any number of leading dimensions; the per-mask functions reduce only the two
trailing pixel dimensions and return a tensor of shape ``...``.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F

from samkit.model.configs import MASK_THRESHOLD

__all__ = ["focal_loss", "dice_loss", "iou_of_masks", "sam_loss"]


def _check_pair(logits: torch.Tensor, targets: torch.Tensor, name: str) -> torch.Tensor:
    if logits.dim() < 2:
        raise ValueError(f"{name}: logits must be ... x H x W, got shape {tuple(logits.shape)}")
    if targets.shape[-2:] != logits.shape[-2:]:
        raise ValueError(
            f"{name}: targets {tuple(targets.shape)} and logits {tuple(logits.shape)} differ in H x W; "
            "bring both to one frame first")
    return targets.to(dtype=logits.dtype).expand_as(logits)


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25,
               gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), averaged over the pixels of each mask.

    Args:
        logits: ``... x H x W`` mask logits.
        targets: ``... x H x W`` targets in {0, 1} (bool or float; soft targets in [0, 1] are accepted),
            broadcastable to ``logits``.
        alpha: weight of the positive class (``alpha < 0`` disables the weighting, as in torchvision).
        gamma: focusing exponent.

    Returns:
        ``...`` one loss per mask: ``torchvision.ops.sigmoid_focal_loss(...)`` averaged over H x W.
    """
    targets = _check_pair(logits, targets, "focal_loss")
    prob = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = prob * targets + (1 - prob) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft dice loss of each mask: ``1 - (2 * sum(p * t) + s) / (sum(p) + sum(t) + s)`` with ``p = sigmoid``.

    ``smooth`` (``s``, 1 as in DETR / the common SAM re-implementations) keeps the loss defined, and equal to
    0 when both the prediction and the target are empty.

    Args:
        logits: ``... x H x W`` mask logits.
        targets: ``... x H x W`` targets in {0, 1}, broadcastable to ``logits``.

    Returns:
        ``...`` one loss per mask, in [0, 1).
    """
    targets = _check_pair(logits, targets, "dice_loss")
    prob = logits.sigmoid().flatten(-2)
    targets = targets.flatten(-2)
    numerator = 2 * (prob * targets).sum(-1) + smooth
    denominator = prob.sum(-1) + targets.sum(-1) + smooth
    return 1 - numerator / denominator


@torch.no_grad()
def iou_of_masks(pred_logits: torch.Tensor, gt: torch.Tensor,
                 threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    """IoU of each predicted mask (``logits > threshold``) with its ground truth.

    Args:
        pred_logits: ``... x H x W`` logits.
        gt: ``... x H x W`` ground truth (bool, or float thresholded at 0.5), broadcastable to ``pred_logits``.

    Returns:
        ``...`` float IoU; 1.0 where both masks are empty (a perfect prediction of nothing).
    """
    gt = _check_pair(pred_logits, gt, "iou_of_masks")
    pred = (pred_logits > threshold).flatten(-2)
    gt = (gt > 0.5).flatten(-2)
    inter = (pred & gt).sum(-1).float()
    union = (pred | gt).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, gt: torch.Tensor,
             focal_weight: float = 20.0, dice_weight: float = 1.0, iou_weight: float = 1.0,
             select_min: bool = True, iou_on_all: bool = True, aux_gt: Optional[torch.Tensor] = None,
             aux_weight: float = 0.0) -> Dict[str, torch.Tensor]:
    """The SAM training loss for ``B`` prompts with ``M`` predicted masks each.

    ``mask loss = focal_weight * focal + dice_weight * dice`` per mask. With ``M > 1`` (the three
    multimask outputs of a single, ambiguous prompt) and ``select_min``, only the mask with the lowest mask
    loss of each prompt is kept (a min over masks: its gradient flows only into that mask); with ``M == 1``
    the single mask is supervised.

    The IoU head: with ``iou_on_all`` (the default) *every* mask's predicted IoU is regressed onto that
    mask's actual IoU with the ground truth, also the masks not selected for the mask loss. The paper says
    the head is trained with "mean-square-error loss between the IoU prediction and the predicted mask's IoU
    with the ground truth mask", and at inference the head ranks all three masks, so all three need a
    calibrated score; this is also what the official training is believed to do. ``iou_on_all=False``
    supervises only the selected mask.

    Normalisation: every term is a mean over the ``B`` prompts (the IoU MSE a mean over the ``B x M`` or
    ``B`` supervised scores), so the loss does not grow with the number of prompts in a batch.

    Args:
        logits: ``B x M x H x W`` mask logits.
        iou_pred: ``B x M`` predicted IoUs.
        gt: ``B x 1 x H x W`` (or ``B x H x W``) ground truth in the same frame as ``logits``, or
            ``B x M x H x W``, one target per mask (nested targets: each mask is supervised with its
            own, no min is taken and the mask loss is averaged over the ``M`` masks).
        aux_gt: optional ``B x M x H x W``, one auxiliary target per mask (a click's nested masks, smallest /
            middle / largest): ``aux_weight`` times each mask's loss against its own target, averaged over
            the ``M`` masks, is added to the min-over-masks loss. With a small weight it breaks the tie
            between the three outputs (which one becomes the subpart, the part, the whole) without taking
            the min away.

    Returns:
        dict with scalar tensors ``loss`` (what to back-propagate), ``mask_loss``, ``focal``, ``dice``,
        ``iou_mse`` (the selected masks' terms, unweighted, averaged over prompts) and per-prompt tensors
        ``selected`` (``B`` long, index of the supervised mask), ``iou`` (``B`` actual IoU of the selected
        mask) and ``per_prompt`` (``B`` weighted loss of each prompt, for callers that normalise
        over several batches themselves).
    """
    if logits.dim() != 4:
        raise ValueError(f"sam_loss: logits must be B x M x H x W, got shape {tuple(logits.shape)}")
    B, M = logits.shape[:2]
    if iou_pred.shape != (B, M):
        raise ValueError(f"sam_loss: iou_pred must be {B} x {M}, got shape {tuple(iou_pred.shape)}")
    if gt.dim() == 3:
        gt = gt[:, None]
    if gt.dim() != 4 or gt.shape[0] != B or gt.shape[1] not in (1, M):
        raise ValueError(f"sam_loss: gt must be B x 1 x H x W (or B x M x H x W, one per mask) with B={B}, "
                         f"M={M}, got shape {tuple(gt.shape)}")
    if M > 1 and gt.shape[1] == M:
        select_min = False  # one target per mask: each mask is supervised
    logits = logits.float()  # the loss in float32 also under autocast
    iou_pred = iou_pred.float()
    targets = gt.to(logits.dtype)

    focal = focal_loss(logits, targets)                      # B x M
    dice = dice_loss(logits, targets)                        # B x M
    mask_loss = focal_weight * focal + dice_weight * dice    # B x M
    if M > 1 and select_min:
        selected = mask_loss.detach().argmin(dim=1)
    else:
        selected = torch.zeros(B, dtype=torch.long, device=logits.device)
    pick = selected[:, None]

    true_iou = iou_of_masks(logits.detach(), targets)        # B x M
    if iou_on_all or M == 1:
        iou_mse_pp = ((iou_pred - true_iou) ** 2).mean(dim=1)  # B
    else:
        iou_mse_pp = (iou_pred.gather(1, pick) - true_iou.gather(1, pick)).squeeze(1) ** 2

    if M > 1 and not select_min:
        # supervise every mask (an ablation): average the mask loss over the M masks
        mask_pp, focal_pp, dice_pp = mask_loss.mean(1), focal.mean(1), dice.mean(1)
    else:
        mask_pp = mask_loss.gather(1, pick).squeeze(1)
        focal_pp = focal.gather(1, pick).squeeze(1)
        dice_pp = dice.gather(1, pick).squeeze(1)
    per_prompt = mask_pp + iou_weight * iou_mse_pp
    if aux_gt is not None and aux_weight > 0:
        if aux_gt.shape != logits.shape:
            raise ValueError(f"sam_loss: aux_gt must be B x M x H x W like the logits {tuple(logits.shape)}, "
                             f"got shape {tuple(aux_gt.shape)}")
        aux = aux_gt.to(logits.dtype)
        aux_pp = (focal_weight * focal_loss(logits, aux) + dice_weight * dice_loss(logits, aux)).mean(1)
        per_prompt = per_prompt + aux_weight * aux_pp
    return {
        "loss": per_prompt.mean(),
        "mask_loss": mask_pp.mean(),
        "focal": focal_pp.mean(),
        "dice": dice_pp.mean(),
        "iou_mse": iou_mse_pp.mean(),
        "selected": selected,
        "iou": true_iou.gather(1, pick).squeeze(1),
        "per_prompt": per_prompt,
    }
