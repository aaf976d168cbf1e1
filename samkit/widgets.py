"""Click-to-segment in the notebook: the interactive demo of the paper, on a canvas.

``ClickSegmenter(model_or_predictor, image)`` shows ``image`` on an ipycanvas ``MultiCanvas`` with
three layers (the image, a translucent RGBA mask overlay, the prompts) and ipywidgets controls under
it::

    seg = ClickSegmenter(samkit.load_model("tiny"), image)
    seg                      # display it; click on an object
    seg.masks                # one H x W bool mask per kept object, plus the current one

The widget is a view: what it shows and what it saves live in a :class:`samkit.clicks.ClickSession`
(``seg.session``: the prompts, the decoder's answers through the predictor, undo, the kept objects,
saving), which works without any user interface.

Mouse (handled by ``ipyevents`` on the canvas, which reports the button and suppresses the context
menu):

* left click: a positive point (the object is here), green star;
* right click, or shift + left click: a negative point (not here), red star;
* left drag: a box (one per object; a new drag replaces it).

Coordinates: the ``handle_*`` methods take **display pixels** (the canvas, ``display_width x
display_height``; ``(0, 0)`` is the top-left corner) and convert them to **original image pixels**
(``x_image = x_display * width / display_width``); everything stored (``prompts``, ``masks``) is in
original image pixels.

Clicks that arrive while the decoder runs are never dropped: the prompt is recorded at once, and the
decoder runs again for the latest prompts when it is free (a worker thread with one pending-request
flag), so a burst of clicks costs at most two decoder passes.

Front ends: JupyterLab 4, Notebook 7 and VS Code render it with ipywidgets 8 (ipycanvas and
ipyevents ship their JavaScript); in Colab call ``from google.colab import output;
output.enable_custom_widget_manager()`` once. Where no widget front end exists (papermill,
nbconvert) the canvas is only a widget reference in the output: nothing waits for a browser (the
canvas never asks the front end for its pixels), a text fallback explains what to do, and
:meth:`ClickSegmenter.plot` draws the same state with matplotlib.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from .clicks import (
    PALETTE,
    BoxPrompt,
    ClickSession,
    PointPrompt,
    Prompt,
    SegmentedObject,
    click_palette,
    split_prompts,
)
from .model.sam import Sam
from .predictor import Predictor
from .viz import blend, mask_outline, paint_index

POSITIVE_COLOUR = "#00d000"
NEGATIVE_COLOUR = "#ff2020"
BOX_COLOUR = "#00ff66"

#: the largest canvas the widget draws by default (display pixels); images are scaled to fit it.
MAX_DISPLAY_WIDTH = 640
MAX_DISPLAY_HEIGHT = 640

#: a press and release closer than this (display pixels) is a click, farther apart a box drag.
CLICK_TOLERANCE = 5.0

PathLike = Union[str, Path]


# ------------------------------------------------------------------------------------------ drawing
def display_shape(
    height: int, width: int, display_size: Union[None, int, Tuple[int, int]] = None
) -> Tuple[int, int]:
    """The canvas size ``(display_height, display_width)`` for an ``height x width`` image.

    ``None`` fits the image in ``MAX_DISPLAY_WIDTH x MAX_DISPLAY_HEIGHT`` keeping its aspect ratio
    (small images are enlarged); an int fits it in a square of that side; ``(w, h)`` is used as
    given.
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
            raise TypeError(
                f"display_size must be None, an int or (width, height), got {display_size!r}"
            ) from None
        if w < 16 or h < 16:
            raise ValueError(f"display_size must be at least 16 x 16 pixels, got {display_size!r}")
        return h, w
    scale = min(box_w / width, box_h / height)
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def palette_png(index: np.ndarray, palette: np.ndarray, compress_level: int = 1) -> bytes:
    """An ``H x W`` palette-index image and its ``N x 4`` RGBA palette as a (lossless) PNG with
    transparency."""
    from PIL import Image

    index = np.ascontiguousarray(index, dtype=np.uint8)
    img = Image.frombytes("P", (index.shape[1], index.shape[0]), index.tobytes())
    img.putpalette(palette[:, :3].reshape(-1).tolist())
    buf = io.BytesIO()
    img.save(
        buf, format="PNG", compress_level=compress_level, transparency=bytes(palette[:, 3].tolist())
    )
    return buf.getvalue()


