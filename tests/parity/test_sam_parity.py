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
def predictors(official_vit_b):
    from segment_anything import SamPredictor

    official, path = official_vit_b
    ours = samkit.load_model("vit_b", checkpoint=path)
    image = parity_image()
    p_off, p_ours = SamPredictor(official), samkit.Predictor(ours)
    p_off.set_image(image)
    p_ours.set_image(image)
    return p_off, p_ours


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
