"""Click-to-segment without a user interface: the state of the paper's interactive demo.

A :class:`ClickSession` holds one image and the prompts of the object being segmented (points and a
box, in original image pixels), decodes them with a :class:`~samkit.Predictor`, and keeps the
objects the user is done with::

    session = ClickSession(samkit.load_model("tiny"), image)
    session.add(PointPrompt(120, 80, 1))      # a positive click: three masks, the most confident
    shown session.add(PointPrompt(40, 30, 0))       # a negative click: one mask, refined from the
    last one session.keep()                            # done with this object; the next prompts
    start another session.save("masks")                     # masks.png (the picture) and masks.json
    (COCO RLE)

As in the official demo, a single prompt asks for the three ambiguity-aware masks (:meth:`select`
picks another one); with several prompts the single-mask output is used and the low-res logits of
the mask shown before are fed back as ``mask_input``. Every change can be undone. Decoding goes
through :meth:`samkit.Predictor.predict_low_res` (the prompt encoder and mask decoder on the image
embedding, which is computed once per image); a mask is upsampled to the image only when it is
looked at.

The session is safe to use from several threads (a click widget decodes on a worker thread):
:meth:`add` with ``decode=False`` records a prompt at once and :meth:`update` decodes the latest
prompts later. :class:`samkit.widgets.ClickSegmenter` is the notebook view of a session.
"""

from __future__ import annotations

import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .model.sam import Sam
from .predictor import Predictor, as_rgb_uint8
from .viz import blend, paint_index, palette_rgba

#: object colours (RGB, 0-255): the first object is blue, the next orange, ...
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (30, 144, 255),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
    (255, 215, 0),
)

#: how many decoded prompt sets are remembered, so that undo shows them again without decoding.
RESULT_MEMORY = 64

#: how many actions can be undone.
HISTORY = 200

PathLike = Union[str, Path]


@dataclass(frozen=True)
class PointPrompt:
    """A click in original image pixels; ``label`` 1 = on the object (positive), 0 = background."""

    x: float
    y: float
    label: int


@dataclass(frozen=True)
class BoxPrompt:
    """A box ``(x0, y0, x1, y1)`` in original image pixels, ``x1 >= x0``, ``y1 >= y0``."""

    x0: float
    y0: float
    x1: float
    y1: float


Prompt = Union[PointPrompt, BoxPrompt]


@dataclass
class SegmentedObject:
    """An object the user kept: its ``H x W`` bool mask, the prompts that made it, its predicted
    IoU."""

    mask: np.ndarray
    prompts: Tuple[Prompt, ...]
    score: float
    colour: Tuple[int, int, int]


class Result:
    """The decoder's answer to one prompt set: low-res logits ``C x L x L`` and IoU predictions
    ``C`` (``C`` = 3 or 1); ``selected`` is the output shown (the most confident one at first)."""

    def __init__(
        self, prompts: Tuple[Prompt, ...], low_res: torch.Tensor, scores: np.ndarray
    ) -> None:
        self.prompts = prompts
        self.low_res = low_res
        self.scores = scores
        self.selected = int(np.argmax(scores))
        # (output, refined) -> H x W bool, upsampled (and refined) when first looked at
        self.masks: Dict[Tuple[int, bool], np.ndarray] = {}


