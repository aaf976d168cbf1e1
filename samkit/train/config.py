"""Training configuration: :class:`TrainConfig` (every hyper-parameter of a run) and
:class:`DataConfig` (where the images and masks come from), read from YAML or dicts with
``key=value`` overrides and checked field by field (a bad value raises ``ValueError`` naming the
field and its source)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import yaml

from samkit.device import AMP_CHOICES

TRAIN_PARTS = ("decoder_scratch", "decoder", "iou_head", "prompt_encoder+decoder", "all")
SCHEDULES = ("step", "exp_epoch", "cosine", "constant")
AMP_MODES = AMP_CHOICES  # auto: bf16 on GPUs with native bf16, fp16 on older ones, fp32 on the CPU


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Where the training images and masks come from.

    kind:
        ``scenes``: generated scenes, ``SceneGenerator(image_size, seed)``; images ``0..n_images-1``
        train, the next ``n_val`` validate. ``sa1b``: an SA-1B folder (``root``); with
        ``masks_per_image`` set, :func:`samkit.data.sa1b.select_images` picks ``n_images + n_val``
        images with that many masks. ``coco``: ``root/images_dir`` + ``root/annotations`` (and
        ``val_images_dir`` / ``val_annotations``). ``ndispark``: NDISPark at ``root``
        (:class:`samkit.data.parking.NDISPark`), ``train`` for training, ``validation`` (night) for
        validation, cars only. ``parking``: generated lots in memory (day lots train, night lots
        validate, ``image_size`` wide), or a generated folder at ``root``.
    """

    kind: str = "scenes"
    root: Optional[str] = None
    n_images: Optional[int] = 8  # training images (None: all the split holds)
    n_val: int = 2  # held-out images for validation
    # keep at most this many masks of each image (a fixed subset)
    masks_per_image: Optional[int] = None
    max_mask_fraction: float = 0.9  # drop masks covering more of the image (paper)
    image_size: int = 256  # side of generated scenes
    seed: int = 0  # seed of generated scenes / of SA-1B image selection
    composite_prob: float = 0.0  # scenes: share of large shapes that are objects made of parts (nested masks)
    object_scale: Tuple[float, float] = (0.02, 0.35)  # scenes: object radii, fractions of the side
    hero_prob: float = 0.0  # scenes: share of scenes with a large object in front (a photo's subject)
    min_visible: float = 0.0  # scenes: drop masks of shapes less than this fraction visible (clutter fragments)
    hero_detail: float = 0.0  # scenes: share of subjects that are busier objects (more parts, gaps through them)
    # scenes: a folder of photos added to the texture pool; "photos": Debian's wallpapers (samkit.data.textures)
    texture_dir: Optional[str] = None
    photo_scope: str = "all"  # scenes: where texture_dir's photos appear: all | backdrop (background, stuff)
    coherent_parts: float = 0.0  # scenes: share of objects made of parts under one light, parts of related dyes
    # scenes: a folder of emoji split into parts; "noto": Noto's, fetched on first use (samkit.data.clipart)
    clipart_dir: Optional[str] = None
    clipart_prob: float = 0.0  # scenes: share of objects made of parts that are clipart_dir's drawings
    images_dir: str = "images"  # coco: image folder under root
    annotations: str = "annotations.json"  # coco: annotation file under root
    val_images_dir: Optional[str] = None
    val_annotations: Optional[str] = None
    category_ids: Optional[List[int]] = None  # coco: keep these categories (ndispark: [3], cars)
    cache_in_memory: bool = False  # keep prepared training images in memory (generated scenes)


