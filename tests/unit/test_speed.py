"""samkit.speed's decoder ladder, and how the fast path is switched: per predictor, never for the
whole process."""
import ctypes
import sys

import numpy as np
import pytest
import torch

import samkit
from samkit.fast import FastSam, keep_freed_memory
from samkit.speed import RUNGS, decoder_ladder, load_bench


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = samkit.build_model("tiny").eval()
    with torch.no_grad():
        for p in model.mask_decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_decoder_ladder_rungs_agree(model):
    predictor = samkit.Predictor(model)
    rng = np.random.default_rng(0)
    predictor.set_image(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    rows = decoder_ladder(predictor, np.array([[40.0, 30.0]]), np.array([1]), repeat=2, warmup=2)
    assert [r["rung"] for r in rows] == [name for name, _ in RUNGS]
    assert RUNGS[0][1] is None and RUNGS[-1][1] == {}  # from the plain model to every speed-up on
    for r in rows:
        assert r["ms"] > 0 and r["max_abs_logit_diff"] < 1e-3 and r["masks_equal"] > 0.999
    assert rows[0]["max_abs_logit_diff"] == 0.0
    assert predictor.fast is not None and predictor.fast.fold_attention  # the caller's is unchanged
    with pytest.raises(RuntimeError, match="no image is set"):
        decoder_ladder(samkit.Predictor(model), np.array([[40.0, 30.0]]), np.array([1]))


def test_predictor_fast_switch(model):
    image = np.random.default_rng(1).integers(0, 255, (80, 120, 3), dtype=np.uint8)
    kw = dict(point_coords=np.array([[60.0, 40.0]]), point_labels=np.array([1]), return_logits=True)
    out = {}
    custom = FastSam(model, fold_attention=False)
    for name, fast in (("default", True), ("plain", False), ("custom", custom)):
        p = samkit.Predictor(model, cache=False, fast=fast)
        p.set_image(image)
        out[name] = [p.predict(**kw) for _ in range(3)]  # the third reuses the kept image side
        assert (p.fast is None) == (name == "plain")
        assert p.session.fast is p.fast and p.session.features is p.features
    for name in ("default", "custom"):
        for a, b in zip(out[name], out["plain"]):
            np.testing.assert_allclose(a[0], b[0], atol=1e-4)
            np.testing.assert_allclose(a[1], b[1], atol=1e-5)
    with pytest.raises(ValueError, match="FastSam of another model"):
        samkit.Predictor(model, fast=FastSam(samkit.build_model("tiny")))


def test_predictor_leaves_malloc_alone(model, monkeypatch):
    """Building a predictor and clicking changes nothing for the whole process: no C library is
    loaded to call mallopt."""
    loaded = []
    real = ctypes.CDLL
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: loaded.append(a) or real(*a, **k))
    p = samkit.Predictor(model)
    p.set_image(np.zeros((64, 64, 3), dtype=np.uint8))
    p.predict(point_coords=np.array([[10.0, 10.0]]), point_labels=np.array([1]))
    assert loaded == []
    applied = keep_freed_memory()  # the explicit opt-in
    assert isinstance(applied, bool)
    assert applied == (len(loaded) == 1 and sys.platform.startswith("linux"))


def test_load_bench(tmp_path):
    assert load_bench(tmp_path / "missing.json") is None
    (tmp_path / "b.json").write_text('{"meta": {}, "rows": []}')
    assert load_bench(tmp_path / "b.json") == {"meta": {}, "rows": []}
