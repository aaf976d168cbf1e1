"""The GPU test path: CUDA-vs-CPU parity, mixed precision, timings and the full course on a GPU.

    python -m tools.gpu_suite                               # on a CUDA machine (make test-gpu)
    python -m tools.gpu_suite --device cuda --out runs/gpu-t4 --skip-notebooks
    python -m tools.gpu_suite --device cpu --quick          # the same code on the CPU, tiny sizes

It checks, in order:

1. **Parity** (:func:`check_parity`): ``vit_b`` with random, perturbed weights is run on the
   reference device (CPU) and on the device under test, in float32 (TF32 off), on the parity picture
   and prompts. Image embeddings and decoder logits must agree within ``1e-3`` (max abs), and the
   masks must be identical wherever the reference logit is farther than ``1e-2`` from the threshold.
2. **Mixed precision** (:func:`check_precision`): the same model and prompts under
   ``torch.autocast`` with the dtype :func:`samkit.device.autocast_dtype` picks (bf16 on Ampere+,
   fp16 on a T4) against float32: mask IoU and logit error.
3. **Timings** (:func:`time_encoder`, :func:`time_click`, :func:`time_training`): encoder images/s,
   click latency (prompt encoder + decoder + upsampling) in ms, and training epochs with
   :mod:`samkit.train`: the tiny model's decoder fine-tuning, and (full runs) ``vit_b`` at the sizes
   of course notebooks 03 and 04.
4. **The notebooks** (:func:`run_course`): every notebook in its full course configuration on the
   device via :mod:`samkit.runner` (papermill), then nbval on the stored notebooks (small
   configuration, on the device) where they hold outputs.

Results go to ``<out>/gpu.json`` (card, versions, checks, timings); a table puts the course's
published figures (measured on Colab's T4) beside ours. ``--quick`` uses the ``tiny`` model and a
few repetitions and skips the notebooks unless ``--notebooks`` is given, so ``--device cpu --quick``
runs in well under a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

from samkit.device import autocast, autocast_dtype, describe_device, pick_device, time_calls
from samkit.evaluate import mask_iou
from samkit.testing import parity_image, perturb_  # shared with the parity tests and benchmarks

__all__ = [
    "perturbed_model",
    "perturb_",
    "parity_image",
    "parity_prompts",
    "run_prompts",
    "compare_outputs",
    "check_parity",
    "check_precision",
    "time_encoder",
    "time_click",
    "time_training",
    "run_course",
    "run_nbval",
    "course_table",
    "main",
    "COURSE_FIGURES",
]

#: The course's published timings (Colab's free T4), quoted beside ours in the summary table.
COURSE_FIGURES = {
    "decoder_scratch_3_epochs": (
        "decoder from scratch, 3 epochs (notebook 03)",
        "about 20 s on a T4",
    ),
    "finetune_epoch": ("decoder fine-tuning, 1 epoch (notebook 04)", "about 2 min on a T4"),
}

REPO = Path(__file__).resolve().parent.parent  # this suite runs in a checkout (make test-gpu)
NOTEBOOK_DIR = REPO / "notebooks"

PARITY_ATOL = 1e-3  # max abs difference of embeddings and logits, float32, device vs CPU
MASK_MARGIN = 1e-2  # masks must agree where the reference |logit| exceeds this


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------
def perturbed_model(name: str = "vit_b", seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """``samkit.build_model(name)`` on the CPU with every parameter shifted by ``N(0, std)`` noise,
    in eval mode.

    The default initialisation leaves the rel-pos tables and ``pos_embed`` at zero, which would hide
    errors in those paths; the noise (seeded) makes every parameter matter.
    """
    import samkit

    torch.manual_seed(seed)
    return perturb_(samkit.build_model(name), seed, std).eval()


def parity_prompts(height: int = 480, width: int = 640) -> List[Dict[str, Any]]:
    """Prompts in original-image pixels (``x, y``): one point, a positive and a negative point, a
    box, a box with a point, and one point with ``multimask_output=False``."""
    h, w = height, width
    return [
        {
            "name": "1 point",
            "point_coords": np.array([[w * 0.4, h * 0.5]]),
            "point_labels": np.array([1]),
        },
        {
            "name": "2 points",
            "point_coords": np.array([[w * 0.3, h * 0.3], [w * 0.7, h * 0.6]]),
            "point_labels": np.array([1, 0]),
        },
        {"name": "box", "box": np.array([w * 0.2, h * 0.25, w * 0.6, h * 0.8])},
        {
            "name": "box + point",
            "box": np.array([w * 0.1, h * 0.1, w * 0.9, h * 0.9]),
            "point_coords": np.array([[w * 0.5, h * 0.5]]),
            "point_labels": np.array([1]),
        },
        {
            "name": "1 point, single mask",
            "point_coords": np.array([[w * 0.6, h * 0.4]]),
            "point_labels": np.array([1]),
            "multimask_output": False,
        },
    ]


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """Turn TF32 off for CUDA matmuls and convolutions (float32 parity needs full float32), then
    restore."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


