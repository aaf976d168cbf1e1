"""Build the course notebooks from their sources in ``notebooks/src/*.py`` (jupytext's percent format).

    python notebooks/build_notebooks.py                      # notebooks/NN_*.ipynb without outputs
    python notebooks/build_notebooks.py --only 01,02         # some of them
    python notebooks/build_notebooks.py --from-run runs/course   # ... with the outputs of an executed run
    python notebooks/build_notebooks.py --check              # the committed notebooks match their sources

The sources are plain Python files that jupytext reads and writes (``jupytext --to notebook``, or pair them in
Jupyter): ``# %%`` starts a code cell, ``# %% [markdown]`` a Markdown cell, ``# %% tags=["parameters"]`` the
papermill parameters cell, and IPython magics are commented (``# %pip install ...``).

The repository the Colab badge and the install cell point at is read from one place, ``[project.urls]
Repository`` in ``pyproject.toml``; the build stamps it into every notebook.

Stored outputs come from the full course configuration: ``make course`` executes every notebook with
``python -m samkit.runner`` (the configuration ``make run`` uses), stores the outputs here with
``--from-run`` and builds the slides from the same run. ``clean_outputs`` keeps figures in true colour at their
own resolution (PNG, or JPEG for large photographic figures), drops progress bars, widget state and papermill
metadata, writes each sentence of :mod:`samkit.narrate` again from the numbers stored with it (so a change of
wording reaches the stored outputs without re-running), and refuses outputs holding machine-specific paths.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional

import nbformat

from samkit import narrate

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = HERE / "src"

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}

#: a stored PNG larger than this (bytes) is re-encoded as a JPEG of quality JPEG_QUALITY, same pixels
PNG_MAX_BYTES = 300_000
JPEG_QUALITY = 90
#: stream outputs that are progress bars (tqdm's ``\r`` updates) are dropped from stored notebooks
_PROGRESS = re.compile(r"\d+%\|[^|\n]*\|")
#: absolute paths that must not appear in stored outputs (they name one machine)
MACHINE_PATHS = re.compile(r"(/tmp/|/root/|/home/[^/\s]+/|/work/|/Users/[^/\s]+/|[A-Z]:\\\\Users)")

_BADGE = re.compile(r"\[!\[Open In Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]"
                    r"\(https://colab\.research\.google\.com/github/[^)]*\)")
_PIP = re.compile(r"samkit @ git\+https://github\.com/[^\s\"']+")


def repository_url(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """``[project.urls] Repository`` of ``pyproject.toml``: ``https://github.com/OWNER/NAME``."""
    text = pyproject.read_text()
    match = re.search(r"^\[project\.urls\]\s*$(.*?)(^\[|\Z)", text, re.M | re.S)
    url = None
    if match:
        found = re.search(r"^Repository\s*=\s*\"([^\"]+)\"", match.group(1), re.M)
        url = found.group(1) if found else None
    if not url or not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError(f"{pyproject}: [project.urls] Repository must be https://github.com/OWNER/NAME, got {url!r}")
    return url


def colab_url(repo: str, name: str) -> str:
    """The Colab address that opens ``notebooks/<name>.ipynb`` of ``repo`` (branch ``main``)."""
    return f"https://colab.research.google.com/github/{repo.split('github.com/', 1)[1]}/blob/main/notebooks/{name}.ipynb"


def colab_badge(repo: str, name: str) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(repo, name)})"


def stamp_repository(nb: nbformat.NotebookNode, repo: str, name: str) -> nbformat.NotebookNode:
    """Point the notebook's Colab badge and its ``%pip install`` line at ``repo`` (exactly one of each)."""
    badges = pips = 0
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source, n = _BADGE.subn(colab_badge(repo, name), cell.source)
            badges += n
        elif cell.cell_type == "code":
            cell.source, n = _PIP.subn(f"samkit @ git+{repo}", cell.source)
            pips += n
    if badges != 1 or pips != 1:
        raise ValueError(f"{name}: expected one Colab badge and one `%pip install \"samkit @ git+...\"` line, "
                         f"found {badges} badge(s) and {pips} install line(s)")
    return nb


