"""Helpers shared by the parity tests, the benchmarks and the GPU suite.

Parity checks compare samkit with the official code on the *same random weights*; the official default
initialisation leaves the relative-position tables and ``pos_embed`` at zero, so every parameter is perturbed.
"""
from __future__ import annotations

import numpy as np
import torch


def perturb_(module: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Add seeded ``N(0, std)`` noise to every parameter of ``module`` in place; returns it."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return module


def parity_image(h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    """An ``H x W x 3`` uint8 test picture with structure (discs over colour ramps, mild noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
    for _ in range(6):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(30, 120)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def grow(name: str, base: torch.nn.Module, perturb: float = 0.0, seed: int = 0):
    """Samkit model ``name`` with ``base``'s weights loaded into it as a training config's ``grow_from`` loads
    them (``strict=False``): returns the model in eval mode and the load result (``missing_keys``: the parameters
    ``base`` lacks, as initialised; ``perturb`` > 0 adds seeded ``N(0, perturb)`` noise to those only, so that
    a path that starts at zero does something)."""
    from . import checkpoints
    from .model.configs import get_config
    from .model.sam import build_sam

    torch.manual_seed(seed)
    model = build_sam(get_config(name))
    result = checkpoints.load_into(model, base.state_dict(), strict=False)
    if perturb:
        new = set(result.missing_keys)
        with torch.no_grad():
            for key, p in model.named_parameters():
                if key in new:
                    p.add_(perturb * torch.randn_like(p))
    return model.eval(), result


def scene_click(size: int = 256, seed: int = 5):
    """A generated scene and one click at the centroid of its first mask: ``(image, 1 x 2 point)``."""
    from .data import SceneGenerator

    image, masks = SceneGenerator(size=size, seed=seed)(0)
    ys, xs = np.nonzero(masks[0])
    return image, np.array([[xs.mean(), ys.mean()]])
