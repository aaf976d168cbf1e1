"""Figures for notebooks, slides and reports: masks, prompts, annotations and training curves.

Matplotlib only; everything works under the non-interactive ``Agg`` backend. Coordinates are in the
pixels of the image shown (``(x, y)`` = column, row), like the predictor's inputs and outputs.
Every figure can be written as a static PNG with :func:`save_figure`.
"""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = [
    "mask_outline",
    "palette_rgba",
    "paint_index",
    "mask_overlay",
    "blend",
    "show_mask",
    "contrasting_color",
    "show_points",
    "show_box",
    "show_anns",
    "show_sample",
    "plot_curves",
    "save_figure",
    "random_colors",
    "distinct_colors",
]

PathLike = Union[str, os.PathLike]
DEFAULT_COLOR = (30 / 255, 144 / 255, 1.0)


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _axes(ax: Any = None) -> Any:
    import matplotlib.pyplot as plt

    return ax if ax is not None else plt.gca()


def random_colors(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random RGB colours in [0, 1], bright enough to see on photos (n x 3)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.15, 1.0, (n, 3))


def distinct_colors(n: int) -> np.ndarray:
    """``n`` RGB colours in [0, 1] that differ from each other (n x 3): matplotlib's ``tab10`` for up to 10, then
    hues a golden angle apart. For a few objects in one picture, where random colours can coincide."""
    if n <= 10:
        from matplotlib import colormaps

        return np.asarray(colormaps["tab10"].colors[:n], dtype=float).reshape(n, 3)
    from matplotlib.colors import hsv_to_rgb

    hues = (np.arange(n) * 0.381966) % 1.0
    return hsv_to_rgb(np.stack([hues, np.full(n, 0.75), np.full(n, 0.95)], axis=1))


# ----------------------------------------------------------------------------------------------
# Overlays as arrays (the widget's canvas, saved pictures, show_anns)
# ----------------------------------------------------------------------------------------------
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


def palette_rgba(colours: Sequence[Sequence[float]], opacity: float) -> np.ndarray:
    """An overlay palette for ``N`` colours (RGB, 0-255): ``(1 + 2N) x 4`` uint8 RGBA. Index 0 is
    transparent, ``1 + 2c`` the inside of a mask in colour ``c`` (opacity ``opacity``, 0-1), ``2 + 2c``
    its outline (opaque)."""
    rgb = np.asarray(colours, dtype=np.float64).reshape(-1, 3)
    pal = np.zeros((1 + 2 * len(rgb), 4), dtype=np.uint8)
    pal[1::2, :3] = pal[2::2, :3] = np.clip(np.round(rgb), 0, 255)
    pal[1::2, 3] = int(round(255 * opacity))
    pal[2::2, 3] = 255
    return pal


def paint_index(index: np.ndarray, mask: np.ndarray, colour: int, outline: int = 2) -> None:
    """Paint ``mask`` (``H x W`` bool) into the ``H x W`` palette-index image ``index`` in place, in
    colour ``colour`` of :func:`palette_rgba`: inside ``1 + 2c``, an ``outline``-pixel boundary
    ``2 + 2c`` (none with ``outline=0``)."""
    index[mask] = 1 + 2 * colour
    if outline:
        index[mask_outline(mask, outline)] = 2 + 2 * colour


def mask_overlay(masks: Sequence[np.ndarray], colours: Sequence[Sequence[float]], opacity: float,
                 outline: int = 2) -> np.ndarray:
    """``N`` masks (``H x W`` bool, later ones on top) painted in ``colours`` (``N x 3``, RGB 0-255):
    an ``H x W x 4`` uint8 RGBA overlay, transparent where no mask is (see :func:`paint_index`)."""
    if len(masks) == 0:
        raise ValueError("mask_overlay needs at least one mask")
    index = np.zeros(np.shape(masks[0]), dtype=np.uint8 if 2 * len(masks) < 256 else np.uint16)
    for c, mask in enumerate(masks):
        paint_index(index, np.asarray(mask, dtype=bool), c, outline)
    return palette_rgba(colours, opacity)[index]


