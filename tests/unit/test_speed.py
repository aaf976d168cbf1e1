"""samkit.speed: the shortcut switches and the decoder ladder."""
import numpy as np
import pytest
import torch

import samkit
from samkit.model.common import FAST_PATHS
from samkit.speed import RUNGS, decoder_ladder, fast_paths, load_bench


def test_fast_paths_switch_and_restore():
    before = dict(FAST_PATHS)
    with fast_paths(fold_attention=False, sparse_postprocess=False) as now:
        assert now["fold_attention"] is False and FAST_PATHS["sparse_postprocess"] is False
        assert FAST_PATHS["keep_image_side"] is before["keep_image_side"]
    assert FAST_PATHS == before
    with pytest.raises(ValueError, match="unknown fast path"):
        with fast_paths(turbo=True):
            pass
    with pytest.raises(RuntimeError):  # restored even when the block raises
        with fast_paths(fold_attention=False):
            raise RuntimeError
    assert FAST_PATHS == before


def test_decoder_ladder_rungs_agree():
    torch.manual_seed(0)
    model = samkit.build_model("tiny").eval()
    with torch.no_grad():
        for p in model.mask_decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    predictor = samkit.Predictor(model)
    rng = np.random.default_rng(0)
    predictor.set_image(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    before = dict(FAST_PATHS)
    rows = decoder_ladder(predictor, np.array([[40.0, 30.0]]), np.array([1]), repeat=2, warmup=2)
    assert FAST_PATHS == before  # the switches are put back
    assert [r["rung"] for r in rows] == [name for name, _ in RUNGS]
    for r in rows:
        assert r["ms"] > 0 and r["max_abs_logit_diff"] < 1e-3 and r["masks_equal"] > 0.999


def test_load_bench(tmp_path):
    assert load_bench(tmp_path / "missing.json") is None
    (tmp_path / "b.json").write_text('{"meta": {}, "rows": []}')
    assert load_bench(tmp_path / "b.json") == {"meta": {}, "rows": []}
