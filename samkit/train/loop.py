"""The training loop: the model and its trainable parts, AdamW parameter groups, the learning-rate
schedule, the embedding cache of a frozen encoder, validation, checkpoints (resume), the metrics
log, DDP, and :func:`train`, which ties them together (see :mod:`samkit.train` for the recipe)."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import nn
from tqdm.auto import tqdm

from samkit.cache import EmbeddingCache, image_key, remove_stale_temporaries
from samkit.checkpoints import CheckpointError, check_finite
from samkit.data.prompts import center_point
from samkit.device import autocast, autocast_dtype, make_scaler, pick_device
from samkit.losses import iou_of_masks
from samkit.train.config import TrainConfig, load_config
from samkit.train.data import (
    PreparedImage,
    PreparedImages,
    _collate,
    _generator,
    build_datasets,
    epoch_order,
)
from samkit.train.interactive import InteractiveLoss, PromptedImage, prompt_image, round_plan

CHECKPOINT_FORMAT = "samkit-train-1"


# --------------------------------------------------------------------------------------------------
# Model, parameters, optimiser, schedule
# --------------------------------------------------------------------------------------------------
def build_training_model(cfg: TrainConfig) -> nn.Module:
    """The model of ``cfg``: weights from ``cfg.checkpoint`` (position tables resized to
    ``cfg.img_size``) or grown from ``cfg.grow_from`` (``model.grown_keys`` then names the parameters
    that file lacked), decoder re-initialised for ``decoder_scratch``, drop path set on the encoder."""
    import samkit
    from samkit import checkpoints
    from samkit.model.configs import MODEL_NAMES, get_config
    from samkit.model.sam import build_sam

    config = get_config(cfg.model)
    if cfg.img_size is not None:
        config = config.at_resolution(cfg.img_size)
    model = build_sam(config)
    if cfg.grow_from is not None:
        if cfg.grow_from in MODEL_NAMES:
            source, base = cfg.grow_from, samkit.load_model(cfg.grow_from).state_dict()
        else:
            path = Path(cfg.grow_from).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"field 'grow_from': file not found: {path}")
            base = checkpoints.load_state_dict(path)
            source, evidence = checkpoints.guess_model_name(base)
            if source is None:
                raise ValueError(f"field 'grow_from': {path} is not a samkit model's state dict ({evidence})")
        if type(get_config(source).encoder) is not type(config.encoder):
            # another encoder design (tiny_v1 -> tiny_v2): only the prompt encoder and mask decoder carry over
            base = {k: v for k, v in base.items() if not k.startswith("image_encoder.")}
        result = checkpoints.load_into(model, base, strict=False, resize=True, widen=True)
        if result.unexpected_keys:
            raise ValueError(f"field 'grow_from': {cfg.grow_from} has parameters that {cfg.model} lacks "
                             f"({', '.join(result.unexpected_keys[:4])}, ...); it can only grow into a "
                             "model that contains it")
        model.grown_keys = tuple(result.missing_keys)  # the new parameters (trained at lr * new_lr_scale)
        print(f"grew {cfg.model} from {cfg.grow_from}: {len(base)} tensors copied, "
              f"{len(result.widened_keys)} widened, {len(result.missing_keys)} new ones initialised", file=sys.stderr)
    elif cfg.checkpoint == "default":
        checkpoints.load_into(model, samkit.load_model(cfg.model).state_dict(), resize=True)
    elif cfg.checkpoint is not None:
        path = Path(cfg.checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"field 'checkpoint': file not found: {path}")
        checkpoints.load_into(model, path, resize=True)
    if cfg.train_parts == "decoder_scratch":
        fresh = build_sam(config)
        model.mask_decoder.load_state_dict(fresh.mask_decoder.state_dict())
    if cfg.drop_path > 0:
        if not hasattr(model.image_encoder, "set_drop_path"):
            raise ValueError(f"field 'drop_path': the {cfg.model} encoder has no set_drop_path")
        model.image_encoder.set_drop_path(cfg.drop_path)
    return model


def set_trainable(model: nn.Module, train_parts: str) -> List[str]:
    """Freeze everything but ``train_parts``; returns the names of the trainable modules.

    ``iou_head`` trains the decoder's IoU prediction head alone: the masks stay exactly as they are and only
    the predicted IoUs move (a calibration phase; only the loss's IoU term has a gradient)."""
    parts = {
        "decoder_scratch": ["mask_decoder"],
        "decoder": ["mask_decoder"],
        "iou_head": ["mask_decoder.iou_prediction_head"],
        "prompt_encoder+decoder": ["prompt_encoder", "mask_decoder"],
        "all": ["image_encoder", "prompt_encoder", "mask_decoder"],
    }[train_parts]
    model.requires_grad_(False)
    for name in parts:
        model.get_submodule(name).requires_grad_(True)
    return parts


def _no_decay_names(model: nn.Module) -> set:
    names = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if (
                p.ndim <= 1
                or isinstance(module, (nn.Embedding, nn.LayerNorm, nn.GroupNorm))
                or "norm" in mod_name.split(".")[-1].lower()
                or p_name in ("pos_embed",)
                or p_name.startswith("rel_pos")
                or "attention_biases" in p_name
            ):
                names.add(full)
    return names


def param_groups(
    model: nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0,
    lr_scales: Optional[Dict[str, float]] = None,
) -> List[Dict[str, Any]]:
    """AdamW parameter groups of the trainable parameters.

    No weight decay on norms, biases and embeddings (``nn.Embedding`` weights such as the prompt and
    output tokens, ``pos_embed``, relative position tables). With ``layer_decay < 1`` an
    image-encoder parameter at depth ``i`` (``image_encoder.layer_id``: 0 for the patch embedding,
    ``b + 1`` for block ``b``, the neck last) gets ``lr * layer_decay ** (max_depth - i)``; the
    prompt encoder and the decoder get the full ``lr``. ``lr_scales`` multiplies the lr of the
    parameters it names (the new parts of a grown model: ``new_lr_scale``). Each group carries
    ``lr_scale`` and ``names``.
    """
    no_decay = _no_decay_names(model)
    encoder = getattr(model, "image_encoder", None)
    depth_of: Dict[str, int] = {}
    max_depth = 0
    if layer_decay < 1.0 and encoder is not None:
        if not hasattr(encoder, "layer_id"):
            raise ValueError(
                f"layer_decay={layer_decay} needs image_encoder.layer_id, which "
                f"{type(encoder).__name__} lacks"
            )
        for name, _ in encoder.named_parameters():
            depth_of[name] = encoder.layer_id(name)
        max_depth = max(depth_of.values(), default=0)
    groups: Dict[Tuple[bool, float], Dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0
        if name.startswith("image_encoder.") and depth_of:
            scale = layer_decay ** (max_depth - depth_of[name[len("image_encoder.") :]])
        scale *= (lr_scales or {}).get(name, 1.0)
        decay = name not in no_decay
        key = (decay, scale)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr": lr * scale,
                "lr_scale": scale,
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    if not groups:
        raise ValueError("no trainable parameters: check train_parts")
    return [groups[k] for k in sorted(groups, key=lambda k: (-k[1], not k[0]))]


def lr_factor(step: int, cfg: TrainConfig, steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of the base lr at optimiser step ``step`` (0-based): linear warm-up times the
    schedule.

    ``step``: ``gamma ** (number of milestones <= step)`` (paper: /10 at 60k and 86,666 of 90k);
    ``exp_epoch``: ``gamma ** epoch`` (the course: 0.6 per epoch); ``cosine``: half cosine to 0 at
    ``total_steps``; ``constant``: 1.
    """
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.schedule == "step":
        decay = cfg.gamma ** sum(step >= m for m in cfg.milestones)
    elif cfg.schedule == "exp_epoch":
        decay = cfg.gamma ** (step // max(steps_per_epoch, 1))
    elif cfg.schedule == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    else:
        decay = 1.0
    return warm * decay


# --------------------------------------------------------------------------------------------------
# Embedding cache, validation
# --------------------------------------------------------------------------------------------------
def _embedding_cache(cfg: TrainConfig) -> EmbeddingCache:
    if cfg.cache_dir:
        directory = Path(cfg.cache_dir).expanduser()
    else:
        from samkit.checkpoints import samkit_home

        directory = samkit_home() / "embeddings"
    return EmbeddingCache(directory, max_items=256)


def _image_np(record: PreparedImage) -> np.ndarray:
    return record.image.permute(1, 2, 0).numpy()


@torch.no_grad()
def _encode(model: nn.Module, record: PreparedImage) -> torch.Tensor:
    x = model.preprocess(record.image.to(model.device).float()[None])
    return model.image_encoder(x)


def fill_cache(
    model: nn.Module,
    dataset: PreparedImages,
    cache: EmbeddingCache,
    desc: str,
    progress: bool = True,
    rank: int = 0,
    world: int = 1,
) -> Dict[int, str]:
    """Encode the images of ``dataset`` not yet in ``cache``; returns ``{index: key}`` for every
    image.

    With several processes each encodes the images ``rank, rank + world, ...`` (the others only hash
    theirs). The key is :func:`samkit.cache.image_key` of the resized image (as
    :class:`samkit.Predictor` uses), so a later run with the same encoder and images reuses the
    files.
    """
    keys: Dict[int, str] = {}
    was_training = model.training
    model.eval()
    for i in tqdm(range(len(dataset)), desc=desc, disable=not progress, leave=False):
        record = dataset[i]
        key = image_key(model, _image_np(record))
        keys[i] = key
        if i % world == rank and key not in cache:
            cache.put(key, _encode(model, record).cpu())
    model.train(was_training)
    return keys


def _cached(
    cache: EmbeddingCache, key: str, device: torch.device, model: nn.Module, record: PreparedImage
) -> torch.Tensor:
    """The cached embedding of ``record``; one deleted or damaged on disk since the cache was filled
    is computed again (the encoder is frozen and in eval mode, so the value is the same)."""
    emb = cache.get(key)
    if emb is None:
        cache.put(key, _encode(model, record).cpu())
        emb = cache.get(key)
    # round to float16 as on disk, so a value from memory equals one read back from disk
    return emb.to(torch.float16).to(device=device, dtype=torch.float32)


@torch.no_grad()
def validate(
    model: nn.Module,
    dataset: PreparedImages,
    embed: Callable[[int, PreparedImage], torch.Tensor],
    masks_per_image: int = 8,
    box_multimask: bool = True,
    progress: bool = False,
) -> Dict[str, float]:
    """Single-prompt validation mIoU in the input frame (unpadded).

    ``point``: one click at the mask's interior point farthest from the boundary, three masks;
    ``oracle`` scores the best of the three, ``confident`` the one with the highest predicted IoU.
    ``box``: the tight box of the mask (multimask and the confident mask when ``box_multimask``,
    else the single mask).

    Returns ``{"miou_point_oracle", "miou_point_confident", "miou_box", "n_masks"}``.
    """
    was_training = model.training
    model.eval()
    oracle, confident, box_iou = [], [], []
    for i in tqdm(range(len(dataset)), desc="validate", disable=not progress, leave=False):
        record = dataset[i]
        gt = record.masks[:masks_per_image].to(model.device)
        if len(gt) == 0:
            continue
        emb = embed(i, record)
        h, w = record.input_size
        pts = torch.tensor(
            [center_point(g[:h, :w]) for g in gt.cpu()], dtype=torch.float32, device=model.device
        )[:, None]
        labels = torch.ones(len(gt), 1, dtype=torch.long, device=model.device)
        target = gt[:, None, :h, :w]
        low, iou_pred = model.encode_prompts_and_decode(emb, pts, labels, None, None, True)
        ious = iou_of_masks(model.postprocess_masks(low, (h, w), (h, w)), target)
        oracle.append(ious.max(1).values)
        confident.append(ious.gather(1, iou_pred.argmax(1, keepdim=True))[:, 0])
        from torchvision.ops import masks_to_boxes

        boxes = masks_to_boxes(gt).float()
        low, iou_pred = model.encode_prompts_and_decode(emb, None, None, boxes, None, box_multimask)
        ious = iou_of_masks(model.postprocess_masks(low, (h, w), (h, w)), target)
        box_iou.append(ious.gather(1, iou_pred.argmax(1, keepdim=True))[:, 0])
    model.train(was_training)
    if not oracle:
        return {
            "miou_point_oracle": float("nan"),
            "miou_point_confident": float("nan"),
            "miou_box": float("nan"),
            "n_masks": 0,
        }
    return {
        "miou_point_oracle": float(torch.cat(oracle).mean()),
        "miou_point_confident": float(torch.cat(confident).mean()),
        "miou_box": float(torch.cat(box_iou).mean()),
        "n_masks": int(torch.cat(oracle).numel()),
    }


# --------------------------------------------------------------------------------------------------
# Checkpoints, metrics, distributed helpers
# --------------------------------------------------------------------------------------------------
class TrainingDiverged(RuntimeError):
    """The loss or the weights became NaN or infinite; the last good checkpoint is kept."""


class RunExistsError(ValueError):
    """``out_dir`` already holds a run, and neither ``resume`` nor ``overwrite`` was asked for."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training was interrupted (Ctrl-C, a kernel interrupt); the checkpoint holds the last full
    step."""


# Fields that may differ when a run is resumed: they control how long it runs, what it reports and
# where, not how it learns. (A new length also stretches a cosine schedule from the resumed step on;
# the lr logged per step is the one applied.)
RESUMABLE_CHANGES = (
    "max_steps",
    "stop_after",
    "epochs",
    "eval_every",
    "ckpt_every",
    "snapshot_every",
    "log_every",
    "progress",
    "num_workers",
    "device",
    "cache_dir",
    "eval_masks_per_image",
    "out_dir",
)


@dataclass
class TrainResult:
    """What :func:`train` returns. ``history``: the per-step metrics; ``evals``: the validation
    records."""

    model: nn.Module
    steps: int
    history: List[Dict[str, Any]]
    evals: List[Dict[str, Any]]
    out_dir: Path
    checkpoint: Path
    model_path: Path
    metrics_path: Path

    @property
    def final_loss(self) -> float:
        return self.history[-1]["loss"] if self.history else float("nan")


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _rng_state() -> Dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {
        "name": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }  # tensors: loadable with weights_only
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_training_checkpoint(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """A training checkpoint (model, optimiser, scheduler, scaler, RNG states, step), read with
    ``torch.load(weights_only=True)``: tensors and plain containers only, never code. Checkpoints of
    earlier samkit versions held numpy's RNG array; numpy's array constructors are allowed for
    those."""
    import pickle

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        allowed = [np.ndarray, np.dtype, type(np.dtype(np.uint32))]
        try:
            from numpy._core.multiarray import _reconstruct
        except ImportError:  # numpy < 2
            from numpy.core.multiarray import _reconstruct
        allowed.append(_reconstruct)
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)


def _set_rng_state(state: Dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    if isinstance(n, dict):
        np.random.set_state(
            (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
        )
    else:  # checkpoints of earlier samkit versions stored numpy's tuple as is
        np.random.set_state(n)
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _json_lines(path: Path) -> List[Tuple[str, Dict[str, Any]]]:
    """``(line, record)`` of every readable line of a JSON-lines file. A line that does not parse
    (the torn last line of a process killed while writing it) is skipped with a warning naming
    it."""
    out = []
    lines = path.read_text(errors="replace").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if not isinstance(record, dict):
            where = "its last line" if number == len(lines) else f"line {number}"
            warnings.warn(
                f"{path}: {where} is not a JSON record (a write cut short?) and is skipped",
                stacklevel=3,
            )
            continue
        out.append((line, record))
    return out


class MetricsLog:
    """JSON lines: ``{"kind": "train", "step", "epoch", "loss", "focal", "dice", "iou_mse",
    "loss_first", "iou_last", "lr", "time", "step_time"}``, ``{"kind": "eval", "step",
    "miou_point_oracle", "miou_point_confident", "miou_box", ...}`` and, when a run is resumed with
    changed settings, ``{"kind": "resume", "step", "changed": {field: [before, after]}}``. Resuming
    drops lines past the checkpoint's step, and a torn line (a write cut short)."""

    def __init__(self, path: Path, enabled: bool, resume_step: Optional[int] = None) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            kept = [
                line for line, record in _json_lines(path) if record.get("step", 0) <= resume_step
            ]
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)

    def write(self, record: Dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def read(self) -> List[Dict[str, Any]]:
        if not self.path.exists():
            return []
        return [record for _, record in _json_lines(self.path)]


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t


def _setup_distributed(device_kind: str) -> _Dist:
    """Join the process group started by ``torchrun`` (``WORLD_SIZE`` > 1) or an existing one."""
    if dist.is_available() and dist.is_initialized():
        return _Dist(
            dist.get_rank(),
            dist.get_world_size(),
            int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return _Dist(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), True
    )


def _resolve_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    """``cfg.device`` (:func:`samkit.device.pick_device`); a CUDA device without an index gets the
    process's ``local_rank``."""
    device = pick_device(cfg.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def _existing_run(out_dir: Path) -> Optional[str]:
    """What in ``out_dir`` shows a started or finished run (None when nothing does)."""
    found = [name for name in ("checkpoint.pt", "model.pth") if (out_dir / name).is_file()]
    metrics = out_dir / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size > 0:
        found.append("metrics.jsonl")
    return ", ".join(found) or None


def _resume_changes(
    saved: Dict[str, Any], cfg: TrainConfig, ckpt_path: Path
) -> Dict[str, List[Any]]:
    """``{field: [in the checkpoint, now]}`` of the settings that differ; ValueError if one of them
    would change what the resumed run learns."""
    now = cfg.to_dict()
    changed: Dict[str, List[Any]] = {}
    for key in sorted(set(saved) | set(now)):
        if key == "data":
            for k in sorted(set(saved.get("data") or {}) | set(now["data"])):
                a, b = (saved.get("data") or {}).get(k), now["data"].get(k)
                if a != b:
                    changed[f"data.{k}"] = [a, b]
        elif saved.get(key) != now.get(key) and not (
            isinstance(saved.get(key), (list, tuple))
            and list(saved[key]) == list(now.get(key) or [])
        ):
            changed[key] = [saved.get(key), now.get(key)]
    allowed = set(RESUMABLE_CHANGES)
    refused = {k: v for k, v in changed.items() if k not in allowed}
    if refused:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        raise ValueError(
            f"{ckpt_path} was trained with other settings ({listed}). A resumed run keeps the "
            "settings it started with (its optimiser state and schedule were built from them); "
            "only "
            f"{', '.join(sorted(allowed))} may change. Resume with the original values, or start a "
            "new run in another out_dir (or pass overwrite=True / --overwrite to replace this one)."
        )
    return changed


class _StopRequest:
    """Turns the first SIGINT (Ctrl-C, a Jupyter interrupt) into a request to stop after the current
    step; a second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\ninterrupt: stopping after this step and writing a checkpoint (interrupt again to "
            "stop at once)",
            flush=True,
        )

    @contextmanager
    def installed(self) -> Iterator["_StopRequest"]:
        if threading.current_thread() is not threading.main_thread():
            yield self  # signals reach the main thread only
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------
def train(
    config: Union[TrainConfig, Dict[str, Any], str, os.PathLike],
    resume: bool = False,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
) -> TrainResult:
    """Train a SAM with the paper's interactive recipe; see the module docstring.

    Args:
        config: a :class:`TrainConfig`, a dict of its fields, or a YAML file.
        resume: continue from ``out_dir/checkpoint.pt`` (model, optimiser, schedule, scaler, RNG
            states and data position), so ``N`` steps, or ``k`` steps + resume + ``N - k`` steps,
            give the same curve.
        overrides: ``key=value`` strings applied to the config.
        overwrite: replace the run already in ``out_dir``. Without it (and without ``resume``) an
            ``out_dir`` holding a checkpoint, a model or metrics is refused, so results are never
            replaced by accident.

    Writes to ``out_dir``: ``config.yaml``, ``metrics.jsonl``, ``checkpoint.pt`` (training state,
    written atomically every ``ckpt_every`` steps and at the end) and ``model.pth`` (the final state
    dict, loadable by :func:`samkit.load_model`), and with ``snapshot_every`` the state dict of every such step
    as ``snapshots/step_<N>.pth``. Weights holding NaN or infinity are never written.
    On resume only the settings in :data:`RESUMABLE_CHANGES` may differ from the checkpoint's; the
    changes are written to ``config.yaml`` and recorded in the metrics log.

    Raises:
        RunExistsError: ``out_dir`` holds a run and neither ``resume`` nor ``overwrite`` is set.
        ValueError: a bad setting, or settings changed on resume that cannot change.
        TrainingDiverged: the loss or the weights became NaN/inf (the last checkpoint is left as it
            was).
        TrainingInterrupted: a SIGINT (Ctrl-C) stopped the run after a full step; the checkpoint
            holds that step and ``resume=True`` continues exactly.
    """
    cfg = load_config(config, overrides)
    cfg.validate("config")
    dd = _setup_distributed(pick_device(cfg.device).type)
    try:
        return _train(cfg, resume, dd, overwrite)
    finally:
        if dd.owns_group:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, resume: bool, dd: _Dist, overwrite: bool = False) -> TrainResult:
    device = _resolve_device(cfg, dd.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out_dir = Path(cfg.out_dir).expanduser()
    ckpt_path, model_path, metrics_path = (
        out_dir / "checkpoint.pt",
        out_dir / "model.pth",
        out_dir / "metrics.jsonl",
    )
    # Everything about out_dir is checked before anything in it is written.
    state: Optional[Dict[str, Any]] = None
    resume_changes: Dict[str, List[Any]] = {}
    if resume:
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"resume=True but there is no checkpoint at {ckpt_path}")
        state = load_training_checkpoint(ckpt_path)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            found = state.get("format") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{ckpt_path}: not a samkit training checkpoint (format {found!r})")
        check_finite(state["model"], f"{ckpt_path} (model)")
        if isinstance(state.get("config"), dict):
            resume_changes = _resume_changes(state["config"], cfg, ckpt_path)
    else:
        existing = _existing_run(out_dir)
        if existing and not overwrite:
            raise RunExistsError(
                f"{out_dir} already holds a training run ({existing}). Pass resume=True (--resume) "
                "to continue it, overwrite=True (--overwrite) to replace it, or choose another "
                "out_dir."
            )
    if dd.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out_dir)  # left by a process killed while writing
        if overwrite and not resume:
            for old in (ckpt_path, model_path, metrics_path):
                old.unlink(missing_ok=True)
        tmp = out_dir / f"config.yaml.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
        os.replace(tmp, out_dir / "config.yaml")
    dd.barrier()

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % (1 << 32))
    random.seed(cfg.seed)
    model = build_training_model(cfg).to(device)
    set_trainable(model, cfg.train_parts)
    frozen_encoder = cfg.train_parts != "all"
    model.train()
    if frozen_encoder:
        model.image_encoder.eval()
    img_size = model.img_size

    train_set, val_set = build_datasets(cfg, img_size)
    local_images = cfg.batch_size // dd.world
    if cfg.batch_size % (dd.world * cfg.grad_accum):
        raise ValueError(
            f"field 'batch_size' ({cfg.batch_size}) must be a multiple of processes x grad_accum "
            f"({dd.world} x {cfg.grad_accum})"
        )
    micro_images = local_images // cfg.grad_accum
    steps_per_epoch = len(train_set) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"field 'batch_size' ({cfg.batch_size}) exceeds the {len(train_set)} training images"
        )
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    end = total_steps if cfg.stop_after is None else min(total_steps, cfg.stop_after)  # this run's last step

    # embeddings of the frozen encoder: computed once (split over processes), read back every epoch
    cache = None
    keys: Dict[str, Dict[int, str]] = {"train": {}, "val": {}}
    if frozen_encoder:
        cache = _embedding_cache(cfg)
        for name, ds in (("train", train_set), ("val", val_set)):
            keys[name] = fill_cache(
                model, ds, cache, f"embed {name}", cfg.progress and dd.main, dd.rank, dd.world
            )
        dd.barrier()

    def val_embed(i: int, record: PreparedImage) -> torch.Tensor:
        if cache is not None:
            return _cached(cache, keys["val"][i], device, model, record)
        return _encode(model, record)

    trainer: nn.Module = InteractiveLoss(model, cfg)
    if dd.active:
        find_unused = cfg.train_parts in ("prompt_encoder+decoder", "all")
        trainer = nn.parallel.DistributedDataParallel(
            trainer,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused,
        )
    new_scales = {k: cfg.new_lr_scale for k in getattr(model, "grown_keys", ())}
    groups = param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay, new_scales)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW(
        [{k: v for k, v in g.items() if k != "names"} for g in groups],
        lr=cfg.lr,
        betas=cfg.betas,
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
        **fused,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg, steps_per_epoch, total_steps)
    )
    # samkit.device's policy: bf16 where native, fp16 with a GradScaler, fp32
    amp_dtype = autocast_dtype(device, cfg.amp)
    scaler = make_scaler(device, amp_dtype)
    trainable = [p for p in model.parameters() if p.requires_grad]

    step = 0
    if resume:
        assert state is not None
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        step = int(state["step"])
    metrics = MetricsLog(metrics_path, dd.main, step if resume else None)
    history = [r for r in metrics.read() if r.get("kind") == "train"] if resume else []
    evals = [r for r in metrics.read() if r.get("kind") == "eval"] if resume else []
    if resume_changes:
        metrics.write({"kind": "resume", "step": step, "changed": resume_changes})
    last_good = step if resume else None

    def check_weights() -> None:
        where = (
            f"the last good checkpoint is {ckpt_path} (step {last_good})"
            if last_good is not None
            else "no checkpoint was written before"
        )
        try:
            check_finite(
                model.state_dict(),
                f"the weights after step {step}",
                f"they were not written and {where}. Try a lower lr, a longer warm-up or "
                "grad_clip.",
            )
        except CheckpointError as e:
            raise TrainingDiverged(str(e)) from None

    def save_checkpoint() -> None:
        nonlocal last_good
        check_weights()
        if dd.main:
            _atomic_save(
                {
                    "format": CHECKPOINT_FORMAT,
                    "step": step,
                    "epoch": step // steps_per_epoch,
                    "data_position": {
                        "epoch": step // steps_per_epoch,
                        "step_in_epoch": step % steps_per_epoch,
                    },
                    "config": cfg.to_dict(),
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": _rng_state(),
                },
                ckpt_path,
            )
        last_good = step
        dd.barrier()

    def run_validation() -> None:
        if dd.main and len(val_set) > 0:
            record = {
                "kind": "eval",
                "step": step,
                **validate(model, val_set, val_embed, cfg.eval_masks_per_image, cfg.box_multimask),
            }
            model.train()
            if frozen_encoder:
                model.image_encoder.eval()
            metrics.write(record)
            evals.append(record)
        dd.barrier()

    bar = tqdm(
        total=end, initial=step, desc="train", disable=not (cfg.progress and dd.main)
    )
    t_start = time.time()
    stop = _StopRequest()
    stopped = False

    def stop_requested() -> bool:
        """Whether an interrupt asked to stop; every process stops at the same step."""
        if not dd.active:
            return stop.requested
        flag = torch.tensor([float(stop.requested)], device=device)
        return bool(dd.all_sum(flag)[0] > 0)

    with stop.installed():
        while step < end and not stopped:
            epoch, first = divmod(step, steps_per_epoch)
            order = epoch_order(cfg.seed, epoch, len(train_set))
            last = min(steps_per_epoch, first + end - step)
            keys_for_rank = []
            for s in range(first, last):
                for j in range(dd.rank * local_images, (dd.rank + 1) * local_images):
                    pos = s * cfg.batch_size + j
                    keys_for_rank.append((epoch, pos, order[pos]))
            loader = torch.utils.data.DataLoader(
                train_set,
                batch_size=micro_images,
                sampler=keys_for_rank,
                num_workers=cfg.num_workers,
                collate_fn=_collate,
                # its own generator: creating an iterator must not consume
                # the global RNG (drop path), or a resumed run would differ
                generator=_generator(cfg.seed, epoch, 0x51),
            )
            batches = iter(loader)
            for s in range(first, last):
                t0 = time.time()
                plan = round_plan(
                    cfg.n_rounds,
                    cfg.no_point_rounds,
                    cfg.no_point_placement,
                    _generator(cfg.seed, epoch, s, 0x9C),
                )
                micro: List[List[PromptedImage]] = []
                for _ in range(cfg.grad_accum):
                    prompted = []
                    for record in next(batches):
                        ep, pos, index = record.index
                        p = prompt_image(
                            record, cfg, img_size, _generator(cfg.seed, ep, pos, 0xA5), device
                        )
                        if cache is not None:
                            p.embedding = _cached(
                                cache, keys["train"][index], device, model, record
                            )
                        else:
                            p.image = record.image
                        prompted.append(p)
                    micro.append(prompted)
                n_local = float(sum(p.gt.shape[0] for mb in micro for p in mb))
                n_global = float(dd.all_sum(torch.tensor([n_local], device=device))[0])
                denom = max(n_global, 1.0) * len(plan)

                optimizer.zero_grad(set_to_none=True)
                sums = torch.zeros(6, device=device)
                for a, prompted in enumerate(micro):
                    sync = (
                        nullcontext()
                        if (not dd.active or a == len(micro) - 1)
                        else trainer.no_sync()
                    )
                    with sync:
                        with autocast(device, amp_dtype):
                            out = trainer(prompted, plan)
                        loss = out["loss_sum"] * (dd.world / denom)
                        if not torch.isfinite(loss.detach()):
                            sums[0] = float("nan")
                        scaler.scale(loss).backward()
                    sums += torch.stack(
                        [
                            out["loss_sum"].detach(),
                            out["focal_sum"],
                            out["dice_sum"],
                            out["iou_mse_sum"],
                            out["first_sum"],
                            out["iou_last_sum"],
                        ]
                    ).float()
                dd.all_sum(sums)
                if not torch.isfinite(sums).all():
                    bar.close()
                    where = (
                        f"the last good checkpoint is {ckpt_path} (step {last_good})"
                        if last_good is not None
                        else "no checkpoint was written yet"
                    )
                    raise TrainingDiverged(
                        f"loss is {float(sums[0])} at step {step + 1} (epoch {epoch}); "
                        f"training stopped and {where}. "
                        "Try a lower lr, a longer warm-up, grad_clip, or amp=bf16 instead of fp16."
                    )
                # the gradient's norm before clipping (logged: a norm far above grad_clip means the
                # clip, not the lr, sets the step size)
                scaler.unscale_(optimizer)
                grad_norm = float(
                    torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                )
                lr_now = cfg.lr * lr_factor(step, cfg, steps_per_epoch, total_steps)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1

                sums = sums.cpu().tolist()
                rounds_n = max(n_global, 1.0) * len(plan)
                record = {
                    "kind": "train",
                    "step": step,
                    "epoch": epoch,
                    "loss": sums[0] / rounds_n,
                    "focal": sums[1] / rounds_n,
                    "dice": sums[2] / rounds_n,
                    "iou_mse": sums[3] / rounds_n,
                    "loss_first": sums[4] / max(n_global, 1.0),
                    "iou_last": sums[5] / max(n_global, 1.0),
                    "prompts": int(n_global),
                    "lr": lr_now,
                    "grad_norm": grad_norm,
                    "time": time.time() - t_start,
                    "step_time": time.time() - t0,
                }
                history.append(record)
                if step % max(cfg.log_every, 1) == 0 or step == end:
                    metrics.write(record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", iou=f"{record['iou_last']:.3f}")
                if cfg.eval_every > 0 and step % cfg.eval_every == 0 and step < end:
                    run_validation()
                if cfg.ckpt_every > 0 and step % cfg.ckpt_every == 0 and step < end:
                    save_checkpoint()
                if cfg.snapshot_every > 0 and step % cfg.snapshot_every == 0:
                    check_weights()
                    if dd.main:
                        (out_dir / "snapshots").mkdir(exist_ok=True)
                        _atomic_save(model.state_dict(), out_dir / "snapshots" / f"step_{step:06d}.pth")
                if stop_requested():
                    stopped = True
                    break
    bar.close()
    if stopped and step < end:
        save_checkpoint()
        raise TrainingInterrupted(
            f"training interrupted after step {step} of {total_steps}; {ckpt_path} holds that "
            "step. Continue with resume=True (samkit train CONFIG --resume)."
        )
    if cfg.eval_every >= 0 and (not evals or evals[-1]["step"] != step):
        run_validation()
    save_checkpoint()
    if dd.main:
        _atomic_save(model.state_dict(), model_path)
    dd.barrier()
    return TrainResult(model, step, history, evals, out_dir, ckpt_path, model_path, metrics_path)
