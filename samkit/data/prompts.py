"""Prompt simulation: the points and boxes SAM is trained and evaluated with.

Frames and conventions
----------------------
* Masks are boolean tensors (or arrays) in any frame: the original image, the model's input frame, or
  the low-resolution frame. Prompts come back **in the same frame as the masks**.
* Coordinates are ``(x, y)`` = ``(column, row)`` pixel indices as floats. Nothing is added: the pixel at
  row 3, column 5 is ``(5.0, 3.0)``. The official predictor maps them to its input frame with
  ``ResizeLongestSide.apply_coords`` (and the prompt encoder adds the +0.5 pixel-centre shift itself).
* Boxes are ``XYXY`` in the same index frame: ``x1``/``y1`` are the last foreground column/row, as in
  :func:`torchvision.ops.masks_to_boxes`.
* Labels follow SAM: ``1`` positive (foreground), ``0`` negative (background), ``-1`` padding (no point;
  the prompt encoder ignores it).

Training (paper, appendix A) starts from one uniform foreground point or a noisy box
(:func:`sample_points`, :func:`noisy_boxes`), then adds points drawn uniformly from the error region
(:func:`sample_error_points`). Evaluation is deterministic: the first click is the point farthest from the
object's boundary (:func:`center_point`), each later click the point farthest from the boundary of the
larger error region (:func:`next_click`, the protocol of RITM).

The batched functions take an optional ``torch.Generator``; the same seed gives the same prompts. Random
numbers are drawn on the generator's device and moved to the masks' device, so a CPU generator works with
CUDA masks.
"""
from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt
from torchvision.ops import masks_to_boxes

__all__ = [
    "sample_points",
    "noisy_boxes",
    "sample_error_points",
    "center_point",
    "next_click",
    "next_clicks",
]

ArrayLike = Union[np.ndarray, torch.Tensor]