@dataclass
class TrainConfig:
    """Every hyper-parameter of a training run. The defaults are a small CPU run; ``configs/`` holds
    the course and paper recipes (``configs/paper_vit_b.yaml`` lists the paper's values)."""

    # model
    model: str = "tiny"  # vit_b | vit_l | vit_h | vit_t | tiny | tiny_v2 | tiny_wide | tiny_v1 | tiny_hq
    # None: random init; "default": samkit.load_model's weights; or a path
    checkpoint: Optional[str] = None
    # grow a larger model from a smaller one: this model's weights (a name: samkit.load_model's weights; or
    # the path of a state dict, whose model is recognised from its keys) fill the parameters the two share
    # (tiny_v1 -> tiny_hq, tiny_v2 -> tiny); the new ones keep their initialisation. Layers that grew wider
    # (tiny_v2 -> tiny_wide) keep the old weights in their first channels, and the new channels start unread
    # (checkpoints.widen_state). Into another encoder design (tiny_v1 -> tiny_v2) only the prompt encoder and
    # mask decoder carry over. Exclusive with checkpoint.
    grow_from: Optional[str] = None
    # lr multiplier of the parameters grow_from leaves new (they start at zero or at random; the rest is trained)
    new_lr_scale: float = 1.0
    train_parts: str = "decoder"  # decoder_scratch | decoder | iou_head | prompt_encoder+decoder | all
    # train at this input side instead of the model's own (position tables of a checkpoint made at
    # another side are resized)
    img_size: Optional[int] = None
    # data
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 1
    max_steps: Optional[int] = None  # stop after this many optimiser steps (overrides epochs)
    # end this run after this many steps while the lr schedule still runs to max_steps (a phase cut short;
    # resume with a larger stop_after, or none, to go on)
    stop_after: Optional[int] = None
    batch_size: int = 1  # images per optimiser step, over all processes and micro-batches
    masks_per_image: int = 8  # prompts (masks) per image per step (paper: at most 64)
    min_mask_area: int = 0  # skip masks under this many input-frame pixels (0: keep all)
    # masks drawn for a step with odds proportional to area ** mask_area_power: 0 draws them uniformly (the
    # paper); 0.5 favours large objects, which generated scenes (many small shapes) under-represent
    mask_area_power: float = 0.0
    # optimiser (paper: AdamW, betas 0.9/0.999, lr 8e-4, wd 0.1)
    lr: float = 8e-4
    weight_decay: float = 0.1
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    layer_decay: float = 1.0  # layer-wise lr decay of the image encoder (paper: 0.6 B, 0.8 L/H)
    drop_path: float = 0.0  # stochastic depth of the image encoder (paper: 0.6 B, 0.4 L/H)
    grad_clip: float = 0.0  # max gradient norm; 0 disables
    grad_accum: int = 1  # micro-batches per optimiser step
    # none | auto | bf16 | fp16 (samkit.device.autocast_dtype; fp16 uses a GradScaler)
    amp: str = "none"
    # schedule
    warmup_steps: int = 250  # linear warm-up from lr/warmup_steps
    schedule: str = "step"  # step | exp_epoch | cosine | constant
    milestones: List[int] = field(
        default_factory=lambda: [60000, 86666]
    )  # step: lr *= gamma at each
    gamma: float = 0.1  # step: factor per milestone; exp_epoch: factor per epoch
    # the interactive simulation
    n_rounds: int = 11  # 1 initial prompt + 8 error points + 2 rounds without new points
    no_point_rounds: int = 2
    # random (paper: among the point rounds) | middle; the other is last
    no_point_placement: str = "random"
    mask_feedback: bool = True  # feed the previous low-res logits back as mask_input
    detach_feedback: bool = True  # stop gradients through the fed-back logits
    box_prob: float = 0.5  # odds that the first prompt is a noisy box rather than a point
    box_noise_std: float = 0.1  # box noise std, fraction of the box side
    box_max_noise: float = 20.0  # box noise cap in pixels at 1024 input (scaled to img_size)
    # a box alone trains the three multimask outputs in round 0 (True) or the single output (False), which is
    # what a box gets at inference (multimask_output=False); with True the single output learns boxes only
    # together with correcting clicks (configs/tiny_phase3.yaml measures the difference)
    box_multimask: bool = True
    # loss
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    iou_on_all: bool = True  # IoU head supervised on all three masks (see losses.sam_loss)
    # a first click's three masks learn fixed roles: each is supervised with one of the image's masks that
    # contain the click, smallest / middle / largest (subpart / part / whole; all three the same mask
    # where only one contains it), instead of the min over the three against the sampled mask
    nested_targets: bool = False
    # the same three targets as a tie-break beside the min over the three (losses.sam_loss's aux_gt): this
    # weight times each output's loss against its own nested target is added; 0 leaves it out
    nested_weight: float = 0.0
    loss_frame: str = "low_res"  # low_res | input
    # evaluation, checkpoints, logging
    eval_every: int = 0  # validate every N steps (0: only at the end); -1 never
    eval_masks_per_image: int = 8
    ckpt_every: int = 0  # checkpoint every N steps (0: only at the end)
    # also keep the model's weights every N steps, as <out_dir>/snapshots/step_<N>.pth (0: none), so that a long run's
    # best step can be chosen afterwards (python -m samkit.model_card SNAPSHOT --quick)
    snapshot_every: int = 0
    log_every: int = 1  # metrics line every N steps
    out_dir: str = "runs/train"
    cache_dir: Optional[str] = None  # embedding cache; None: $SAMKIT_HOME/embeddings
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:1 ...
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            _check_keys(DataConfig, self.data, "TrainConfig(data=...)", "data.")
            self.data = DataConfig(**self.data)

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a (YAML-like) dict; unknown keys raise ``ValueError`` naming the key and
        source."""
        if not isinstance(values, dict):
            raise ValueError(
                f"{source}: expected a mapping of hyper-parameters, got {type(values).__name__}"
            )
        values = dict(values)
        data = values.pop("data", None) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{source}: field 'data' must be a mapping, got {type(data).__name__}")
        _check_keys(DataConfig, data, source, "data.")
        _check_keys(cls, values, source, "")
        cfg = cls(data=DataConfig(**data), **values)
        cfg.validate(source)
        return cfg

    @classmethod
    def from_yaml(
        cls, path: Union[str, os.PathLike], overrides: Sequence[str] = ()
    ) -> "TrainConfig":
        """Read a YAML file, then apply ``key=value`` overrides (``data.n_images=4``; values parsed
        as YAML)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config not found: {path}")
        with open(path) as f:
            try:
                values = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML ({e})") from e
        if not isinstance(values, dict):
            raise ValueError(f"{path}: the top level must be a mapping of hyper-parameters")
        return cls.from_dict(apply_overrides(values, overrides), source=str(path))

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["betas"] = list(self.betas)
        return out

    def replace(self, **changes: Any) -> "TrainConfig":
        """A copy with some fields changed (``data`` may be a dict of data fields to change)."""
        values = self.to_dict()
        data = changes.pop("data", None)
        if data is not None:
            values["data"].update(
                dataclasses.asdict(data) if isinstance(data, DataConfig) else data
            )
        values.update(changes)
        return TrainConfig.from_dict(values, source="replace()")

    def validate(self, source: str = "config") -> None:
        """Check every field's type, then its value; raise ValueError naming the source and the
        field.

        Numbers must be finite and in range (``lr > 0``, ``0 < gamma <= 1``, ...), integers must be
        integers (``epochs: 1.5`` is refused, not truncated)."""

        def bad(name: str, msg: str) -> None:
            raise ValueError(f"{source}: field '{name}' {msg}")

        _check_types(self.data, source, "data.")
        _check_types(self, source, "")
        _check_ranges(self, source)

        from samkit.model.configs import MODEL_NAMES
        from samkit.train.data import DATA_SOURCES

        if self.model not in MODEL_NAMES:
            bad("model", f"is {self.model!r}; choose one of {', '.join(MODEL_NAMES)}")
        if self.grow_from is not None:
            if self.grow_from not in MODEL_NAMES and not self.grow_from.endswith((".pth", ".pt")):
                bad("grow_from", f"is {self.grow_from!r}; choose one of {', '.join(MODEL_NAMES)} or give "
                    "the path of a .pth/.pt state dict")
            if self.checkpoint is not None:
                bad("grow_from", "and 'checkpoint' are both set; a model starts from one of them")
        if self.new_lr_scale != 1.0 and self.grow_from is None:
            bad("new_lr_scale", f"is {self.new_lr_scale}, but nothing is new without grow_from")
        if self.train_parts not in TRAIN_PARTS:
            bad("train_parts", f"is {self.train_parts!r}; choose one of {', '.join(TRAIN_PARTS)}")
        if self.train_parts == "iou_head" and self.iou_weight <= 0:
            bad("iou_weight", "must be > 0 with train_parts iou_head: the IoU term is the only loss it trains on")
        if self.schedule not in SCHEDULES:
            bad("schedule", f"is {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.amp not in AMP_MODES:
            bad("amp", f"is {self.amp!r}; choose one of {', '.join(AMP_MODES)}")
        if self.loss_frame not in ("low_res", "input"):
            bad("loss_frame", f"is {self.loss_frame!r}; choose low_res or input")
        if self.img_size is not None and (self.img_size <= 0 or self.img_size % 16):
            bad("img_size", f"is {self.img_size!r}; it must be a positive multiple of 16")
        if self.no_point_placement not in ("random", "middle"):
            bad("no_point_placement", f"is {self.no_point_placement!r}; choose random or middle")
        for name in ("batch_size", "masks_per_image", "grad_accum", "n_rounds", "epochs"):
            if int(getattr(self, name)) < 1:
                bad(name, f"must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            bad("max_steps", f"must be >= 1 or null, got {self.max_steps}")
        if self.stop_after is not None and self.stop_after < 1:
            bad("stop_after", f"must be >= 1 or null, got {self.stop_after}")
        if not 0 <= self.no_point_rounds <= self.n_rounds - 1:
            bad("no_point_rounds", f"must be between 0 and n_rounds - 1 = {self.n_rounds - 1}")
        if not 0.0 <= self.box_prob <= 1.0:
            bad("box_prob", f"must be in [0, 1], got {self.box_prob}")
        if not 0.0 <= self.drop_path < 1.0:
            bad("drop_path", f"must be in [0, 1), got {self.drop_path}")
        if not 0.0 < self.layer_decay <= 1.0:
            bad("layer_decay", f"must be in (0, 1], got {self.layer_decay}")
        if self.lr <= 0:
            bad("lr", f"must be > 0, got {self.lr}")
        if len(self.betas) != 2:
            bad("betas", f"must be two numbers, got {self.betas}")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        self.milestones = [int(m) for m in self.milestones]
        if self.batch_size % self.grad_accum:
            bad(
                "batch_size",
                f"({self.batch_size}) must be a multiple of grad_accum ({self.grad_accum})",
            )
        if self.data.kind not in DATA_SOURCES:
            bad("data.kind", f"is {self.data.kind!r}; choose one of {', '.join(DATA_SOURCES)}")
        if self.data.photo_scope not in ("all", "backdrop"):
            bad("data.photo_scope", f"is {self.data.photo_scope!r}; choose all or backdrop")


def _type_matches(value: Any, annotation: str) -> bool:
    """Whether ``value`` fits a field annotation of these dataclasses (written as a string)."""
    if annotation.startswith("Optional["):
        return value is None or _type_matches(value, annotation[len("Optional[") : -1])
    if annotation == "bool":
        return isinstance(value, bool)
    if annotation == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation == "str":
        return isinstance(value, str)
    if annotation == "List[int]":
        return isinstance(value, (list, tuple)) and all(_type_matches(v, "int") for v in value)
    if annotation == "Tuple[float, float]":
        return (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(_type_matches(v, "float") for v in value)
        )
    return True  # nested dataclasses are checked on their own


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "List[int]": "a list of integers",
    "Tuple[float, float]": "two numbers",
}


def _check_types(obj: Any, source: str, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not _type_matches(value, f.type):
            optional = f.type.startswith("Optional[")
            inner = f.type[len("Optional[") : -1] if optional else f.type
            words = _TYPE_WORDS.get(inner, inner) + (" or null" if optional else "")
            raise ValueError(
                f"{source}: field '{prefix}{f.name}' must be {words}, got {value!r} "
                f"({type(value).__name__})"
            )


# (low, high, low inclusive, high inclusive) of the numeric fields; every float must also be finite
_RANGES: Dict[str, Tuple[float, float, bool, bool]] = {
    "lr": (0, math.inf, False, False),
    "new_lr_scale": (0, math.inf, False, False),
    "weight_decay": (0, math.inf, True, False),
    "eps": (0, math.inf, False, False),
    "grad_clip": (0, math.inf, True, False),
    "gamma": (0, 1, False, True),
    "warmup_steps": (0, math.inf, True, False),
    "box_noise_std": (0, math.inf, True, False),
    "box_max_noise": (0, math.inf, True, False),
    "focal_weight": (0, math.inf, True, False),
    "dice_weight": (0, math.inf, True, False),
    "iou_weight": (0, math.inf, True, False),
    "nested_weight": (0, math.inf, True, False),
    "data.coherent_parts": (0, 1, True, True),
    "data.clipart_prob": (0, 1, True, True),
    "eval_every": (-1, math.inf, True, False),
    "ckpt_every": (0, math.inf, True, False),
    "snapshot_every": (0, math.inf, True, False),
    "log_every": (1, math.inf, True, False),
    "min_mask_area": (0, math.inf, True, False),
    "mask_area_power": (0, 2, True, True),
    "eval_masks_per_image": (1, math.inf, True, False),
    "num_workers": (0, math.inf, True, False),
    "data.n_images": (1, math.inf, True, False),
    "data.n_val": (0, math.inf, True, False),
    "data.masks_per_image": (1, math.inf, True, False),
    "data.max_mask_fraction": (0, 1, False, True),
    "data.image_size": (16, math.inf, True, False),
}


def _check_ranges(cfg: "TrainConfig", source: str) -> None:
    for name, (low, high, low_in, high_in) in _RANGES.items():
        obj, field_name = (cfg.data, name[5:]) if name.startswith("data.") else (cfg, name)
        value = getattr(obj, field_name)
        if value is None:
            continue
        inside = (low <= value if low_in else low < value) and (
            value <= high if high_in else value < high
        )
        if not math.isfinite(value) or not inside:
            interval = f"{'[' if low_in else '('}{low:g}, {high:g}{']' if high_in else ')'}"
            raise ValueError(
                f"{source}: field '{name}' must be a finite number in {interval}, got {value!r}"
            )
    for i, beta in enumerate(cfg.betas):
        if not (math.isfinite(beta) and 0 <= beta < 1):
            raise ValueError(f"{source}: field 'betas[{i}]' must be in [0, 1), got {beta!r}")
    if any(m < 0 for m in cfg.milestones):
        raise ValueError(
            f"{source}: field 'milestones' must be non-negative steps, got {cfg.milestones}"
        )


def _check_keys(cls: type, values: Dict[str, Any], source: str, prefix: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)} - ({"data"} if cls is TrainConfig else set())
    for key in values:
        if key not in known:
            raise ValueError(
                f"{source}: unknown field '{prefix}{key}'; known fields: {', '.join(sorted(known))}"
            )


def apply_overrides(values: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, Any]:
    """Apply ``key=value`` strings (dotted keys reach into ``data``; values are parsed as YAML)."""
    values = json.loads(json.dumps(values))  # deep copy of plain data
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. data.n_images=4)")
        key, raw = item.split("=", 1)
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a mapping")
        node[parts[-1]] = _parse_value(raw)
    return values


def _parse_value(raw: str) -> Any:
    """YAML, except that numbers YAML 1.1 leaves as text (``3e-4``) become floats."""
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_config(
    config: Union["TrainConfig", Dict[str, Any], str, os.PathLike], overrides: Sequence[str] = ()
) -> "TrainConfig":
    """A :class:`TrainConfig` from a config object, a dict or a YAML path, with ``key=value``
    overrides."""
    if isinstance(config, TrainConfig):
        return (
            TrainConfig.from_dict(apply_overrides(config.to_dict(), overrides))
            if overrides
            else config
        )
    if isinstance(config, dict):
        return TrainConfig.from_dict(apply_overrides(config, overrides))
    return TrainConfig.from_yaml(config, overrides)