@torch.no_grad()
def run_prompts(
    model: torch.nn.Module,
    image: np.ndarray,
    prompts: Sequence[Dict[str, Any]],
    dtype: Optional[torch.dtype] = None,
) -> Dict[str, Any]:
    """Embed ``image`` and decode every prompt with :class:`samkit.Predictor` on the model's device.

    Returns ``{"embedding": 1 x C x E x E float32 CPU tensor, "logits": [C x H x W float32 numpy per
    prompt, in original-image pixels], "iou": [C per prompt]}``; ``dtype`` runs it all under
    autocast.
    """
    from samkit import Predictor

    predictor = Predictor(model)
    with autocast(model.device, dtype):
        predictor.set_image(image)
        embedding = predictor.get_image_embedding().float().cpu()
        logits, ious = [], []
        size, dev = predictor.original_size, model.device
        for p in prompts:
            # predict_torch + our own float32 conversion: numpy has no bfloat16
            coords = labels = box = None
            if p.get("point_coords") is not None:
                coords = torch.as_tensor(
                    predictor.transform.apply_coords(np.asarray(p["point_coords"], float), size),
                    dtype=torch.float,
                    device=dev,
                )[None]
                labels = torch.as_tensor(
                    np.asarray(p["point_labels"]), dtype=torch.int, device=dev
                )[None]
            if p.get("box") is not None:
                box = torch.as_tensor(
                    predictor.transform.apply_boxes(np.asarray(p["box"], float)[None], size),
                    dtype=torch.float,
                    device=dev,
                )
            masks, iou, _ = predictor.predict_torch(
                coords,
                labels,
                box,
                None,
                multimask_output=p.get("multimask_output", True),
                return_logits=True,
            )
            logits.append(masks[0].float().cpu().numpy())
            ious.append(iou[0].float().cpu().numpy())
    return {"embedding": embedding, "logits": logits, "iou": ious}


def compare_outputs(
    ref: Dict[str, Any],
    test: Dict[str, Any],
    atol: float = PARITY_ATOL,
    margin: float = MASK_MARGIN,
) -> Dict[str, Any]:
    """Compare two :func:`run_prompts` results (``ref`` is the reference).

    Returns the max abs embedding and logit differences, the mean abs logit difference, the number
    of pixels whose mask differs where ``|ref logit| > margin`` (``mask_mismatch``), the minimum and
    mean mask IoU, and ``ok``: embeddings and logits within ``atol`` and no mask mismatch.
    """
    emb = float((ref["embedding"] - test["embedding"]).abs().max())
    max_logit, mean_logit, mismatch, ious = 0.0, [], 0, []
    for a, b in zip(ref["logits"], test["logits"]):
        if a.shape != b.shape:
            raise ValueError(f"logit shapes differ: {a.shape} vs {b.shape}")
        diff = np.abs(a - b)
        max_logit = max(max_logit, float(diff.max()))
        mean_logit.append(float(diff.mean()))
        sure = np.abs(a) > margin
        mismatch += int(((a > 0) != (b > 0))[sure].sum())
        ious += [mask_iou(x > 0, y > 0) for x, y in zip(a, b)]
    return {
        "embedding_max_abs": emb,
        "logits_max_abs": max_logit,
        "logits_mean_abs": float(np.mean(mean_logit)) if mean_logit else 0.0,
        "mask_mismatch": mismatch,
        "mask_iou_min": min(ious) if ious else 1.0,
        "mask_iou_mean": float(np.mean(ious)) if ious else 1.0,
        "ok": bool(emb <= atol and max_logit <= atol and mismatch == 0),
    }