def blend(image: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Alpha-composite an ``H x W x 4`` uint8 overlay onto an ``H x W x 3`` uint8 image."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    out = image.astype(np.float32) * (1 - a) + rgba[..., :3].astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------
# Matplotlib
# ----------------------------------------------------------------------------------------------
def show_mask(mask: Any, ax: Any = None, color: Optional[Sequence[float]] = None, alpha: float = 0.5,
              outline: bool = True) -> Any:
    """Overlay one H x W bool mask (numpy or tensor) as a translucent colour with an optional outline."""
    ax = _axes(ax)
    m = _np(mask).astype(bool)
    while m.ndim > 2 and m.shape[0] == 1:
        m = m[0]
    if m.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {m.shape}")
    rgb = np.asarray(color if color is not None else DEFAULT_COLOR, dtype=float)[:3]
    overlay = np.zeros(m.shape + (4,), dtype=float)
    overlay[m, :3] = rgb
    overlay[m, 3] = alpha
    ax.imshow(overlay, interpolation="nearest")
    if outline and m.any() and not m.all():
        ax.contour(m.astype(float), levels=[0.5], colors=[tuple(rgb)], linewidths=1.0)
    return ax


# colours a mask overlay can take: the default blue, then yellow, magenta, cyan and lime
OVERLAY_COLORS = np.array([DEFAULT_COLOR, (1.0, 0.85, 0.0), (1.0, 0.0, 0.8), (0.0, 0.9, 0.9), (0.4, 1.0, 0.0)])


def contrasting_color(image: Any, mask: Any, colors: Optional[np.ndarray] = None) -> np.ndarray:
    """The colour of ``colors`` (default :data:`OVERLAY_COLORS`) farthest from the pixels ``mask`` covers in
    ``image`` (mean RGB distance): a blue mask on a blue object is hard to see, a yellow one is not.
    ``image``: ``H x W x 3`` uint8 or float in [0, 1]; ``mask``: ``H x W`` bool. Returns RGB in [0, 1]; the first
    colour for an empty mask."""
    img = _np(image)
    m = _np(mask).astype(bool)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[:2] != m.shape:
        raise ValueError(f"image must be H x W x 3 and mask H x W of the same size, got {img.shape} and {m.shape}")
    palette = np.asarray(OVERLAY_COLORS if colors is None else colors, dtype=float)
    if not m.any():
        return palette[0]
    pixels = img[m].astype(float) / (255.0 if img.dtype == np.uint8 else 1.0)
    if len(pixels) > 4096:
        pixels = pixels[np.linspace(0, len(pixels) - 1, 4096).astype(int)]
    distance = np.linalg.norm(pixels[None, :, :] - palette[:, None, :], axis=2).mean(axis=1)
    return palette[int(np.argmax(distance))]


def show_points(coords: Any, labels: Any, ax: Any = None, marker_size: float = 200) -> Any:
    """Draw N x 2 ``(x, y)`` points: label 1 a green star, 0 a red star; -1 (padding) is skipped."""
    ax = _axes(ax)
    c = _np(coords).reshape(-1, 2)
    lab = _np(labels).reshape(-1)
    if len(c) != len(lab):
        raise ValueError(f"coords ({len(c)} points) and labels ({len(lab)}) differ in length")
    for value, colour in ((1, "green"), (0, "red")):
        sel = c[lab == value]
        if len(sel):
            ax.scatter(sel[:, 0], sel[:, 1], color=colour, marker="*", s=marker_size, edgecolor="white",
                       linewidth=1.25)
    return ax


def show_box(box: Any, ax: Any = None, color: str = "green", linewidth: float = 2.0) -> Any:
    """Draw one XYXY box (or several, N x 4)."""
    import matplotlib.patches as patches

    ax = _axes(ax)
    for x0, y0, x1, y1 in _np(box).reshape(-1, 4):
        ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, edgecolor=color, facecolor=(0, 0, 0, 0),
                                       lw=linewidth))
    return ax


def _as_masks(anns: Any) -> List[np.ndarray]:
    if isinstance(anns, (list, tuple)) and anns and isinstance(anns[0], Mapping):
        from .amg_utils import segmentation_mask

        return [segmentation_mask(a["segmentation"]) for a in anns]
    arr = _np(anns).astype(bool)
    if arr.ndim == 2:
        arr = arr[None]
    return list(arr)


