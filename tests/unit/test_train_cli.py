"""`samkit train CONFIG --set ... [--resume]` through the argparse entry point."""
import json
from pathlib import Path

import pytest

from samkit import cli

CONFIGS = Path(__file__).parents[2] / "configs"


def test_parser_has_train_subcommand_and_requires_one():
    parser = cli.build_parser()
    args = parser.parse_args(["train", "configs/tiny.yaml", "--resume", "--set", "lr=1e-3", "--set", "seed=2"])
    assert args.func is cli.cmd_train and args.resume and args.set == ["lr=1e-3", "seed=2"]
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_bad_config_reports_a_clear_error(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nope.yaml")]) == 1
    assert "nope.yaml" in capsys.readouterr().err
    assert cli.main(["train", str(CONFIGS / "tiny.yaml"), "--set", "train_parts=encoder"]) == 1
    assert "train_parts" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_the_tiny_v1_config_then_resumes(tmp_path, capsys):
    overrides = ["--set", f"out_dir={tmp_path / 'run'}", "--set", "max_steps=1", "--set", "train_parts=decoder",
                 "--set", "batch_size=1", "--set", "eval_every=-1",
                 "--set", f"cache_dir={tmp_path / 'emb'}", "--set", "data.n_images=1", "--set", "data.n_val=0",
                 "--set", "data.image_size=64", "--set", "masks_per_image=1", "--set", "n_rounds=1",
                 "--set", "no_point_rounds=0", "--set", "progress=false"]
    assert cli.main(["train", str(CONFIGS / "tiny_v1.yaml"), *overrides]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 1 and Path(summary["model"]).exists()
    assert cli.main(["train", str(CONFIGS / "tiny_v1.yaml"), *overrides, "--set", "max_steps=2", "--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 2


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    from samkit.train.config import TrainConfig

    TrainConfig.from_yaml(path).validate()