def check_parity(
    device: str = "cuda",
    model_name: str = "vit_b",
    ref_device: str = "cpu",
    model: Optional[torch.nn.Module] = None,
    image: Optional[np.ndarray] = None,
    atol: float = PARITY_ATOL,
    prompts: Optional[Sequence[Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """float32 outputs on ``device`` vs ``ref_device`` for the same weights
    (:func:`perturbed_model`), on ``image`` (default :func:`parity_image`) and ``prompts`` (default
    :func:`parity_prompts`)."""
    dev, ref = pick_device(device), pick_device(ref_device)
    model = model if model is not None else perturbed_model(model_name)
    image = image if image is not None else parity_image()
    prompts = prompts if prompts is not None else parity_prompts(*image.shape[:2])
    with strict_fp32():
        ref_out = run_prompts(copy.deepcopy(model).to(ref), image, prompts)
        test_out = run_prompts(copy.deepcopy(model).to(dev), image, prompts)
    result = compare_outputs(ref_out, test_out, atol=atol)
    result.update(
        model=getattr(getattr(model, "config", None), "name", model_name),
        device=str(dev),
        reference=str(ref),
        atol=atol,
        prompts=[p["name"] for p in prompts],
    )
    return result


def check_precision(
    device: str = "cuda",
    model_name: str = "vit_b",
    amp: str = "auto",
    model: Optional[torch.nn.Module] = None,
    image: Optional[np.ndarray] = None,
    min_iou: float = 0.9,
    prompts: Optional[Sequence[Dict[str, Any]]] = None,
) -> Dict[str, Any]:
    """Mixed precision (``autocast_dtype(device, amp)``) against float32 on the same device.

    ``ok`` when every mask's IoU with its float32 twin is at least ``min_iou``. With ``amp`` giving
    no dtype (the CPU with ``"auto"``) the check reports ``dtype: None`` and compares float32 with
    itself.
    """
    dev = pick_device(device)
    dtype = autocast_dtype(dev, amp)
    model = (model if model is not None else perturbed_model(model_name)).to(dev)
    image = image if image is not None else parity_image()
    prompts = prompts if prompts is not None else parity_prompts(*image.shape[:2])
    with strict_fp32():
        fp32 = run_prompts(model, image, prompts)
    mixed = run_prompts(model, image, prompts, dtype=dtype)
    cmp = compare_outputs(fp32, mixed, atol=float("inf"))
    scale = float(fp32["embedding"].abs().max()) or 1.0
    return {
        "device": str(dev),
        "dtype": None if dtype is None else str(dtype).replace("torch.", ""),
        "model": getattr(getattr(model, "config", None), "name", model_name),
        "mask_iou_min": cmp["mask_iou_min"],
        "mask_iou_mean": cmp["mask_iou_mean"],
        "logits_max_abs": cmp["logits_max_abs"],
        "logits_mean_abs": cmp["logits_mean_abs"],
        "embedding_max_rel": cmp["embedding_max_abs"] / scale,
        "mask_mismatch": cmp["mask_mismatch"],
        "min_iou": min_iou,
        "ok": bool(cmp["mask_iou_min"] >= min_iou),
    }


# --------------------------------------------------------------------------------------------------
# Timings
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def time_encoder(
    model: torch.nn.Module,
    dtype: Optional[torch.dtype] = None,
    batch_size: int = 1,
    repeat: int = 5,
    warmup: int = 2,
) -> Dict[str, Any]:
    """Image encoder throughput on ``B x 3 x S x S`` random input (``S = model.img_size``):
    images/s, on the path :class:`samkit.Predictor` takes (:class:`samkit.fast.FastSam`)."""
    from samkit.fast import FastSam

    dev = model.device
    x = torch.randn(batch_size, 3, model.img_size, model.img_size, device=dev)
    encode = FastSam(model).encode_image

    def step():
        with autocast(dev, dtype):
            encode(x)

    times = time_calls(step, repeat, warmup, dev)
    median = float(np.median(times))
    return {
        "images_per_s": batch_size / median,
        "seconds_per_batch": median,
        "batch_size": batch_size,
        "dtype": None if dtype is None else str(dtype).replace("torch.", ""),
        "repeat": repeat,
    }


@torch.no_grad()
def time_click(
    model: torch.nn.Module,
    dtype: Optional[torch.dtype] = None,
    image: Optional[np.ndarray] = None,
    repeat: int = 20,
    warmup: int = 3,
) -> Dict[str, Any]:
    """Latency of one click on an embedded image: prompt encoder + mask decoder + upsampling to the
    original size (``Predictor.predict`` with one point), in milliseconds (median and 90th
    percentile)."""
    from samkit import Predictor

    dev = model.device
    image = image if image is not None else parity_image()
    predictor = Predictor(model)
    h, w = image.shape[:2]
    with autocast(dev, dtype):
        predictor.set_image(image)
        times = time_calls(
            lambda: predictor.predict(
                point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([1])
            ),
            repeat,
            warmup,
            dev,
        )
    ms = [t * 1000 for t in times]
    return {
        "ms_median": float(np.median(ms)),
        "ms_p90": float(np.percentile(ms, 90)),
        "repeat": repeat,
        "dtype": None if dtype is None else str(dtype).replace("torch.", ""),
    }


def time_training(
    device: str, amp: str = "none", out_dir: Optional[str] = None, **config: Any
) -> Dict[str, Any]:
    """Wall time of a :func:`samkit.train.train` run on ``device`` (``config`` holds TrainConfig
    fields).

    Returns ``seconds_loop`` (the optimisation steps; the frozen encoder's embeddings are computed
    first and counted in ``seconds_embed``), ``seconds_per_epoch``, the steps and the final loss.
    """
    from samkit.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(out_dir) if out_dir else Path(tmp)
        values = dict(config)
        values.setdefault("out_dir", str(base / "train"))
        values.setdefault("cache_dir", str(base / "embeddings"))
        values.update(device=str(pick_device(device)), amp=amp, progress=False)
        cfg = TrainConfig.from_dict(values, source="gpu_suite")
        start = time.perf_counter()
        result = train(cfg)
        total = time.perf_counter() - start
    loop = float(result.history[-1]["time"]) if result.history else total
    epochs = max(cfg.epochs if cfg.max_steps is None else 1, 1)
    return {
        "model": cfg.model,
        "train_parts": cfg.train_parts,
        "amp": amp,
        "epochs": epochs,
        "steps": result.steps,
        "seconds_total": total,
        "seconds_loop": loop,
        "seconds_embed": total - loop,
        "seconds_per_epoch": loop / epochs,
        "final_loss": result.final_loss,
    }


def training_scenarios(quick: bool) -> Dict[str, Dict[str, Any]]:
    """TrainConfig fields of the timed runs: the tiny decoder fine-tuning always; in full runs also
    ``vit_b`` at the sizes of notebooks 03 (decoder from scratch, 10 images x 10 masks, 11 rounds, 3
    epochs) and 04 (fine-tuning, 20 images x 16 masks, 1 epoch)."""
    import samkit

    tiny_ckpt = "default" if samkit.EMBEDDED_TINY.exists() else None
    if quick:
        return {
            "tiny_finetune_epoch": dict(
                model="tiny",
                checkpoint=tiny_ckpt,
                train_parts="decoder",
                epochs=1,
                batch_size=1,
                masks_per_image=1,
                n_rounds=3,
                no_point_rounds=1,
                warmup_steps=1,
                eval_every=-1,
                data=dict(kind="scenes", n_images=2, n_val=1, image_size=64, cache_in_memory=True),
            )
        }
    scenes = dict(kind="scenes", n_val=1, image_size=512, cache_in_memory=True)
    return {
        "tiny_finetune_epoch": dict(
            model="tiny",
            checkpoint=tiny_ckpt,
            train_parts="decoder",
            epochs=1,
            batch_size=1,
            masks_per_image=8,
            warmup_steps=10,
            eval_every=-1,
            data=dict(scenes, n_images=32, image_size=256),
        ),
        "decoder_scratch_3_epochs": dict(
            model="vit_b",
            train_parts="decoder_scratch",
            epochs=3,
            batch_size=1,
            masks_per_image=10,
            warmup_steps=10,
            eval_every=-1,
            data=dict(scenes, n_images=10),
        ),
        "finetune_epoch": dict(
            model="vit_b",
            train_parts="decoder",
            epochs=1,
            batch_size=1,
            masks_per_image=16,
            lr=1e-4,
            warmup_steps=10,
            eval_every=-1,
            data=dict(scenes, n_images=20),
        ),
    }


# --------------------------------------------------------------------------------------------------
# The notebooks
# --------------------------------------------------------------------------------------------------
def run_course(
    device: str, out: Path, notebooks: Optional[str] = None, small: bool = False
) -> Dict[str, Any]:
    """Every notebook (or ``notebooks``, e.g. ``"03,04"``) with :mod:`samkit.runner` on ``device``,
    in the full course configuration (``small=False``); returns the runner's records and the run
    folder."""
    from samkit import runner

    books = runner.find_notebooks(NOTEBOOK_DIR, notebooks)
    params = runner.load_parameters([("device", str(pick_device(device)))], small=small)
    result = runner.run(books, out, params, progress=False, run_name="notebooks")
    return {
        "ok": result["ok"],
        "run_dir": str(result["run_dir"]),
        "notebooks": {
            r["notebook"]: {"status": r["status"], "seconds": r["seconds"], "error": r.get("error")}
            for r in result["records"]
        },
    }


def run_nbval(
    device: str, work: Path, notebooks: Optional[str] = None, timeout: int = 900
) -> Dict[str, Any]:
    """nbval on the stored notebooks that hold outputs (their small configuration), executed on
    ``device``.

    The stored outputs were produced on the CPU; numbers that differ on the GPU beyond the
    sanitisers show up here as failures to look at (not necessarily bugs: GPU kernels round
    differently).
    """
    import nbformat
    import papermill as pm

    from samkit import runner

    sanitize = REPO / "tests" / "notebooks" / "nbval_sanitize.cfg"
    results: Dict[str, Any] = {}
    work.mkdir(parents=True, exist_ok=True)
    (work / "pytest.ini").write_text("[pytest]\n")
    for path in runner.find_notebooks(NOTEBOOK_DIR, notebooks):
        nb = nbformat.read(path, as_version=4)
        if not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"):
            results[path.stem] = {"status": "skipped", "reason": "no stored outputs"}
            continue
        declared = pm.inspect_notebook(str(path))
        params = {
            k: v
            for k, v in {
                "small": True,
                "device": str(pick_device(device)),
                "out_dir": str(work / "out" / path.stem),
            }.items()
            if k in declared
        }
        prepared = work / path.name
        pm.execute_notebook(
            str(path),
            str(prepared),
            parameters=params,
            prepare_only=True,
            kernel_name="python3",
            progress_bar=False,
        )
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-c",
            str(work / "pytest.ini"),
            "--rootdir",
            str(work),
            "--nbval",
            "--nbval-current-env",
            "--nbval-cell-timeout",
            str(timeout),
        ]
        if sanitize.is_file():
            cmd += ["--nbval-sanitize-with", str(sanitize)]
        start = time.perf_counter()
        proc = subprocess.run(
            cmd + [str(prepared)],
            cwd=work,
            capture_output=True,
            text=True,
            env=dict(os.environ, SAMKIT_OFFLINE="1", PYTHONHASHSEED="0"),
        )
        results[path.stem] = {
            "status": "ok" if proc.returncode == 0 else "failed",
            "seconds": round(time.perf_counter() - start, 1),
            "tail": "" if proc.returncode == 0 else proc.stdout[-3000:],
        }
    return results


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
def _fmt_s(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def course_table(report: Dict[str, Any]) -> str:
    """The summary printed at the end: checks, our timings and the course's T4 figures side by
    side."""
    lines = [f"device: {report['device']}", "", f"{'measure':48s} {'course (T4)':20s} ours"]
    lines.append("-" * 90)
    train = report.get("training", {})
    for key, (label, course) in COURSE_FIGURES.items():
        r = train.get(key, {})
        ours = _fmt_s(r.get("seconds_loop")) if "seconds_loop" in r else "not run (--quick)"
        if "seconds_loop" in r:
            ours += (
                f" loop + {_fmt_s(r['seconds_embed'])} embeddings ({r['model']}, {r.get('amp')})"
            )
        lines.append(f"{label:48s} {course:20s} {ours}")
    nbs = (report.get("notebooks") or {}).get("notebooks", {})
    for name, r in nbs.items():
        label = f"notebook {name} (full configuration)"
        lines.append(f"{label:48s} {'':20s} {_fmt_s(r['seconds'])} {r['status']}")
    t = report.get("timings", {})
    if "encoder" in t:
        label, enc = f"image encoder ({report['model']})", t["encoder"]
        lines.append(
            f"{label:48s} {'':20s} {enc['images_per_s']:.2f} images/s ({enc['dtype'] or 'float32'})"
        )
    if "click" in t:
        label, click = "click latency (prompt encoder + decoder)", t["click"]
        lines.append(
            f"{label:48s} {'':20s} {click['ms_median']:.1f} ms median, {click['ms_p90']:.1f} ms p90"
        )
    tiny = train.get("tiny_finetune_epoch", {})
    if "seconds_loop" in tiny:
        lines.append(
            f"{'tiny decoder fine-tuning, 1 epoch':48s} {'':20s} {_fmt_s(tiny['seconds_loop'])} "
            f"({tiny['steps']} steps)"
        )
    lines.append("-" * 90)
    p, m = report.get("parity", {}), report.get("precision", {})
    if p:
        lines.append(
            f"parity {p['device']} vs {p['reference']} ({p['model']}, fp32): "
            f"embedding {p['embedding_max_abs']:.2e}, logits {p['logits_max_abs']:.2e} "
            f"(tol {p['atol']:g}), mask mismatches {p['mask_mismatch']}: "
            f"{'ok' if p['ok'] else 'FAILED'}"
        )
    if m:
        lines.append(
            f"mixed precision {m['dtype'] or 'none (float32)'} vs fp32: "
            f"mask IoU min {m['mask_iou_min']:.4f} mean {m['mask_iou_mean']:.4f}, "
            f"logits max abs {m['logits_max_abs']:.3f}: "
            f"{'ok' if m['ok'] else 'FAILED'}"
        )
    lines.append(f"overall: {'ok' if report['ok'] else 'FAILED'}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.gpu_suite", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--device", default="cuda", help="device under test (default cuda; cpu with --quick)"
    )
    parser.add_argument("--out", default=None, help="output folder (default runs/gpu-<timestamp>)")
    parser.add_argument(
        "--quick", action="store_true", help="tiny model, few repetitions, no notebooks"
    )
    parser.add_argument(
        "--amp",
        default="auto",
        choices=["auto", "none", "bf16", "fp16"],
        help="mixed precision checked and timed (default: what autocast_dtype picks)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model of the parity/precision/timing checks (default vit_b; tiny with --quick)",
    )
    parser.add_argument(
        "--notebooks",
        nargs="?",
        const="",
        default=None,
        metavar="LIST",
        help="run the notebooks (all, or e.g. 03,04) even with --quick",
    )
    parser.add_argument("--skip-notebooks", action="store_true", help="do not run the notebooks")
    parser.add_argument("--skip-training", action="store_true", help="do not time training")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        dev = pick_device(args.device)
    except ValueError as exc:
        print(
            f"error: {exc}\n(run `python -m tools.gpu_suite --device cpu --quick` to exercise this "
            "suite on the CPU)",
            file=sys.stderr,
        )
        return 2
    quick = args.quick
    model_name = args.model or ("tiny" if quick else "vit_b")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else Path("runs") / f"gpu-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    dtype = autocast_dtype(dev, args.amp)
    if dtype is None and dev.type == "cpu" and args.amp == "auto":
        dtype = torch.bfloat16  # on the CPU, still exercise the autocast path with bf16
    amp_name = {None: "none", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    report: Dict[str, Any] = {
        "device": describe_device(dev),
        "card": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "model": model_name,
        "quick": quick,
        "amp": amp_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "started": stamp,
    }
    print(report["device"], flush=True)
    t0 = time.perf_counter()
    model = perturbed_model(model_name)
    image = parity_image(240, 320) if quick else parity_image()

    print("1/4 parity ...", flush=True)
    report["parity"] = check_parity(str(dev), model_name, model=model, image=image)
    print("2/4 mixed precision ...", flush=True)
    report["precision"] = check_precision(
        str(dev), model_name, amp=amp_name, model=copy.deepcopy(model), image=image
    )

    print("3/4 timings ...", flush=True)
    timed = copy.deepcopy(model).to(dev)
    reps = (1, 3, 1) if quick else (10, 50, 3)
    report["timings"] = {
        "encoder": time_encoder(timed, dtype, repeat=reps[0], warmup=reps[2]),
        "click": time_click(timed, dtype, image=image, repeat=reps[1], warmup=reps[2]),
    }
    del timed
    report["training"] = {}
    if not args.skip_training:
        for name, config in training_scenarios(quick).items():
            print(f"    training: {name}", flush=True)
            try:
                report["training"][name] = time_training(str(dev), amp=amp_name, **config)
            except Exception as exc:
                report["training"][name] = {"error": f"{type(exc).__name__}: {exc}"}

    run_books = args.notebooks is not None or (not quick and not args.skip_notebooks)
    if run_books and not args.skip_notebooks:
        print("4/4 notebooks (full course configuration) ...", flush=True)
        report["notebooks"] = run_course(str(dev), out, args.notebooks or None, small=False)
        report["nbval"] = run_nbval(str(dev), out / "nbval", args.notebooks or None)
    else:
        print(
            "4/4 notebooks: skipped (--quick without --notebooks, or --skip-notebooks)", flush=True
        )

    failures = [k for k in ("parity", "precision") if not report[k]["ok"]]
    failures += [f"training:{k}" for k, v in report["training"].items() if "error" in v]
    if "notebooks" in report and not report["notebooks"]["ok"]:
        failures.append("notebooks")
    report["failures"] = failures
    report["ok"] = not failures
    report["seconds"] = round(time.perf_counter() - t0, 1)
    (out / "gpu.json").write_text(json.dumps(report, indent=2, default=str))
    print()
    print(course_table(report))
    print(f"\nwrote {out / 'gpu.json'} ({report['seconds']:.0f} s)")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
