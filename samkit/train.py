"""SAM's training recipe (paper, appendix A), for decoder fine-tuning up to training every part.

One training step, per image of the batch:

1. Up to ``masks_per_image`` ground-truth masks are drawn (masks covering more than 90% of the image and
   empty ones are dropped first). Image and masks go through the same ``ResizeLongestSide`` + right/bottom
   zero padding, so the masks live in the model's input frame (``img_size x img_size``).
2. **The interactive simulation** (``n_rounds = 11``): round 0 gives each mask one prompt, a point drawn
   uniformly inside the mask or its box jittered by noise (std 10% of the side, at most 20 px at 1024, so
   ``20 * img_size / 1024`` px here), with equal odds (``box_prob``). The 10 later rounds add one point
   each, drawn uniformly from the error region between the previous prediction and the ground truth
   (positive on a false negative, negative on a false positive), except ``no_point_rounds = 2`` rounds that
   add nothing so the model learns to refine its own mask. As in the paper, one of those is inserted at a
   random position among the point rounds and the other is always last (``no_point_placement="middle"``
   puts the first one in the middle instead). The previous round's low-res logits are fed back as
   ``mask_input`` (``mask_feedback``); the mask fed back, and used for the next error point, is the one with
   the highest predicted IoU when three were returned.
3. **Outputs**: round 0 holds a single prompt, so the three multimask outputs are returned and only the
   lowest-loss one is supervised; the later rounds carry several prompts and supervise the single-mask
   token (paper §3, "Resolving ambiguity").
4. **Loss** (:func:`samkit.losses.sam_loss`): ``20 * focal + dice + IoU-MSE``, averaged over prompts and then
   over rounds; every round back-propagates (the fed-back mask is detached by default, ``detach_feedback``,
   so each round's gradient reaches the decoder through that round's own forward pass).

Frames. The loss is computed on the decoder's low-res logits (``L x L``, 256 for the official models, 128
for ``tiny``) against the ground truth average-pooled from the input frame to ``L x L`` and thresholded at
0.5 (``loss_frame="low_res"``, the default: ``(img_size/L)^2 = 16`` times fewer pixels than upsampling the
logits, with the same decision boundary to within one low-res pixel). ``loss_frame="input"`` upsamples
the logits bilinearly to ``img_size`` (the first step of ``Sam.postprocess_masks``) instead. Error points
are drawn in the loss frame, inside the unpadded image, and mapped back to the input frame at the centre of
their low-res pixel. Validation always scores in the input frame, unpadded.

Frozen encoder. Unless ``train_parts == "all"``, every image is encoded once (progress bar) into an
:class:`samkit.cache.EmbeddingCache` on disk (float16, under ``cache_dir`` or ``$SAMKIT_HOME/embeddings``)
and read back every epoch; with ``"all"`` images are encoded on the fly with gradients.

Randomness. Every random choice about an image (which masks, point or box, first prompts, error points)
comes from a generator seeded by ``(seed, epoch, position in the epoch)``, and the order of the images by
``(seed, epoch)``. So a resumed run continues exactly, and a run on ``k`` processes (DDP) sees the same
prompts as one process with the same total batch.

Run it with :func:`train` (or ``samkit train CONFIG.yaml``; under ``torchrun`` for several processes).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm.auto import tqdm

from samkit.cache import EmbeddingCache, image_key
from samkit.data.prompts import center_point, noisy_boxes, sample_error_points, sample_points
from samkit.losses import iou_of_masks, sam_loss
from samkit.transforms import ResizeLongestSide

__all__ = ["DataConfig", "TrainConfig", "TrainResult", "TrainingDiverged", "train", "round_plan",
           "param_groups", "lr_factor", "build_datasets", "validate", "load_config", "DATA_SOURCES"]

TRAIN_PARTS = ("decoder_scratch", "decoder", "prompt_encoder+decoder", "all")
SCHEDULES = ("step", "exp_epoch", "cosine", "constant")
AMP_MODES = ("none", "bf16", "fp16")
CHECKPOINT_FORMAT = "samkit-train-1"


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Where the training images and masks come from.

    kind:
        ``scenes``: generated scenes, ``SceneGenerator(image_size, seed)``; images ``0..n_images-1`` train,
        the next ``n_val`` validate. ``sa1b``: an SA-1B folder (``root``); with ``masks_per_image`` set,
        :func:`samkit.data.sa1b.select_images` picks ``n_images + n_val`` images with that many masks.
        ``coco``: ``root/images_dir`` + ``root/annotations`` (and ``val_images_dir`` / ``val_annotations``).
        ``ndispark``: NDISPark at ``root`` (:class:`samkit.data.parking.NDISPark`), ``train`` for training,
        ``validation`` (night) for validation, cars only. ``parking``: generated lots in memory (day lots
        train, night lots validate, ``image_size`` wide), or a generated folder at ``root``.
    """

    kind: str = "scenes"
    root: Optional[str] = None
    n_images: Optional[int] = 8          # training images (None: all the split holds)
    n_val: int = 2                       # held-out images for validation
    masks_per_image: Optional[int] = None  # keep at most this many masks of each image (a fixed subset)
    max_mask_fraction: float = 0.9       # drop masks covering more of the image (paper)
    image_size: int = 256                # side of generated scenes
    seed: int = 0                        # seed of generated scenes / of SA-1B image selection
    images_dir: str = "images"           # coco: image folder under root
    annotations: str = "annotations.json"  # coco: annotation file under root
    val_images_dir: Optional[str] = None
    val_annotations: Optional[str] = None
    category_ids: Optional[List[int]] = None  # coco: keep these categories (ndispark: [3], cars)
    cache_in_memory: bool = False        # keep prepared training images in memory (generated scenes)


