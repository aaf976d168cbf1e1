"""samkit's vit_t against MobileSAM's own code (the ``mobile_sam`` module of the ``mobilesam-mirror`` package).

The official vit_t is built with seeded random weights (every parameter and BatchNorm statistic
perturbed, so no branch is an identity), its full ``state_dict()`` is saved to a file, and samkit loads
that file with ``strict=True``: the image encoder alone, then (when the full builder exists) the whole
model, compared through the two predictors.
"""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import samkit
from samkit.model.tiny_vit import TinyViT

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # timm warns that MobileSAM re-registers its TinyViT model names
    from mobile_sam import SamPredictor, sam_model_registry

pytestmark = pytest.mark.parity

ATOL = 1e-4


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Perturb every parameter and BatchNorm statistic (the attention biases start at zero: make them matter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("attention_biases"):
                p.add_(noise)
            elif p.ndim == 1:
                p.add_(0.1 * noise)  # biases, norm and BatchNorm scales
            else:
                p.add_(0.02 * noise)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


@pytest.fixture(scope="module")
def official():
    """The official vit_t Sam with random weights, in eval mode, and its state dict saved to a file."""
    torch.manual_seed(0)
    model = sam_model_registry["vit_t"]()
    randomize_(model, seed=0)
    # The official attention caches its bias table when .eval() is called: call it after changing weights.
    model.eval()
    return model


@pytest.fixture(scope="module")
def checkpoint(official, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("vit_t") / "mobile_sam_random.pt"
    torch.save(official.state_dict(), path)
    return path


def encoder_state(path: Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    prefix = "image_encoder."
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def test_encoder_state_dict_names_match(official, checkpoint):
    state = encoder_state(checkpoint)
    mine = TinyViT()
    assert set(mine.state_dict()) == set(state)
    assert {"norm_head.weight", "head.weight"} <= set(state)  # the unused classifier is in the checkpoint
    mine_buffers = dict(mine.named_buffers())
    for name, idx in official.image_encoder.named_buffers():
        if name.endswith("attention_bias_idxs"):  # not saved: both sides rebuild it from the window size
            assert torch.equal(mine_buffers[name], idx), name


def test_encoder_matches_official(official, checkpoint):
    mine = TinyViT()
    mine.load_state_dict(encoder_state(checkpoint), strict=True)
    mine.eval()
    x = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = official.image_encoder(x)
        actual = mine(x)
    assert actual.shape == expected.shape == (1, 256, 64, 64)
    assert expected.std() > 0.1  # a real signal, not a near-constant map
    diff = (actual - expected).abs().max().item()
    assert diff <= ATOL, f"max abs diff {diff:.2e}"


PROMPTS = {
    "one point, multimask": dict(point_coords=np.array([[310.0, 200.0]]), point_labels=np.array([1]),
                                 multimask_output=True),
    "two points, single mask": dict(point_coords=np.array([[310.0, 200.0], [100.0, 330.0]]),
                                    point_labels=np.array([1, 0]), multimask_output=False),
    "box": dict(box=np.array([80.0, 60.0, 420.0, 300.0]), multimask_output=False),
    "box and point, multimask": dict(point_coords=np.array([[250.0, 180.0]]), point_labels=np.array([0]),
                                     box=np.array([80.0, 60.0, 420.0, 300.0]), multimask_output=True),
    # fed back: the official low-res logits of the previous prompt (filled in by the test)
    "point and previous mask": dict(point_coords=np.array([[310.0, 200.0]]), point_labels=np.array([1]),
                                    multimask_output=False),
}


@pytest.mark.slow
@pytest.mark.parametrize("fast", [True, False], ids=["fast", "plain"])
def test_predictor_matches_official(official, checkpoint, fast):
    model = samkit.load_model("vit_t", checkpoint=checkpoint)  # loads every key strictly
    mine = samkit.Predictor(model, cache=False, fast=fast)
    theirs = SamPredictor(official)
    image = np.random.default_rng(0).integers(0, 256, size=(375, 500, 3), dtype=np.uint8)
    mine.set_image(image)
    theirs.set_image(image)
    assert mine.input_size == theirs.input_size and mine.original_size == theirs.original_size
    emb_diff = (mine.get_image_embedding() - theirs.get_image_embedding()).abs().max().item()
    assert emb_diff <= ATOL, f"image embedding: max abs diff {emb_diff:.2e}"

    previous = None
    for name, kwargs in PROMPTS.items():
        if name == "point and previous mask":
            kwargs = {**kwargs, "mask_input": previous[:1]}
        logits_t, iou_t, low_t = theirs.predict(**kwargs, return_logits=True)
        logits_m, iou_m, low_m = mine.predict(**kwargs, return_logits=True)
        masks_m, _, _ = mine.predict(**kwargs)
        masks_t = logits_t > official.mask_threshold  # what SamPredictor.predict returns without return_logits
        previous = low_t
        assert masks_m.shape == masks_t.shape == (3 if kwargs["multimask_output"] else 1, 375, 500), name
        assert masks_m.dtype == bool, name
        for what, a, b in (("low-res logits", low_m, low_t), ("logits", logits_m, logits_t), ("iou", iou_m, iou_t)):
            diff = np.abs(a - b).max()
            assert diff <= ATOL, f"{name}: {what} max abs diff {diff:.2e}"
        # Masks are identical, except where the logit is within float noise of the threshold.
        differ = masks_m != masks_t
        assert not (differ & (np.abs(logits_t) > ATOL)).any(), f"{name}: masks differ"
        assert differ.mean() <= 1e-4, f"{name}: {differ.sum()} pixels differ"
