"""Click-to-segment in the notebook: the interactive demo of the paper, on a canvas.

``ClickSegmenter(model_or_predictor, image)`` shows ``image`` on an ipycanvas ``MultiCanvas`` with three
layers (the image, a translucent RGBA mask overlay, the prompts) and ipywidgets controls under it::

    seg = ClickSegmenter(samkit.load_model("tiny"), image)
    seg                      # display it; click on an object
    seg.masks                # one H x W bool mask per kept object, plus the current one

Mouse (handled by ``ipyevents`` on the canvas, which reports the button and suppresses the context menu):

* left click: a positive point (the object is here), green star;
* right click, or shift + left click: a negative point (not here), red star;
* left drag: a box (one per object; a new drag replaces it).

Every change re-runs only the prompt encoder and the mask decoder on the image embedding, which is
computed once per image (the predictor's :class:`~samkit.cache.EmbeddingCache`). As in the official demo,
a single prompt asks for the three ambiguity-aware masks (pick one with the buttons, each labelled with its
predicted IoU); with several prompts the single-mask output is used and the previous low-res logits of the
chosen mask are fed back as ``mask_input``.

Coordinates: the ``handle_*`` methods take **display pixels** (the canvas, ``display_width x
display_height``; ``(0, 0)`` is the top-left corner) and convert them to **original image pixels**
(``x_image = x_display * width / display_width``); everything stored (``prompts``, ``masks``) is in
original image pixels.

Clicks that arrive while the decoder runs are never dropped: the prompt is recorded at once, and the
decoder runs again for the latest prompts when it is free (a lock plus one pending-request flag), so a
burst of clicks costs at most two decoder passes.

Front ends: JupyterLab 4, Notebook 7 and VS Code render it with ipywidgets 8 (ipycanvas and ipyevents
ship their JavaScript); in Colab call ``from google.colab import output;
output.enable_custom_widget_manager()`` once. Where no widget front end exists (papermill, nbconvert) the
canvas is only a widget reference in the output: nothing waits for a browser (the canvas never asks the
front end for its pixels), a text fallback explains what to do, and :meth:`ClickSegmenter.plot` draws the
same state with matplotlib.
"""
from __future__ import annotations

import io
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .model.sam import Sam
from .predictor import Predictor, as_rgb_uint8

#: object colours (RGB, 0-255): the first object is blue, the next orange, ...
PALETTE: Tuple[Tuple[int, int, int], ...] = (
    (30, 144, 255), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (255, 215, 0),
)
POSITIVE_COLOUR = "#00d000"
NEGATIVE_COLOUR = "#ff2020"
BOX_COLOUR = "#00ff66"

#: the largest canvas the widget draws by default (display pixels); images are scaled to fit it.
MAX_DISPLAY_WIDTH = 640
MAX_DISPLAY_HEIGHT = 640

#: a press and release closer than this (display pixels) is a click, farther apart a box drag.
CLICK_TOLERANCE = 5.0

#: how many decoded prompt sets are remembered, so that undo shows them again without decoding.
RESULT_MEMORY = 64

PathLike = Union[str, Path]


# ---------------------------------------------------------------------------------------------- prompts
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
    """An object the user kept: its ``H x W`` bool mask, the prompts that made it, its predicted IoU."""

    mask: np.ndarray
    prompts: Tuple[Prompt, ...]
    score: float
    colour: Tuple[int, int, int]


class _Result:
    """One decoder answer for one prompt set: ``C`` low-res logits ``C x L x L`` and IoU predictions ``C``."""

    def __init__(self, prompts: Tuple[Prompt, ...], low_res: torch.Tensor, scores: np.ndarray) -> None:
        self.prompts = prompts
        self.low_res = low_res
        self.scores = scores
        self.selected = int(np.argmax(scores))
        self.full: Dict[int, np.ndarray] = {}      # index -> H x W bool, computed on demand