def build(name: str, repo: Optional[str] = None) -> nbformat.NotebookNode:
    """Notebook ``name`` (e.g. ``01_iou_explained``) from ``src/<name>.py``, checked and stamped, without outputs."""
    import jupytext

    src = SRC / f"{name}.py"
    if not src.is_file():
        raise FileNotFoundError(f"notebook source {src} does not exist")
    nb = jupytext.read(src, fmt="py:percent")
    cells = []
    for i, cell in enumerate(nb.cells):
        cell = nbformat.from_dict(json.loads(json.dumps(cell)))
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
        cell["id"] = f"{name[:2]}-{i:02d}"  # stable ids keep diffs small
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    out = nbformat.v4.new_notebook(cells=cells)
    out.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    stamp_repository(out, repo or repository_url(), name)
    check(out, name)
    return out


def check(nb: nbformat.NotebookNode, name: str) -> None:
    """The course's rules: a Colab badge in the first Markdown cell, a first code cell tagged ``parameters``
    that defines ``small``, ``out_dir``, ``seed`` and ``device``."""
    first_md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first_md is None or not _BADGE.search(first_md.source):
        raise ValueError(f"{name}: the first markdown cell must carry the Colab badge")
    first_code = next((c for c in nb.cells if c.cell_type == "code"), None)
    if first_code is None or "parameters" not in first_code.metadata.get("tags", []):
        raise ValueError(f"{name}: the first code cell must be tagged 'parameters'")
    for var in ("small", "out_dir", "seed", "device"):
        if not re.search(rf"^{var}\s*=", first_code.source, re.M):
            raise ValueError(f"{name}: the parameters cell must define `{var}`")


# ------------------------------------------------------------------------------------------------ outputs
def store_image(data: str) -> Dict[str, str]:
    """A base64 PNG -> ``{"image/png": ...}`` (re-compressed, same pixels, true colour), or for figures over
    ``PNG_MAX_BYTES`` ``{"image/jpeg": ...}`` at quality ``JPEG_QUALITY`` (same size in pixels)."""
    from PIL import Image

    raw = base64.b64decode(data)
    if len(raw) <= PNG_MAX_BYTES:
        return {"image/png": data}
    img = Image.open(io.BytesIO(raw))
    dpi = img.info.get("dpi")
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True, **({"dpi": dpi} if dpi else {}))
    return {"image/jpeg": base64.b64encode(buf.getvalue()).decode("ascii")}


def _text(out) -> str:
    text = out.get("text", "")
    return "".join(text) if isinstance(text, list) else text


def clean_outputs(outputs: List[nbformat.NotebookNode], where: str = "") -> List[nbformat.NotebookNode]:
    """Outputs fit for the repository: progress bars and widget views dropped, images kept legible,
    transient metadata removed. Raises ValueError on an output that holds a machine-specific path."""
    cleaned = []
    for out in outputs:
        out = nbformat.from_dict(json.loads(json.dumps(out)))
        kind = out.get("output_type")
        if kind == "stream":
            lines = [ln for ln in re.split(r"[\r\n]", _text(out)) if ln.strip() and not _PROGRESS.search(ln)]
            if not lines:
                continue
            out["text"] = "\n".join(lines) + "\n"
        if kind in ("display_data", "execute_result"):
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                data.pop("application/vnd.jupyter.widget-view+json")
                if set(data) <= {"text/plain"}:
                    continue
            if "image/png" in data:
                data.update(store_image(data.pop("image/png")))
            keep = {k: v for k, v in out.get("metadata", {}).items() if k == "samkit"}
            out["metadata"] = keep
            if "narrate" in keep.get("samkit", {}) and "text/markdown" in data:
                # a sentence is a function of its stored numbers: written again with samkit.narrate's wording
                data["text/markdown"] = narrate.render(keep["samkit"])
        out.pop("transient", None)
        text = json.dumps({k: v for k, v in out.items() if k != "data"}) + json.dumps(
            {k: v for k, v in out.get("data", {}).items() if not k.startswith("image/")})
        hit = MACHINE_PATHS.search(text)
        if hit:
            raise ValueError(f"{where}: an output holds the machine-specific path {hit.group(0)!r}; "
                             f"print paths relative to the repository")
        cleaned.append(out)
    return cleaned