@dataclass
class TrainConfig:
    """Every hyper-parameter of a training run. The defaults are a small CPU run; ``configs/`` holds the
    course and paper recipes (``configs/paper_vit_b.yaml`` lists the paper's values)."""

    # model
    model: str = "tiny"                  # vit_b | vit_l | vit_h | vit_t | tiny
    checkpoint: Optional[str] = None     # None: random init; "default": samkit.load_model's weights; or a path
    train_parts: str = "decoder"         # decoder_scratch | decoder | prompt_encoder+decoder | all
    img_size: Optional[int] = None       # train at this input side instead of the model's own (position
                                         # tables of a checkpoint made at another side are resized)
    # data
    data: DataConfig = field(default_factory=DataConfig)
    epochs: int = 1
    max_steps: Optional[int] = None      # stop after this many optimiser steps (overrides epochs)
    batch_size: int = 1                  # images per optimiser step, over all processes and micro-batches
    masks_per_image: int = 8             # prompts (masks) per image per step (paper: at most 64)
    min_mask_area: int = 0               # skip masks under this many input-frame pixels (0: keep all)
    # optimiser (paper: AdamW, betas 0.9/0.999, lr 8e-4, wd 0.1)
    lr: float = 8e-4
    weight_decay: float = 0.1
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    layer_decay: float = 1.0             # layer-wise lr decay of the image encoder (paper: 0.6 B, 0.8 L/H)
    drop_path: float = 0.0               # stochastic depth of the image encoder (paper: 0.6 B, 0.4 L/H)
    grad_clip: float = 0.0               # max gradient norm; 0 disables
    grad_accum: int = 1                  # micro-batches per optimiser step
    amp: str = "none"                    # none | bf16 | fp16 (fp16 uses a GradScaler)
    # schedule
    warmup_steps: int = 250              # linear warm-up from lr/warmup_steps
    schedule: str = "step"               # step | exp_epoch | cosine | constant
    milestones: List[int] = field(default_factory=lambda: [60000, 86666])  # step: lr *= gamma at each
    gamma: float = 0.1                   # step: factor per milestone; exp_epoch: factor per epoch
    # the interactive simulation
    n_rounds: int = 11                   # 1 initial prompt + 8 error points + 2 rounds without new points
    no_point_rounds: int = 2
    no_point_placement: str = "random"   # random (paper: among the point rounds) | middle; the other is last
    mask_feedback: bool = True           # feed the previous low-res logits back as mask_input
    detach_feedback: bool = True         # stop gradients through the fed-back logits
    box_prob: float = 0.5                # odds that the first prompt is a noisy box rather than a point
    box_noise_std: float = 0.1           # box noise std, fraction of the box side
    box_max_noise: float = 20.0          # box noise cap in pixels at 1024 input (scaled to img_size)
    box_multimask: bool = True           # a box alone is a single prompt: multimask output in round 0
    # loss
    focal_weight: float = 20.0
    dice_weight: float = 1.0
    iou_weight: float = 1.0
    iou_on_all: bool = True              # IoU head supervised on all three masks (see losses.sam_loss)
    loss_frame: str = "low_res"          # low_res | input
    # evaluation, checkpoints, logging
    eval_every: int = 0                  # validate every N steps (0: only at the end); -1 never
    eval_masks_per_image: int = 8
    ckpt_every: int = 0                  # checkpoint every N steps (0: only at the end)
    log_every: int = 1                   # metrics line every N steps
    out_dir: str = "runs/train"
    cache_dir: Optional[str] = None      # embedding cache; None: $SAMKIT_HOME/embeddings
    seed: int = 0
    device: str = "auto"                 # auto | cpu | cuda | cuda:1 ...
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            _check_keys(DataConfig, self.data, "TrainConfig(data=...)", "data.")
            self.data = DataConfig(**self.data)

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config") -> "TrainConfig":
        """Build from a (YAML-like) dict; unknown keys raise ``ValueError`` naming the key and source."""
        if not isinstance(values, dict):
            raise ValueError(f"{source}: expected a mapping of hyper-parameters, got {type(values).__name__}")
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
    def from_yaml(cls, path: Union[str, os.PathLike], overrides: Sequence[str] = ()) -> "TrainConfig":
        """Read a YAML file, then apply ``key=value`` overrides (``data.n_images=4``; values parsed as YAML)."""
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
            values["data"].update(dataclasses.asdict(data) if isinstance(data, DataConfig) else data)
        values.update(changes)
        return TrainConfig.from_dict(values, source="replace()")

    def validate(self, source: str = "config") -> None:
        def bad(name: str, msg: str) -> None:
            raise ValueError(f"{source}: field '{name}' {msg}")

        from samkit.model.configs import MODEL_NAMES

        if self.model not in MODEL_NAMES:
            bad("model", f"is {self.model!r}; choose one of {', '.join(MODEL_NAMES)}")
        if self.train_parts not in TRAIN_PARTS:
            bad("train_parts", f"is {self.train_parts!r}; choose one of {', '.join(TRAIN_PARTS)}")
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
            bad("batch_size", f"({self.batch_size}) must be a multiple of grad_accum ({self.grad_accum})")
        if self.data.kind not in DATA_SOURCES:
            bad("data.kind", f"is {self.data.kind!r}; choose one of {', '.join(DATA_SOURCES)}")


def _check_keys(cls: type, values: Dict[str, Any], source: str, prefix: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)} - ({"data"} if cls is TrainConfig else set())
    for key in values:
        if key not in known:
            raise ValueError(f"{source}: unknown field '{prefix}{key}'; known fields: {', '.join(sorted(known))}")


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


def load_config(config: Union["TrainConfig", Dict[str, Any], str, os.PathLike],
                overrides: Sequence[str] = ()) -> "TrainConfig":
    """A :class:`TrainConfig` from a config object, a dict or a YAML path, with ``key=value`` overrides."""
    if isinstance(config, TrainConfig):
        return TrainConfig.from_dict(apply_overrides(config.to_dict(), overrides)) if overrides else config
    if isinstance(config, dict):
        return TrainConfig.from_dict(apply_overrides(config, overrides))
    return TrainConfig.from_yaml(config, overrides)


