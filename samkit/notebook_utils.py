"""Small helpers the course notebooks share: which model and device, where figures go, tables, timing.

Every notebook starts with::

    S = samkit.notebook_utils.setup(model=model, checkpoint=checkpoint, device=device, seed=seed,
                                    out_dir=out_dir)

which picks the device and the mixed precision with :mod:`samkit.device` (CUDA when present; bfloat16
on GPUs that have it natively, float16 on older ones such as Colab's T4, float32 on the CPU), loads the
model (Meta's official weights when they are available, otherwise samkit's embedded ``tiny`` model, and
says so), seeds every random generator and creates the folder that receives the run's figures (PNG) and
tables (HTML + CSV). ``S.save(fig, name)`` writes a figure there; ``S.table(rows, name)`` shows a table and
writes it there. The runner (``python -m samkit.runner``) collects both into ``runs/<timestamp>/index.html``.
"""
from __future__ import annotations

import contextlib
import csv
import html
import os
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from .device import autocast, autocast_dtype, pick_device, time_calls

PathLike = Union[str, os.PathLike]

OFFICIAL_MODELS = ("vit_b", "vit_l", "vit_h", "vit_t")

#: dpi of the PNG files written into ``out_dir`` and of the figures shown inline (``setup`` sets
#: matplotlib's ``figure.dpi``): with the course's 10-14 inch wide figures, 1100-1500 pixels.
SAVE_DPI = 110
FIGURE_DPI = 110


def in_colab() -> bool:
    """True inside Google Colab (its ``google.colab`` module is imported by the runtime)."""
    return "google.colab" in sys.modules


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def count_parameters(module: torch.nn.Module) -> int:
    """Number of parameters (works on modules built on the ``meta`` device, which allocate nothing)."""
    return sum(p.numel() for p in module.parameters())


