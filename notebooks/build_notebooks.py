"""Build the course notebooks from their readable sources in ``notebooks/src/*.py``.

The sources use the "percent" format (also read by jupytext)::

    # %% [markdown]
    # # A title
    # Some text.

    # %% tags=["parameters"]
    small = False

    # %%
    print("a code cell")

Usage (from the repository root)::

    python notebooks/build_notebooks.py                 # write notebooks/NN_*.ipynb without outputs
    python notebooks/build_notebooks.py --execute       # ... and store the outputs of the small configuration
    python notebooks/build_notebooks.py --execute --only 01,02

``--execute`` runs each notebook with papermill in its small configuration (``small=True``) and stores the
outputs in the committed notebook, cleaned for version control and for nbval
(``tests/notebooks/test_notebooks.py`` re-executes the notebooks and compares with these outputs): images
are shrunk (or dropped when still large), widget state and papermill metadata are removed, and the
parameters cell keeps the full-course defaults.
"""
from __future__ import annotations

import argparse
import base64
import io
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import nbformat

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
COLAB_URL = "https://colab.research.google.com/github/samkit-course/samkit/blob/main/notebooks/{name}.ipynb"

#: the parameters every notebook's small configuration receives (tests, CI, ``--small`` of the runner).
SMALL_PARAMETERS: Dict[str, object] = {"small": True}

#: stored images are shrunk to this width; images still larger than MAX_IMAGE_BYTES are dropped.
MAX_IMAGE_WIDTH = 480
MAX_IMAGE_BYTES = 90_000  # base64 characters per stored image

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}

_CELL = re.compile(r"^# %%(?P<md> \[markdown\])?(?:\s+tags=(?P<tags>\[.*\]))?\s*$")


def parse_source(text: str) -> List[nbformat.NotebookNode]:
    """Percent-format text -> notebook cells."""
    cells: List[nbformat.NotebookNode] = []
    kind, tags, lines = None, [], []

    def flush() -> None:
        if kind is None:
            return
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            body = "\n".join(re.sub(r"^# ?", "", ln) if ln.startswith("#") else ln for ln in body.split("\n"))
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = list(tags)
        cells.append(cell)

    for line in text.split("\n"):
        m = _CELL.match(line)
        if m:
            flush()
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            lines = []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build(name: str) -> nbformat.NotebookNode:
    """Build notebook ``name`` (e.g. ``01_iou_explained``) from ``src/<name>.py`` and check its shape."""
    src = SRC / f"{name}.py"
    if not src.is_file():
        raise FileNotFoundError(f"notebook source {src} does not exist")
    cells = parse_source(src.read_text())
    for i, cell in enumerate(cells):  # stable ids keep diffs small
        cell["id"] = f"{name[:2]}-{i:02d}"
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata = {"kernelspec": dict(KERNELSPEC),
                   "language_info": {"name": "python", "pygments_lexer": "ipython3"}}
    check(nb, name)
    return nb


def check(nb: nbformat.NotebookNode, name: str) -> None:
    """The course's rules: a Colab badge first, a first code cell tagged ``parameters`` that holds
    ``small`` and ``out_dir``."""
    first_md = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if first_md is None or COLAB_URL.format(name=name) not in first_md.source:
        raise ValueError(f"{name}: the first markdown cell must carry the Colab badge {COLAB_URL.format(name=name)}")
    first_code = next((c for c in nb.cells if c.cell_type == "code"), None)
    if first_code is None or "parameters" not in first_code.metadata.get("tags", []):
        raise ValueError(f"{name}: the first code cell must be tagged 'parameters'")
    for var in ("small", "out_dir", "seed", "device"):
        if not re.search(rf"^{var}\s*=", first_code.source, re.M):
            raise ValueError(f"{name}: the parameters cell must define `{var}`")


def shrink_png(data: str) -> Optional[str]:
    """Base64 PNG -> a smaller base64 PNG (narrower, palette colours) of at most ``MAX_IMAGE_BYTES`` base64
    characters, trying fewer colours and narrower widths in turn; None when nothing fits."""
    from PIL import Image

    original = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
    for width, colors in ((MAX_IMAGE_WIDTH, 64), (MAX_IMAGE_WIDTH, 32), (400, 32), (320, 32)):
        img = original
        if img.width > width:
            img = img.resize((width, round(img.height * width / img.width)), Image.LANCZOS)
        img = img.quantize(colors=colors, method=Image.MEDIANCUT)
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        encoded = base64.b64encode(buf.getvalue()).decode("ascii")
        if len(encoded) <= MAX_IMAGE_BYTES:
            return encoded
    return None


def clean_outputs(outputs: List[nbformat.NotebookNode]) -> List[nbformat.NotebookNode]:
    """Outputs fit for version control: small images, no widget views' state, no transient metadata."""
    cleaned = []
    for out in outputs:
        out = nbformat.from_dict(json.loads(json.dumps(out)))
        if out.get("output_type") in ("display_data", "execute_result"):
            data = out.get("data", {})
            if "image/png" in data:
                small = shrink_png(data["image/png"])
                if small is None:
                    del data["image/png"]
                else:
                    data["image/png"] = small
            out["metadata"] = {}
        out.pop("transient", None)
        cleaned.append(out)
    return cleaned


def store_outputs(clean: nbformat.NotebookNode, executed: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Copy the executed notebook's outputs into the clean one (papermill's injected cell is skipped)."""
    runs = [c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    if len(runs) != len(clean.cells):
        raise RuntimeError(f"executed notebook has {len(runs)} cells, the source {len(clean.cells)}")
    count = 0
    for cell, ran in zip(clean.cells, runs):
        if cell.cell_type != "code":
            continue
        count += 1
        cell.outputs = clean_outputs(ran.get("outputs", []))
        cell.execution_count = count
    return clean


def execute_small(name: str, nb: nbformat.NotebookNode, workdir: Path) -> nbformat.NotebookNode:
    """Run ``nb`` with papermill in its small configuration; returns the executed notebook."""
    import papermill as pm

    src = workdir / f"{name}.ipynb"
    out = workdir / f"{name}.out.ipynb"
    nbformat.write(nb, src)
    params = dict(SMALL_PARAMETERS, out_dir=str(workdir / "figures" / name))
    pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3", cwd=str(HERE),
                        progress_bar=True)
    return nbformat.read(out, as_version=4)


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


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--execute", action="store_true", help="store the outputs of the small configuration")
    parser.add_argument("--only", default=None, help="comma-separated number prefixes, e.g. 01,02")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="samkit-nb-") as tmp:
        for name in names(args.only):
            nb = build(name)
            if args.execute:
                start = time.perf_counter()
                executed = execute_small(name, nb, Path(tmp))
                nb = store_outputs(nb, executed)
                print(f"{name}: executed in {time.perf_counter() - start:.1f} s")
            path = HERE / f"{name}.ipynb"
            nbformat.validate(nb)
            nbformat.write(nb, path)
            print(f"wrote {path.relative_to(HERE.parent)} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