# --------------------------------------------------------------------------------------------------
# Data: sources -> prepared images (input frame)
# --------------------------------------------------------------------------------------------------
class _Items:
    """``index -> (image H x W x 3 uint8, masks N x H x W bool)`` over a reader whose items are dicts."""

    def __init__(self, reader: Any, indices: Optional[Sequence[int]] = None) -> None:
        self.reader = reader
        self.indices = list(range(len(reader))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __call__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        item = self.reader[self.indices[i]]
        return item["image"], np.asarray(item["masks"], dtype=bool)


class _ListItems:
    def __init__(self, items: List[Dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __call__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.items[i]["image"], np.asarray(self.items[i]["masks"], dtype=bool)


class _SceneItems:
    def __init__(self, size: int, seed: int, start: int, count: int) -> None:
        from samkit.data.synthetic import SceneGenerator

        self.generator = SceneGenerator(size=size, seed=seed)
        self.start, self.count = start, count

    def __len__(self) -> int:
        return self.count

    def __call__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.generator(self.start + i)


def _root(data: DataConfig) -> Path:
    if not data.root:
        raise ValueError(f"data.kind={data.kind!r} needs data.root (the data set folder)")
    root = Path(data.root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data.root not found: {root} (data.kind={data.kind!r})")
    return root


def _scenes(data: DataConfig) -> Tuple[Any, Any]:
    n = data.n_images if data.n_images is not None else 64
    return (_SceneItems(data.image_size, data.seed, 0, n),
            _SceneItems(data.image_size, data.seed, n, data.n_val))


def _sa1b(data: DataConfig) -> Tuple[Any, Any]:
    from samkit.data.sa1b import SA1B, select_images

    reader = SA1B(_root(data))
    if data.masks_per_image is not None:
        n = data.n_images if data.n_images is not None else len(reader) - data.n_val
        items = select_images(reader, n + data.n_val, data.masks_per_image, seed=data.seed,
                              max_area=data.max_mask_fraction)
        return _ListItems(items[:n]), _ListItems(items[n:])
    n = data.n_images if data.n_images is not None else len(reader) - data.n_val
    if n + data.n_val > len(reader):
        raise ValueError(f"data.n_images + data.n_val = {n + data.n_val} but {reader.root} holds {len(reader)} images")
    return _Items(reader, range(n)), _Items(reader, range(n, n + data.n_val))


def _coco_reader(images_dir: Path, annotations: Path, data: DataConfig) -> Any:
    from samkit.data.coco import COCOInstances

    return COCOInstances(images_dir, annotations, category_ids=data.category_ids, skip_empty=True,
                         missing_segmentation="skip")


def _head(reader: Any, n: Optional[int]) -> _Items:
    count = len(reader) if n is None else min(n, len(reader))
    return _Items(reader, range(count))


def _coco(data: DataConfig) -> Tuple[Any, Any]:
    root = _root(data)
    train = _coco_reader(root / data.images_dir, root / data.annotations, data)
    if data.val_annotations:
        val = _coco_reader(root / (data.val_images_dir or data.images_dir), root / data.val_annotations, data)
        return _head(train, data.n_images), _head(val, data.n_val)
    n = data.n_images if data.n_images is not None else len(train) - data.n_val
    return _Items(train, range(n)), _Items(train, range(n, min(len(train), n + data.n_val)))


def _ndispark(data: DataConfig) -> Tuple[Any, Any]:
    from samkit.data.parking import NDISPark

    root = _root(data)
    kwargs = dict(skip_empty=True, missing_segmentation="skip")
    if data.category_ids is not None:
        kwargs["category_ids"] = data.category_ids
    return (_head(NDISPark(root, "train", **kwargs), data.n_images),
            _head(NDISPark(root, "validation", **kwargs), data.n_val))


class _ParkingItems:
    def __init__(self, size: int, seed: int, night: bool, count: int) -> None:
        self.size, self.seed, self.night, self.count = (size, size * 3 // 4), seed, night, count

    def __len__(self) -> int:
        return self.count

    def __call__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        from samkit.data.parking import parking_lot

        return parking_lot(i, self.size, self.seed, self.night)


def _parking(data: DataConfig) -> Tuple[Any, Any]:
    """Generated lots (``samkit.data.parking.parking_lot``, ``image_size`` wide, 4:3): day lots train,
    night lots validate, as in NDISPark. With ``root`` set, a folder in NDISPark's layout is read instead."""
    if data.root:
        return _ndispark(data)
    n = data.n_images if data.n_images is not None else 111
    return (_ParkingItems(data.image_size, data.seed, False, n),
            _ParkingItems(data.image_size, data.seed, True, data.n_val))


# kind -> function(DataConfig) -> (train source, val source); a source is len() + __call__(i) -> (image, masks)
DATA_SOURCES: Dict[str, Callable[[DataConfig], Tuple[Any, Any]]] = {
    "scenes": _scenes, "sa1b": _sa1b, "coco": _coco, "ndispark": _ndispark, "parking": _parking,
}


@dataclass
class PreparedImage:
    """One image in the model's input frame.

    image: ``3 x h x w`` uint8, resized so that ``max(h, w) == img_size`` (not normalised, not padded).
    masks: ``K x img_size x img_size`` bool, resized like the image and zero-padded right/bottom.
    """

    index: int
    image: torch.Tensor
    masks: torch.Tensor
    input_size: Tuple[int, int]
    original_size: Tuple[int, int]


def prepare_image(image: np.ndarray, masks: np.ndarray, img_size: int, max_masks: Optional[int] = None,
                  max_mask_fraction: float = 0.9, index: int = 0) -> PreparedImage:
    """Resize an image and its masks to the input frame; drop empty and too-large masks.

    Args:
        image: ``H x W x 3`` uint8 RGB.
        masks: ``N x H x W`` bool, original pixels.
        max_masks: keep at most the first ``max_masks`` masks that pass the filter.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image {index}: expected H x W x 3 uint8, got {image.shape} {image.dtype}")
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"image {index}: masks {masks.shape} do not match the image {image.shape[:2]}")
    area = masks.reshape(len(masks), -1).mean(1) if len(masks) else np.zeros(0)
    keep = np.flatnonzero((area > 0) & (area <= max_mask_fraction))
    if max_masks is not None:
        keep = keep[:max_masks]
    transform = ResizeLongestSide(img_size)
    resized = transform.apply_image(image)
    h, w = resized.shape[:2]
    out = torch.zeros(len(keep), img_size, img_size, dtype=torch.bool)
    for start in range(0, len(keep), 16):  # resize in chunks: large masks are big as floats
        chunk = torch.from_numpy(masks[keep[start:start + 16]])
        out[start:start + len(chunk), :h, :w] = transform.apply_masks_torch(chunk) > 0.5
    out = out[out.flatten(1).any(1)]  # a tiny mask can vanish when downscaled
    return PreparedImage(index, torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1),
                         out, (h, w), (image.shape[0], image.shape[1]))


class PreparedImages(torch.utils.data.Dataset):
    """A source of ``(image, masks)`` pairs as :class:`PreparedImage` records.

    Indexable by an int or by ``(epoch, position, index)`` tuples (what the training sampler yields);
    the tuple comes back as ``record.index`` so the loop knows each image's place in the epoch.
    """

    def __init__(self, source: Any, img_size: int, max_masks: Optional[int] = None,
                 max_mask_fraction: float = 0.9, cache_in_memory: bool = False) -> None:
        self.source = source
        self.img_size = img_size
        self.max_masks = max_masks
        self.max_mask_fraction = max_mask_fraction
        self.cache_in_memory = cache_in_memory
        self._memory: Dict[int, Tuple[PreparedImage, np.ndarray]] = {}  # masks bit-packed (8x smaller)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: Union[int, Tuple[int, int, int]]) -> PreparedImage:
        index = key[2] if isinstance(key, tuple) else int(key)
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range for {len(self)} images")
        if index in self._memory:
            stub, bits = self._memory[index]
            masks = np.unpackbits(bits, count=stub.masks.shape[0] * self.img_size ** 2).astype(bool)
            record = dataclasses.replace(stub, masks=torch.from_numpy(masks).reshape(-1, self.img_size, self.img_size))
        else:
            image, masks = self.source(index)
            record = prepare_image(image, masks, self.img_size, self.max_masks, self.max_mask_fraction, index)
            if self.cache_in_memory:
                bits = np.packbits(record.masks.numpy().reshape(-1))
                self._memory[index] = (dataclasses.replace(record, masks=record.masks[:, :0, :0]), bits)
        if isinstance(key, tuple):
            record = dataclasses.replace(record, index=key)  # type: ignore[arg-type]
        return record


def build_datasets(cfg: TrainConfig, img_size: int) -> Tuple[PreparedImages, PreparedImages]:
    """The training and validation sets of ``cfg.data``, in the input frame of a model of ``img_size``."""
    train_src, val_src = DATA_SOURCES[cfg.data.kind](cfg.data)
    keep = cfg.data.masks_per_image
    return (PreparedImages(train_src, img_size, keep, cfg.data.max_mask_fraction, cfg.data.cache_in_memory),
            PreparedImages(val_src, img_size, keep, cfg.data.max_mask_fraction, cfg.data.cache_in_memory))


def _collate(records: List[PreparedImage]) -> List[PreparedImage]:
    return records


# --------------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------------
def _seed_int(*parts: int) -> int:
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed_int(*parts))


def epoch_order(seed: int, epoch: int, n: int) -> List[int]:
    """The order of the ``n`` training images in ``epoch`` (a seeded permutation)."""
    return torch.randperm(n, generator=_generator(seed, epoch, 0x0D)).tolist()


def round_plan(n_rounds: int = 11, no_point_rounds: int = 2, placement: str = "random",
               generator: Optional[torch.Generator] = None) -> List[str]:
    """What each round of the interactive simulation adds: ``"first"``, ``"point"`` or ``"none"``.

    Round 0 is the first prompt. With the paper's 11 rounds and 2 rounds without a new point, the last
    round is always ``"none"`` and the other ``"none"`` goes at a random position among the 8 point rounds
    (``placement="random"``, as in the paper) or in their middle (``"middle"``).

    >>> round_plan(11, 2, "middle")
    ['first', 'point', 'point', 'point', 'point', 'none', 'point', 'point', 'point', 'point', 'none']
    """
    if n_rounds < 1 or not 0 <= no_point_rounds <= n_rounds - 1:
        raise ValueError(f"need n_rounds >= 1 and 0 <= no_point_rounds < n_rounds, got {n_rounds}, {no_point_rounds}")
    if n_rounds == 1:
        return ["first"]
    n_points = n_rounds - 1 - no_point_rounds
    middle = ["point"] * n_points
    extra = max(no_point_rounds - 1, 0)
    for k in range(extra):
        if placement == "random":
            pos = int(torch.randint(len(middle) + 1, (1,), generator=generator))
        else:
            pos = (len(middle) + 1) // 2 if k == 0 else len(middle)
        middle.insert(pos, "none")
    return ["first"] + middle + (["none"] if no_point_rounds > 0 else [])


# --------------------------------------------------------------------------------------------------
# The interactive simulation (one forward = one micro-batch, so DDP sees one forward per backward)
# --------------------------------------------------------------------------------------------------
@dataclass
class PromptedImage:
    """The prompts of one image in one step (all in the input frame).

    gt: ``P x S x S`` bool; is_box: ``P`` bool; points: ``Pp x 1 x 2`` (rows with ``~is_box``);
    boxes: ``Pb x 4`` XYXY (rows with ``is_box``); generator: this image's generator for error points.
    """

    gt: torch.Tensor
    is_box: torch.Tensor
    points: torch.Tensor
    boxes: torch.Tensor
    input_size: Tuple[int, int]
    generator: torch.Generator
    image: Optional[torch.Tensor] = None       # 3 x h x w uint8 when the encoder runs in the forward
    embedding: Optional[torch.Tensor] = None   # 1 x C x E x E when it is cached


class _Group:
    """Rows of a micro-batch sharing the first prompt's kind (so they share one decoder call)."""

    def __init__(self, is_box: bool) -> None:
        self.is_box = is_box
        self.owner: List[int] = []              # image of each row
        self.slices: List[Tuple[int, slice]] = []  # (image, rows of the group) per image
        self.gt: List[torch.Tensor] = []
        self.first: List[torch.Tensor] = []

    def add(self, image: int, gt: torch.Tensor, first: torch.Tensor) -> None:
        if len(gt) == 0:
            return
        start = len(self.owner)
        self.owner += [image] * len(gt)
        self.slices.append((image, slice(start, start + len(gt))))
        self.gt.append(gt)
        self.first.append(first)


class InteractiveLoss(nn.Module):
    """Wraps a :class:`samkit.model.Sam`; ``forward(images, plan)`` runs the interactive simulation of a
    micro-batch and returns the summed losses (so several micro-batches and processes can be normalised
    by the total number of prompts).

    Returns a dict of scalar tensors: ``loss_sum`` (with gradients: sum over rounds and prompts of the
    per-prompt loss), ``focal_sum``, ``dice_sum``, ``iou_mse_sum``, ``first_sum`` (round 0 only),
    ``iou_last_sum`` (IoU of the supervised mask in the last round) and ``count`` (prompts).
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg

    # frames -------------------------------------------------------------------------------------
    def _gt_frame(self, gt: torch.Tensor) -> torch.Tensor:
        """``P x S x S`` bool -> ``P x 1 x F x F`` float targets in the loss frame."""
        m = self.model
        if self.cfg.loss_frame == "input":
            return gt[:, None].float()
        factor = m.img_size // m.config.low_res_size if m.config is not None else 4
        return (F.avg_pool2d(gt[:, None].float(), factor) > 0.5).float()

    def _logits_frame(self, low_res: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss_frame == "input":
            s = self.model.img_size
            return F.interpolate(low_res, (s, s), mode="bilinear", align_corners=False)
        return low_res

    def _embeddings(self, images: List[PromptedImage]) -> torch.Tensor:
        if images[0].embedding is not None:
            return torch.cat([im.embedding for im in images], dim=0)
        m = self.model
        x = torch.stack([m.preprocess(im.image.to(m.device).float()[None])[0] for im in images])
        return m.image_encoder(x)

    def forward(self, images: List[PromptedImage], plan: List[str]) -> Dict[str, torch.Tensor]:
        cfg, m = self.cfg, self.model
        device = m.device
        zero = torch.zeros((), device=device)
        total = {k: zero.clone() for k in ("focal_sum", "dice_sum", "iou_mse_sum", "first_sum", "iou_last_sum")}
        count = sum(int(im.gt.shape[0]) for im in images)
        if count == 0:
            # keep every trainable parameter in the graph so that DDP's reduction still runs
            loss = sum((p.sum() * 0 for p in m.parameters() if p.requires_grad), zero)
            return {"loss_sum": loss, **total, "count": zero}
        emb = self._embeddings(images)
        groups = [_Group(False), _Group(True)]
        for i, im in enumerate(images):
            groups[0].add(i, im.gt[~im.is_box], im.points)
            groups[1].add(i, im.gt[im.is_box], im.boxes)

        s = m.img_size
        low = m.config.low_res_size if m.config is not None else s // 4
        scale = s / low if cfg.loss_frame == "low_res" else 1.0
        fs = low if cfg.loss_frame == "low_res" else s
        loss_sum = zero.clone()
        states = []
        for g in groups:
            if not g.owner:
                continue
            gt_in = torch.cat(g.gt)
            valid = torch.zeros(len(g.owner), fs, fs, dtype=torch.bool, device=device)
            for i, rows in g.slices:
                h, w = images[i].input_size
                valid[rows, : math.ceil(h / scale), : math.ceil(w / scale)] = True
            state = {
                "group": g,
                "owner": torch.tensor(g.owner, device=device),
                "target": self._gt_frame(gt_in),
                "valid": valid,
                "coords": None, "labels": None, "boxes": None, "mask": None,
            }
            first = torch.cat(g.first)
            if g.is_box:
                state["boxes"] = first
            else:
                state["coords"] = first
                state["labels"] = torch.ones(first.shape[:2], dtype=torch.long, device=device)
            states.append(state)

        for r, kind in enumerate(plan):
            if kind == "point":
                for st in states:
                    self._add_error_points(st, images, scale)
            for st in states:
                g = st["group"]
                multimask = r == 0 and (cfg.box_multimask or not g.is_box)
                low_res, iou_pred = m.encode_prompts_and_decode(
                    emb[st["owner"]], st["coords"], st["labels"], st["boxes"],
                    st["mask"] if cfg.mask_feedback else None, multimask)
                out = sam_loss(self._logits_frame(low_res), iou_pred, st["target"],
                               cfg.focal_weight, cfg.dice_weight, cfg.iou_weight, iou_on_all=cfg.iou_on_all)
                n = float(len(g.owner))
                loss_sum = loss_sum + out["per_prompt"].sum()
                total["focal_sum"] += out["focal"].detach() * n
                total["dice_sum"] += out["dice"].detach() * n
                total["iou_mse_sum"] += out["iou_mse"].detach() * n
                if r == 0:
                    total["first_sum"] += out["per_prompt"].detach().sum()
                if r == len(plan) - 1:
                    total["iou_last_sum"] += out["iou"].sum()
                best = iou_pred.detach().argmax(dim=1) if low_res.shape[1] > 1 else \
                    torch.zeros(low_res.shape[0], dtype=torch.long, device=device)
                chosen = low_res[torch.arange(low_res.shape[0], device=device), best][:, None]
                st["mask"] = chosen.detach() if cfg.detach_feedback else chosen
                st["pred"] = (self._logits_frame(chosen.detach())[:, 0] > m.mask_threshold) & st["valid"]
        return {"loss_sum": loss_sum, **total, "count": torch.tensor(float(count), device=device)}

    def _add_error_points(self, st: Dict[str, Any], images: List[PromptedImage], scale: float) -> None:
        """Append one point per row, drawn from the error region of the previous prediction (input frame)."""
        g = st["group"]
        gt = st["target"][:, 0] > 0.5
        coords = torch.zeros(len(g.owner), 1, 2, device=gt.device)
        labels = torch.full((len(g.owner), 1), -1, dtype=torch.long, device=gt.device)
        for i, rows in g.slices:
            c, lab = sample_error_points(st["pred"][rows], gt[rows] & st["valid"][rows], images[i].generator)
            coords[rows], labels[rows] = c, lab
        if scale != 1.0:  # centre of the low-res pixel, in input-frame pixel indices
            coords = torch.where(labels[..., None] >= 0, (coords + 0.5) * scale - 0.5, torch.zeros_like(coords))
        if st["coords"] is None:
            st["coords"], st["labels"] = coords, labels
        else:
            st["coords"] = torch.cat([st["coords"], coords], dim=1)
            st["labels"] = torch.cat([st["labels"], labels], dim=1)


def prompt_image(record: PreparedImage, cfg: TrainConfig, img_size: int, generator: torch.Generator,
                 device: torch.device) -> PromptedImage:
    """Draw this step's masks and first prompts for one image (all randomness from ``generator``)."""
    k = record.masks.shape[0]
    candidates = torch.arange(k)
    if cfg.min_mask_area > 0:  # masks too small for the low-res logits to represent
        candidates = torch.nonzero(record.masks.flatten(1).sum(1) >= cfg.min_mask_area).flatten()
    n = len(candidates)
    pick = candidates[torch.randperm(n, generator=generator)[: min(cfg.masks_per_image, n)]]
    gt = record.masks[pick].to(device)
    is_box = torch.rand(len(pick), generator=generator) < cfg.box_prob
    is_box_dev = is_box.to(device)
    points = torch.zeros(0, 1, 2, device=device)
    boxes = torch.zeros(0, 4, device=device)
    if (~is_box).any():
        points, _ = sample_points(gt[~is_box_dev], 1, generator)
    if is_box.any():
        boxes = noisy_boxes(gt[is_box_dev], cfg.box_noise_std, cfg.box_max_noise * img_size / 1024, generator)
    return PromptedImage(gt, is_box_dev, points, boxes, record.input_size, generator)


# --------------------------------------------------------------------------------------------------
# Model, parameters, optimiser, schedule
# --------------------------------------------------------------------------------------------------
def build_training_model(cfg: TrainConfig) -> nn.Module:
    """The model of ``cfg``: weights from ``cfg.checkpoint`` (position tables resized to ``cfg.img_size``),
    decoder re-initialised for ``decoder_scratch``, drop path set on the encoder."""
    import samkit
    from samkit import checkpoints
    from samkit.model.configs import get_config
    from samkit.model.sam import build_sam

    config = get_config(cfg.model)
    if cfg.img_size is not None:
        config = config.at_resolution(cfg.img_size)
    model = build_sam(config)
    if cfg.checkpoint == "default":
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
    """Freeze everything but ``train_parts``; returns the names of the trainable top-level modules."""
    parts = {"decoder_scratch": ["mask_decoder"], "decoder": ["mask_decoder"],
             "prompt_encoder+decoder": ["prompt_encoder", "mask_decoder"],
             "all": ["image_encoder", "prompt_encoder", "mask_decoder"]}[train_parts]
    for name, module in model.named_children():
        module.requires_grad_(name in parts)
    return parts


def _no_decay_names(model: nn.Module) -> set:
    names = set()
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            full = f"{mod_name}.{p_name}" if mod_name else p_name
            if (p.ndim <= 1 or isinstance(module, (nn.Embedding, nn.LayerNorm, nn.GroupNorm))
                    or "norm" in mod_name.split(".")[-1].lower() or p_name in ("pos_embed",)
                    or p_name.startswith("rel_pos") or "attention_biases" in p_name):
                names.add(full)
    return names


def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0
                 ) -> List[Dict[str, Any]]:
    """AdamW parameter groups of the trainable parameters.

    No weight decay on norms, biases and embeddings (``nn.Embedding`` weights such as the prompt and
    output tokens, ``pos_embed``, relative position tables). With ``layer_decay < 1`` an image-encoder
    parameter at depth ``i`` (``image_encoder.layer_id``: 0 for the patch embedding, ``b + 1`` for block
    ``b``, the neck last) gets ``lr * layer_decay ** (max_depth - i)``; the prompt encoder and the decoder
    get the full ``lr``. Each group carries ``lr_scale`` and ``names``.
    """
    no_decay = _no_decay_names(model)
    encoder = getattr(model, "image_encoder", None)
    depth_of: Dict[str, int] = {}
    max_depth = 0
    if layer_decay < 1.0 and encoder is not None:
        if not hasattr(encoder, "layer_id"):
            raise ValueError(f"layer_decay={layer_decay} needs image_encoder.layer_id, which "
                             f"{type(encoder).__name__} lacks")
        for name, _ in encoder.named_parameters():
            depth_of[name] = encoder.layer_id(name)
        max_depth = max(depth_of.values(), default=0)
    groups: Dict[Tuple[bool, float], Dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        scale = 1.0
        if name.startswith("image_encoder.") and depth_of:
            scale = layer_decay ** (max_depth - depth_of[name[len("image_encoder."):]])
        decay = name not in no_decay
        key = (decay, scale)
        if key not in groups:
            groups[key] = {"params": [], "names": [], "weight_decay": weight_decay if decay else 0.0,
                           "lr": lr * scale, "lr_scale": scale}
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    if not groups:
        raise ValueError("no trainable parameters: check train_parts")
    return [groups[k] for k in sorted(groups, key=lambda k: (-k[1], not k[0]))]


def lr_factor(step: int, cfg: TrainConfig, steps_per_epoch: int, total_steps: int) -> float:
    """Multiplier of the base lr at optimiser step ``step`` (0-based): linear warm-up times the schedule.

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


def fill_cache(model: nn.Module, dataset: PreparedImages, cache: EmbeddingCache, desc: str,
               progress: bool = True, rank: int = 0, world: int = 1) -> Dict[int, str]:
    """Encode the images of ``dataset`` not yet in ``cache``; returns ``{index: key}`` for every image.

    With several processes each encodes the images ``rank, rank + world, ...`` (the others only hash
    theirs). The key is :func:`samkit.cache.image_key` of the resized image (as :class:`samkit.Predictor`
    uses), so a later run with the same encoder and images reuses the files.
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


def _cached(cache: EmbeddingCache, key: str, device: torch.device) -> torch.Tensor:
    emb = cache.get(key)
    if emb is None:
        raise RuntimeError(f"embedding {key} vanished from the cache {cache.directory}")
    # round to float16 as on disk, so a value from memory equals one read back from disk
    return emb.to(torch.float16).to(device=device, dtype=torch.float32)


@torch.no_grad()
def validate(model: nn.Module, dataset: PreparedImages, embed: Callable[[int, PreparedImage], torch.Tensor],
             masks_per_image: int = 8, box_multimask: bool = True, progress: bool = False) -> Dict[str, float]:
    """Single-prompt validation mIoU in the input frame (unpadded).

    ``point``: one click at the mask's interior point farthest from the boundary, three masks; ``oracle``
    scores the best of the three, ``confident`` the one with the highest predicted IoU. ``box``: the tight
    box of the mask (multimask and the confident mask when ``box_multimask``, else the single mask).

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
        pts = torch.tensor([center_point(g[:h, :w]) for g in gt.cpu()], dtype=torch.float32,
                           device=model.device)[:, None]
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
        return {"miou_point_oracle": float("nan"), "miou_point_confident": float("nan"),
                "miou_box": float("nan"), "n_masks": 0}
    return {"miou_point_oracle": float(torch.cat(oracle).mean()),
            "miou_point_confident": float(torch.cat(confident).mean()),
            "miou_box": float(torch.cat(box_iou).mean()), "n_masks": int(torch.cat(oracle).numel())}


# --------------------------------------------------------------------------------------------------
# Checkpoints, metrics, distributed helpers
# --------------------------------------------------------------------------------------------------
class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    """What :func:`train` returns. ``history``: the per-step metrics; ``evals``: the validation records."""

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
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _rng_state() -> Dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                   "has_gauss": int(has_gauss), "gauss": float(gauss)}  # tensors: loadable with weights_only
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def load_training_checkpoint(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """A training checkpoint (model, optimiser, scheduler, scaler, RNG states, step), read with
    ``torch.load(weights_only=True)``: tensors and plain containers only, never code. Checkpoints of
    earlier samkit versions held numpy's RNG array; numpy's array constructors are allowed for those."""
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
        np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    else:  # checkpoints of earlier samkit versions stored numpy's tuple as is
        np.random.set_state(n)
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    """JSON lines: ``{"kind": "train", "step", "epoch", "loss", "focal", "dice", "iou_mse", "loss_first",
    "iou_last", "lr", "time", "step_time"}`` and ``{"kind": "eval", "step", "miou_point_oracle",
    "miou_point_confident", "miou_box", ...}``. Resuming drops lines past the checkpoint's step."""

    def __init__(self, path: Path, enabled: bool, resume_step: Optional[int] = None) -> None:
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if resume_step is None:
            path.write_text("")
        elif path.exists():
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            path.write_text("".join(line + "\n" for line in kept))

    def write(self, record: Dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def read(self) -> List[Dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


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
        return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), True)


def _resolve_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if cfg.device == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(cfg.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------
def train(config: Union[TrainConfig, Dict[str, Any], str, os.PathLike], resume: bool = False,
          overrides: Sequence[str] = ()) -> TrainResult:
    """Train a SAM with the paper's interactive recipe; see the module docstring.

    Args:
        config: a :class:`TrainConfig`, a dict of its fields, or a YAML file.
        resume: continue from ``out_dir/checkpoint.pt`` (model, optimiser, schedule, scaler, RNG states and
            data position), so ``N`` steps, or ``k`` steps + resume + ``N - k`` steps, give the same curve.
        overrides: ``key=value`` strings applied to the config.

    Writes to ``out_dir``: ``config.yaml``, ``metrics.jsonl``, ``checkpoint.pt`` (training state, written
    atomically every ``ckpt_every`` steps and at the end) and ``model.pth`` (the final state dict, loadable
    by :func:`samkit.load_model`).

    Raises:
        TrainingDiverged: the loss became NaN/inf (the last checkpoint is left as it was).
    """
    cfg = load_config(config, overrides)
    device_kind = "cuda" if (cfg.device.startswith("cuda") or (cfg.device == "auto" and torch.cuda.is_available())) else "cpu"
    dd = _setup_distributed(device_kind)
    try:
        return _train(cfg, resume, dd)
    finally:
        if dd.owns_group:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, resume: bool, dd: _Dist) -> TrainResult:
    device = _resolve_device(cfg, dd.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    out_dir = Path(cfg.out_dir).expanduser()
    ckpt_path, model_path, metrics_path = out_dir / "checkpoint.pt", out_dir / "model.pth", out_dir / "metrics.jsonl"
    if dd.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / "config.yaml", "w") as f:
            yaml.safe_dump(cfg.to_dict(), f, sort_keys=False)
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"resume=True but there is no checkpoint at {ckpt_path}")

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
        raise ValueError(f"field 'batch_size' ({cfg.batch_size}) must be a multiple of processes x grad_accum "
                         f"({dd.world} x {cfg.grad_accum})")
    micro_images = local_images // cfg.grad_accum
    steps_per_epoch = len(train_set) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"field 'batch_size' ({cfg.batch_size}) exceeds the {len(train_set)} training images")
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch

    # embeddings of the frozen encoder: computed once (split over processes), read back every epoch
    cache = None
    keys: Dict[str, Dict[int, str]] = {"train": {}, "val": {}}
    if frozen_encoder:
        cache = _embedding_cache(cfg)
        for name, ds in (("train", train_set), ("val", val_set)):
            keys[name] = fill_cache(model, ds, cache, f"embed {name}", cfg.progress and dd.main, dd.rank, dd.world)
        dd.barrier()

    def val_embed(i: int, record: PreparedImage) -> torch.Tensor:
        if cache is not None:
            return _cached(cache, keys["val"][i], device)
        return _encode(model, record)

    trainer: nn.Module = InteractiveLoss(model, cfg)
    if dd.active:
        find_unused = cfg.train_parts in ("prompt_encoder+decoder", "all")
        trainer = nn.parallel.DistributedDataParallel(
            trainer, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=find_unused)
    groups = param_groups(model, cfg.lr, cfg.weight_decay, cfg.layer_decay)
    fused = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups], lr=cfg.lr,
                                  betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, **fused)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg, steps_per_epoch, total_steps))
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp)
    trainable = [p for p in model.parameters() if p.requires_grad]

    step = 0
    if resume:
        state = load_training_checkpoint(ckpt_path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{ckpt_path}: not a samkit training checkpoint (format {state.get('format')!r})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
        step = int(state["step"])
    metrics = MetricsLog(metrics_path, dd.main, step if resume else None)
    history = [r for r in metrics.read() if r.get("kind") == "train"] if resume else []
    evals = [r for r in metrics.read() if r.get("kind") == "eval"] if resume else []
    last_good = step if resume else None

    def save_checkpoint() -> None:
        nonlocal last_good
        if dd.main:
            _atomic_save({
                "format": CHECKPOINT_FORMAT, "step": step, "epoch": step // steps_per_epoch,
                "data_position": {"epoch": step // steps_per_epoch, "step_in_epoch": step % steps_per_epoch},
                "config": cfg.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": _rng_state(),
            }, ckpt_path)
        last_good = step
        dd.barrier()

    def run_validation() -> None:
        if dd.main and len(val_set) > 0:
            record = {"kind": "eval", "step": step, **validate(model, val_set, val_embed,
                                                                cfg.eval_masks_per_image, cfg.box_multimask)}
            model.train()
            if frozen_encoder:
                model.image_encoder.eval()
            metrics.write(record)
            evals.append(record)
        dd.barrier()

    bar = tqdm(total=total_steps, initial=step, desc="train", disable=not (cfg.progress and dd.main))
    t_start = time.time()
    while step < total_steps:
        epoch, first = divmod(step, steps_per_epoch)
        order = epoch_order(cfg.seed, epoch, len(train_set))
        last = min(steps_per_epoch, first + total_steps - step)
        keys_for_rank = []
        for s in range(first, last):
            for j in range(dd.rank * local_images, (dd.rank + 1) * local_images):
                pos = s * cfg.batch_size + j
                keys_for_rank.append((epoch, pos, order[pos]))
        loader = torch.utils.data.DataLoader(train_set, batch_size=micro_images, sampler=keys_for_rank,
                                             num_workers=cfg.num_workers, collate_fn=_collate,
                                             # its own generator: creating an iterator must not consume
                                             # the global RNG (drop path), or a resumed run would differ
                                             generator=_generator(cfg.seed, epoch, 0x51))
        batches = iter(loader)
        for s in range(first, last):
            t0 = time.time()
            plan = round_plan(cfg.n_rounds, cfg.no_point_rounds, cfg.no_point_placement,
                              _generator(cfg.seed, epoch, s, 0x9C))
            micro: List[List[PromptedImage]] = []
            for _ in range(cfg.grad_accum):
                prompted = []
                for record in next(batches):
                    ep, pos, index = record.index
                    p = prompt_image(record, cfg, img_size, _generator(cfg.seed, ep, pos, 0xA5), device)
                    if cache is not None:
                        p.embedding = _cached(cache, keys["train"][index], device)
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
                sync = nullcontext() if (not dd.active or a == len(micro) - 1) else trainer.no_sync()
                with sync:
                    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                        out = trainer(prompted, plan)
                    loss = out["loss_sum"] * (dd.world / denom)
                    if not torch.isfinite(loss.detach()):
                        sums[0] = float("nan")
                    scaler.scale(loss).backward()
                sums += torch.stack([out["loss_sum"].detach(), out["focal_sum"], out["dice_sum"],
                                     out["iou_mse_sum"], out["first_sum"], out["iou_last_sum"]]).float()
            dd.all_sum(sums)
            if not torch.isfinite(sums).all():
                bar.close()
                where = (f"the last good checkpoint is {ckpt_path} (step {last_good})" if last_good is not None
                         else "no checkpoint was written yet")
                raise TrainingDiverged(
                    f"loss is {float(sums[0])} at step {step + 1} (epoch {epoch}); training stopped and {where}. "
                    "Try a lower lr, a longer warm-up, grad_clip, or amp=bf16 instead of fp16.")
            if cfg.grad_clip > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, cfg.grad_clip)
            lr_now = cfg.lr * lr_factor(step, cfg, steps_per_epoch, total_steps)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1

            sums = sums.cpu().tolist()
            rounds_n = max(n_global, 1.0) * len(plan)
            record = {"kind": "train", "step": step, "epoch": epoch, "loss": sums[0] / rounds_n,
                      "focal": sums[1] / rounds_n, "dice": sums[2] / rounds_n, "iou_mse": sums[3] / rounds_n,
                      "loss_first": sums[4] / max(n_global, 1.0), "iou_last": sums[5] / max(n_global, 1.0),
                      "prompts": int(n_global), "lr": lr_now, "time": time.time() - t_start,
                      "step_time": time.time() - t0}
            history.append(record)
            if step % max(cfg.log_every, 1) == 0 or step == total_steps:
                metrics.write(record)
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4f}", iou=f"{record['iou_last']:.3f}")
            if cfg.eval_every > 0 and step % cfg.eval_every == 0 and step < total_steps:
                run_validation()
            if cfg.ckpt_every > 0 and step % cfg.ckpt_every == 0 and step < total_steps:
                save_checkpoint()
    bar.close()
    if cfg.eval_every >= 0 and (not evals or evals[-1]["step"] != step):
        run_validation()
    save_checkpoint()
    if dd.main:
        _atomic_save(model.state_dict(), model_path)
    dd.barrier()
    return TrainResult(model, step, history, evals, out_dir, ckpt_path, model_path, metrics_path)
