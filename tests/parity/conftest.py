"""Shared fixtures: the official implementation with random weights, saved as a checkpoint file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

segment_anything = pytest.importorskip("segment_anything", reason="the parity tests need segment-anything==1.0 "
                                        "(installed by `make test`)")


def randomize_(module: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Perturb every parameter (the default init leaves rel-pos tables and pos_embed at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return module


def parity_image(h: int = 480, w: int = 640, seed: int = 0) -> np.ndarray:
    """A 640x480 test picture with structure (shapes over a gradient) so masks are not trivial."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
    for _ in range(6):
        cx, cy, r = rng.integers(0, w), rng.integers(0, h), rng.integers(30, 120)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 255, 3)
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def official_vit_b(tmp_path_factory):
    """(official Sam vit_b with random weights, path of its saved state_dict)."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = randomize_(sam_model_registry["vit_b"]()).eval()
    path = tmp_path_factory.mktemp("ckpt") / "sam_vit_b_random.pth"
    torch.save(sam.state_dict(), path)
    return sam, path