def split_prompts(prompts: Sequence[Prompt]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """Prompts -> ``(point_coords N x 2, point_labels N, box 4)`` in original pixels (``None`` where absent).

    Only the last box counts (SAM takes one box per object).
    """
    points = [p for p in prompts if isinstance(p, PointPrompt)]
    boxes = [p for p in prompts if isinstance(p, BoxPrompt)]
    coords = np.array([[p.x, p.y] for p in points], dtype=np.float64) if points else None
    labels = np.array([p.label for p in points], dtype=np.int64) if points else None
    box = np.array([boxes[-1].x0, boxes[-1].y0, boxes[-1].x1, boxes[-1].y1], dtype=np.float64) if boxes else None
    return coords, labels, box


# ------------------------------------------------------------------------------------------- drawing
def display_shape(height: int, width: int, display_size: Union[None, int, Tuple[int, int]] = None) -> Tuple[int, int]:
    """The canvas size ``(display_height, display_width)`` for an ``height x width`` image.

    ``None`` fits the image in ``MAX_DISPLAY_WIDTH x MAX_DISPLAY_HEIGHT`` keeping its aspect ratio (small
    images are enlarged); an int fits it in a square of that side; ``(w, h)`` is used as given.
    """
    if display_size is None:
        box_w, box_h = MAX_DISPLAY_WIDTH, MAX_DISPLAY_HEIGHT
    elif isinstance(display_size, (int, np.integer)):
        if display_size < 16:
            raise ValueError(f"display_size must be at least 16 pixels, got {display_size}")
        box_w = box_h = int(display_size)
    else:
        try:
            w, h = (int(v) for v in display_size)
        except (TypeError, ValueError):
            raise TypeError(f"display_size must be None, an int or (width, height), got {display_size!r}") from None
        if w < 16 or h < 16:
            raise ValueError(f"display_size must be at least 16 x 16 pixels, got {display_size!r}")
        return h, w
    scale = min(box_w / width, box_h / height)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def mask_outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The inner boundary of an ``H x W`` bool mask, ``width`` pixels thick (4-neighbour erosion)."""
    inner = mask.copy()
    for _ in range(width):
        eroded = inner.copy()
        eroded[1:] &= inner[:-1]
        eroded[:-1] &= inner[1:]
        eroded[:, 1:] &= inner[:, :-1]
        eroded[:, :-1] &= inner[:, 1:]
        inner = eroded
    return mask & ~inner


def palette_rgba(opacity: float) -> np.ndarray:
    """The overlay palette, ``(1 + 2 * len(PALETTE)) x 4`` uint8 RGBA: index 0 is transparent, index
    ``1 + 2c`` the inside of a mask in colour ``c`` (opacity ``opacity``), ``2 + 2c`` its outline (opaque)."""
    pal = np.zeros((1 + 2 * len(PALETTE), 4), dtype=np.uint8)
    for c, rgb in enumerate(PALETTE):
        pal[1 + 2 * c] = (*rgb, int(round(255 * opacity)))
        pal[2 + 2 * c] = (*rgb, 255)
    return pal


def paint_index(index: np.ndarray, mask: np.ndarray, colour: int) -> None:
    """Paint ``mask`` (``H x W`` bool) into the ``H x W`` uint8 palette-index image in place, in palette
    colour ``colour`` (inside ``1 + 2c``, 2-pixel outline ``2 + 2c``; see :func:`palette_rgba`)."""
    c = int(colour) % len(PALETTE)
    index[mask] = 1 + 2 * c
    index[mask_outline(mask)] = 2 + 2 * c


def paint_mask(rgba: np.ndarray, mask: np.ndarray, colour: Sequence[int], alpha: float) -> None:
    """Paint ``mask`` (``H x W`` bool) into the ``H x W x 4`` uint8 ``rgba`` overlay in place: the inside in
    ``colour`` (RGB 0-255) at opacity ``alpha`` (0-1), a 2-pixel outline fully opaque."""
    if not mask.any():
        return
    rgba[mask] = (*colour, int(round(255 * alpha)))
    rgba[mask_outline(mask)] = (*colour, 255)


def palette_png(index: np.ndarray, palette: np.ndarray, compress_level: int = 1) -> bytes:
    """An ``H x W`` palette-index image and its ``N x 4`` RGBA palette as a (lossless) PNG with transparency."""
    from PIL import Image

    index = np.ascontiguousarray(index, dtype=np.uint8)
    img = Image.frombytes("P", (index.shape[1], index.shape[0]), index.tobytes())
    img.putpalette(palette[:, :3].reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level, transparency=bytes(palette[:, 3].tolist()))
    return buf.getvalue()


def star_polygon(x: float, y: float, radius: float = 9.0) -> np.ndarray:
    """A five-pointed star centred on ``(x, y)``: ``10 x 2`` vertices (display pixels)."""
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    return np.stack([x + radii * np.cos(angles), y + radii * np.sin(angles)], axis=1)


def blend(image: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Alpha-composite an ``H x W x 4`` uint8 overlay onto an ``H x W x 3`` uint8 image."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = image.astype(np.float32) * (1 - a) + rgba[..., :3].astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _png(rgba: np.ndarray, compress_level: int = 1) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def put_png(layer: Any, png: bytes, fallback: Optional[np.ndarray] = None) -> None:
    """Draw PNG bytes on an ipycanvas layer at (0, 0), losslessly.

    ``Canvas.put_image_data`` encodes an RGBA array as PNG (an RGB one as JPEG, which would blur the mask
    edges) with slow compression; this sends the same draw command with a PNG we encoded ourselves (a small
    palette image for the mask overlay, redrawn on every click). ``fallback`` (``H x W x 4`` uint8) goes
    through the public ``put_image_data`` if this ipycanvas version lacks the internals.
    """
    try:
        from ipycanvas.canvas import COMMANDS

        manager = layer._canvas_manager
        command = COMMANDS["putImageData"]
    except (ImportError, AttributeError, KeyError):
        if fallback is None:
            from PIL import Image

            fallback = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))
        layer.put_image_data(fallback, 0, 0)
        return
    manager.send_draw_command(layer, command, [0, 0], [png])


def image_from_upload(value: Any) -> np.ndarray:
    """The first image of an ``ipywidgets.FileUpload`` value as ``H x W x 3`` uint8 RGB.

    Works with ipywidgets 8 (a tuple of dicts with ``content``) and 7 (a dict name -> {``content``}).
    """
    from PIL import Image

    if isinstance(value, dict):
        items = list(value.values())
    else:
        items = list(value or ())
    if not items:
        raise ValueError("the upload widget holds no file yet")
    item = items[0]
    content = item["content"] if isinstance(item, dict) else getattr(item, "content")
    name = (item.get("name") or item.get("metadata", {}).get("name", "upload")) if isinstance(item, dict) else "upload"
    try:
        img = Image.open(io.BytesIO(bytes(content)))
        img.load()
    except Exception as exc:
        raise ValueError(f"could not read the uploaded file {name!r} as an image: {exc}") from exc
    return np.asarray(img.convert("RGB"))


# -------------------------------------------------------------------------------------------- widget
class ClickSegmenter:
    """Interactive click-to-segment for one image.

    Args:
        predictor_or_model: a :class:`~samkit.Predictor`, a :class:`~samkit.model.Sam` (wrapped in a new
            predictor) or a model name for :func:`samkit.load_model`.
        image: ``H x W x 3`` uint8 RGB (grayscale and RGBA are converted).
        display_size: canvas size: ``None`` fits the image in 640 x 640 display pixels, an int fits it in a
            square of that side, ``(width, height)`` is used as given.
        multimask: ``"auto"`` (three masks for a single prompt, one for several, as the official demo),
            ``True`` (always three) or ``False`` (always one).
        upload: add a file-upload button that segments the user's own image.
        threaded: decode front-end clicks on a worker thread so the kernel stays responsive and bursts of
            clicks coalesce; ``handle_*`` calls with ``wait=True`` (the default) are synchronous anyway.

    Attributes (Python side): :attr:`masks`, :attr:`prompts`, :attr:`scores`, :attr:`current_mask`,
    :attr:`objects`, :attr:`widget` (the ipywidgets box to display), :attr:`canvas`.
    """

    def __init__(self, predictor_or_model: Union[Predictor, Sam, str], image: np.ndarray,
                 display_size: Union[None, int, Tuple[int, int]] = None, multimask: Union[str, bool] = "auto",
                 upload: bool = False, threaded: bool = True) -> None:
        if isinstance(predictor_or_model, str):
            import samkit

            predictor_or_model = samkit.load_model(predictor_or_model)
        if isinstance(predictor_or_model, Predictor):
            self.predictor = predictor_or_model
        elif isinstance(predictor_or_model, Sam):
            self.predictor = Predictor(predictor_or_model)
        else:
            raise TypeError("predictor_or_model must be a samkit.Predictor, a samkit Sam model or a model name, "
                            f"got {type(predictor_or_model).__name__}")
        if multimask not in ("auto", True, False):
            raise ValueError(f"multimask must be 'auto', True or False, got {multimask!r}")
        self.multimask = multimask
        self.threaded = threaded
        self._display_size = display_size
        self.opacity = 0.45
        self.last_error: Optional[BaseException] = None
        self.timings: Dict[str, float] = {}
        self.decode_count = 0

        self._lock = threading.RLock()         # guards the prompt state below
        self._render_lock = threading.Lock()   # one drawing at a time (ipycanvas batches are global)
        self._idle = threading.Event()
        self._idle.set()
        self._running = False
        self._pending = False
        self._working_thread: Optional[int] = None
        self._callbacks: List[Callable[["ClickSegmenter"], Any]] = []
        self._press: Optional[Tuple[float, float, int, bool]] = None
        self._last_move: Optional[Tuple[float, float]] = None
        self._syncing = False

        self._build_widgets(upload)
        self.set_image(image)

    # ------------------------------------------------------------------------------------ the image
    def set_image(self, image: np.ndarray) -> None:
        """Show a new image: compute (or fetch from the cache) its embedding and forget all prompts."""
        image = as_rgb_uint8(image)
        self.wait()
        self._set_status("⏳ computing the image embedding (image encoder)…")
        start = time.perf_counter()
        hits = getattr(self.predictor.cache, "hits", 0)
        try:
            self.predictor.set_image(image)
        except Exception as exc:
            self._set_status(f"error while embedding the image: {exc}")
            raise
        cached = getattr(self.predictor.cache, "hits", 0) > hits
        self.timings["embedding_s"] = time.perf_counter() - start
        with self._lock:
            # our own references: other code may set another image on a shared predictor afterwards
            self._features = self.predictor.get_image_embedding()
            self._input_size = tuple(self.predictor.input_size)
            self._original_size = tuple(self.predictor.original_size)
            self.image = image
            self.height, self.width = image.shape[:2]
            self.display_height, self.display_width = display_shape(self.height, self.width, self._display_size)
            self._sx = self.display_width / self.width
            self._sy = self.display_height / self.height
            self._rows = np.minimum(((np.arange(self.display_height) + 0.5) / self._sy).astype(np.int64), self.height - 1)
            self._cols = np.minimum(((np.arange(self.display_width) + 0.5) / self._sx).astype(np.int64), self.width - 1)
            self._prompts: Tuple[Prompt, ...] = ()
            self._result: Optional[_Result] = None
            self._objects: List[SegmentedObject] = []
            self._history: List[Tuple[Tuple[Prompt, ...], Tuple[SegmentedObject, ...]]] = []
            self._memory: Dict[Tuple[Prompt, ...], _Result] = {}
            self._kept_overlay: Optional[np.ndarray] = None
        self.canvas.width, self.canvas.height = self.display_width, self.display_height
        self._draw_image()
        self._render()
        how = "from the cache" if cached else "computed"
        self._set_status(f"ready: embedding {how} in {self.timings['embedding_s']:.2f} s. "
                         "Left click: object · right/shift click: background · drag: box")
        self._notify()

    # ---------------------------------------------------------------------------- read-only state
    @property
    def prompts(self) -> List[Prompt]:
        """The current object's prompts in the order given (original image pixels)."""
        return list(self._prompts)

    @property
    def objects(self) -> List[SegmentedObject]:
        """The kept objects (see :meth:`keep`)."""
        return list(self._objects)

    @property
    def scores(self) -> np.ndarray:
        """Predicted IoU of each output of the last decoder pass (3 or 1 values; empty before a prompt)."""
        res = self._result
        return res.scores.copy() if res is not None else np.zeros(0, dtype=np.float32)

    @property
    def selected(self) -> Optional[int]:
        """Which of the outputs is the current mask (``None`` before a prompt)."""
        res = self._result
        return res.selected if res is not None else None

    @property
    def current_mask(self) -> Optional[np.ndarray]:
        """The current object's ``H x W`` bool mask (the selected output), ``None`` before a prompt."""
        with self._lock:
            res = self._result
            return None if res is None else self._full_mask(res, res.selected).copy()

    @property
    def masks(self) -> List[np.ndarray]:
        """One ``H x W`` bool mask per kept object, then the current object's mask if there is one."""
        out = [o.mask.copy() for o in self._objects]
        current = self.current_mask
        if current is not None:
            out.append(current)
        return out

    @property
    def busy(self) -> bool:
        """True while the decoder runs or a request waits for it."""
        return not self._idle.is_set()

    # ----------------------------------------------------------------------------- event handlers
    def to_image_coords(self, x: float, y: float) -> Tuple[float, float]:
        """Display pixels -> original image pixels (clipped to the image)."""
        return (float(np.clip(x / self._sx, 0, self.width - 1)), float(np.clip(y / self._sy, 0, self.height - 1)))

    def to_display_coords(self, x: float, y: float) -> Tuple[float, float]:
        """Original image pixels -> display pixels."""
        return x * self._sx, y * self._sy

    def _check_display_xy(self, x: float, y: float) -> None:
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"click coordinates must be finite, got ({x}, {y})")
        if not (-1 <= x <= self.display_width + 1 and -1 <= y <= self.display_height + 1):
            raise ValueError(f"click at ({x:g}, {y:g}) lies outside the canvas ({self.display_width} x "
                             f"{self.display_height} display pixels)")

    def handle_click(self, x: float, y: float, button: int = 0, shift: bool = False, wait: bool = True) -> None:
        """A click at display pixel ``(x, y)``: button 0 (left) adds a positive point, button 2 (right) or
        ``shift`` a negative one (the "left click adds" toggle can make left clicks negative too).

        ``wait=False`` returns at once and decodes on the worker thread (what the front end does).
        """
        self._check_display_xy(x, y)
        if button not in (0, 2):
            return  # middle button and others: nothing
        negative = button == 2 or shift or self.mode.value == 0
        ix, iy = self.to_image_coords(x, y)
        self._add_prompt(PointPrompt(ix, iy, 0 if negative else 1), wait)

    def handle_drag(self, x0: float, y0: float, x1: float, y1: float, wait: bool = True) -> None:
        """A drag from display pixel ``(x0, y0)`` to ``(x1, y1)``: sets the object's box (replacing an earlier one)."""
        self._check_display_xy(x0, y0)
        self._check_display_xy(x1, y1)
        ax0, ay0 = self.to_image_coords(min(x0, x1), min(y0, y1))
        ax1, ay1 = self.to_image_coords(max(x0, x1), max(y0, y1))
        if ax1 - ax0 < 1 or ay1 - ay0 < 1:
            raise ValueError(f"the box from ({x0:g}, {y0:g}) to ({x1:g}, {y1:g}) is empty; use handle_click for points")
        self._add_prompt(BoxPrompt(ax0, ay0, ax1, ay1), wait)

    def _push_history(self) -> None:
        self._history.append((self._prompts, tuple(self._objects)))
        del self._history[:-200]

    def _add_prompt(self, prompt: Prompt, wait: bool) -> None:
        with self._lock:
            self._push_history()
            self._prompts = self._prompts + (prompt,)
        self._render_prompts()
        self._request(wait)

    def undo(self, wait: bool = True) -> None:
        """Take back the last action (a point, a box, a keep or a clear)."""
        with self._lock:
            if not self._history:
                return
            self._prompts, objects = self._history.pop()
            if list(objects) != self._objects:
                self._objects = list(objects)
                self._kept_overlay = None
            self._result = self._memory.get(self._prompts) if self._prompts else None
            stale = bool(self._prompts) and self._result is None
        if stale:
            self._render_prompts()
            self._request(wait)
        else:
            self._changed()

    def clear(self, objects: bool = True) -> None:
        """Forget the current object's prompts and, with ``objects=True``, the kept objects too (undoable)."""
        self.wait()
        with self._lock:
            if not self._prompts and (not objects or not self._objects):
                return
            self._push_history()
            self._prompts, self._result = (), None
            if objects:
                self._objects, self._kept_overlay = [], None
        self._changed()

    def select_mask(self, index: int) -> None:
        """Make output ``index`` (0, 1, 2 in the order of the buttons) the current mask."""
        self.wait()
        with self._lock:
            res = self._result
            if res is None:
                raise ValueError("there is no prediction yet: click on the image first")
            if not 0 <= int(index) < len(res.scores):
                raise ValueError(f"mask index must be in 0..{len(res.scores) - 1}, got {index}")
            res.selected = int(index)
        self._changed()

    def keep(self) -> Optional[SegmentedObject]:
        """Keep the current mask as an object (in its own colour) and start a new object. Returns it."""
        self.wait()
        with self._lock:
            res = self._result
            if res is None:
                self._set_status("nothing to keep yet: click on an object first")
                return None
            colour = PALETTE[len(self._objects) % len(PALETTE)]
            obj = SegmentedObject(self._full_mask(res, res.selected).copy(), self._prompts,
                                  float(res.scores[res.selected]), colour)
            self._push_history()
            self._objects.append(obj)
            self._prompts, self._result, self._kept_overlay = (), None, None
        self._changed()
        return obj

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until no decoding is running or pending; False if ``timeout`` (s) ran out first.

        Returns at once when called from the decoding thread itself (e.g. inside an ``on_change`` callback).
        """
        if self._working_thread == threading.get_ident():
            return True
        return self._idle.wait(timeout)

    def on_change(self, callback: Callable[["ClickSegmenter"], Any], remove: bool = False) -> None:
        """Call ``callback(segmenter)`` after every change of the masks or prompts (from any thread)."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    # ---------------------------------------------------------------------------------- decoding
    def _request(self, wait: bool) -> None:
        """Ask for the current prompts to be decoded; coalesces requests made while a decode runs."""
        with self._lock:
            if self._running:
                self._pending = True
                start = False
            else:
                self._running, self._pending = True, False
                self._idle.clear()
                start = True
        if wait:
            self.last_error = None
        if start:
            if wait or not self.threaded:
                self._work()
            else:
                threading.Thread(target=self._work, name="samkit-click-decoder", daemon=True).start()
        if wait:
            self._idle.wait()
            err = self.last_error
            if err is not None:
                self.last_error = None
                raise err

    def _work(self) -> None:
        self._working_thread = threading.get_ident()
        try:
            self._work_loop()
        finally:
            self._working_thread = None

    def _work_loop(self) -> None:
        while True:
            with self._lock:
                self._pending = False
                prompts = self._prompts
                previous = self._result
            result, error, decode_s = None, None, 0.0
            if prompts:
                start = time.perf_counter()
                try:
                    result = self._decode(prompts, previous)
                except Exception as exc:  # shown in the status line; re-raised by waiting callers
                    error = exc
                decode_s = time.perf_counter() - start
            with self._lock:
                if error is not None:
                    self.last_error = error
                elif result is not None and prompts == self._prompts[: len(prompts)]:
                    self._result = result
                    self._memory[prompts] = result
                    if len(self._memory) > RESULT_MEMORY:
                        self._memory.pop(next(iter(self._memory)))
                again = self._pending
            if error is not None:
                self._set_status(f"error: {type(error).__name__}: {error}")
            elif result is not None:
                self.timings["decoder_ms"] = decode_s * 1e3
                self._changed(decode_s)
            if not again:
                with self._lock:
                    if not self._pending:
                        self._running = False
                        self._idle.set()
                        return

    def _use_multimask(self, prompts: Tuple[Prompt, ...]) -> bool:
        if self.multimask == "auto":
            return len(prompts) == 1
        return bool(self.multimask)

    @torch.no_grad()
    def _decode(self, prompts: Tuple[Prompt, ...], previous: Optional[_Result]) -> _Result:
        """Prompt encoder + mask decoder on the cached embedding; ``previous`` supplies ``mask_input``.

        Returns low-res logits ``C x L x L`` and IoU predictions ``C`` (C = 3 or 1); the full-size mask of
        an output is computed only when it is shown (:meth:`_full_mask`).
        """
        pred = self.predictor
        model = pred.model
        coords, labels, box = split_prompts(prompts)
        coords_t = labels_t = box_t = mask_t = None
        if coords is not None:
            c = pred.transform.apply_coords(coords, self._original_size)
            coords_t = torch.as_tensor(c, dtype=torch.float, device=pred.device)[None]
            labels_t = torch.as_tensor(labels, dtype=torch.int, device=pred.device)[None]
        if box is not None:
            b = pred.transform.apply_boxes(box[None], self._original_size)
            box_t = torch.as_tensor(b, dtype=torch.float, device=pred.device)
        if (len(prompts) > 1 and previous is not None and len(previous.prompts) < len(prompts)
                and prompts[: len(previous.prompts)] == previous.prompts):
            mask_t = previous.low_res[previous.selected][None, None].to(pred.device)
        low_res, iou = model.encode_prompts_and_decode(self._features, coords_t, labels_t, box_t,
                                                       mask_t, self._use_multimask(prompts))
        self.decode_count += 1
        return _Result(prompts, low_res[0].float(), iou[0].float().cpu().numpy())

    @torch.no_grad()
    def _full_mask(self, res: _Result, index: int) -> np.ndarray:
        """Output ``index`` of ``res`` upsampled to the original image: ``H x W`` bool."""
        mask = res.full.get(index)
        if mask is None:
            pred = self.predictor
            logits = pred.model.postprocess_masks(res.low_res[index][None, None], self._input_size,
                                                  self._original_size)
            mask = (logits[0, 0] > pred.model.mask_threshold).cpu().numpy()
            res.full[index] = mask
        return mask

    # -------------------------------------------------------------------------------- rendering
    def _changed(self, decode_s: Optional[float] = None) -> None:
        start = time.perf_counter()
        self._render()
        render_s = time.perf_counter() - start
        self.timings["render_ms"] = render_s * 1e3
        if decode_s is not None:
            self.timings["click_ms"] = (decode_s + render_s) * 1e3
            n = len(self._prompts)
            self._set_status(f"{n} prompt{'s' if n != 1 else ''} · last click {self.timings['click_ms']:.0f} ms "
                             f"(decoder {decode_s * 1e3:.0f} ms, drawing {render_s * 1e3:.0f} ms)")
        self._sync_controls()
        self._notify()

    def _notify(self) -> None:
        for cb in list(self._callbacks):
            try:
                cb(self)
            except Exception as exc:  # a broken callback must not break the widget
                self._set_status(f"on_change callback failed: {type(exc).__name__}: {exc}")

    def _display_mask(self, mask: np.ndarray) -> np.ndarray:
        # nearest-neighbour resampling to display size; two 1-D takes are ~6x faster than 2-D fancy indexing
        return mask.take(self._rows, axis=0).take(self._cols, axis=1)

    def overlay_index(self) -> np.ndarray:
        """The mask overlay at display size as palette indices, ``display_height x display_width`` uint8
        (see :func:`palette_rgba`): kept objects in their colours, the current object on top."""
        with self._lock:
            if self._kept_overlay is None:
                kept = np.zeros((self.display_height, self.display_width), dtype=np.uint8)
                for k, obj in enumerate(self._objects):
                    paint_index(kept, self._display_mask(obj.mask), k)
                self._kept_overlay = kept
            out = self._kept_overlay.copy()
            res = self._result
            if res is not None:
                paint_index(out, self._display_mask(self._full_mask(res, res.selected)), len(self._objects))
        return out

    def overlay_rgba(self) -> np.ndarray:
        """The mask overlay the canvas shows, ``display_height x display_width x 4`` uint8 RGBA."""
        return palette_rgba(self.opacity)[self.overlay_index()]

    def _draw_image(self) -> None:
        from PIL import Image

        small = np.asarray(Image.fromarray(self.image).resize((self.display_width, self.display_height),
                                                              Image.BILINEAR))
        with self._render_lock:
            put_png(self.canvas[0], _png(small))

    def _render(self) -> None:
        from ipycanvas import hold_canvas

        index = self.overlay_index()
        png = palette_png(index, palette_rgba(self.opacity))
        with self._render_lock, hold_canvas():
            layer = self.canvas[1]
            layer.clear()
            put_png(layer, png)
            self._draw_prompts()

    def _render_prompts(self, drag: Optional[Tuple[float, float, float, float]] = None) -> None:
        from ipycanvas import hold_canvas

        with self._render_lock, hold_canvas():
            self._draw_prompts(drag)

    def _draw_prompts(self, drag: Optional[Tuple[float, float, float, float]] = None) -> None:
        layer = self.canvas[2]
        layer.clear()
        prompts = self._prompts
        layer.line_width = 2
        layer.set_line_dash([])
        for p in prompts:
            if isinstance(p, BoxPrompt):
                x0, y0 = self.to_display_coords(p.x0, p.y0)
                x1, y1 = self.to_display_coords(p.x1, p.y1)
                layer.stroke_style = BOX_COLOUR
                layer.stroke_rect(x0, y0, x1 - x0, y1 - y0)
        stars = {1: [], 0: []}
        for p in prompts:
            if isinstance(p, PointPrompt):
                stars[p.label].append(star_polygon(*self.to_display_coords(p.x, p.y)))
        if stars[0] or stars[1]:
            layer.stroke_style = "white"
            layer.line_width = 1.5
            for label, colour in ((1, POSITIVE_COLOUR), (0, NEGATIVE_COLOUR)):
                if stars[label]:
                    layer.fill_style = colour
                    layer.fill_polygons(np.stack(stars[label]))
            layer.stroke_polygons(np.stack(stars[1] + stars[0]))
        if drag is not None:
            x0, y0, x1, y1 = drag
            layer.line_width = 2
            layer.stroke_style = BOX_COLOUR
            layer.set_line_dash([6, 4])
            layer.stroke_rect(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
            layer.set_line_dash([])

    def _redraw_all(self) -> None:
        """Draw every layer again (a new browser client connected)."""
        self._draw_image()
        self._render()

    # ---------------------------------------------------------------------------------- widgets
    def _build_widgets(self, upload: bool) -> None:
        import ipywidgets as W
        from ipycanvas import MultiCanvas

        self.canvas = MultiCanvas(3, width=MAX_DISPLAY_WIDTH, height=MAX_DISPLAY_HEIGHT)
        self.canvas.on_client_ready(self._redraw_all)
        self.choice = W.ToggleButtons(options=[("mask 1", 0)], value=0, disabled=True,
                                      description="Output:", tooltips=["click on the image first"],
                                      style={"button_width": "150px"})
        self.choice.observe(self._on_choice, names="value")
        self.mode = W.ToggleButtons(options=[("+ object", 1), ("− background", 0)], value=1,
                                    description="Left click:",
                                    tooltips=["left click adds a positive point", "left click adds a negative point"])
        self.undo_button = W.Button(description="Undo", icon="undo", tooltip="take back the last action")
        self.clear_button = W.Button(description="Clear", icon="trash", tooltip="forget all prompts and objects")
        self.keep_button = W.Button(description="Keep & next object", icon="plus",
                                    tooltip="keep this mask and start another object",
                                    layout=W.Layout(width="auto"))
        self.opacity_slider = W.FloatSlider(value=self.opacity, min=0.0, max=1.0, step=0.05, description="Opacity:",
                                            continuous_update=True, readout_format=".2f")
        self.path_text = W.Text(value="click_masks", description="Save to:",
                                placeholder="<path> -> <path>.png + <path>.json")
        self.save_button = W.Button(description="Save", icon="save", tooltip="PNG overlay + COCO RLE JSON")
        self.status = W.Label(value="")
        self.undo_button.on_click(lambda _: self._safely(self.undo, False))
        self.clear_button.on_click(lambda _: self._safely(self.clear))
        self.keep_button.on_click(lambda _: self._safely(self.keep))
        self.save_button.on_click(lambda _: self._safely(self._save_clicked))
        self.opacity_slider.observe(lambda ch: self._safely(self.set_opacity, ch["new"]), names="value")
        rows = [self.canvas, self.choice,
                W.HBox([self.mode, self.undo_button, self.clear_button, self.keep_button]),
                W.HBox([self.opacity_slider, self.path_text, self.save_button])]
        self.upload = None
        if upload:
            self.upload = W.FileUpload(accept="image/*", multiple=False, description="Your image")
            self.upload.observe(lambda ch: self._safely(self._on_upload), names="value")
            rows.append(self.upload)
        rows.append(self.status)
        self.widget = W.VBox(rows)
        self._connect_mouse()

    def _connect_mouse(self) -> None:
        """Mouse events: ipyevents when installed (buttons, modifiers, no context menu), else ipycanvas
        (left button only; the "Left click" toggle then gives negative points)."""
        try:
            from ipyevents import Event
        except ImportError:
            Event = None
        if Event is not None:
            self.events = Event(source=self.canvas, watched_events=["mousedown", "mouseup", "contextmenu",
                                                                    "mouseleave"],
                                prevent_default_action=True)
            self.events.on_dom_event(self._on_dom_event)
            self.move_events = Event(source=self.canvas, watched_events=["mousemove"], wait=60,
                                     throttle_or_debounce="throttle")
            self.move_events.on_dom_event(self._on_dom_event)
        else:
            self.events = self.move_events = None
            self.canvas.on_mouse_down(lambda x, y: self._on_press(x, y, 0, False))
            self.canvas.on_mouse_up(lambda x, y: self._on_release(x, y))
            self.canvas.on_mouse_move(lambda x, y: self._on_move(x, y))

    def _event_xy(self, event: Dict[str, Any]) -> Tuple[float, float]:
        """ipyevents' ``relativeX/Y`` are CSS pixels of the element; rescale if the canvas is shown smaller."""
        x, y = float(event.get("relativeX", 0)), float(event.get("relativeY", 0))
        bw, bh = float(event.get("boundingRectWidth") or 0), float(event.get("boundingRectHeight") or 0)
        if bw > 0 and bh > 0:
            x, y = x * self.display_width / bw, y * self.display_height / bh
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"mouse position must be finite, got ({x}, {y})")
        return x, y

    def _on_dom_event(self, event: Dict[str, Any]) -> None:
        """One ipyevents event; a malformed one (missing or non-numeric fields) shows an error in the status
        line instead of escaping into the front end's log."""
        try:
            self._dom_event(event)
        except Exception as exc:
            self._press = None
            self._set_status(f"error: ignored a malformed mouse event ({type(exc).__name__}: {exc})")

    def _dom_event(self, event: Dict[str, Any]) -> None:
        if not isinstance(event, dict):
            raise TypeError(f"expected an event dict, got {type(event).__name__}")
        kind = event.get("type")
        if kind == "contextmenu":
            return
        x, y = self._event_xy(event)
        if kind == "mousedown":
            self._on_press(x, y, int(event.get("button", 0)), bool(event.get("shiftKey", False)))
        elif kind == "mouseup":
            self._on_release(x, y)
        elif kind == "mousemove":
            self._on_move(x, y)
        elif kind == "mouseleave" and self._press is not None:
            self._press = None
            self._render_prompts()

    def _on_press(self, x: float, y: float, button: int, shift: bool) -> None:
        self._press = (x, y, button, shift)

    def _on_move(self, x: float, y: float) -> None:
        press = self._press
        if press is None or press[2] != 0 or press[3]:
            return
        if np.hypot(x - press[0], y - press[1]) > CLICK_TOLERANCE:
            self._render_prompts(drag=(press[0], press[1], x, y))

    def _on_release(self, x: float, y: float) -> None:
        press, self._press = self._press, None
        if press is None:
            return
        x0, y0, button, shift = press
        x = float(np.clip(x, 0, self.display_width))
        y = float(np.clip(y, 0, self.display_height))
        x0 = float(np.clip(x0, 0, self.display_width))
        y0 = float(np.clip(y0, 0, self.display_height))
        try:
            if button == 0 and not shift and np.hypot(x - x0, y - y0) > CLICK_TOLERANCE \
                    and abs(x - x0) > 1 and abs(y - y0) > 1:
                self.handle_drag(x0, y0, x, y, wait=False)
            else:
                self.handle_click(x0, y0, button=button, shift=shift, wait=False)
        except Exception as exc:
            self._set_status(f"error: {type(exc).__name__}: {exc}")

    def _safely(self, fn: Callable, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._set_status(f"error: {type(exc).__name__}: {exc}")

    def _on_choice(self, change: Dict[str, Any]) -> None:
        if self._syncing or change["new"] is None:
            return
        res = self._result
        if res is not None and change["new"] != res.selected:
            self._safely(self.select_mask, change["new"])

    def _on_upload(self) -> None:
        self.set_image(image_from_upload(self.upload.value))

    def _save_clicked(self) -> None:
        png, js = self.save(self.path_text.value)
        self._set_status(f"saved {png} and {js}")

    def set_opacity(self, opacity: float) -> None:
        """Overlay opacity of the mask interiors, 0 (outlines only) to 1."""
        if not 0.0 <= float(opacity) <= 1.0:
            raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
        with self._lock:
            self.opacity = float(opacity)
        if abs(self.opacity_slider.value - self.opacity) > 1e-9:
            self.opacity_slider.value = self.opacity
        self._render()

    def _sync_controls(self) -> None:
        res = self._result
        self._syncing = True
        try:
            if res is None:
                self.choice.options = [("mask 1", 0)]
                self.choice.value = 0
                self.choice.disabled = True
            else:
                options = [(f"mask {i + 1} · IoU {s:.2f}", i) for i, s in enumerate(res.scores)]
                if list(self.choice.options) != options:
                    self.choice.options = options
                    self.choice.tooltips = ["predicted IoU of this output"] * len(options)
                self.choice.value = res.selected
                self.choice.disabled = len(options) < 2
        finally:
            self._syncing = False

    def _set_status(self, text: str) -> None:
        self.status.value = text

    # --------------------------------------------------------------------------------- outputs
    def overlay_image(self) -> np.ndarray:
        """The image with every mask painted on it at full resolution: ``H x W x 3`` uint8."""
        index = np.zeros((self.height, self.width), dtype=np.uint8)
        for k, obj in enumerate(self._objects):
            paint_index(index, obj.mask, k)
        current = self.current_mask
        if current is not None:
            paint_index(index, current, len(self._objects))
        return blend(self.image, palette_rgba(self.opacity)[index])

    def annotations(self) -> List[Dict[str, Any]]:
        """The masks as COCO-style records: ``segmentation`` (RLE), ``area``, ``bbox`` (XYWH), ``predicted_iou``,
        ``point_coords``, ``point_labels``, ``box`` (XYXY or None); prompts in original image pixels."""
        from pycocotools import mask as mask_utils

        self.wait()
        items = [(o.mask, o.prompts, o.score) for o in self._objects]
        res, current = self._result, self.current_mask
        if res is not None and current is not None:
            items.append((current, self._prompts, float(res.scores[res.selected])))
        records = []
        for i, (mask, prompts, score) in enumerate(items):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            coords, labels, box = split_prompts(prompts)
            records.append({
                "id": i + 1,
                "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
                "area": int(mask.sum()),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "predicted_iou": float(score),
                "point_coords": coords.tolist() if coords is not None else [],
                "point_labels": labels.tolist() if labels is not None else [],
                "box": box.tolist() if box is not None else None,
            })
        return records

    def save(self, path: PathLike) -> Tuple[Path, Path]:
        """Write ``<path>.png`` (the image with the masks painted on it) and ``<path>.json`` (COCO RLE records,
        see :meth:`annotations`). A ``.png``/``.json`` suffix on ``path`` is dropped. Returns both paths.

        Both files are rendered in memory and written to temporary files first, so a failure leaves
        neither new file behind (never a PNG without its JSON)."""
        text = str(path)
        base = Path(path).expanduser()
        if text.endswith(("/", os.sep)) or base.is_dir():
            raise ValueError(f"save needs a file name, but {text!r} is a folder; give a name inside it, "
                             f"e.g. {str(base / 'masks')!r}")
        if base.suffix.lower() in (".png", ".json"):
            base = base.with_suffix("")
        if not base.name:
            raise ValueError(f"save needs a file name, got {text!r}")
        if not base.parent.exists():
            raise FileNotFoundError(f"cannot save to {str(base)!r}: folder {str(base.parent)!r} does not exist")
        png, js = base.with_name(base.name + ".png"), base.with_name(base.name + ".json")
        for target in (png, js):
            if target.is_dir():
                raise IsADirectoryError(f"cannot save {target.name}: {str(target)!r} is a folder")
        doc = {"image": {"height": self.height, "width": self.width}, "annotations": self.annotations()}
        contents = {js: json.dumps(doc, indent=1).encode(), png: _png(self.overlay_image(), compress_level=6)}
        temporaries = {target: target.with_name(f".{target.name}.tmp{os.getpid()}") for target in contents}
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

    def plot(self, ax: Any = None, title: Optional[str] = None) -> Any:
        """Draw the image, masks, points and box with matplotlib (the static view of the widget's state)."""
        import matplotlib.pyplot as plt

        from . import viz

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 6 * self.height / self.width))
        ax.imshow(self.image)
        for obj in self._objects:
            viz.show_mask(obj.mask, ax=ax, color=np.array(obj.colour) / 255, alpha=self.opacity)
        current = self.current_mask
        if current is not None:
            viz.show_mask(current, ax=ax, color=np.array(PALETTE[len(self._objects) % len(PALETTE)]) / 255,
                          alpha=self.opacity)
        coords, labels, box = split_prompts(self._prompts)
        if coords is not None:
            viz.show_points(coords, labels, ax=ax)
        if box is not None:
            viz.show_box(box, ax=ax)
        ax.set_axis_off()
        if title is None and len(self.scores):
            title = f"{len(self._prompts)} prompt(s), predicted IoU {self.scores[self.selected]:.2f}"
        if title:
            ax.set_title(title)
        return ax

    # --------------------------------------------------------------------------------- display
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Dict[str, Any]:
        text = ("ClickSegmenter: an interactive widget. If you read this instead of an image with buttons, "
                "this front end cannot show ipywidgets: use JupyterLab, Notebook 7 or VS Code; in Colab run "
                "`from google.colab import output; output.enable_custom_widget_manager()` first. "
                "Without a front end, drive it with seg.handle_click(x, y) and look at seg.plot().")
        return {
            "text/plain": text,
            "text/html": f"<p><code>ClickSegmenter</code>: {text.split(': ', 1)[1]}</p>",
            "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                         "model_id": self.widget.model_id},
        }

    def close(self) -> None:
        """Close the widgets (the front end removes them)."""
        self.wait()
        for w in (self.events, self.move_events):
            if w is not None:
                w.close()
        self.widget.close()
        self.canvas.close()


__all__ = ["ClickSegmenter", "PointPrompt", "BoxPrompt", "SegmentedObject", "PALETTE", "display_shape",
           "mask_outline", "paint_mask", "paint_index", "palette_rgba", "palette_png", "star_polygon", "blend", "put_png", "image_from_upload", "split_prompts"]