def time_call(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1,
              device: Optional[torch.device] = None) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` calls after ``warmup`` calls
    (:func:`samkit.device.time_calls`: CUDA is synchronised around each call)."""
    return statistics.median(time_calls(fn, repeat, warmup, device))


def format_seconds(seconds: float) -> str:
    """``0.0123 -> '12.3 ms'``, ``2.5 -> '2.50 s'``."""
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _describe_params(n: int) -> str:
    return f"{n / 1e6:.1f} M parameters"


@dataclass
class Session:
    """What :func:`setup` decided: the model, where it runs, and where the run's files go."""

    model: Optional[torch.nn.Module]
    model_name: str
    weights: str                    # "official", "checkpoint", "embedded" or "random"
    device: torch.device
    out_dir: Path
    seed: int
    amp: Optional[torch.dtype] = None
    notes: List[str] = field(default_factory=list)
    figures: List[Path] = field(default_factory=list)
    tables: List[Path] = field(default_factory=list)

    @property
    def trained(self) -> bool:
        """False when the model has random weights (its masks mean nothing)."""
        return self.weights != "random"

    def autocast(self):
        """``with S.autocast(): ...`` runs in mixed precision on a GPU and does nothing on the CPU."""
        return autocast(self.device, self.amp)

    @property
    def amp_mode(self) -> str:
        """The session's mixed precision as a ``TrainConfig.amp`` value: ``"fp16"`` (with a gradient scaler,
        e.g. Colab's T4), ``"bf16"`` or ``"none"``."""
        return {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.amp, "none")

    def say(self, narration: Callable[..., str], **data: Any) -> None:
        """Show the Markdown that ``narration`` (a function of :mod:`samkit.narrate`) writes from ``data``.

        The numbers go with the text: the output's metadata holds ``{"samkit": {"narrate": name, "data":
        data}}`` (so a stored notebook can be checked to say what its numbers say), and the text and numbers
        are appended to ``<out_dir>/claims.json`` for the run's index and the slides. ``data`` must be plain
        numbers, strings, lists and dicts (NumPy scalars are converted). Returns nothing, so that a cell
        ending in ``S.say(...)`` shows the text once (a returned string would be shown again, quoted).
        """
        import json

        from . import narrate

        name = getattr(narration, "__name__", "")
        if getattr(narrate, name, None) is not narration:
            raise ValueError(f"say() takes a function of samkit.narrate, got {narration!r}")
        # rendered from the numbers as they are stored (JSON, keys sorted), so that re-rendering a stored record
        # gives the same text whatever order a dict was built in
        plain = json.loads(json.dumps(_plain(data), sort_keys=True))
        text = narration(**plain)
        record = {"narrate": name, "data": plain}
        path = self.out_dir / "claims.json"
        claims = json.loads(path.read_text()) if path.is_file() else []
        claims.append({**record, "text": text})
        path.write_text(json.dumps(claims, indent=1))
        from IPython.display import Markdown, display

        display(Markdown(text), metadata={"samkit": record})

    def predictor(self):
        """A :class:`samkit.Predictor` for the session's model."""
        from .predictor import Predictor

        return Predictor(self.model)

    def path(self, name: str) -> Path:
        """A file inside the run's output folder."""
        return self.out_dir / name

    def save(self, fig, name: str, dpi: int = SAVE_DPI) -> None:
        """Write ``fig`` as ``<out_dir>/<name>.png`` (the inline figure is shown by Jupyter as usual; the
        path is appended to ``self.figures``)."""
        if not name or "/" in name or "\\" in name:
            raise ValueError(f"figure name must be a plain file name without folders, got {name!r}")
        from .viz import save_figure

        path = save_figure(fig, self.out_dir / (name if name.endswith(".png") else f"{name}.png"), dpi=dpi)
        if path not in self.figures:
            self.figures.append(path)

    def table(self, rows: Sequence[Dict[str, Any]], name: str, title: Optional[str] = None,
              floatfmt: str = ".3f", display: bool = True) -> None:
        """Show ``rows`` (a list of dicts with the same keys) as a Markdown table and write it to
        ``<out_dir>/<name>.html``, ``<out_dir>/<name>.md`` and ``<out_dir>/<name>.csv``."""
        if not rows:
            raise ValueError(f"table {name!r} has no rows")
        columns = list(rows[0].keys())
        for i, row in enumerate(rows):
            if list(row.keys()) != columns:
                raise ValueError(f"table {name!r}: row {i} has columns {list(row.keys())}, expected {columns}")
        cells = [[_fmt(row[c], floatfmt) for c in columns] for row in rows]
        md = "| " + " | ".join(columns) + " |\n|" + "|".join("---" for _ in columns) + "|\n"
        md += "".join("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |\n" for r in cells)
        if title:
            md = f"**{title}**\n\n" + md
        base = self.out_dir / name
        with open(base.with_suffix(".csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(cells)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in cells)
        caption = f"<caption>{html.escape(title)}</caption>" if title else ""
        base.with_suffix(".html").write_text(
            f'<table class="samkit-table">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n')
        base.with_suffix(".md").write_text(md)
        path = base.with_suffix(".html")
        if path not in self.tables:
            self.tables.append(path)
        if display:
            from IPython.display import Markdown
            from IPython.display import display as show

            show(Markdown(md))


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars and arrays, tuples and paths made into JSON types (floats rounded to 6
    significant digits so the text does not depend on the last bits)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if not np.isfinite(v) or v == 0 else float(f"{v:.6g}")
    if isinstance(value, torch.Tensor):
        return _plain(value.detach().cpu().numpy())
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _fmt(value: Any, floatfmt: str) -> str:
    if isinstance(value, (float, np.floating)):
        return "–" if np.isnan(value) else format(float(value), floatfmt)
    return str(value)


def _model_help(name: str) -> str:
    return ("To use Meta's weights, set model = \"vit_b\" (or \"vit_l\", \"vit_h\", MobileSAM's \"vit_t\") in "
            "the parameters cell: the official checkpoint is downloaded once into "
            "$SAMKIT_HOME/checkpoints (default ~/.cache/samkit), or pass checkpoint=\"/path/to/sam_vit_b_01ec64.pth\".")


def _load(name: str, checkpoint: Optional[PathLike], allow_download: bool, notes: List[str]):
    """Returns (model, model_name, weights)."""
    import samkit

    from . import checkpoints as ckpt

    samkit.get_config(name)  # raises a clear ValueError for an unknown name
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist (parameter `checkpoint`)")
        return samkit.load_model(name, checkpoint=path), name, "checkpoint"
    if name in OFFICIAL_MODELS:
        try:
            path = ckpt.checkpoint_path(name, download=allow_download)
            return samkit.load_model(name, checkpoint=path), name, "official"
        except (OSError, ValueError, RuntimeError) as exc:  # offline, not cached, corrupt download
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            notes.append(f"Official {name} weights are not available here ({reason}); "
                         "falling back to samkit's embedded tiny model.")
            name = "tiny"
    if name == "tiny":
        if samkit.EMBEDDED_TINY.exists():
            return samkit.load_model("tiny"), "tiny", "embedded"
        notes.append("The embedded tiny checkpoint is not in this installation "
                     f"({samkit.EMBEDDED_TINY.name} missing: `make train-tiny` creates it); using RANDOM "
                     "weights, so the predicted masks below are meaningless.")
        return samkit.build_model("tiny").eval(), "tiny", "random"
    # vit_t etc. asked for with download disabled and nothing cached ends above; anything else is random
    notes.append(f"No weights for {name}; using random weights.")
    return samkit.build_model(name).eval(), name, "random"


def setup(model: Optional[str] = "tiny", checkpoint: Optional[PathLike] = None, device: str = "auto",
          seed: int = 0, out_dir: PathLike = "runs/latest", allow_download: Optional[bool] = None,
          verbose: bool = True) -> Session:
    """Prepare a notebook run and print what was chosen.

    Args:
        model: ``"tiny"`` (samkit's embedded model), ``"vit_b"``, ``"vit_l"``, ``"vit_h"``, ``"vit_t"``, or
            ``None`` for notebooks that need no model.
        checkpoint: a state-dict file for ``model``; ``None`` uses the official (or embedded) weights.
        device: ``"auto"`` (CUDA if present), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
        seed: seeds Python, NumPy and torch.
        out_dir: folder for the run's figures and tables (created).
        allow_download: fetch a missing official checkpoint; default True unless ``SAMKIT_OFFLINE=1``.
            When the weights cannot be had, the embedded tiny model is used and the output says so.
    """
    seed_everything(seed)
    dev = pick_device(device)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    claims = out / "claims.json"
    if claims.is_file():  # a fresh run of the notebook starts a fresh record of what it says
        claims.unlink()
    import matplotlib

    matplotlib.rcParams["figure.dpi"] = FIGURE_DPI
    if allow_download is None:
        allow_download = os.environ.get("SAMKIT_OFFLINE", "0") not in ("1", "true", "yes")
    notes: List[str] = []
    net, name, weights = (None, "none", "none")
    if model is not None:
        net, name, weights = _load(model, checkpoint, allow_download, notes)
        net = net.to(dev).eval()
    session = Session(model=net, model_name=name, weights=weights, device=dev, out_dir=out, seed=seed,
                      amp=autocast_dtype(dev), notes=notes)
    if verbose:
        print(describe(session, requested=model))
    return session


def describe(session: Session, requested: Optional[str] = None) -> str:
    """The text :func:`setup` prints: device, model and weights, how to switch, where files go."""
    dev = session.device
    if dev.type == "cuda":
        gpu = torch.cuda.get_device_name(dev)
        amp = {torch.float16: "float16", torch.bfloat16: "bfloat16"}.get(session.amp, "off")
        where = f"device: {dev} ({gpu}), mixed precision {amp}"
    else:
        where = f"device: {dev} (no GPU in use: everything runs in float32 on the CPU)"
    lines = [where]
    for note in session.notes:
        lines.append("NOTE: " + note)
    if session.model is not None:
        cfg = session.model.config
        size = f"{cfg.img_size} px input, {_describe_params(count_parameters(session.model))}"
        kind = {
            "official": f"Meta's official {session.model_name} weights",
            "checkpoint": f"{session.model_name} with the given checkpoint",
            "embedded": "samkit's embedded tiny teaching model (trained on generated scenes, not on SA-1B)",
            "random": f"{session.model_name} with RANDOM weights",
        }[session.weights]
        lines.append(f"model: {kind} ({size})")
        if session.model_name == "tiny":
            lines.append(_model_help(session.model_name))
    lines.append(f"colab: {'yes' if in_colab() else 'no'}")
    lines.append(f"out_dir: {shown_path(session.out_dir)}")
    return "\n".join(lines)


def shown_path(path: PathLike) -> str:
    """``path`` as a reader should see it: relative to the working folder (or its parent, the repository
    when a notebook runs in ``notebooks/``) when it lies inside, so printed outputs name no machine."""
    path = Path(path).expanduser().resolve()
    for base in (Path.cwd(), Path.cwd().parent):
        try:
            rel = path.relative_to(base.resolve())
        except ValueError:
            continue
        return str(rel) if base == Path.cwd() else str(Path("..") / rel)
    return f".../{path.parent.name}/{path.name}"


def data_note(real: bool, what: str, how_to_get: str) -> None:
    """Print whether a notebook uses the real data set or generated look-alikes."""
    if real:
        print(f"data: {what} (real)")
    else:
        print(f"data: generated look-alikes of {what} (no real copy found). {how_to_get}")


@contextlib.contextmanager
def trace_shapes(module: torch.nn.Module, names: Optional[Sequence[str]] = None):
    """Record the output shape of submodules of ``module`` while a forward pass runs.

    ``names``: submodule names (``"patch_embed"``, ``"blocks.0"``, ...); default: the direct children, with
    the items of a ``ModuleList``/``Sequential`` child listed one by one.
    ``with trace_shapes(model.image_encoder) as rows: model.image_encoder(x)`` fills ``rows`` with dicts
    ``{"module": name, "type": class name, "output shape": tuple}`` in execution order.
    """
    if names is None:
        names = []
        for name, child in module.named_children():
            if isinstance(child, torch.nn.ModuleList):
                names += [f"{name}.{i}" for i in range(len(child))]
            else:
                names.append(name)
    subs = dict(module.named_modules())
    missing = [n for n in names if n not in subs]
    if missing:
        raise ValueError(f"{type(module).__name__} has no submodule(s) {missing}")
    rows: List[Dict[str, Any]] = []
    handles = []
    for name in names:
        def hook(mod, args, out, name=name):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else tuple(
                tuple(o.shape) for o in out if isinstance(o, torch.Tensor))
            rows.append({"module": name, "type": type(mod).__name__, "output shape": shape})
        handles.append(subs[name].register_forward_hook(hook))
    try:
        yield rows
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def record_attention(decoder: torch.nn.Module):
    """Record the attention probabilities of every attention layer of the two-way transformer.

    ``with record_attention(model.mask_decoder) as maps: ...decoder call...`` fills ``maps`` with
    ``{layer name: B x heads x N_queries x N_keys}`` float tensors on the CPU, e.g.
    ``transformer.layers.0.cross_attn_token_to_image``: queries are the output + prompt tokens, keys the
    ``E x E`` image-embedding positions (row-major).
    """
    from .model.transformer import Attention

    maps: Dict[str, torch.Tensor] = {}
    handles = []
    for name, sub in decoder.named_modules():
        if not isinstance(sub, Attention):
            continue

        def hook(mod, args, kwargs, out, name=name):
            q, k = (kwargs.get("q"), kwargs.get("k")) if kwargs else args[:2]
            with torch.no_grad():
                qh = mod._separate_heads(mod.q_proj(q))
                kh = mod._separate_heads(mod.k_proj(k))
                attn = torch.softmax(qh @ kh.transpose(-1, -2) / (qh.shape[-1] ** 0.5), dim=-1)
            maps[name] = attn.float().cpu()
        handles.append(sub.register_forward_hook(hook, with_kwargs=True))
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()


def predict_at_center(predictor, image: np.ndarray, gt: np.ndarray, set_image: bool = True) -> Dict[str, Any]:
    """Prompt with one positive point at the interior centre of ``gt`` (the evaluation's first click,
    :func:`samkit.evaluate.first_click`).

    ``image``: ``H x W x 3`` uint8; ``gt``: ``H x W`` bool. Returns ``point`` (1 x 2, image pixels),
    ``masks`` (3 x H x W bool), ``scores`` (3 predicted IoUs), ``ious`` (3 true IoUs), ``confident``
    (index of the highest predicted IoU) and ``oracle`` (index of the highest true IoU).
    """
    from .evaluate import first_click

    if set_image:
        predictor.set_image(image)
    return first_click(predictor, gt)


def miou_at_center(model: torch.nn.Module, items: Sequence[Dict[str, Any]], max_masks: Optional[int] = None,
                   progress: bool = False) -> Dict[str, float]:
    """One-click mIoU over ``items`` (dicts with ``image`` and ``masks`` N x H x W bool), in image pixels:
    ``oracle`` scores the best of the three masks, ``confident`` the one with the highest predicted IoU.
    The first ``max_masks`` masks of each item count (:func:`samkit.evaluate.point_prompts` with one
    click)."""
    from .evaluate import point_prompts

    data = [{"image": item["image"], "masks": np.asarray(item["masks"])[:max_masks]} for item in items]
    try:
        table = point_prompts(model, data, n_points=(1,), progress=progress)
    except ValueError as exc:
        raise ValueError(f"miou_at_center: {exc}") from exc
    return {"miou_oracle": table.value(selection="oracle", n_points=1),
            "miou_confident": table.value(selection="confident", n_points=1),
            "n_masks": len(table.per_object["oracle"][1])}


def simulate_correction(mask: np.ndarray, rng: np.random.Generator, max_radius: int = 1,
                        p_edit: float = 0.3) -> np.ndarray:
    """A stand-in for a human correcting a mask (notebook 01): grow or shrink it by up to
    ``max_radius`` pixels and, with probability ``p_edit``, fix a wrong bump on the boundary.

    ``mask``: ``H x W`` bool. Returns a new ``H x W`` bool mask.
    """
    from scipy import ndimage

    if mask.ndim != 2:
        raise ValueError(f"mask must be H x W, got shape {mask.shape}")
    out = mask.astype(bool)
    radius = int(rng.integers(0, max_radius + 1))
    if radius:
        disk = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= radius
        op = ndimage.binary_dilation if rng.random() < 0.5 else ndimage.binary_erosion
        edited = op(out, structure=disk)
        out = edited if edited.any() else out
    if rng.random() < p_edit and out.any():
        ys, xs = np.nonzero(out)
        i = int(rng.integers(len(ys)))
        r = max(1.0, 0.12 * np.sqrt(out.sum() / np.pi))
        yy, xx = np.ogrid[: out.shape[0], : out.shape[1]]
        blob = (yy - ys[i]) ** 2 + (xx - xs[i]) ** 2 <= r ** 2
        out = (out & ~blob) if rng.random() < 0.5 else (out | blob)
        if not out.any():
            out = mask.astype(bool)
    return out


__all__ = ["in_colab", "seed_everything", "count_parameters", "time_call",
           "format_seconds", "Session", "setup", "describe", "data_note", "trace_shapes", "record_attention",
           "predict_at_center", "miou_at_center", "simulate_correction"]