def split_prompts(
    prompts: Sequence[Prompt],
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """Prompts -> ``(point_coords N x 2, point_labels N, box 4)`` in original pixels (``None`` where
    absent), the arguments of :meth:`samkit.Predictor.predict`. Only the last box counts (SAM takes
    one box per object)."""
    points = [p for p in prompts if isinstance(p, PointPrompt)]
    boxes = [p for p in prompts if isinstance(p, BoxPrompt)]
    coords = np.array([[p.x, p.y] for p in points], dtype=np.float64) if points else None
    labels = np.array([p.label for p in points], dtype=np.int64) if points else None
    box = None
    if boxes:
        box = np.array([boxes[-1].x0, boxes[-1].y0, boxes[-1].x1, boxes[-1].y1], dtype=np.float64)
    return coords, labels, box


def click_palette(opacity: float) -> np.ndarray:
    """The palette of :data:`PALETTE` for :func:`samkit.viz.paint_index`: ``(1 + 2 * 10) x 4``
    RGBA."""
    return palette_rgba(PALETTE, opacity)


class ClickSession:
    """Interactive segmentation of one image, without a user interface.

    Args:
        predictor_or_model: a :class:`~samkit.Predictor` (the session decodes with its own predictor
            on the same model and embedding cache, so other code may set other images on this one),
            a :class:`~samkit.model.Sam` or a model name for :func:`samkit.load_model`.
        image: ``H x W x 3`` uint8 RGB (grey and RGBA are converted).
        multimask: ``"auto"`` (three masks for a single prompt, one for several, as the official
            demo), ``True`` (always three) or ``False`` (always one).
        refine: cut the shown masks along the image's edges with GrabCut, seeded by the model's mask
            and the prompts (:func:`samkit.refine.grabcut_refine`, as ``Predictor.predict(refine=True)``;
            tens of milliseconds a mask on a CPU). The IoU predictions, and the logits fed back with
            the next click, stay the model's. Can be switched at any time (:attr:`refine`).
    """

    def __init__(
        self,
        predictor_or_model: Union[Predictor, Sam, str],
        image: np.ndarray,
        multimask: Union[str, bool] = "auto",
        refine: bool = False,
    ) -> None:
        if isinstance(predictor_or_model, str):
            import samkit

            predictor_or_model = samkit.load_model(predictor_or_model)
        if isinstance(predictor_or_model, Predictor):
            shared = predictor_or_model
            self.predictor = Predictor(
                shared.model, cache=shared.cache if shared.cache is not None else False
            )
        elif isinstance(predictor_or_model, Sam):
            self.predictor = Predictor(predictor_or_model)
        else:
            raise TypeError(
                "predictor_or_model must be a samkit.Predictor, a samkit Sam model or a model "
                f"name, got {type(predictor_or_model).__name__}"
            )
        if multimask not in ("auto", True, False):
            raise ValueError(f"multimask must be 'auto', True or False, got {multimask!r}")
        self.multimask = multimask
        self.refine = bool(refine)
        self.decode_count = 0
        self.timings: Dict[str, float] = {}
        self._lock = threading.RLock()  # guards the state below; decoding runs outside it
        self._decoding = threading.Lock()
        self.set_image(image)

    # ------------------------------------------------------------------------------ the image
    def set_image(self, image: np.ndarray) -> bool:
        """Segment a new image: compute (or fetch from the cache) its embedding and forget every
        prompt and object. Returns True when the embedding came from the cache."""
        image = as_rgb_uint8(image)
        start = time.perf_counter()
        cache = self.predictor.cache
        hits = getattr(cache, "hits", 0)
        with self._decoding, self._lock:  # no decode runs while the embedding changes
            self.predictor.set_image(image)
            self.image = image
            self.height, self.width = image.shape[:2]
            self._prompts: Tuple[Prompt, ...] = ()
            self._result: Optional[Result] = None
            self._objects: List[SegmentedObject] = []
            self._history: List[Tuple[Tuple[Prompt, ...], Tuple[SegmentedObject, ...]]] = []
            self._memory: Dict[Tuple[Prompt, ...], Result] = {}
        self.timings["embedding_s"] = time.perf_counter() - start
        return getattr(cache, "hits", 0) > hits

    # ------------------------------------------------------------------------------ the state
    @property
    def prompts(self) -> List[Prompt]:
        """The current object's prompts in the order given (original image pixels)."""
        return list(self._prompts)

    @property
    def objects(self) -> List[SegmentedObject]:
        """The kept objects (see :meth:`keep`)."""
        return list(self._objects)

    @property
    def result(self) -> Optional[Result]:
        """The decoder's answer shown for the current object (``None`` before a prompt)."""
        return self._result

    @property
    def scores(self) -> np.ndarray:
        """Predicted IoU of each output of the last answer (3 or 1 values; empty before a
        prompt)."""
        res = self._result
        return res.scores.copy() if res is not None else np.zeros(0, dtype=np.float32)

    @property
    def selected(self) -> Optional[int]:
        """Which output is the current mask (``None`` before a prompt)."""
        res = self._result
        return res.selected if res is not None else None

    @property
    def current_mask(self) -> Optional[np.ndarray]:
        """The current object's ``H x W`` bool mask (the selected output), ``None`` before a
        prompt."""
        res = self._result
        return None if res is None else self.output_mask(res.selected, res).copy()

    @property
    def masks(self) -> List[np.ndarray]:
        """One ``H x W`` bool mask per kept object, then the current object's mask if there is
        one."""
        out = [o.mask.copy() for o in self._objects]
        current = self.current_mask
        if current is not None:
            out.append(current)
        return out

    @property
    def stale(self) -> bool:
        """True when the current prompts have not been decoded yet (see :meth:`update`)."""
        res = self._result
        return bool(self._prompts) and (res is None or res.prompts != self._prompts)

    @torch.no_grad()
    def output_mask(self, index: int, result: Optional[Result] = None) -> np.ndarray:
        """Output ``index`` of ``result`` (default: the current answer) at the image's size, ``H x
        W`` bool (upsampled by the predictor, and refined when :attr:`refine` is on, the first time it
        is asked for)."""
        res = self._result if result is None else result
        if res is None:
            raise ValueError("there is no prediction yet: add a prompt first")
        refine = self.refine
        mask = res.masks.get((index, refine))
        if mask is None:
            out = self.predictor.upscale_masks(res.low_res[index][None, None], return_logits=refine)[0, 0]
            if refine:
                from .refine import grabcut_refine

                start = time.perf_counter()
                coords, labels, box = split_prompts(res.prompts)
                mask = grabcut_refine(self.image, out.float().cpu().numpy(), box=box, points=coords, labels=labels)
                self.timings["refine_ms"] = (time.perf_counter() - start) * 1e3  # the last cut
            else:
                mask = out.cpu().numpy()
            res.masks[(index, refine)] = mask
        return mask

    # ------------------------------------------------------------------------------ actions
    def add(self, prompt: Prompt, decode: bool = True) -> None:
        """Add a point or a box (original image pixels) to the current object; a new box replaces
        the old one in what the decoder sees. ``decode=False`` records it only (see
        :meth:`update`)."""
        if isinstance(prompt, PointPrompt):
            if prompt.label not in (0, 1):
                raise ValueError(
                    f"a point's label is 1 (object) or 0 (background), got {prompt.label}"
                )
            values = (prompt.x, prompt.y)
        elif isinstance(prompt, BoxPrompt):
            if prompt.x1 - prompt.x0 < 1 or prompt.y1 - prompt.y0 < 1:
                raise ValueError(
                    f"the box {prompt} is empty: it needs x1 > x0 and y1 > y0 (image pixels)"
                )
            values = (prompt.x0, prompt.y0, prompt.x1, prompt.y1)
        else:
            raise TypeError(
                f"prompt must be a PointPrompt or a BoxPrompt, got {type(prompt).__name__}"
            )
        if not np.isfinite(values).all():
            raise ValueError(f"prompt coordinates must be finite, got {prompt}")
        with self._lock:
            self._push_history()
            self._prompts = self._prompts + (prompt,)
        if decode:
            self.update()

    def update(self) -> bool:
        """Decode the current prompts if that has not been done yet; returns whether it decoded.

        The prompts are read under the lock and decoded outside it, so prompts added meanwhile are
        recorded at once; the answer is kept if the prompts it answers still begin the current ones
        (call again to catch up with the rest).
        """
        with self._decoding:  # one decode at a time: a later call sees what an earlier one stored
            with self._lock:
                if not self.stale:
                    return False
                prompts, previous = self._prompts, self._result
            start = time.perf_counter()
            result = self._decode(prompts, previous)
            self.timings["decoder_ms"] = (time.perf_counter() - start) * 1e3
            with self._lock:
                self._memory[prompts] = result
                if len(self._memory) > RESULT_MEMORY:
                    self._memory.pop(next(iter(self._memory)))
                if prompts == self._prompts[: len(prompts)]:
                    self._result = result
        return True

    def select(self, index: int) -> None:
        """Make output ``index`` (0, 1, 2) the current mask."""
        with self._lock:
            res = self._result
            if res is None:
                raise ValueError("there is no prediction yet: click on the image first")
            if not 0 <= int(index) < len(res.scores):
                raise ValueError(f"mask index must be in 0..{len(res.scores) - 1}, got {index}")
            res.selected = int(index)

    def keep(self) -> Optional[SegmentedObject]:
        """Keep the current mask as an object (in its own colour) and start a new object. Returns
        the object, or ``None`` when there is no mask yet."""
        with self._lock:
            res = self._result
            if res is None:
                return None
            colour = PALETTE[len(self._objects) % len(PALETTE)]
            obj = SegmentedObject(
                self.output_mask(res.selected, res).copy(),
                self._prompts,
                float(res.scores[res.selected]),
                colour,
            )
            self._push_history()
            self._objects.append(obj)
            self._prompts, self._result = (), None
        return obj

    def clear(self, objects: bool = True) -> bool:
        """Forget the current object's prompts and, with ``objects=True``, the kept objects too
        (undoable). Returns whether anything changed."""
        with self._lock:
            if not self._prompts and (not objects or not self._objects):
                return False
            self._push_history()
            self._prompts, self._result = (), None
            if objects:
                self._objects = []
        return True

    def undo(self, decode: bool = True) -> bool:
        """Take back the last action (a point, a box, a keep or a clear). An answer seen before is
        shown again without decoding; otherwise the prompts are decoded (``decode=False``: left to
        :meth:`update`). Returns whether there was anything to undo."""
        with self._lock:
            if not self._history:
                return False
            self._prompts, objects = self._history.pop()
            self._objects = list(objects)
            self._result = self._memory.get(self._prompts) if self._prompts else None
        if decode:
            self.update()
        return True

    def _push_history(self) -> None:
        self._history.append((self._prompts, tuple(self._objects)))
        del self._history[:-HISTORY]

    def _use_multimask(self, prompts: Tuple[Prompt, ...]) -> bool:
        if self.multimask == "auto":
            return len(prompts) == 1
        return bool(self.multimask)

    def _decode(self, prompts: Tuple[Prompt, ...], previous: Optional[Result]) -> Result:
        """The predictor's answer to ``prompts``; ``previous`` (an answer to the first of them)
        supplies the low-res logits of its shown mask as ``mask_input``."""
        coords, labels, box = split_prompts(prompts)
        mask_input = None
        if (
            len(prompts) > 1
            and previous is not None
            and len(previous.prompts) < len(prompts)
            and prompts[: len(previous.prompts)] == previous.prompts
        ):
            mask_input = previous.low_res[previous.selected][None]
        low_res, iou = self.predictor.predict_low_res(
            coords, labels, box, mask_input, self._use_multimask(prompts)
        )
        self.decode_count += 1
        return Result(prompts, low_res.float(), iou.float().cpu().numpy())

    # ------------------------------------------------------------------------------ outputs
    def overlay_image(self, opacity: float = 0.45) -> np.ndarray:
        """The image with every mask painted on it (kept objects in their colours, the current one
        on top): ``H x W x 3`` uint8."""
        index = np.zeros((self.height, self.width), dtype=np.uint8)
        for k, mask in enumerate(self.masks):
            paint_index(index, mask, k % len(PALETTE))
        return blend(self.image, click_palette(opacity)[index])

    def annotations(self) -> List[Dict[str, Any]]:
        """The masks as COCO-style records: ``segmentation`` (RLE), ``area``, ``bbox`` (XYWH),
        ``predicted_iou``, ``point_coords``, ``point_labels``, ``box`` (XYXY or None); prompts in
        original image pixels."""
        from pycocotools import mask as mask_utils

        with self._lock:
            items = [(o.mask, o.prompts, o.score) for o in self._objects]
            res = self._result
            if res is not None:
                items.append(
                    (
                        self.output_mask(res.selected, res),
                        self._prompts,
                        float(res.scores[res.selected]),
                    )
                )
        records = []
        for i, (mask, prompts, score) in enumerate(items):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            coords, labels, box = split_prompts(prompts)
            records.append(
                {
                    "id": i + 1,
                    "segmentation": {
                        "size": [int(v) for v in rle["size"]],
                        "counts": rle["counts"].decode("ascii"),
                    },
                    "area": int(mask.sum()),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "predicted_iou": float(score),
                    "point_coords": coords.tolist() if coords is not None else [],
                    "point_labels": labels.tolist() if labels is not None else [],
                    "box": box.tolist() if box is not None else None,
                }
            )
        return records

    def save(self, path: PathLike, opacity: float = 0.45) -> Tuple[Path, Path]:
        """Write ``<path>.png`` (the image with the masks painted on it) and ``<path>.json`` (COCO
        RLE records, see :meth:`annotations`). A ``.png``/``.json`` suffix on ``path`` is dropped.
        Returns both paths.

        Both files are rendered in memory and written to temporary files first, so a failure leaves
        neither new file behind (never a PNG without its JSON)."""
        from PIL import Image

        text = str(path)
        base = Path(path).expanduser()
        if text.endswith(("/", os.sep)) or base.is_dir():
            raise ValueError(
                f"save needs a file name, but {text!r} is a folder; give a name inside it, "
                f"e.g. {str(base / 'masks')!r}"
            )
        if base.suffix.lower() in (".png", ".json"):
            base = base.with_suffix("")
        if not base.name:
            raise ValueError(f"save needs a file name, got {text!r}")
        if not base.parent.exists():
            raise FileNotFoundError(
                f"cannot save to {str(base)!r}: folder {str(base.parent)!r} does not exist"
            )
        png, js = base.with_name(base.name + ".png"), base.with_name(base.name + ".json")
        for target in (png, js):
            if target.is_dir():
                raise IsADirectoryError(f"cannot save {target.name}: {str(target)!r} is a folder")
        doc = {
            "image": {"height": self.height, "width": self.width},
            "annotations": self.annotations(),
        }
        picture = io.BytesIO()
        Image.fromarray(self.overlay_image(opacity)).save(picture, format="PNG", compress_level=6)
        contents = {js: json.dumps(doc, indent=1).encode(), png: picture.getvalue()}
        temporaries = {
            target: target.with_name(f".{target.name}.tmp{os.getpid()}") for target in contents
        }
        try:
            for target, data in contents.items():
                temporaries[target].write_bytes(data)
            for target in contents:  # the JSON first: a PNG alone never claims a saved result
                os.replace(temporaries[target], target)
        except BaseException:
            for tmp in temporaries.values():
                tmp.unlink(missing_ok=True)
            raise
        return png, js


__all__ = [
    "ClickSession",
    "PointPrompt",
    "BoxPrompt",
    "SegmentedObject",
    "Result",
    "PALETTE",
    "click_palette",
    "split_prompts",
]
