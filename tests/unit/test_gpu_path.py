"""The GPU code path, forced onto the CPU: device choice, autocast, the GradScaler, and the GPU suite's
parity / precision / timing functions on the tiny model, so that none of it rots on a machine without CUDA."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from samkit import device as sd
from tools import gpu_suite as gs


# --- device choice ---------------------------------------------------------------------------------
def test_pick_device_cpu_and_auto(monkeypatch):
    assert sd.pick_device("cpu") == torch.device("cpu")
    assert sd.pick_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sd.pick_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="is_available"):
        sd.pick_device("cuda")
    with pytest.raises(ValueError, match="not a device name"):
        sd.pick_device("gpu0")
    with pytest.raises(TypeError, match="device must be"):
        sd.pick_device(0)


def _fake_cuda(monkeypatch, capability, bf16):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake Card")


def test_auto_dtype_per_card(monkeypatch):
    assert sd.autocast_dtype("cpu") is None
    assert sd.autocast_dtype("cpu", "bf16") is torch.bfloat16
    assert sd.autocast_dtype("cpu", "fp16") is torch.float16
    assert sd.autocast_dtype("cpu", "none") is None
    with pytest.raises(ValueError, match="amp="):
        sd.autocast_dtype("cpu", "fp8")
    cuda = torch.device("cuda", 0)
    _fake_cuda(monkeypatch, (7, 5), bf16=False)          # Colab's T4
    assert sd.pick_device("auto") == torch.device("cuda")
    assert sd.autocast_dtype(cuda) is torch.float16
    with pytest.raises(ValueError, match="bfloat16"):
        sd.autocast_dtype(cuda, "bf16")
    with pytest.raises(ValueError, match="1 CUDA device"):
        sd.pick_device("cuda:3")
    _fake_cuda(monkeypatch, (7, 5), bf16=True)           # emulated bf16 on a pre-Ampere card: still fp16
    assert sd.autocast_dtype(cuda) is torch.float16
    assert not sd.native_bf16(cuda)
    with pytest.raises(ValueError, match="no native bfloat16"):
        sd.autocast_dtype(cuda, "bf16")                  # forced bf16 would be emulated: refused
    assert sd.make_scaler("cpu", sd.autocast_dtype(cuda)).is_enabled()   # fp16 trains with loss scaling
    _fake_cuda(monkeypatch, (8, 0), bf16=True)           # A100
    assert sd.autocast_dtype(cuda) is torch.bfloat16
    assert sd.autocast_dtype(cuda, "none") is None


def test_autocast_bf16_on_cpu():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with sd.autocast("cpu", torch.bfloat16):
        assert (a @ b).dtype is torch.bfloat16
    with sd.autocast("cpu", None):
        assert (a @ b).dtype is torch.float32
    with pytest.raises(ValueError, match="autocast dtype"):
        sd.autocast("cpu", torch.float64)


def test_grad_scaler_enabled_only_for_fp16():
    assert not sd.make_scaler("cpu", None).is_enabled()
    assert not sd.make_scaler("cpu", torch.bfloat16).is_enabled()
    off = sd.make_scaler("cpu", torch.bfloat16)
    loss = torch.tensor(2.0)
    assert off.scale(loss) is loss                        # pass-through when disabled

    scaler = sd.make_scaler("cpu", torch.float16)
    assert scaler.is_enabled()
    assert float(scaler.scale(loss)) == pytest.approx(2.0 * scaler.get_scale())
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=0.1)
    start = scaler.get_scale()
    w.grad = torch.tensor([float("inf"), 1.0, 1.0])        # an overflowed fp16 gradient: the step is skipped
    scaler.step(opt)
    scaler.update()
    assert torch.equal(w.detach(), torch.ones(3))
    assert scaler.get_scale() < start
    w.grad = torch.full((3,), scaler.get_scale())          # a finite scaled gradient of 1: the step happens
    scaler.step(opt)
    scaler.update()
    assert torch.allclose(w.detach(), torch.full((3,), 0.9))


def test_training_and_notebooks_use_the_same_policy(monkeypatch, tmp_path):
    from samkit import notebook_utils
    from samkit.train import TrainConfig

    assert TrainConfig(amp="auto").amp == "auto" and TrainConfig.from_dict({"amp": "auto"}).amp == "auto"
    with pytest.raises(ValueError, match="auto, none, bf16, fp16"):
        TrainConfig.from_dict({"amp": "fp8"})
    session = notebook_utils.setup(model=None, device="cpu", out_dir=tmp_path, verbose=False)
    assert session.amp is None                               # float32 on the CPU
    _fake_cuda(monkeypatch, (7, 5), bf16=True)               # a T4: float16, even where bf16 is emulated
    assert notebook_utils.autocast_dtype(torch.device("cuda", 0)) is torch.float16


def test_time_calls_counts_warmup_and_repeats():
    calls = []
    times = sd.time_calls(lambda: calls.append(1), repeat=3, warmup=2)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)
    slow = sd.time_calls(lambda: __import__("time").sleep(0.02), repeat=2, warmup=0, device="cpu")
    assert min(slow) >= 0.019


def test_describe_device_cpu():
    text = sd.describe_device("cpu")
    assert text.startswith("cpu") and torch.__version__ in text


# --- the GPU suite on the tiny model, on the CPU -----------------------------------------------------
def micro_model():
    """A SAM of the same design, far smaller than ``tiny`` (64 px input, 8x8 embedding), so these tests stay
    fast on a busy 2-core CPU; perturbed like the parity tests' models."""
    from samkit.model.configs import DecoderConfig, SamConfig, ViTConfig
    from samkit.model.sam import build_sam

    cfg = SamConfig("micro", ViTConfig(img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, window_size=4,
                                       global_attn_indexes=(1,), out_chans=32),
                    DecoderConfig(prompt_embed_dim=32, transformer_mlp_dim=64, transformer_num_heads=2,
                                  iou_head_hidden_dim=32))
    torch.manual_seed(1)
    return gs.perturb_(build_sam(cfg), seed=1, std=0.05).eval()


