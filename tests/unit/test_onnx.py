"""ONNX export: onnxruntime reproduces the PyTorch model (tiny configuration, random weights)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from samkit.onnx import OnnxPredictor, export_decoder, export_encoder, read_metadata

H, W = 120, 160  # original image size used throughout


def random_tiny() -> samkit.Sam:
    torch.manual_seed(0)
    model = samkit.build_model("tiny").eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the default init leaves rel-pos tables and embeddings at zero / identical
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def make_image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.uint8)
    img[:] = rng.integers(0, 255, 3)
    img[30:90, 40:110] = rng.integers(0, 255, 3)
    return np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = random_tiny()
    d = tmp_path_factory.mktemp("onnx")
    paths = {
        "single": export_decoder(model, d / "decoder.onnx"),
        "all": export_decoder(model, d / "decoder_all.onnx", return_single_mask=False),
        "encoder": export_encoder(model, d / "encoder.onnx"),
    }
    predictor = samkit.Predictor(model, cache=False)
    predictor.set_image(make_image())
    return model, predictor, paths


def onnx_predictor(exported, which: str) -> OnnxPredictor:
    model, predictor, paths = exported
    p = OnnxPredictor(paths[which], paths["encoder"])
    p.set_embedding(predictor.get_image_embedding(), (H, W))
    return p


def assert_masks_match(logits_ref: np.ndarray, logits_onnx: np.ndarray) -> None:
    """Logits within 1e-3; thresholded masks equal wherever the logits are not near the threshold."""
    assert logits_ref.shape == logits_onnx.shape
    np.testing.assert_allclose(logits_onnx, logits_ref, atol=1e-3, rtol=0)
    decided = np.abs(logits_ref) > 1e-3
    assert decided.mean() > 0.95
    assert ((logits_ref > 0) == (logits_onnx > 0))[decided].all()


PROMPTS = {
    "point": dict(point_coords=np.array([[70, 60]]), point_labels=np.array([1])),
    "two_points": dict(point_coords=np.array([[70, 60], [20, 100]]), point_labels=np.array([1, 0])),
    "box": dict(box=np.array([35, 25, 115, 95])),
    "box_point": dict(point_coords=np.array([[70, 60]]), point_labels=np.array([1]), box=np.array([35, 25, 115, 95])),
}


@pytest.mark.parametrize("case", list(PROMPTS))
def test_decoder_matches_pytorch_all_tokens(exported, case):
    _, predictor, _ = exported
    onnx_p = onnx_predictor(exported, "all")
    kw = PROMPTS[case]
    m_onnx, iou_onnx, low_onnx = onnx_p.predict(**kw, return_logits=True)
    assert m_onnx.shape == (4, H, W) and iou_onnx.shape == (4,)
    m_multi, iou_multi, low_multi = predictor.predict(**kw, multimask_output=True, return_logits=True)
    decoder = predictor.model.mask_decoder
    decoder.dynamic_multimask_via_stability = False  # token 0 itself, not SAM 2's choice
    try:
        m_single, iou_single, low_single = predictor.predict(**kw, multimask_output=False, return_logits=True)
    finally:
        decoder.dynamic_multimask_via_stability = True
    np.testing.assert_allclose(iou_onnx[1:], iou_multi, atol=1e-4, rtol=0)
    np.testing.assert_allclose(iou_onnx[:1], iou_single, atol=1e-4, rtol=0)
    np.testing.assert_allclose(low_onnx[1:], low_multi, atol=1e-3, rtol=0)
    assert_masks_match(m_multi, m_onnx[1:])
    assert_masks_match(m_single, m_onnx[:1])


def test_decoder_single_mask_selection(exported):
    _, predictor, _ = exported
    onnx_p = onnx_predictor(exported, "single")
    # one click: the best of the three multimask outputs
    kw = PROMPTS["point"]
    m, iou, _ = onnx_p.predict(**kw, return_logits=True)
    m_multi, iou_multi, _ = predictor.predict(**kw, multimask_output=True, return_logits=True)
    best = int(np.argmax(iou_multi))
    assert m.shape == (1, H, W)
    assert abs(iou[0] - iou_multi[best]) < 1e-4
    assert_masks_match(m_multi[best:best + 1], m)
    # more prompts: the single mask the predictor gives (SAM 2's rule on tiny: these random weights leave token 0
    # unstable, so the best multimask output), and token 0 for a model without the rule
    kw = PROMPTS["two_points"]
    m, iou, _ = onnx_p.predict(**kw, return_logits=True)
    m_single, iou_single, _ = predictor.predict(**kw, multimask_output=False, return_logits=True)
    _, iou_all, _ = onnx_predictor(exported, "all").predict(**kw, return_logits=True)
    assert abs(iou[0] - iou_single[0]) < 1e-4
    assert abs(iou[0] - iou_all[0]) > 1e-3 and abs(iou[0] - iou_all[1:].max()) < 1e-4
    assert_masks_match(m_single, m)
    # boolean masks by default
    masks, _, _ = onnx_p.predict(**kw)
    assert masks.dtype == bool and (masks == (m > 0)).all()


def test_decoder_mask_input(exported):
    _, predictor, _ = exported
    onnx_p = onnx_predictor(exported, "all")
    _, _, low = predictor.predict(**PROMPTS["point"], multimask_output=False)
    kw = dict(point_coords=np.array([[70, 60], [90, 70]]), point_labels=np.array([1, 1]), mask_input=low)
    m_ref, iou_ref, low_ref = predictor.predict(**kw, multimask_output=False, return_logits=True)
    m_onnx, iou_onnx, low_onnx = onnx_p.predict(**kw, return_logits=True)
    np.testing.assert_allclose(iou_onnx[:1], iou_ref, atol=1e-4, rtol=0)
    np.testing.assert_allclose(low_onnx[:1], low_ref, atol=1e-3, rtol=0)
    assert_masks_match(m_ref, m_onnx[:1])
    # the mask prompt matters (guards against has_mask_input being ignored)
    m_nomask, _, _ = onnx_p.predict(point_coords=kw["point_coords"], point_labels=kw["point_labels"],
                                    return_logits=True)
    assert np.abs(m_nomask[0] - m_onnx[0]).max() > 1e-2


def test_decoder_other_image_size(exported):
    """orig_im_size is a runtime input: a portrait image of another size is cropped and resized right."""
    model, _, paths = exported
    image = make_image(3)[:, :90].copy()  # 120 x 90, portrait
    predictor = samkit.Predictor(model, cache=False)
    predictor.set_image(image)
    onnx_p = OnnxPredictor(paths["all"])
    onnx_p.set_embedding(predictor.get_image_embedding(), image.shape[:2])
    kw = dict(point_coords=np.array([[40, 50]]), point_labels=np.array([1]))
    m_onnx, _, _ = onnx_p.predict(**kw, return_logits=True)
    m_ref, _, _ = predictor.predict(**kw, multimask_output=True, return_logits=True)
    assert m_onnx.shape == (4, 120, 90)
    assert_masks_match(m_ref, m_onnx[1:])


def test_encoder_matches_pytorch(exported):
    _, predictor, paths = exported
    onnx_p = OnnxPredictor(paths["single"], paths["encoder"])
    onnx_p.set_image(make_image())
    ref = predictor.get_image_embedding().numpy()
    assert onnx_p.features.shape == ref.shape
    # a convolutional encoder: onnxruntime's convolutions and group norms round differently (measured <= 1e-3)
    np.testing.assert_allclose(onnx_p.features, ref, atol=2e-3, rtol=0)
    assert onnx_p.input_size == predictor.input_size


def test_metadata_and_errors(exported, tmp_path):
    model, _, paths = exported
    meta = read_metadata(paths["single"])
    assert meta["samkit_model"] == "tiny" and meta["img_size"] == model.img_size
    assert meta["return_single_mask"] is True
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        OnnxPredictor(tmp_path / "missing.onnx")
    p = OnnxPredictor(paths["single"])
    with pytest.raises(RuntimeError, match="no image is set"):
        p.predict(point_coords=[[1, 1]], point_labels=[1])
    with pytest.raises(RuntimeError, match="encoder_path"):
        p.set_image(make_image())
    with pytest.raises(ValueError, match="embedding must be"):
        p.set_embedding(np.zeros((1, 3, 4, 4), np.float32), (H, W))
    with pytest.raises(TypeError, match="samkit Sam"):
        export_decoder(torch.nn.Linear(2, 2), tmp_path / "x.onnx")