def _check_masks(masks: torch.Tensor, name: str = "masks") -> torch.Tensor:
    if not isinstance(masks, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape BxHxW, got {type(masks).__name__}")
    if masks.dim() != 3:
        raise ValueError(f"{name} must have shape BxHxW, got {tuple(masks.shape)}")
    return masks.bool()


def _rand(shape: Tuple[int, ...], generator: Optional[torch.Generator], device: torch.device,
          normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) numbers drawn on the generator's device, moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=generator, device=gen_device).to(device)


def _sample_uniform(region: torch.Tensor, n: int, generator: Optional[torch.Generator]
                    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n`` pixels uniformly (with replacement) from each of B regions.

    Inverse-CDF sampling on the integer running count of foreground pixels, so it is exact, vectorised
    and works on any device.

    Returns:
        x: B x n long, y: B x n long, valid: B bool (False where the region is empty).
    """
    b, h, w = region.shape
    flat = region.reshape(b, h * w)
    cdf = flat.long().cumsum(dim=1)                      # B x HW, non-decreasing integer counts
    total = cdf[:, -1:] if h * w > 0 else torch.zeros(b, 1, dtype=torch.long, device=region.device)
    valid = total[:, 0] > 0
    u = _rand((b, n), generator, region.device)
    # k-th foreground pixel, k uniform in [0, total - 1]
    k = (u * total.double()).floor().long()
    k = torch.minimum(k, (total - 1).clamp(min=0))
    # first index whose running count exceeds k is the k-th foreground pixel
    idx = torch.searchsorted(cdf, k, right=True).clamp(max=max(h * w - 1, 0))
    x = idx % w
    y = idx // w
    return x, y, valid


def sample_points(
    masks: torch.Tensor, n: int = 1, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Sample ``n`` foreground points uniformly (with replacement) from each mask.

    Arguments:
        masks: B x H x W bool, in any frame.
        n: points per mask.
        generator: optional ``torch.Generator`` for reproducible draws.

    Returns:
        coords: B x n x 2 float, ``(x, y)`` pixel indices in the masks' frame.
        labels: B x n long, 1 for every point; -1 (padding, coords 0) where a mask is empty.
    """
    masks = _check_masks(masks)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    x, y, valid = _sample_uniform(masks, n, generator)
    coords = torch.stack([x, y], dim=-1).float()
    labels = torch.ones_like(x)
    coords[~valid] = 0.0
    labels[~valid] = -1
    return coords, labels


def noisy_boxes(
    masks: torch.Tensor,
    noise_std: float = 0.1,
    max_noise: float = 20.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """The tight box of each mask with every coordinate jittered, as in SAM's training.

    Each coordinate moves by Gaussian noise with standard deviation ``noise_std`` times the box side
    (width for x, height for y), clipped to at most ``max_noise`` pixels. The result is clipped to the
    image (``0..W-1``, ``0..H-1``) and reordered so that ``x0 <= x1`` and ``y0 <= y1``.

    Arguments:
        masks: B x H x W bool, in any frame.
        noise_std: noise standard deviation as a fraction of the box side (paper: 0.1).
        max_noise: largest shift in pixels of the masks' frame (paper: 20).
        generator: optional ``torch.Generator``.

    Returns:
        B x 4 float XYXY boxes in the masks' frame. An empty mask gives the box ``(0, 0, 0, 0)``.
    """
    masks = _check_masks(masks)
    if noise_std < 0 or max_noise < 0:
        raise ValueError(f"noise_std and max_noise must be >= 0, got {noise_std}, {max_noise}")
    b, h, w = masks.shape
    boxes = torch.zeros(b, 4, dtype=torch.float32, device=masks.device)
    nonempty = masks.flatten(1).any(dim=1)
    if nonempty.any():
        boxes[nonempty] = masks_to_boxes(masks[nonempty]).float()
    side_w = boxes[:, 2] - boxes[:, 0]
    side_h = boxes[:, 3] - boxes[:, 1]
    std = torch.stack([side_w, side_h, side_w, side_h], dim=1) * noise_std
    noise = (_rand((b, 4), generator, masks.device, normal=True) * std).clamp(-max_noise, max_noise)
    out = boxes + noise
    out[:, 0::2] = out[:, 0::2].clamp(0, max(w - 1, 0))
    out[:, 1::2] = out[:, 1::2].clamp(0, max(h - 1, 0))
    x0 = torch.minimum(out[:, 0], out[:, 2])
    x1 = torch.maximum(out[:, 0], out[:, 2])
    y0 = torch.minimum(out[:, 1], out[:, 3])
    y1 = torch.maximum(out[:, 1], out[:, 3])
    out = torch.stack([x0, y0, x1, y1], dim=1)
    out[~nonempty] = 0.0
    return out


def sample_error_points(
    pred: torch.Tensor, gt: torch.Tensor, generator: Optional[torch.Generator] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """One point drawn uniformly from each error region ``pred xor gt`` (training's corrective clicks).

    Arguments:
        pred: B x H x W bool, the current prediction.
        gt: B x H x W bool, the ground truth, same frame.
        generator: optional ``torch.Generator``.

    Returns:
        coords: B x 1 x 2 float ``(x, y)``.
        labels: B x 1 long: 1 where the point is a false negative (``gt & ~pred``, a positive click),
        0 where it is a false positive, -1 (padding, coords 0) where the prediction is already exact.
    """
    pred = _check_masks(pred, "pred")
    gt = _check_masks(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt must have the same shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    error = pred ^ gt
    x, y, valid = _sample_uniform(error, 1, generator)
    batch = torch.arange(gt.shape[0], device=gt.device)[:, None]
    labels = gt[batch, y, x].long()  # inside the error region: gt True means a false negative
    coords = torch.stack([x, y], dim=-1).float()
    coords[~valid] = 0.0
    labels[~valid] = -1
    return coords, labels


def _to_numpy_mask(mask: ArrayLike, name: str) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must have shape HxW, got {mask.shape}")
    return mask.astype(bool)


def _interior_distance(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of each foreground pixel to the nearest background pixel, the image border
    counting as background (the mask is padded by one background pixel)."""
    padded = np.pad(mask, 1, mode="constant", constant_values=False)
    return distance_transform_edt(padded)[1:-1, 1:-1]


def center_point(mask: ArrayLike) -> Tuple[float, float]:
    """The point farthest from the mask's boundary: the evaluation's first click.

    Arguments:
        mask: H x W bool (numpy array or tensor).

    Returns:
        ``(x, y)`` floats, pixel indices. Ties go to the first pixel in row-major order.

    Raises:
        ValueError: if the mask is empty.
    """
    m = _to_numpy_mask(mask, "mask")
    if not m.any():
        raise ValueError("center_point: mask is empty, there is no interior point")
    dist = _interior_distance(m)
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return float(x), float(y)


def next_click(pred: ArrayLike, gt: ArrayLike) -> Optional[Tuple[Tuple[float, float], int]]:
    """The evaluation's corrective click (RITM protocol, used by SAM's point-prompt evaluation).

    The distance transforms of the false negatives (``gt & ~pred``) and of the false positives
    (``pred & ~gt``) are computed separately (image border counts as boundary); the click goes to the
    farthest-from-boundary point of whichever has the larger maximum. A tie goes to the false
    positives, as in RITM. Ties between pixels go to the first in row-major order.

    Arguments:
        pred: H x W bool, the current prediction (numpy array or tensor).
        gt: H x W bool, the ground truth.

    Returns:
        ``((x, y), label)`` with label 1 (positive click, on a false negative) or 0 (negative click, on a
        false positive); ``None`` when the prediction is exact.
    """
    p = _to_numpy_mask(pred, "pred")
    g = _to_numpy_mask(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape, got {p.shape} and {g.shape}")
    fn = g & ~p
    fp = p & ~g
    if not fn.any() and not fp.any():
        return None
    fn_dist = _interior_distance(fn)
    fp_dist = _interior_distance(fp)
    positive = fn_dist.max() > fp_dist.max()
    dist = fn_dist if positive else fp_dist
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return (float(x), float(y)), int(positive)


def next_clicks(pred: ArrayLike, gt: ArrayLike) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`next_click` for a batch.

    Arguments:
        pred: B x H x W bool; gt: B x H x W bool.

    Returns:
        coords: B x 1 x 2 float ``(x, y)``; labels: B x 1 long (1, 0, or -1 with coords 0 where exact).
    """
    if pred.shape != gt.shape or len(pred.shape) != 3:
        raise ValueError(f"pred and gt must both be BxHxW, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    coords = torch.zeros(pred.shape[0], 1, 2)
    labels = torch.full((pred.shape[0], 1), -1, dtype=torch.long)
    for i in range(pred.shape[0]):
        click = next_click(pred[i], gt[i])
        if click is not None:
            coords[i, 0] = torch.tensor(click[0])
            labels[i, 0] = click[1]
    return coords, labels