@pytest.fixture(scope="module")
def tiny():
    return micro_model()


@pytest.fixture(scope="module")
def image():
    return gs.parity_image(48, 64, seed=1)


def test_run_prompts_shapes(tiny, image):
    prompts = gs.parity_prompts(*image.shape[:2])
    ref = gs.run_prompts(tiny, image, prompts)
    assert ref["embedding"].shape == (1, 32, 8, 8)
    assert all(lg.shape[1:] == image.shape[:2] for lg in ref["logits"])
    assert ref["logits"][-1].shape[0] == 1 and ref["logits"][0].shape[0] == 3  # single- vs multimask


def test_compare_outputs_tolerance_and_margin(tiny, image):
    """What the parity check accepts: float32 round-off (well under 1e-3) and masks that differ only where
    the reference logit is within the margin of the threshold; it rejects anything larger."""
    ref = gs.run_prompts(tiny, image, gs.parity_prompts(*image.shape[:2]))
    rng = np.random.default_rng(0)
    noisy = {"embedding": ref["embedding"] + torch.from_numpy(rng.uniform(-4e-4, 4e-4, ref["embedding"].shape))
             .float(), "logits": [lg + rng.uniform(-4e-4, 4e-4, lg.shape).astype(np.float32)
                                  for lg in ref["logits"]]}
    close = gs.compare_outputs(ref, noisy)
    assert close["ok"] and 0 < close["logits_max_abs"] <= 4e-4 and close["mask_mismatch"] == 0

    near_zero = [lg.copy() for lg in ref["logits"]]
    a = near_zero[0]
    a[0, 0, 0] = 5e-3                                         # within the 1e-2 margin: a flip is forgiven
    flipped = [lg.copy() for lg in near_zero]
    flipped[0][0, 0, 0] = -5e-3
    same = gs.compare_outputs({"embedding": ref["embedding"], "logits": near_zero},
                              {"embedding": ref["embedding"], "logits": flipped}, atol=float("inf"))
    assert same["ok"] and same["mask_mismatch"] == 0
    a[0, 0, 0] = 5e-1                                         # a sure pixel that flips is a mismatch
    flipped[0][0, 0, 0] = -5e-1
    diff = gs.compare_outputs({"embedding": ref["embedding"], "logits": near_zero},
                              {"embedding": ref["embedding"], "logits": flipped}, atol=float("inf"))
    assert not diff["ok"] and diff["mask_mismatch"] == 1

    shifted = {"embedding": ref["embedding"] + 2e-3, "logits": [lg.copy() for lg in ref["logits"]]}
    assert not gs.compare_outputs(ref, shifted)["ok"]        # an embedding off by 2e-3 fails the 1e-3 tolerance
    negated = {"embedding": ref["embedding"], "logits": [-lg for lg in ref["logits"]]}
    cmp = gs.compare_outputs(ref, negated, atol=float("inf"))
    assert not cmp["ok"] and cmp["mask_mismatch"] > 0 and cmp["mask_iou_min"] < 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (make test-gpu runs it there)")
