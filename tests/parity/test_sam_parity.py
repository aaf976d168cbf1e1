"""samkit loads the official vit_b checkpoint format strict and reproduces its outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from tests.parity.conftest import parity_image

pytestmark = pytest.mark.parity

PROMPTS = {
    "point": dict(point_coords=np.array([[320, 240]]), point_labels=np.array([1]), multimask_output=True),
    "point_single": dict(point_coords=np.array([[100, 380]]), point_labels=np.array([1]), multimask_output=False),
    "two_points": dict(point_coords=np.array([[320, 240], [500, 100]]), point_labels=np.array([1, 0]),
                       multimask_output=False),
    "box": dict(box=np.array([100, 80, 420, 400]), multimask_output=False),
    "box_point": dict(point_coords=np.array([[250, 250]]), point_labels=np.array([1]),
                      box=np.array([100, 80, 420, 400]), multimask_output=True),
}


@pytest.fixture(scope="module")
def official_predictor(official_vit_b):
    from segment_anything import SamPredictor

    p_off = SamPredictor(official_vit_b[0])
    p_off.set_image(parity_image())
    return p_off


@pytest.fixture(scope="module")
def ours_vit_b(official_vit_b):
    return samkit.load_model("vit_b", checkpoint=official_vit_b[1])


@pytest.fixture(scope="module", params=[True, False], ids=["fast", "plain"])
def predictors(request, official_predictor, ours_vit_b):
    """(official predictor, samkit predictor) on the same image; samkit's runs the fast path or
    the plain model."""
    p_ours = samkit.Predictor(ours_vit_b, fast=request.param)
    assert (p_ours.fast is None) != request.param
    p_ours.set_image(parity_image())
    return official_predictor, p_ours


def test_state_dict_keys_match(official_vit_b):
    official, _ = official_vit_b
    ours = samkit.build_model("vit_b")
    a, b = official.state_dict(), ours.state_dict()
    assert set(a) == set(b)
    assert all(a[k].shape == b[k].shape for k in a)


def test_image_embeddings_match(predictors):
    p_off, p_ours = predictors
    e_off, e_ours = p_off.get_image_embedding(), p_ours.get_image_embedding()
    assert e_ours.shape == (1, 256, 64, 64)
    assert torch.allclose(e_off, e_ours, atol=1e-4, rtol=0), (e_off - e_ours).abs().max()


@pytest.mark.parametrize("case", list(PROMPTS))
def test_predictions_match(predictors, case):
    p_off, p_ours = predictors
    kw = PROMPTS[case]
    m_off, s_off, l_off = p_off.predict(**kw)
    p_ours.predict(**kw)  # on the fast path, the second call reuses the first layer's image side
    m_ours, s_ours, l_ours = p_ours.predict(**kw)
    assert np.abs(l_off - l_ours).max() <= 1e-4
    assert np.abs(s_off - s_ours).max() <= 1e-4
    # masks identical wherever the logits are not within float error of the threshold
    lg_off = p_off.predict(**kw, return_logits=True)[0]
    decided = np.abs(lg_off) > 1e-4
    assert (m_off == m_ours)[decided].all()
    assert decided.mean() > 0.95  # guards against a vacuous comparison


def test_mask_input_matches(predictors):
    p_off, p_ours = predictors
    _, _, low = p_off.predict(point_coords=np.array([[320, 240]]), point_labels=np.array([1]))
    kw = dict(point_coords=np.array([[320, 240], [400, 300]]), point_labels=np.array([1, 1]),
              mask_input=low[:1], multimask_output=False)
    _, s_off, l_off = p_off.predict(**kw)
    _, s_ours, l_ours = p_ours.predict(**kw)
    assert np.abs(l_off - l_ours).max() <= 1e-4
    assert np.abs(s_off - s_ours).max() <= 1e-4


def test_predict_torch_batched_matches(predictors):
    p_off, p_ours = predictors
    coords = torch.tensor([[[100.0, 100.0]], [[500.0, 600.0]], [[900.0, 300.0]]])
    labels = torch.ones(3, 1, dtype=torch.int)
    boxes = torch.tensor([[50.0, 50.0, 400.0, 400.0], [300.0, 300.0, 900.0, 700.0], [0.0, 0.0, 1000.0, 760.0]])
    a = p_off.predict_torch(coords, labels, boxes, multimask_output=True)
    b = p_ours.predict_torch(coords, labels, boxes, multimask_output=True)
    assert torch.allclose(a[2], b[2], atol=1e-4, rtol=0)
    assert torch.allclose(a[1], b[1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("path", ["plain", "fast", "fast, image side kept"])
@pytest.mark.parametrize("mask_input", [False, True])
def test_decoder_matches_official(official_vit_b, ours_vit_b, path, mask_input):
    """The prompt encoder + mask decoder on a random embedding, 4 prompts on one image (points and
    boxes; with and without mask inputs), against the official modules: samkit's plain model and
    its fast path."""
    from samkit.fast import FastSam, ImageSession

    official, ours = official_vit_b[0], ours_vit_b
    g = torch.Generator().manual_seed(3)
    emb = torch.randn(1, 256, 64, 64, generator=g)
    coords = torch.rand(4, 2, 2, generator=g) * 1000
    labels = torch.tensor([[1, 0], [1, 1], [0, 1], [1, -1]])
    boxes = torch.tensor([[50.0, 60.0, 400.0, 500.0]]) + torch.rand(4, 4, generator=g) * 50
    masks = torch.randn(4, 1, 256, 256, generator=g) * 4 if mask_input else None
    with torch.no_grad():
        sparse, dense = official.prompt_encoder(points=(coords, labels), boxes=boxes, masks=masks)
        pe = official.prompt_encoder.get_dense_pe()
        ref_low, ref_iou = official.mask_decoder(emb, pe, sparse, dense, True)
        if path == "plain":
            low, iou = ours.encode_prompts_and_decode(emb, coords, labels, boxes, masks, True)
        else:
            session = ImageSession(ours, emb, FastSam(ours))
            calls = 3 if path == "fast, image side kept" else 1
            for _ in range(calls):
                low, iou = session.decode(coords, labels, boxes, masks, True)
            assert (session._side is not None) == (calls == 3 and not mask_input)
    assert ref_low.std() > 0.1  # a real signal
    assert torch.allclose(ref_low, low, atol=1e-4, rtol=0), (ref_low - low).abs().max()
    assert torch.allclose(ref_iou, iou, atol=1e-4, rtol=0), (ref_iou - iou).abs().max()
