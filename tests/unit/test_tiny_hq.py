"""tiny_hq: tiny_v1 (the first embedded model, a small ViT) plus a stride-4 detail path, grown from its weights."""
import numpy as np
import pytest
import torch

import samkit
from samkit import checkpoints
from samkit.model.configs import get_config
from samkit.model.image_encoder import pack_detail, unpack_detail
from samkit.model.sam import build_sam
from samkit.testing import grow, scene_click


@pytest.fixture(scope="module")
def tiny():
    """tiny_v1 with random weights (its trained weights are not shipped)."""
    torch.manual_seed(1)
    return samkit.build_model("tiny_v1").eval()


def grown(tiny, perturb: float = 0.0) -> samkit.Sam:
    model, result = grow("tiny_hq", tiny, perturb)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".detail" in k for k in result.missing_keys)
    return model


def predict(model, image, point, fast=True):
    p = samkit.Predictor(model, fast=fast)
    p.set_image(image)
    return p, p.predict(point_coords=point, point_labels=np.array([1]))


def test_pack_and_unpack_detail():
    emb, detail = torch.randn(2, 96, 8, 8), torch.randn(2, 16, 32, 32)
    packed = pack_detail(emb, detail)
    assert packed.shape == (2, 96 + 16 * 16, 8, 8)
    e2, d2 = unpack_detail(packed, 96)
    assert torch.equal(e2, emb) and torch.equal(d2, detail)
    e3, d3 = unpack_detail(emb, 96)
    assert e3 is emb and d3 is None


def test_grown_model_predicts_exactly_what_tiny_v1_does(tiny):
    image, point = scene_click()
    _, (m0, iou0, low0) = predict(tiny, image, point)
    p, (m1, iou1, low1) = predict(grown(tiny), image, point)
    assert p.features.shape == (1, 96 + 16 * 16, 32, 32)
    np.testing.assert_allclose(low1, low0, atol=1e-4)
    np.testing.assert_allclose(iou1, iou0, atol=1e-5)


@pytest.mark.parametrize("prompt", ["point", "box_then_mask"])
def test_detail_path_is_live_and_fast_equals_plain(tiny, prompt):
    image, point = scene_click()
    model = grown(tiny, perturb=0.05)
    lows = []
    for fast in (True, False):
        p = samkit.Predictor(model, fast=fast)
        p.set_image(image)
        if prompt == "point":
            _, _, low = p.predict(point_coords=point, point_labels=np.array([1]))
        else:
            _, _, first = p.predict(box=np.array([20, 20, 200, 180]), multimask_output=False)
            _, _, low = p.predict(point_coords=point, point_labels=np.array([1]), mask_input=first)
        lows.append(low)
    np.testing.assert_allclose(lows[0], lows[1], atol=1e-3)
    _, (_, _, plain_tiny) = predict(tiny, image, point)
    if prompt == "point":
        assert np.abs(lows[0] - plain_tiny).max() > 1e-2   # the perturbed path changes the masks


def test_decoder_refuses_an_embedding_without_its_detail_map(tiny):
    model = grown(tiny)
    pe = model.prompt_encoder.get_dense_pe()
    sparse, dense = model.prompt_encoder(points=(torch.zeros(1, 1, 2), torch.ones(1, 1)), boxes=None, masks=None)
    with pytest.raises(ValueError, match="detail map"):
        model.mask_decoder(torch.zeros(1, 96, 32, 32), pe, sparse, dense, multimask_output=True)


def test_set_embedding_expects_the_packed_channels(tiny):
    p = samkit.Predictor(grown(tiny))
    with pytest.raises(ValueError, match="1 x 352 x 32 x 32"):
        p.set_embedding(torch.zeros(1, 96, 32, 32), (100, 100))
    p.set_embedding(torch.zeros(1, 352, 32, 32), (100, 100))
    masks, _, _ = p.predict(point_coords=np.array([[50, 50]]), point_labels=np.array([1]))
    assert masks.shape == (3, 100, 100)