def test_parity_cuda_against_cpu(tiny, image):
    result = gs.check_parity("cuda", model=tiny, image=image)
    assert result["ok"], result
    assert result["reference"] == "cpu" and result["device"].startswith("cuda")


def test_precision_function_bf16_on_cpu(tiny, image):
    result = gs.check_precision("cpu", amp="bf16", model=tiny, image=image)
    assert result["dtype"] == "bfloat16"
    assert result["ok"] and result["mask_iou_min"] >= 0.9
    assert 0 < result["logits_max_abs"] < 1.0                # bf16 differs from fp32, but not by much
    none = gs.check_precision("cpu", amp="auto", model=tiny, image=image)
    assert none["dtype"] is None and none["logits_max_abs"] == 0.0


def test_timing_functions(tiny, image):
    enc = gs.time_encoder(tiny, None, repeat=1, warmup=0)
    assert enc["images_per_s"] > 0 and enc["batch_size"] == 1
    click = gs.time_click(tiny, torch.bfloat16, image=image, repeat=2, warmup=1)
    assert 0 < click["ms_median"] <= click["ms_p90"] and click["dtype"] == "bfloat16"


@pytest.mark.slow
def test_training_timing_on_cpu(tmp_path):
    result = gs.time_training("cpu", amp="none", out_dir=str(tmp_path), model="tiny", train_parts="decoder",
                              epochs=1, batch_size=1, masks_per_image=1, n_rounds=2, no_point_rounds=1,
                              warmup_steps=1, eval_every=-1,
                              data=dict(kind="scenes", n_images=1, n_val=1, image_size=64, cache_in_memory=True))
    assert result["steps"] == 1 and result["seconds_loop"] > 0 and np.isfinite(result["final_loss"])
    assert (tmp_path / "train" / "model.pth").is_file()


def test_suite_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gs, "perturbed_model", lambda name, **kw: micro_model())
    monkeypatch.setattr(gs, "parity_image", lambda *a, **kw: np.full((40, 56, 3), 90, np.uint8))
    assert gs.main(["--device", "cuda"]) == 2                # no CUDA: a clear error, not a traceback
    assert "--device cpu --quick" in capsys.readouterr().err
    out = tmp_path / "gpu"
    code = gs.main(["--device", "cpu", "--quick", "--skip-training", "--out", str(out)])
    printed = capsys.readouterr().out
    report = json.loads((out / "gpu.json").read_text())
    assert code == 0 and report["ok"], report.get("failures")
    # tiny: the --quick default
    assert report["card"] == "cpu" and report["model"] == "tiny" and report["amp"] == "bf16"
    assert report["timings"]["encoder"]["images_per_s"] > 0 and "notebooks" not in report
    assert "about 20 s on a T4" in printed and "parity cpu vs cpu" in printed