def show_anns(anns: Any, ax: Any = None, image: Optional[np.ndarray] = None, seed: int = 0,
              alpha: float = 0.55, outline: bool = False) -> Any:
    """Draw many masks at once in random colours, largest first (so small masks stay visible on top).

    Arguments:
        anns: the automatic mask generator's records (``segmentation`` H x W bool or COCO RLE), or an
            N x H x W bool array/tensor.
        ax: axes (default: the current axes); ``image``: drawn underneath when given.
        seed: colours are random but reproducible.
    """
    ax = _axes(ax)
    if image is not None:
        ax.imshow(_np(image))
    masks = _as_masks(anns)
    if not masks:
        return ax
    order = np.argsort([-m.sum() for m in masks], kind="stable")
    colors = random_colors(len(masks), seed)
    overlay = mask_overlay([masks[i] for i in order], np.round(colors * 255), alpha, outline=0)
    ax.imshow(overlay, interpolation="nearest")
    if outline:
        for rank, i in enumerate(order):
            if masks[i].any():
                ax.contour(masks[i].astype(float), levels=[0.5], colors=[tuple(colors[rank])], linewidths=0.8)
    ax.set_axis_off()
    return ax


def show_sample(sample: Mapping[str, Any], ax: Any = None, max_masks: int = 50, boxes: bool = False,
                seed: int = 0, title: Optional[str] = None) -> Any:
    """Show a data set item (``image``, ``masks``, optional ``boxes``) with its masks, largest first."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6))
    masks = _np(sample["masks"]).astype(bool)[:max_masks]
    show_anns(masks, ax=ax, image=sample["image"], seed=seed)
    if boxes and "boxes" in sample:
        show_box(_np(sample["boxes"])[:max_masks], ax=ax, color="yellow", linewidth=1.0)
    if title is None:
        name = Path(str(sample.get("file", ""))).name
        title = f"{name}  {len(_np(sample['masks']))} masks" if name else f"{len(masks)} masks"
    ax.set_title(title)
    ax.set_axis_off()
    return ax


def _read_records(records: Union[PathLike, Iterable[Mapping[str, Any]]]) -> List[Dict[str, Any]]:
    if isinstance(records, (str, os.PathLike)):
        path = Path(records)
        if not path.is_file():
            raise FileNotFoundError(f"log file not found: {path}")
        if path.suffix == ".csv":
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        else:  # JSON lines
            with open(path) as f:
                rows = [json.loads(line) for line in f if line.strip()]
    else:
        rows = [dict(r) for r in records]
    out = []
    for row in rows:
        clean = {}
        for k, v in row.items():
            try:
                clean[k] = float(v)
            except (TypeError, ValueError):
                continue
        out.append(clean)
    return out


def plot_curves(records: Union[PathLike, Iterable[Mapping[str, Any]]], keys: Optional[Sequence[str]] = None,
                ax: Any = None, x: str = "step", logy: bool = False, title: Optional[str] = None) -> Any:
    """Plot training or evaluation curves (loss, mIoU, ...) against ``x``.

    Arguments:
        records: a list of dicts, or the path of a CSV file or a JSON-lines file of them.
        keys: the columns to plot (default: every numeric column but ``x``). A record lacking a key is
            skipped for that curve, so sparse evaluation records plot fine.
        x: the x-axis column (falls back to the record number when absent).
    """
    import matplotlib.pyplot as plt

    rows = _read_records(records)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    if keys is None:
        keys = sorted({k for r in rows for k, v in r.items()
                       if k != x and isinstance(v, (int, float)) and not isinstance(v, bool)})
    for key in keys:
        pts = [(r.get(x, i), r[key]) for i, r in enumerate(rows) if key in r and np.isfinite(r[key])]
        if not pts:
            raise ValueError(f"no record has a numeric '{key}' (columns: {sorted({k for r in rows for k in r})})")
        xs, ys = zip(*pts)
        ax.plot(xs, ys, label=key, marker="o" if len(pts) < 20 else None, markersize=3)
    ax.set_xlabel(x)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def save_figure(fig: Any, path: PathLike, dpi: int = 120) -> Path:
    """Write ``fig`` as a static PNG, or as a JPEG (quality 88, for photographs) when ``path`` ends in ``.jpg``
    or ``.jpeg`` (parent folders created), and return the path."""
    path = Path(path)
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    if not jpeg and path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    if jpeg:
        fig.savefig(path, dpi=dpi, bbox_inches="tight", format="jpeg", pil_kwargs={"quality": 88})
    else:
        fig.savefig(path, dpi=dpi, bbox_inches="tight", format="png")
    return path


def figure_png(fig: Any, dpi: int = 80, close: bool = True) -> bytes:
    """``fig`` as PNG bytes (for an ``ipywidgets.Image``), closing it by default."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, bbox_inches="tight", format="png")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)
    return buf.getvalue()
