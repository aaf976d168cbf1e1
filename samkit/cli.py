"""The ``samkit`` command line: one sub-command per job.

    samkit train configs/tiny.yaml [--resume | --overwrite] [--set key=value ...]  # SAM's recipe
    samkit download vit_b [--verify]                                   # an official checkpoint
    samkit download --list                                             # what can be downloaded
    samkit run [--small] [-p model vit_b] [--notebooks 02,05]          # the course notebooks (make
    run)

A sub-command is a function ``cmd_<name>(args) -> exit status`` and a parser builder
``add_<name>_parser(subparsers)`` listed in :data:`PARSERS`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, List, Optional, Sequence


# -------------------------------------------------------------------------------------------- train
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
    summary = {
        "steps": result.steps,
        "final_loss": result.final_loss,
        "out_dir": str(result.out_dir),
        "model": str(result.model_path),
        "checkpoint": str(result.checkpoint),
        "metrics": str(result.metrics_path),
        "last_eval": result.evals[-1] if result.evals else None,
    }
    print(json.dumps(summary, indent=2))
    return 0


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune a model with SAM's recipe",
        description="Train with a YAML config (see configs/).",
    )
    p.add_argument("config", help="a training config, e.g. configs/tiny.yaml")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint.pt")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in OUT_DIR (without it an existing run is never replaced)",
    )
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        help="override a config field (repeatable; dotted keys reach into data: data.n_images=4)",
    )
    p.set_defaults(func=cmd_train)


# ----------------------------------------------------------------------------------------- download
def _offline() -> bool:
    return os.environ.get("SAMKIT_OFFLINE", "0").lower() in ("1", "true", "yes")


def cmd_download(args: argparse.Namespace) -> int:
    """``samkit download MODEL... [--verify]`` and ``samkit download --list``."""
    from samkit import checkpoints as ck

    if args.list:
        for name, entry in ck.CHECKPOINTS.items():
            dest = ck.checkpoint_dir() / entry.filename
            size = f"{entry.size / 2**20:,.0f} MiB" if entry.size else "size unknown"
            state = f"cached at {dest}" if dest.is_file() else "not cached"
            print(f"{name:6s} {entry.filename:24s} {size:>10s}  {state}")
        return 0
    if not args.models:
        print("samkit download: name a model (e.g. vit_b) or pass --list", file=sys.stderr)
        return 2
    status = 0
    for name in args.models:
        entry = ck.get_checkpoint(name)  # ValueError for an unknown name, with the known ones
        cached = (ck.checkpoint_dir() / entry.filename).is_file()
        try:
            path = ck.checkpoint_path(
                name, download=not _offline(), progress=not args.no_progress, verify=args.verify
            )
        except (ck.DownloadError, ck.ChecksumError, FileNotFoundError) as e:
            why = (
                "SAMKIT_OFFLINE=1 is set, so nothing is downloaded. "
                if _offline() and not cached
                else ""
            )
            print(f"samkit download {entry.model}: {why}{e}", file=sys.stderr)
            status = 1
            continue
        if cached:
            checked = "size and SHA-256" if args.verify else "size"
            print(f"{entry.model}: already cached at {path} ({checked} checked)")
        else:
            print(f"{entry.model}: downloaded {path} (size and SHA-256 checked)")
    return status


def add_download_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "download",
        help="fetch and verify an official checkpoint",
        description="Download official checkpoints into $SAMKIT_HOME/checkpoints (default "
        "~/.cache/samkit/checkpoints): a progress bar, an interrupted transfer resumes where it "
        "stopped, and the size and SHA-256 are checked before the file gets its name.",
    )
    p.add_argument(
        "models", nargs="*", metavar="MODEL", help="vit_b, vit_l, vit_h or vit_t (MobileSAM)"
    )
    p.add_argument(
        "--list", action="store_true", help="list the downloadable checkpoints and what is cached"
    )
    p.add_argument(
        "--verify", action="store_true", help="also recompute the SHA-256 of a cached file"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_download)


# ---------------------------------------------------------------------------------------------- run
def cmd_run(args: argparse.Namespace) -> int:
    """``samkit run [runner options]``: the course notebooks with papermill (what ``make run``
    does)."""
    from samkit import runner

    return runner.run_from_args(args)


def add_run_parser(subparsers: argparse._SubParsersAction) -> None:
    from samkit import runner

    p = subparsers.add_parser(
        "run",
        help="execute the course notebooks into runs/<timestamp>/",
        description=runner.DESCRIPTION + " Run it from the root of a checkout (the "
        "notebooks are in notebooks/) or pass --notebook-dir.",
    )
    runner.add_arguments(p)
    p.set_defaults(func=cmd_run)


#: every sub-command's parser builder
PARSERS: List[Callable[[argparse._SubParsersAction], None]] = [
    add_train_parser,
    add_download_parser,
    add_run_parser,
]


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