def test_tiny_hq_has_no_shipped_weights():
    with pytest.raises(FileNotFoundError, match="configs/tiny_hq.yaml"):
        samkit.load_model("tiny_hq")


def test_training_grows_tiny_hq_from_tiny_v1(tiny, tmp_path):
    from samkit.train.config import TrainConfig
    from samkit.train.loop import build_training_model

    path = tmp_path / "tiny_v1.pth"
    torch.save(tiny.state_dict(), path)
    model = build_training_model(TrainConfig(model="tiny_hq", grow_from=str(path), train_parts="all"))
    state, base = model.state_dict(), tiny.state_dict()
    assert all(torch.equal(state[k], v) for k, v in base.items())
    assert torch.count_nonzero(state["mask_decoder.detail_proj.weight"]) == 0
    with pytest.raises(ValueError, match="grow_from"):
        TrainConfig(model="tiny_hq", grow_from="tiny_v1", checkpoint="default").validate()
    with pytest.raises(ValueError, match="grow_from"):
        TrainConfig(model="tiny_hq", grow_from="small").validate()
    with pytest.raises(FileNotFoundError, match="no shipped weights"):
        build_training_model(TrainConfig(model="tiny", grow_from="tiny_hq"))
    with pytest.raises(FileNotFoundError, match="grow_from"):
        build_training_model(TrainConfig(model="tiny_hq", grow_from=str(tmp_path / "missing.pth")))
    junk = tmp_path / "junk.pth"
    torch.save({"w": torch.zeros(2)}, junk)
    with pytest.raises(ValueError, match="not a samkit model"):
        build_training_model(TrainConfig(model="tiny_hq", grow_from=str(junk)))


def test_model_card_tells_tiny_hq_weights_apart(tiny, tmp_path):
    from samkit.model_card import load_candidate

    path = tmp_path / "hq.pth"
    torch.save(grown(tiny).state_dict(), path)
    assert load_candidate(str(path)).name == "tiny_hq"
    assert load_candidate("shipped").name == "tiny"


def test_onnx_export_carries_the_detail_map(tiny, tmp_path):
    pytest.importorskip("onnxruntime")
    from samkit.onnx import OnnxPredictor, export_decoder, export_encoder

    model = grown(tiny, perturb=0.05)
    image, point = scene_click()
    ref = samkit.Predictor(model, cache=False)
    ref.set_image(image)
    _, _, low_ref = ref.predict(point_coords=point, point_labels=np.array([1]))   # the 3 multimask outputs
    p = OnnxPredictor(export_decoder(model, tmp_path / "decoder.onnx", return_single_mask=False),
                      export_encoder(model, tmp_path / "encoder.onnx"))
    p.set_image(image)
    _, _, low = p.predict(point_coords=point, point_labels=np.array([1]))          # all 4 tokens
    np.testing.assert_allclose(low[1:], low_ref, atol=2e-3)


def test_growing_from_weights_of_a_smaller_input_resizes_the_position_table(tmp_path):
    """A position table made at 256 px grows into a 512 px model by resizing, not by widening into a corner."""
    from samkit.train.config import TrainConfig
    from samkit.train.loop import build_training_model

    torch.manual_seed(3)
    small = build_sam(get_config("tiny_v1").at_resolution(256))
    with torch.no_grad():
        small.image_encoder.pos_embed.normal_()  # a trained table (a fresh one is all zeros)
    torch.save(small.state_dict(), tmp_path / "v1_256.pth")
    model = build_training_model(TrainConfig(model="tiny_hq", grow_from=str(tmp_path / "v1_256.pth"),
                                             train_parts="all"))
    key = "image_encoder.pos_embed"
    want, resized = checkpoints.resize_positions({key: small.state_dict()[key]}, model)
    assert resized == [key]
    torch.testing.assert_close(model.state_dict()[key], want[key])