def star_polygon(x: float, y: float, radius: float = 9.0) -> np.ndarray:
    """A five-pointed star centred on ``(x, y)``: ``10 x 2`` vertices (display pixels)."""
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, radius, radius * 0.45)
    return np.stack([x + radii * np.cos(angles), y + radii * np.sin(angles)], axis=1)


def _png(rgba: np.ndarray, compress_level: int = 1) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def put_png(layer: Any, png: bytes, fallback: Optional[np.ndarray] = None) -> None:
    """Draw PNG bytes on an ipycanvas layer at (0, 0), losslessly.

    ``Canvas.put_image_data`` encodes an RGBA array as PNG (an RGB one as JPEG, which would blur the
    mask edges) with slow compression; this sends the same draw command with a PNG we encoded
    ourselves (a small palette image for the mask overlay, redrawn on every click). ``fallback``
    (``H x W x 4`` uint8) goes through the public ``put_image_data`` if this ipycanvas version lacks
    the internals.
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

    Works with ipywidgets 8 (a tuple of dicts with ``content``) and 7 (a dict name ->
    {``content``}).
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
    name = (
        (item.get("name") or item.get("metadata", {}).get("name", "upload"))
        if isinstance(item, dict)
        else "upload"
    )
    try:
        img = Image.open(io.BytesIO(bytes(content)))
        img.load()
    except Exception as exc:
        raise ValueError(f"could not read the uploaded file {name!r} as an image: {exc}") from exc
    return np.asarray(img.convert("RGB"))


# ------------------------------------------------------------------------------------------- widget
class ClickSegmenter:
    """Interactive click-to-segment for one image: a canvas and buttons over a
    :class:`ClickSession`.

    Args:
        predictor_or_model: a :class:`~samkit.Predictor`, a :class:`~samkit.model.Sam` or a model
            name for :func:`samkit.load_model` (see :class:`~samkit.clicks.ClickSession`).
        image: ``H x W x 3`` uint8 RGB (grayscale and RGBA are converted).
        display_size: canvas size: ``None`` fits the image in 640 x 640 display pixels, an int fits
            it in a square of that side, ``(width, height)`` is used as given.
        multimask: ``"auto"`` (three masks for a single prompt, one for several, as the official
            demo), ``True`` (always three) or ``False`` (always one).
        upload: add a file-upload button that segments the user's own image.
        refine: cut the shown mask along the image's edges (GrabCut seeded by the model's mask, see
            :class:`~samkit.clicks.ClickSession`); the "Cut along edges" box switches it live.
        threaded: decode front-end clicks on a worker thread so the kernel stays responsive and
            bursts of clicks coalesce; ``handle_*`` calls with ``wait=True`` (the default) are
            synchronous anyway.

    Attributes (Python side): :attr:`masks`, :attr:`prompts`, :attr:`scores`, :attr:`current_mask`,
    :attr:`objects`, :attr:`session`, :attr:`widget` (the ipywidgets box to display),
    :attr:`canvas`.
    """

    def __init__(
        self,
        predictor_or_model: Union[Predictor, Sam, str],
        image: np.ndarray,
        display_size: Union[None, int, Tuple[int, int]] = None,
        multimask: Union[str, bool] = "auto",
        upload: bool = False,
        threaded: bool = True,
        refine: bool = False,
    ) -> None:
        self.session = ClickSession(predictor_or_model, image, multimask=multimask, refine=refine)
        self.threaded = threaded
        self._display_size = display_size
        self.opacity = 0.45
        self.last_error: Optional[BaseException] = None
        # embedding_s and decoder_ms (from the session), render_ms and click_ms (the view's)
        self.timings = self.session.timings

        self._lock = threading.Lock()  # guards the worker flags below
        self._render_lock = threading.Lock()  # one drawing at a time (ipycanvas batches are global)
        self._idle = threading.Event()
        self._idle.set()
        self._running = False
        self._pending = False
        self._working_thread: Optional[int] = None
        self._callbacks: List[Callable[["ClickSegmenter"], Any]] = []
        self._press: Optional[Tuple[float, float, int, bool]] = None
        self._syncing = False
        self._kept: Optional[Tuple[Tuple[int, ...], np.ndarray]] = (
            None  # kept objects, display size
        )

        self._build_widgets(upload)
        self._show_image(cached=None)

    # ------------------------------------------------------------------------------------ the image
    def set_image(self, image: np.ndarray) -> None:
        """Show a new image: compute (or fetch from the cache) its embedding and forget all
        prompts."""
        self.wait()
        self._set_status("⏳ computing the image embedding (image encoder)…")
        try:
            cached = self.session.set_image(image)
        except Exception as exc:
            self._set_status(f"error while embedding the image: {exc}")
            raise
        self._show_image(cached)

    def _show_image(self, cached: Optional[bool]) -> None:
        h, w = self.height, self.width
        self.display_height, self.display_width = display_shape(h, w, self._display_size)
        self._sx = self.display_width / w
        self._sy = self.display_height / h
        # nearest-neighbour resampling to display size: two 1-D takes (~6x faster than 2-D indices)
        self._rows = np.minimum(
            ((np.arange(self.display_height) + 0.5) / self._sy).astype(np.int64), h - 1
        )
        self._cols = np.minimum(
            ((np.arange(self.display_width) + 0.5) / self._sx).astype(np.int64), w - 1
        )
        self._kept = None
        self.canvas.width, self.canvas.height = self.display_width, self.display_height
        self._draw_image()
        self._render()
        how = "from the cache" if cached else "computed"
        self._set_status(
            f"ready: embedding {how} in {self.timings['embedding_s']:.2f} s. "
            "Left click: object · right/shift click: background · drag: box"
        )
        self._sync_controls()
        self._notify()

    # ---------------------------------------------------------------------------- read-only state
    @property
    def predictor(self) -> Predictor:
        """The session's predictor (same model and embedding cache as the one given)."""
        return self.session.predictor

    @property
    def image(self) -> np.ndarray:
        return self.session.image

    @property
    def height(self) -> int:
        return self.session.height

    @property
    def width(self) -> int:
        return self.session.width

    @property
    def prompts(self) -> List[Prompt]:
        """The current object's prompts in the order given (original image pixels)."""
        return self.session.prompts

    @property
    def objects(self) -> List[SegmentedObject]:
        """The kept objects (see :meth:`keep`)."""
        return self.session.objects

    @property
    def scores(self) -> np.ndarray:
        """Predicted IoU of each output of the last decoder pass (3 or 1 values; empty before a
        prompt)."""
        return self.session.scores

    @property
    def selected(self) -> Optional[int]:
        """Which of the outputs is the current mask (``None`` before a prompt)."""
        return self.session.selected

    @property
    def current_mask(self) -> Optional[np.ndarray]:
        """The current object's ``H x W`` bool mask (the selected output), ``None`` before a
        prompt."""
        return self.session.current_mask

    @property
    def masks(self) -> List[np.ndarray]:
        """One ``H x W`` bool mask per kept object, then the current object's mask if there is
        one."""
        return self.session.masks

    @property
    def decode_count(self) -> int:
        """How many times the decoder ran."""
        return self.session.decode_count

    @property
    def busy(self) -> bool:
        """True while the decoder runs or a request waits for it."""
        return not self._idle.is_set()

    # ----------------------------------------------------------------------------- event handlers
    def to_image_coords(self, x: float, y: float) -> Tuple[float, float]:
        """Display pixels -> original image pixels (clipped to the image)."""
        return (
            float(np.clip(x / self._sx, 0, self.width - 1)),
            float(np.clip(y / self._sy, 0, self.height - 1)),
        )

    def to_display_coords(self, x: float, y: float) -> Tuple[float, float]:
        """Original image pixels -> display pixels."""
        return x * self._sx, y * self._sy

    def _check_display_xy(self, x: float, y: float) -> None:
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"click coordinates must be finite, got ({x}, {y})")
        if not (-1 <= x <= self.display_width + 1 and -1 <= y <= self.display_height + 1):
            raise ValueError(
                f"click at ({x:g}, {y:g}) lies outside the canvas ({self.display_width} x "
                f"{self.display_height} display pixels)"
            )

    def handle_click(
        self, x: float, y: float, button: int = 0, shift: bool = False, wait: bool = True
    ) -> None:
        """A click at display pixel ``(x, y)``: button 0 (left) adds a positive point, button 2
        (right) or ``shift`` a negative one (the "left click adds" toggle can make left clicks
        negative too).

        ``wait=False`` returns at once and decodes on the worker thread (what the front end does).
        """
        self._check_display_xy(x, y)
        if button not in (0, 2):
            return  # middle button and others: nothing
        negative = button == 2 or shift or self.mode.value == 0
        ix, iy = self.to_image_coords(x, y)
        self._add_prompt(PointPrompt(ix, iy, 0 if negative else 1), wait)

    def handle_drag(self, x0: float, y0: float, x1: float, y1: float, wait: bool = True) -> None:
        """A drag from display pixel ``(x0, y0)`` to ``(x1, y1)``: sets the object's box (replacing
        an earlier one)."""
        self._check_display_xy(x0, y0)
        self._check_display_xy(x1, y1)
        ax0, ay0 = self.to_image_coords(min(x0, x1), min(y0, y1))
        ax1, ay1 = self.to_image_coords(max(x0, x1), max(y0, y1))
        if ax1 - ax0 < 1 or ay1 - ay0 < 1:
            raise ValueError(
                f"the box from ({x0:g}, {y0:g}) to ({x1:g}, {y1:g}) is empty; use handle_click "
                "for points"
            )
        self._add_prompt(BoxPrompt(ax0, ay0, ax1, ay1), wait)

    def _add_prompt(self, prompt: Prompt, wait: bool) -> None:
        self.session.add(prompt, decode=False)
        self._render_prompts()
        self._request(wait)

    def undo(self, wait: bool = True) -> None:
        """Take back the last action (a point, a box, a keep or a clear)."""
        if not self.session.undo(decode=False):
            return
        if self.session.stale:
            self._render_prompts()
            self._request(wait)
        else:
            self._changed()

    def clear(self, objects: bool = True) -> None:
        """Forget the current object's prompts and, with ``objects=True``, the kept objects too
        (undoable)."""
        self.wait()
        if self.session.clear(objects):
            self._changed()

    @property
    def refine(self) -> bool:
        """Whether the shown masks are cut along the image's edges (see :meth:`set_refine`)."""
        return self.session.refine

    def set_refine(self, refine: bool) -> None:
        """Switch the edge cut (GrabCut seeded by the model's mask) on or off and redraw."""
        self.wait()
        self.session.refine = bool(refine)
        if self.refine_box.value != self.session.refine:
            self._syncing = True
            try:
                self.refine_box.value = self.session.refine
            finally:
                self._syncing = False
        self._changed()

    def select_mask(self, index: int) -> None:
        """Make output ``index`` (0, 1, 2 in the order of the buttons) the current mask."""
        self.wait()
        self.session.select(index)
        self._changed()

    def keep(self) -> Optional[SegmentedObject]:
        """Keep the current mask as an object (in its own colour) and start a new object. Returns
        it."""
        self.wait()
        obj = self.session.keep()
        if obj is None:
            self._set_status("nothing to keep yet: click on an object first")
            return None
        self._changed()
        return obj

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until no decoding is running or pending; False if ``timeout`` (s) ran out first.

        Returns at once when called from the decoding thread itself (e.g. inside an ``on_change``
        callback).
        """
        if self._working_thread == threading.get_ident():
            return True
        return self._idle.wait(timeout)

    def on_change(self, callback: Callable[["ClickSegmenter"], Any], remove: bool = False) -> None:
        """Call ``callback(segmenter)`` after every change of the masks or prompts (from any
        thread)."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    # ---------------------------------------------------------------------------------- decoding
    def _request(self, wait: bool) -> None:
        """Ask for the current prompts to be decoded; coalesces requests made while a decode
        runs."""
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
                threading.Thread(
                    target=self._work, name="samkit-click-decoder", daemon=True
                ).start()
        if wait:
            self._idle.wait()
            err = self.last_error
            if err is not None:
                self.last_error = None
                raise err

    def _work(self) -> None:
        self._working_thread = threading.get_ident()
        try:
            while True:
                with self._lock:
                    self._pending = False
                start = time.perf_counter()
                try:
                    decoded = self.session.update()
                    error = None
                except Exception as exc:  # shown in the status line; re-raised by waiting callers
                    decoded, error = False, exc
                decode_s = time.perf_counter() - start
                if error is not None:
                    self.last_error = error
                    self._set_status(f"error: {type(error).__name__}: {error}")
                elif decoded:
                    self._changed(decode_s)
                with self._lock:
                    if not self._pending:
                        self._running = False
                        self._idle.set()
                        return
        finally:
            self._working_thread = None

    # -------------------------------------------------------------------------------- rendering
    def _changed(self, decode_s: Optional[float] = None) -> None:
        start = time.perf_counter()
        self.timings["refine_ms"] = 0.0  # the edge cut runs inside the drawing, on first sight of a mask
        self._render()
        render_s = time.perf_counter() - start
        refine_s = self.timings["refine_ms"] / 1e3
        self.timings["render_ms"] = (render_s - refine_s) * 1e3
        if decode_s is not None:
            self.timings["click_ms"] = (decode_s + render_s) * 1e3
            n = len(self.session.prompts)
            cut = f", edge cut {refine_s * 1e3:.0f} ms" if self.session.refine else ""
            self._set_status(
                f"{n} prompt{'s' if n != 1 else ''} · last click {self.timings['click_ms']:.0f} ms "
                f"(decoder {decode_s * 1e3:.0f} ms{cut}, drawing {(render_s - refine_s) * 1e3:.0f} ms)"
            )
        self._sync_controls()
        self._notify()

    def _notify(self) -> None:
        for cb in list(self._callbacks):
            try:
                cb(self)
            except Exception as exc:  # a broken callback must not break the widget
                self._set_status(f"on_change callback failed: {type(exc).__name__}: {exc}")

    def _display_mask(self, mask: np.ndarray) -> np.ndarray:
        return mask.take(self._rows, axis=0).take(self._cols, axis=1)

    def overlay_index(self) -> np.ndarray:
        """The mask overlay at display size as palette indices, ``display_height x display_width``
        uint8 (see :func:`samkit.clicks.click_palette`): kept objects in their colours, the current
        one on top."""
        objects = self.session.objects
        key = tuple(id(o) for o in objects)
        if self._kept is None or self._kept[0] != key:
            kept = np.zeros((self.display_height, self.display_width), dtype=np.uint8)
            for k, obj in enumerate(objects):
                paint_index(kept, self._display_mask(obj.mask), k % len(PALETTE))
            self._kept = (key, kept)
        out = self._kept[1].copy()
        current = self.session.current_mask
        if current is not None:
            paint_index(out, self._display_mask(current), len(objects) % len(PALETTE))
        return out

    def overlay_rgba(self) -> np.ndarray:
        """The mask overlay the canvas shows, ``display_height x display_width x 4`` uint8 RGBA."""
        return click_palette(self.opacity)[self.overlay_index()]

    def _draw_image(self) -> None:
        from PIL import Image

        small = np.asarray(
            Image.fromarray(self.image).resize(
                (self.display_width, self.display_height), Image.BILINEAR
            )
        )
        with self._render_lock:
            put_png(self.canvas[0], _png(small))

    def _render(self) -> None:
        from ipycanvas import hold_canvas

        png = palette_png(self.overlay_index(), click_palette(self.opacity))
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
        prompts = self.session.prompts
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
        self.choice = W.ToggleButtons(
            options=[("mask 1", 0)],
            value=0,
            disabled=True,
            description="Output:",
            tooltips=["click on the image first"],
            style={"button_width": "150px"},
        )
        self.choice.observe(self._on_choice, names="value")
        self.mode = W.ToggleButtons(
            options=[("+ object", 1), ("− background", 0)],
            value=1,
            description="Left click:",
            tooltips=["left click adds a positive point", "left click adds a negative point"],
        )
        self.undo_button = W.Button(
            description="Undo", icon="undo", tooltip="take back the last action"
        )
        self.clear_button = W.Button(
            description="Clear", icon="trash", tooltip="forget all prompts and objects"
        )
        self.keep_button = W.Button(
            description="Keep & next object",
            icon="plus",
            tooltip="keep this mask and start another object",
            layout=W.Layout(width="auto"),
        )
        self.opacity_slider = W.FloatSlider(
            value=self.opacity,
            min=0.0,
            max=1.0,
            step=0.05,
            description="Opacity:",
            continuous_update=True,
            readout_format=".2f",
        )
        self.path_text = W.Text(
            value="click_masks",
            description="Save to:",
            placeholder="<path> -> <path>.png + <path>.json",
        )
        self.save_button = W.Button(
            description="Save", icon="save", tooltip="PNG overlay + COCO RLE JSON"
        )
        self.refine_box = W.Checkbox(
            value=self.session.refine,
            description="Cut along edges",
            tooltip="refine the mask with GrabCut, seeded by the model's mask (samkit.refine)",
            indent=False,
        )
        self.refine_box.observe(
            lambda ch: None if self._syncing else self._safely(self.set_refine, ch["new"]),
            names="value",
        )
        self.status = W.Label(value="")
        self.undo_button.on_click(lambda _: self._safely(self.undo, False))
        self.clear_button.on_click(lambda _: self._safely(self.clear))
        self.keep_button.on_click(lambda _: self._safely(self.keep))
        self.save_button.on_click(lambda _: self._safely(self._save_clicked))
        self.opacity_slider.observe(
            lambda ch: self._safely(self.set_opacity, ch["new"]), names="value"
        )
        rows = [
            self.canvas,
            self.choice,
            W.HBox([self.mode, self.undo_button, self.clear_button, self.keep_button, self.refine_box]),
            W.HBox([self.opacity_slider, self.path_text, self.save_button]),
        ]
        self.upload = None
        if upload:
            self.upload = W.FileUpload(accept="image/*", multiple=False, description="Your image")
            self.upload.observe(lambda ch: self._safely(self._on_upload), names="value")
            rows.append(self.upload)
        rows.append(self.status)
        self.widget = W.VBox(rows)
        self._connect_mouse()

    def _connect_mouse(self) -> None:
        """Mouse events: ipyevents when installed (buttons, modifiers, no context menu), else
        ipycanvas (left button only; the "Left click" toggle then gives negative points)."""
        try:
            from ipyevents import Event
        except ImportError:
            Event = None
        if Event is not None:
            self.events = Event(
                source=self.canvas,
                watched_events=["mousedown", "mouseup", "contextmenu", "mouseleave"],
                prevent_default_action=True,
            )
            self.events.on_dom_event(self._on_dom_event)
            self.move_events = Event(
                source=self.canvas,
                watched_events=["mousemove"],
                wait=60,
                throttle_or_debounce="throttle",
            )
            self.move_events.on_dom_event(self._on_dom_event)
        else:
            self.events = self.move_events = None
            self.canvas.on_mouse_down(lambda x, y: self._on_press(x, y, 0, False))
            self.canvas.on_mouse_up(lambda x, y: self._on_release(x, y))
            self.canvas.on_mouse_move(lambda x, y: self._on_move(x, y))

    def _event_xy(self, event: Dict[str, Any]) -> Tuple[float, float]:
        """ipyevents' ``relativeX/Y`` are CSS pixels of the element; rescale if the canvas is shown
        smaller."""
        x, y = float(event.get("relativeX", 0)), float(event.get("relativeY", 0))
        bw, bh = (
            float(event.get("boundingRectWidth") or 0),
            float(event.get("boundingRectHeight") or 0),
        )
        if bw > 0 and bh > 0:
            x, y = x * self.display_width / bw, y * self.display_height / bh
        if not (np.isfinite(x) and np.isfinite(y)):
            raise ValueError(f"mouse position must be finite, got ({x}, {y})")
        return x, y

    def _on_dom_event(self, event: Dict[str, Any]) -> None:
        """One ipyevents event; a malformed one (missing or non-numeric fields) shows an error in
        the status line instead of escaping into the front end's log."""
        try:
            self._dom_event(event)
        except Exception as exc:
            self._press = None
            self._set_status(
                f"error: ignored a malformed mouse event ({type(exc).__name__}: {exc})"
            )

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
            if (
                button == 0
                and not shift
                and np.hypot(x - x0, y - y0) > CLICK_TOLERANCE
                and abs(x - x0) > 1
                and abs(y - y0) > 1
            ):
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
        res = self.session.result
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
        self.opacity = float(opacity)
        if abs(self.opacity_slider.value - self.opacity) > 1e-9:
            self.opacity_slider.value = self.opacity
        self._render()

    def _sync_controls(self) -> None:
        res = self.session.result
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
        return self.session.overlay_image(self.opacity)

    def annotations(self) -> List[Dict[str, Any]]:
        """The masks as COCO-style records (see :meth:`samkit.clicks.ClickSession.annotations`)."""
        self.wait()
        return self.session.annotations()

    def save(self, path: PathLike) -> Tuple[Path, Path]:
        """Write ``<path>.png`` (the image with the masks painted on it) and ``<path>.json`` (COCO
        RLE records, see :meth:`annotations`). A ``.png``/``.json`` suffix on ``path`` is dropped.
        Returns both paths."""
        self.wait()
        return self.session.save(path, self.opacity)

    def plot(self, ax: Any = None, title: Optional[str] = None) -> Any:
        """Draw the image, masks, points and box with matplotlib (the static view of the widget's
        state)."""
        import matplotlib.pyplot as plt

        from . import viz

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 6 * self.height / self.width))
        ax.imshow(self.image)
        objects = self.session.objects
        for obj in objects:
            viz.show_mask(obj.mask, ax=ax, color=np.array(obj.colour) / 255, alpha=self.opacity)
        current = self.current_mask
        if current is not None:
            viz.show_mask(
                current,
                ax=ax,
                color=np.array(PALETTE[len(objects) % len(PALETTE)]) / 255,
                alpha=self.opacity,
            )
        coords, labels, box = split_prompts(self.session.prompts)
        if coords is not None:
            viz.show_points(coords, labels, ax=ax)
        if box is not None:
            viz.show_box(box, ax=ax)
        ax.set_axis_off()
        if title is None and len(self.scores):
            title = f"{len(self.prompts)} prompt(s), predicted IoU {self.scores[self.selected]:.2f}"
        if title:
            ax.set_title(title)
        return ax

    # --------------------------------------------------------------------------------- display
    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Dict[str, Any]:
        text = (
            "ClickSegmenter: an interactive widget. If you read this instead of an image with "
            "buttons, this front end cannot show ipywidgets: use JupyterLab, Notebook 7 or VS "
            "Code; in Colab run "
            "`from google.colab import output; output.enable_custom_widget_manager()` first. "
            "Without a front end, drive it with seg.handle_click(x, y) and look at seg.plot()."
        )
        return {
            "text/plain": text,
            "text/html": f"<p><code>ClickSegmenter</code>: {text.split(': ', 1)[1]}</p>",
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2,
                "version_minor": 0,
                "model_id": self.widget.model_id,
            },
        }

    def close(self) -> None:
        """Close the widgets (the front end removes them)."""
        self.wait()
        for w in (self.events, self.move_events):
            if w is not None:
                w.close()
        self.widget.close()
        self.canvas.close()


__all__ = [
    "ClickSegmenter",
    "ClickSession",
    "PointPrompt",
    "BoxPrompt",
    "SegmentedObject",
    "PALETTE",
    "click_palette",
    "display_shape",
    "mask_outline",
    "palette_png",
    "star_polygon",
    "blend",
    "put_png",
    "image_from_upload",
    "split_prompts",
]
