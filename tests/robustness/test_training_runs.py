"""Training runs never lose results: an existing run is not replaced by accident, a failed resume
changes nothing, settings changed on resume are refused or recorded, a torn metrics line does not block
resuming, Ctrl-C writes a checkpoint, non-finite weights are never saved, bad settings are named."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from samkit import cli
from samkit.cache import EmbeddingCache
from samkit.train import (
    RunExistsError,
    TrainConfig,
    TrainingDiverged,
    TrainingInterrupted,
    interactive,
    load_training_checkpoint,
    loop,
    train,
)

CONFIGS = Path(__file__).parents[2] / "configs"


def config(tmp_path: Path, **changes) -> TrainConfig:
    """Milliseconds per step: the tiny model at a 64-pixel input, one prompt round, two 64-pixel scenes."""
    values = dict(model="tiny", img_size=64, out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "emb"),
                  max_steps=2, batch_size=1, masks_per_image=1, n_rounds=1, no_point_rounds=0, warmup_steps=1,
                  eval_every=-1, progress=False,
                  data=dict(kind="scenes", n_images=2, n_val=0, image_size=64, cache_in_memory=True))
    values.update(changes)
    return TrainConfig.from_dict(values)


def _snapshot(run: Path):
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


# ------------------------------------------------------------------------------- existing runs
def test_a_finished_run_is_not_replaced_without_resume_or_overwrite(tmp_path):
    cfg = config(tmp_path)
    train(cfg)
    run = Path(cfg.out_dir)
    before = _snapshot(run)
    with pytest.raises(RunExistsError, match=r"already holds a training run \(checkpoint.pt, model.pth, "
                                             r"metrics.jsonl\).*--resume.*--overwrite"):
        train(cfg.replace(seed=1))
    assert _snapshot(run) == before  # config.yaml included
    result = train(cfg.replace(seed=1), overwrite=True)
    assert result.steps == 2 and _snapshot(run)["model.pth"] != before["model.pth"]


def test_the_command_line_refuses_too_and_offers_overwrite(tmp_path, capsys):
    args = ["train", str(CONFIGS / "tiny_v1.yaml"), "--set", f"out_dir={tmp_path / 'run'}", "--set", "max_steps=1",
            "--set", "img_size=64", "--set", "masks_per_image=1", "--set", "n_rounds=1", "--set", "no_point_rounds=0",
            "--set", "eval_every=-1", "--set", f"cache_dir={tmp_path / 'emb'}", "--set", "data.n_images=1",
            "--set", "data.n_val=0", "--set", "data.image_size=64", "--set", "progress=false", "--set", "batch_size=1"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(args) == 1
    assert "already holds a training run" in capsys.readouterr().err
    assert cli.main(args + ["--overwrite"]) == 0
    capsys.readouterr()
    assert cli.main(args + ["--overwrite", "--resume"]) == 1
    assert "give one" in capsys.readouterr().err


def test_a_failed_resume_changes_nothing(tmp_path):
    cfg = config(tmp_path)
    train(cfg)
    before = _snapshot(Path(cfg.out_dir))
    with pytest.raises(ValueError, match=r"other settings \(lr: 0.0008 -> 0.001\)"):
        train(cfg.replace(lr=1e-3, max_steps=3), resume=True)
    assert _snapshot(Path(cfg.out_dir)) == before
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(config(tmp_path / "empty"), resume=True)
    assert not (tmp_path / "empty" / "run" / "config.yaml").exists()


def test_allowed_changes_on_resume_are_applied_and_recorded(tmp_path):
    cfg = config(tmp_path, ckpt_every=1)
    train(cfg)
    result = train(cfg.replace(max_steps=3, log_every=1), resume=True)
    assert result.steps == 3
    records = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    assert {"kind": "resume", "step": 2, "changed": {"max_steps": [2, 3]}} in records
    assert "max_steps: 3" in (Path(cfg.out_dir) / "config.yaml").read_text()
    assert [r["lr"] for r in records if r["kind"] == "train"][-1] == pytest.approx(cfg.lr)


# ------------------------------------------------------------------------------- metrics, interrupts
def test_a_torn_last_metrics_line_does_not_block_resume(tmp_path):
    cfg = config(tmp_path)
    train(cfg)
    metrics = Path(cfg.out_dir) / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"kind": "train", "step": 3, "lo')  # the process died in the middle of a line
    with pytest.warns(UserWarning, match="last line is not a JSON record"):
        result = train(cfg.replace(max_steps=3), resume=True)
    lines = metrics.read_text().splitlines()
    assert result.steps == 3 and all(json.loads(line) for line in lines)


def test_ctrl_c_writes_a_checkpoint_and_resume_continues_exactly(tmp_path, monkeypatch):
    straight = train(config(tmp_path / "a", max_steps=4))
    calls = {"n": 0}
    real = interactive.sam_loss

    def interrupt_in_step_2(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # one round per step: the second step
            os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(interactive, "sam_loss", interrupt_in_step_2)
    cfg = config(tmp_path / "b", max_steps=4)
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN when launched in the background
    try:
        train(cfg)
    except TrainingInterrupted as e:
        assert "after step 2 of 4" in str(e)
    except KeyboardInterrupt:  # not ours: caught here, or it would end the whole test session
        pytest.fail("the interrupt escaped as a plain KeyboardInterrupt")
    else:
        pytest.fail("training was not interrupted")
    assert load_training_checkpoint(Path(cfg.out_dir) / "checkpoint.pt")["step"] == 2
    monkeypatch.setattr(interactive, "sam_loss", real)
    resumed = train(cfg, resume=True)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    for k, v in straight.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert signal.getsignal(signal.SIGINT) is before  # the handler was restored


def test_temporaries_of_a_killed_checkpoint_write_are_removed(tmp_path):
    cfg = config(tmp_path)
    run = Path(cfg.out_dir)
    run.mkdir(parents=True)
    stale = run / "checkpoint.pt.tmp999999999"  # no such process
    stale.write_bytes(b"half a checkpoint")
    train(cfg)
    assert not stale.exists() and not list(run.glob("*.tmp*"))


# ------------------------------------------------------------------------------- numbers
def test_non_finite_weights_are_never_saved(tmp_path, monkeypatch):
    real_step = torch.optim.AdamW.step

    def poisoned_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned_step)
    cfg = config(tmp_path, max_steps=1)
    with pytest.raises(TrainingDiverged, match=r"weights after step 1: tensor 'mask_decoder\..*' .* 1 NaN or "
                                               r"infinite .* not written"):
        train(cfg)
    run = Path(cfg.out_dir)
    assert not (run / "checkpoint.pt").exists() and not (run / "model.pth").exists()


@pytest.mark.parametrize("override, message", [
    ("lr=inf", "field 'lr' must be a finite number in (0, inf)"),
    ("lr=abc", "field 'lr' must be a number, got 'abc'"),
    ("gamma=-1", "field 'gamma' must be a finite number in (0, 1]"),
    ("epochs=1.5", "field 'epochs' must be an integer, got 1.5"),
    ("warmup_steps=-3", "field 'warmup_steps'"),
    ("data.n_images=[1]", "field 'data.n_images' must be an integer or null"),
    ("betas=[0.9, 1.0]", "field 'betas[1]'"),
])
def test_bad_settings_are_named_by_the_command_line(tmp_path, capsys, override, message):
    """Before: lr=inf trained and saved a model full of NaN (exit 0), gamma=-1 gave a negative lr,
    lr=abc and epochs=1.5 ended in tracebacks."""
    code = cli.main(["train", str(CONFIGS / "tiny.yaml"), "--set", f"out_dir={tmp_path / 'run'}", "--set", override])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_a_config_object_is_checked_too(tmp_path):
    cfg = config(tmp_path)
    cfg.lr = float("nan")
    with pytest.raises(ValueError, match="field 'lr'"):
        train(cfg)


# ------------------------------------------------------------------------------- the embedding cache
def test_a_damaged_cache_entry_is_recomputed_not_fatal(tmp_path):
    """Before: a damaged entry counted as cached, then crashed with "vanished from the cache"."""
    cfg = config(tmp_path)
    first = train(cfg)
    entry = sorted(Path(cfg.cache_dir).glob("*.pt"))[0]
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    second = train(cfg.replace(out_dir=str(tmp_path / "again")))
    assert [h["loss"] for h in second.history] == [h["loss"] for h in first.history]


def test_an_entry_lost_during_training_is_computed_again(tmp_path):
    cfg = config(tmp_path)
    model = loop.build_training_model(cfg)
    train_set, _ = loop.build_datasets(cfg, model.img_size)
    cache = EmbeddingCache(tmp_path / "emb2")
    record = train_set[0]
    emb = loop._cached(cache, "missing-key", torch.device("cpu"), model, record)
    assert emb.shape[0] == 1 and torch.isfinite(emb).all() and "missing-key" in cache
