"""The ``samkit`` command line: one sub-command per function.

    samkit train configs/tiny.yaml [--resume | --overwrite] [--set key=value ...]

Other sub-commands (``eval``, ``download``, ``run-notebooks``) register themselves the same way: write a
``add_<name>_parser(subparsers)`` that sets ``func=`` and add it to :data:`PARSERS`.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, List, Optional, Sequence


def cmd_train(args: argparse.Namespace) -> int:
    """``samkit train CONFIG.yaml [--resume | --overwrite] [--set key=value ...]``."""
    from samkit.train import TrainConfig, TrainingDiverged, TrainingInterrupted, train

    if args.resume and args.overwrite:
        raise ValueError("--resume continues the run in out_dir and --overwrite replaces it: give one")
    config = TrainConfig.from_yaml(args.config, args.set or [])
    try:
        result = train(config, resume=args.resume, overwrite=args.overwrite)
    except TrainingDiverged as e:
        print(f"samkit train: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:
        print(f"samkit train: {e}", file=sys.stderr)
        return 130
    summary = {"steps": result.steps, "final_loss": result.final_loss, "out_dir": str(result.out_dir),
               "model": str(result.model_path), "checkpoint": str(result.checkpoint),
               "metrics": str(result.metrics_path), "last_eval": result.evals[-1] if result.evals else None}
    print(json.dumps(summary, indent=2))
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train or fine-tune a model with SAM's recipe",
                              description="Train with a YAML config (see configs/).")
    p.add_argument("config", help="a training config, e.g. configs/tiny.yaml")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in OUT_DIR (without it an existing run is never replaced)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append",
                   help="override a config field (repeatable; dotted keys reach into data: data.n_images=4)")
    p.set_defaults(func=cmd_train)


# every sub-command's parser builder; others append theirs (eval, download, run-notebooks)
PARSERS: List[Callable[[argparse._SubParsersAction], None]] = [add_train_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samkit", description="Segment Anything teaching kit")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for add in PARSERS:
        add(subparsers)
    return parser


def _user_errors() -> tuple:
    """Exceptions that mean "bad input" (a setting, a file, a checkpoint): one line, not a traceback."""
    from samkit.checkpoints import CheckpointError, StateDictMismatchError

    return ValueError, TypeError, OSError, CheckpointError, StateDictMismatchError


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as e:
        print(f"samkit {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        print(f"samkit {args.command}: interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
