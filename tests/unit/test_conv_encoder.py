"""The embedded tiny: SAM's prompt encoder and mask decoder on a convolutional encoder with a 64 x 64 embedding."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import samkit
from samkit import checkpoints, cli
from samkit.data import SceneGenerator
from samkit.model import ConvEncoder
from samkit.model.configs import get_config
from samkit.model.sam import build_sam

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam(get_config("tiny")).eval()


@pytest.fixture(scope="module")
def v2():
    """tiny without its context blocks, the model tiny grows from."""
    torch.manual_seed(1)
    return build_sam(get_config("tiny_v2")).eval()


def scene(size=256):
    image, masks = SceneGenerator(size=size, seed=5)(0)
    ys, xs = np.nonzero(masks[0])
    return image, np.array([[xs.mean(), ys.mean()]])


def test_encoder_gives_an_eighth_resolution_embedding():
    enc = ConvEncoder(img_size=256, widths=(8, 16, 24, 32), depths=(1, 1, 1, 1), out_chans=12)
    assert enc(torch.zeros(2, 3, 256, 256)).shape == (2, 12, 32, 32)
    with pytest.raises(ValueError, match="4 stage widths"):
        ConvEncoder(widths=(8, 16, 24), depths=(1, 1, 1))


def test_config_has_the_official_64_grid_at_512_px():
    cfg = get_config("tiny")
    assert (cfg.img_size, cfg.embedding_size, cfg.low_res_size) == (512, 64, 256)
    assert cfg.at_resolution(256).embedding_size == 32
    with pytest.raises(ValueError, match="multiple of 32"):
        cfg.at_resolution(272)


def test_size_fits_the_embedded_budget(model):
    n = sum(p.numel() for p in model.parameters())
    assert 3e6 < n < 6e6   # stored as float16 (samkit/assets/sam_tiny.pt): 12 MB, under the 20 MB budget


def test_predictor_runs_and_fast_equals_plain(model):
    image, point = scene()
    lows = []
    for fast in (True, False):
        p = samkit.Predictor(model, fast=fast)
        p.set_image(image)
        assert p.features.shape == (1, 96, 64, 64)
        masks, iou, low = p.predict(point_coords=point, point_labels=np.array([1]))
        assert masks.shape == (3, 256, 256) and iou.shape == (3,) and low.shape == (3, 256, 256)
        lows.append(low)
    np.testing.assert_allclose(lows[0], lows[1], atol=1e-3)


def test_checkpoints_name_the_model(model, tmp_path):
    from samkit.model_card import load_candidate

    state = model.state_dict()
    assert checkpoints.guess_model_name(state)[0] == "tiny"
    path = tmp_path / "conv.pth"
    torch.save(state, path)
    loaded = samkit.load_model("tiny", checkpoint=path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), state.values()))
    assert load_candidate(str(path)).name == "tiny"
    v1 = tmp_path / "v1.pth"
    torch.save(samkit.build_model("tiny_v1").state_dict(), v1)
    assert checkpoints.guess_model_name(torch.load(v1, weights_only=True))[0] == "tiny_v1"
    with pytest.raises(FileNotFoundError, match="configs/tiny_v1_phase4.yaml"):
        samkit.load_model("tiny_v1")


def test_layer_decay_and_drop_path_reach_every_stage(model):
    from samkit.train.loop import param_groups

    enc = model.image_encoder
    assert enc.layer_id("stages.0.down.0.0.weight") == 0 and enc.layer_id("stages.3.blocks.1.conv1.0.weight") == 3
    assert enc.layer_id("neck.0.weight") == 5
    enc.set_drop_path(0.2)
    rates = [b.drop_path for s in enc.stages for b in s.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    enc.set_drop_path(0.0)
    groups = param_groups(model, lr=1e-3, weight_decay=0.1, layer_decay=0.5)
    assert len({g["lr"] for g in groups}) > 3


def test_onnx_export_of_the_conv_encoder(model, tmp_path):
    pytest.importorskip("onnxruntime")
    from samkit.onnx import OnnxPredictor, export_decoder, export_encoder

    small = build_sam(get_config("tiny").at_resolution(256)).eval()
    small.load_state_dict(model.state_dict())
    image, point = scene()
    ref = samkit.Predictor(small, cache=False)
    ref.set_image(image)
    _, _, low_ref = ref.predict(point_coords=point, point_labels=np.array([1]))
    p = OnnxPredictor(export_decoder(small, tmp_path / "decoder.onnx", return_single_mask=False),
                      export_encoder(small, tmp_path / "encoder.onnx"))
    p.set_image(image)
    _, _, low = p.predict(point_coords=point, point_labels=np.array([1]))
    np.testing.assert_allclose(low[1:], low_ref, atol=2e-3)


@pytest.mark.slow
def test_cli_trains_the_tiny_config_then_resumes(tmp_path, capsys):
    v1 = tmp_path / "tiny_v1.pth"
    torch.save(samkit.build_model("tiny_v1").state_dict(), v1)
    overrides = ["--set", f"grow_from={v1}", "--set", f"out_dir={tmp_path / 'run'}", "--set", "max_steps=1",
                 "--set", "batch_size=1",
                 "--set", "data.n_images=1", "--set", "data.n_val=0", "--set", "data.image_size=64",
                 "--set", "img_size=64", "--set", "masks_per_image=1", "--set", "n_rounds=1",
                 "--set", "progress=false"]
    assert cli.main(["train", str(CONFIGS / "tiny.yaml"), *overrides]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 1 and Path(summary["model"]).exists()
    # configs/tiny.yaml is the first convolutional phase: it trains tiny without its context blocks (tiny_v2)
    assert checkpoints.guess_model_name(torch.load(summary["model"], weights_only=True))[0] == "tiny_v2"
    assert cli.main(["train", str(CONFIGS / "tiny.yaml"), *overrides, "--set", "max_steps=2", "--resume"]) == 0
    v2 = json.loads(capsys.readouterr().out)
    assert v2["steps"] == 2
    # the last phase grows the embedded tiny from it
    overrides[1], overrides[3] = f"grow_from={v2['model']}", f"out_dir={tmp_path / 'ctx'}"
    assert cli.main(["train", str(CONFIGS / "tiny_ctx.yaml"), *overrides, "--set", "stop_after=1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert checkpoints.guess_model_name(torch.load(summary["model"], weights_only=True))[0] == "tiny"


def test_training_grows_tiny_from_tiny_v1_decoder(tmp_path):
    from samkit.train.config import TrainConfig
    from samkit.train.loop import build_training_model

    torch.manual_seed(2)
    tiny = samkit.build_model("tiny_v1").state_dict()
    torch.save(tiny, tmp_path / "tiny_v1.pth")
    grown = build_training_model(TrainConfig(model="tiny", grow_from=str(tmp_path / "tiny_v1.pth"),
                                             train_parts="all", img_size=256)).state_dict()
    shared = [k for k in tiny if not k.startswith("image_encoder.")]
    assert shared and all(torch.equal(grown[k], tiny[k]) for k in shared)   # prompt encoder + decoder
    assert any(k.startswith("image_encoder.stages.") for k in grown)          # a fresh conv encoder


def test_tiny_wide_grows_from_tiny_v2_and_predicts_what_it_does(v2, tmp_path):
    """Widening adds channels whose outgoing weights start at zero: the grown model's masks equal tiny_v2's."""
    from samkit.train.config import TrainConfig
    from samkit.train.loop import build_training_model

    model = v2
    path = tmp_path / "tiny_v2.pth"
    torch.save(model.state_dict(), path)
    wide = build_training_model(TrainConfig(model="tiny_wide", grow_from=str(path), train_parts="all")).eval()
    assert checkpoints.guess_model_name(wide.state_dict())[0] == "tiny_wide"
    assert sum(p.numel() for p in wide.parameters()) > 1.5 * sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        torch.testing.assert_close(wide.image_encoder(x), model.image_encoder(x), rtol=1e-4, atol=1e-5)
    # the new channels compute something (their inputs are not zero), so training can use them
    assert wide.image_encoder.stages[3].blocks[0].conv1[0].weight[224:].abs().sum() > 0
    # a narrower model does not fit into a wider one's place the other way round
    with pytest.raises(checkpoints.StateDictMismatchError):
        checkpoints.load_into(model, wide.state_dict())


def test_tiny_grows_from_tiny_v2_and_predicts_what_it_does(v2, tmp_path):
    """The context blocks' output projections start at zero: the grown model's embedding equals tiny_v2's, and
    the new parameters, and only they, train at lr * new_lr_scale."""
    from samkit.train.config import TrainConfig
    from samkit.train.loop import build_training_model, param_groups

    model = v2
    path = tmp_path / "tiny_v2.pth"
    torch.save(model.state_dict(), path)
    cfg = TrainConfig(model="tiny", grow_from=str(path), train_parts="all", new_lr_scale=10.0)
    ctx = build_training_model(cfg).eval()
    assert checkpoints.guess_model_name(ctx.state_dict())[0] == "tiny"
    assert checkpoints.guess_model_name(model.state_dict())[0] == "tiny_v2"
    # the old embedded weights do not load as tiny: the error names what they are
    with pytest.raises(checkpoints.StateDictMismatchError, match="tiny_v2"):
        checkpoints.load_into(samkit.build_model("tiny"), model.state_dict())
    assert ctx.grown_keys and all(k.startswith("image_encoder.context.") for k in ctx.grown_keys)
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        torch.testing.assert_close(ctx.image_encoder(x), model.image_encoder(x))
    groups = param_groups(ctx, 1e-4, 0.05, lr_scales={k: cfg.new_lr_scale for k in ctx.grown_keys})
    lr_of = {n: g["lr"] for g in groups for n in g["names"]}
    assert {n for n, lr in lr_of.items() if lr == pytest.approx(1e-3)} == set(ctx.grown_keys)
    assert all(lr == pytest.approx(1e-4) for n, lr in lr_of.items() if n not in ctx.grown_keys)
    # after a step of training the blocks do change the embedding: every cell then depends on the whole image
    blk = ctx.image_encoder.context[0]
    torch.nn.init.normal_(blk.proj.weight, std=0.02)
    f = torch.randn(1, 224, 16, 16)
    g = f.clone()
    g[..., 15, 15] += torch.randn(1, 224)                   # change one far corner cell
    with torch.no_grad():
        assert (blk(f) - blk(g))[..., 0, 0].abs().max() > 1e-4
    with pytest.raises(ValueError, match="new_lr_scale"):
        TrainConfig(model="tiny", new_lr_scale=0.0).validate()
    with pytest.raises(ValueError, match="new_lr_scale.*grow_from"):
        TrainConfig(model="tiny", new_lr_scale=10.0).validate()
    with pytest.raises(FileNotFoundError, match="configs/tiny_min3.yaml"):
        samkit.load_model("tiny_v2")
    with pytest.raises(ValueError, match="multiple of num_heads"):
        from samkit.model.conv_encoder import ContextBlock
        ContextBlock(100, 7)
