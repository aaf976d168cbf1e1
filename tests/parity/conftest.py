"""Shared fixtures: the official implementation with random weights, saved as a checkpoint file."""
from __future__ import annotations

import pytest
import torch

from samkit.testing import parity_image  # noqa: F401  (shared with benchmarks)
from samkit.testing import perturb_ as randomize_


@pytest.fixture(scope="session")
def official_vit_b(tmp_path_factory):
    """(official Sam vit_b with random weights, path of its saved state_dict)."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    sam = randomize_(sam_model_registry["vit_b"]()).eval()
    path = tmp_path_factory.mktemp("ckpt") / "sam_vit_b_random.pth"
    torch.save(sam.state_dict(), path)
    return sam, path