def store_outputs(clean: nbformat.NotebookNode, executed: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """Copy the executed notebook's outputs into the clean one, cell by cell (papermill's injected cell is
    skipped); the executed notebook must have been made from the same sources."""
    runs = [c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if len(runs) != len(clean.cells):
        raise RuntimeError(f"{name}: the executed notebook has {len(runs)} cells, the source {len(clean.cells)}: "
                           "run it again from the current sources")
    count = 0
    for i, (cell, ran) in enumerate(zip(clean.cells, runs)):
        if cell.cell_type != ran.cell_type or (cell.cell_type == "code" and cell.source != ran.source
                                               and "samkit @ git+" not in cell.source):
            raise RuntimeError(f"{name}: cell {i} of the executed notebook differs from the source: run it again")
        if cell.cell_type != "code":
            continue
        count += 1
        for out in ran.get("outputs", []):
            if out.get("output_type") == "error":
                raise RuntimeError(f"{name}: cell {i} failed in the run ({out.get('ename')}: {out.get('evalue')})")
        cell.outputs = clean_outputs(ran.get("outputs", []), f"{name} cell {i}")
        cell.execution_count = count
    clean.metadata["samkit"] = {"configuration": "small" if executed.metadata.get("papermill", {}).get(
        "parameters", {}).get("small") else "full"}
    return clean


def names(only: Optional[str] = None) -> List[str]:
    """Notebook names with a source file, optionally filtered by number prefixes (``"01,03"``)."""
    all_names = sorted(p.stem for p in SRC.glob("[0-9][0-9]_*.py"))
    if not only:
        return all_names
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    picked = [n for n in all_names if any(n.startswith(w) for w in wanted)]
    if not picked:
        raise ValueError(f"no notebook source matches {only!r}; have {', '.join(all_names)}")
    return picked


def _same_cells(a: nbformat.NotebookNode, b: nbformat.NotebookNode) -> bool:
    def key(nb):
        return [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in nb.cells]
    return key(a) == key(b)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=None, help="comma-separated number prefixes, e.g. 01,02")
    parser.add_argument("--from-run", default=None, metavar="RUN",
                        help="store the outputs of the executed notebooks in RUN (python -m samkit.runner)")
    parser.add_argument("--check", action="store_true",
                        help="fail when a committed notebook's cells differ from its source")
    args = parser.parse_args(argv)
    repo = repository_url()
    stale = []
    for name in names(args.only):
        nb = build(name, repo)
        path = HERE / f"{name}.ipynb"
        if args.check:
            if not path.is_file() or not _same_cells(nb, nbformat.read(path, as_version=4)):
                stale.append(name)
            continue
        if args.from_run:
            executed_path = Path(args.from_run) / f"{name}.ipynb"
            if not executed_path.is_file():
                raise FileNotFoundError(f"{executed_path} does not exist: run `python -m samkit.runner` first")
            nb = store_outputs(nb, nbformat.read(executed_path, as_version=4), name)
        nbformat.validate(nb)
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size / 1024:.0f} KiB)")
    if stale:
        print(f"out of date with notebooks/src: {', '.join(stale)} (python notebooks/build_notebooks.py "
              "--from-run RUN rebuilds them with outputs)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
