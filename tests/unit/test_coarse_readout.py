"""tiny_cr: the embedded tiny plus the decoder's coarse read-out of the full-width image side, grown from it."""
import numpy as np
import pytest
import torch

import samkit
from samkit import checkpoints
from samkit.model.configs import CONFIGS, get_config
from samkit.model.sam import build_sam
from samkit.testing import grow, scene_click


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(1)
    return samkit.build_model("tiny").eval()


def grown(tiny, perturb: float = 0.0) -> samkit.Sam:
    model, result = grow("tiny_cr", tiny, perturb)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".coarse_hypernetworks_mlps." in k for k in result.missing_keys)
    return model


def lows(model, image, point, fast):
    p = samkit.Predictor(model, fast=fast)
    p.set_image(image)
    _, iou, low = p.predict(point_coords=point, point_labels=np.array([1]))
    _, _, first = p.predict(box=np.array([20, 20, 200, 180]), multimask_output=False)
    _, _, again = p.predict(point_coords=point, point_labels=np.array([1]), mask_input=first,
                            multimask_output=False)
    return iou, low, first, again


def test_grown_model_predicts_exactly_what_tiny_does(tiny):
    image, point = scene_click()
    for a, b in zip(lows(tiny, image, point, True), lows(grown(tiny), image, point, True)):
        np.testing.assert_allclose(b, a, atol=1e-5)


@pytest.mark.parametrize("fast", [True, False])
def test_coarse_read_out_is_live_and_fast_equals_plain(tiny, fast):
    image, point = scene_click()
    model = grown(tiny, perturb=0.05)
    base = lows(tiny, image, point, fast)
    out = lows(model, image, point, fast)
    assert np.abs(out[1] - base[1]).max() > 0.1  # the new path changes the masks once trained
    other = lows(model, image, point, not fast)
    for a, b in zip(out, other):
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_coarse_logits_are_each_cells_dot_product_upsampled_4x(tiny):
    dec = grown(tiny, perturb=0.05).mask_decoder
    tokens = torch.randn(2, 4, 96)
    src = torch.randn(2, 96, 1, 1).expand(2, 96, 8, 8)  # every cell the same vector: constant logits
    coarse = dec.coarse_masks(tokens, src, range(1, 4))
    assert coarse.shape == (2, 3, 32, 32)
    hyper = torch.stack([dec.coarse_hypernetworks_mlps[i](tokens[:, i]) for i in range(1, 4)], dim=1)
    expected = (hyper * src[:, None, :, 0, 0]).sum(-1)  # B x 3
    torch.testing.assert_close(coarse, expected[..., None, None].expand_as(coarse), atol=1e-5, rtol=1e-5)
    # a cell's change moves only the logits near it
    src2 = src.clone()
    src2[:, :, 0, 0] += 1.0
    diff = (dec.coarse_masks(tokens, src2, range(1, 4)) - coarse).abs().sum((0, 1))
    assert diff[:6, :6].sum() > 0 and diff[8:, :].sum() == 0 and diff[:, 8:].sum() == 0


def test_only_tiny_cr_has_the_coarse_read_out():
    assert [name for name, c in CONFIGS.items() if c.decoder.coarse_readout] == ["tiny_cr"]
    assert not any("coarse" in k for k in build_sam(get_config("vit_t")).state_dict())


def test_weights_are_told_apart_from_tiny(tiny):
    assert checkpoints.guess_model_name(grown(tiny).state_dict())[0] == "tiny_cr"
    assert checkpoints.guess_model_name(tiny.state_dict())[0] == "tiny"
