"""Run the course notebooks with papermill and collect their results in one folder.

    python -m samkit.runner                          # every notebook, full course configuration
    python -m samkit.runner --small                  # the quick configuration (tests, CI, a laptop)
    python -m samkit.runner -p model vit_b -p device cuda --notebooks 02,05
    python -m samkit.runner -f params.yaml --out runs/

Each notebook is executed in order (kernel ``python3``) into ``<out>/<timestamp>/<name>.ipynb``, exported
to ``<name>.html``, and writes its figures (PNG) and tables (HTML, CSV) into ``<out>/<timestamp>/<name>/``
(the notebook's ``out_dir`` parameter). The run stops at the first failing notebook and prints the failing
cell. ``timings.json`` records each notebook's status and wall time and ``index.html`` links everything.

Parameters (``-p name value``, values read as YAML: ``-p epochs 3``, ``-p checkpoint null``,
``-p small true``) go to every notebook that declares them in its ``parameters`` cell; the others ignore
them (listed in the log). A YAML file (``-f``) holds the same as a mapping; a key that names a notebook
(``"03"`` or ``03_decoder_from_scratch``) holds parameters for that notebook only::

    model: vit_b
    device: cuda
    "03": {epochs: 50}
"""
from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml

NOTEBOOK_PATTERN = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")
KERNEL = "python3"


class RunnerError(RuntimeError):
    """A notebook could not be found or executed."""


def default_notebook_dir() -> Path:
    """``./notebooks``: the course's folder when run from the root of a checkout (``make run``); elsewhere
    pass ``--notebook-dir``."""
    return Path.cwd() / "notebooks"


def find_notebooks(notebook_dir: Path, only: Optional[str] = None) -> List[Path]:
    """The course notebooks (``NN_name.ipynb``) in order; ``only`` is a comma-separated list of numbers or names."""
    if not notebook_dir.is_dir():
        raise RunnerError(f"notebook folder {notebook_dir} does not exist: run from the root of a samkit "
                          "checkout (the course notebooks are in its notebooks/ folder) or pass "
                          "--notebook-dir FOLDER")
    books = sorted(p for p in notebook_dir.iterdir() if NOTEBOOK_PATTERN.match(p.name))
    if not books:
        raise RunnerError(f"no notebooks named NN_name.ipynb in {notebook_dir}")
    if only:
        wanted = [w.strip() for w in only.split(",") if w.strip()]
        picked = []
        for w in wanted:
            match = [p for p in books if p.stem == w or p.stem.split("_")[0] == w.zfill(2)]
            if not match:
                raise RunnerError(f"--notebooks: no notebook matches {w!r}; have {', '.join(p.stem for p in books)}")
            picked += [p for p in match if p not in picked]
        books = sorted(picked)
    return books


def parse_value(text: str) -> Any:
    """A command-line value read as YAML (``3`` -> int, ``null`` -> None, ``true`` -> bool, else str)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_parameters(pairs: Sequence[Sequence[str]] = (), files: Sequence[str] = (), small: bool = False
                    ) -> Dict[str, Any]:
    """Merge ``-f`` files (in order), then ``-p`` pairs, then ``--small``. Per-notebook sections stay nested."""
    params: Dict[str, Any] = {}
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise FileNotFoundError(f"parameter file {path} does not exist")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"parameter file {path} must hold a mapping of name: value, got {type(data).__name__}")
        for key, value in data.items():
            key = str(key)
            if isinstance(value, dict) and isinstance(params.get(key), dict):
                params[key].update(value)
            else:
                params[key] = value
    for name, value in pairs:
        if not name.isidentifier():
            raise ValueError(f"-p {name} {value}: {name!r} is not a valid parameter name")
        params[name] = parse_value(value)
    if small:
        params["small"] = True
    return params


def parameters_for(notebook: Path, params: Dict[str, Any]) -> Dict[str, Any]:
    """The global parameters plus the notebook's own section (keyed by its number or its name)."""
    number = notebook.stem.split("_")[0]
    out = {k: v for k, v in params.items() if not (isinstance(v, dict) and _is_section(k))}
    for key in (number, str(int(number)), notebook.stem):
        section = params.get(key)
        if isinstance(section, dict):
            out.update(section)
    return out


def _is_section(key: str) -> bool:
    return bool(re.match(r"^\d+(_[\w-]+)?$", key))


def declared_parameters(notebook: Path) -> Dict[str, Any]:
    """Names and defaults declared in the notebook's ``parameters`` cell (papermill's inspection)."""
    import papermill as pm

    return pm.inspect_notebook(str(notebook))


def notebook_title(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return path.stem


def export_html(executed: Path) -> Path:
    """Export an executed notebook to a standalone HTML file next to it."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    out = executed.with_suffix(".html")
    out.write_text(body, encoding="utf-8")
    return out


def failing_cell(executed: Path) -> Optional[Dict[str, Any]]:
    """The first cell of an executed notebook whose outputs hold an error: index, source, error text."""
    import nbformat

    if not executed.is_file():
        return None
    nb = nbformat.read(executed, as_version=4)
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                tb = "\n".join(out.get("traceback", []))
                tb = re.sub(r"\x1b\[[0-9;]*m", "", tb)  # strip terminal colours
                return {"cell": i, "source": cell.source, "error": f"{out.get('ename')}: {out.get('evalue')}",
                        "traceback": tb}
    return None


CELL_TIMEOUT = 3600  # seconds: the longest cell of a full course run on a 2-core CPU takes about 10 minutes


def run_notebook(notebook: Path, run_dir: Path, params: Dict[str, Any], kernel: str = KERNEL,
                 progress: bool = True, log=print, cell_timeout: Optional[int] = CELL_TIMEOUT) -> Dict[str, Any]:
    """Execute one notebook into ``run_dir``; returns its record for ``timings.json``. A cell that runs longer
    than ``cell_timeout`` seconds fails the notebook (so that a stuck kernel cannot hang a batch run)."""
    import papermill as pm

    declared = declared_parameters(notebook)
    if "out_dir" not in declared:
        raise RunnerError(f"{notebook.name}: its parameters cell must declare out_dir")
    out_dir = run_dir / notebook.stem
    wanted = dict(params, out_dir=str(out_dir.resolve()))
    use = {k: v for k, v in wanted.items() if k in declared}
    ignored = sorted(k for k in wanted if k not in declared)
    shown = ", ".join(f"{k}={v!r}" for k, v in use.items() if k != "out_dir") or "defaults"
    log(f"== {notebook.stem}: {shown}" + (f" (not declared here, ignored: {', '.join(ignored)})" if ignored else ""))
    executed = run_dir / notebook.name
    record: Dict[str, Any] = {"notebook": notebook.stem, "title": notebook_title(notebook), "parameters": use,
                              "executed": executed.name, "out_dir": notebook.stem}
    start = time.perf_counter()
    try:
        pm.execute_notebook(str(notebook), str(executed), parameters=use, kernel_name=kernel,
                            cwd=str(notebook.parent), progress_bar=progress, log_output=False,
                            execution_timeout=cell_timeout)
        record["status"] = "ok"
    except Exception as exc:  # papermill's PapermillExecutionError, a dead kernel, ...
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
        record["failing_cell"] = failing_cell(executed)
        if record["failing_cell"] is None:
            record["failing_cell"] = {"cell": None, "source": "", "error": record["error"],
                                      "traceback": traceback.format_exc()}
    record["seconds"] = round(time.perf_counter() - start, 2)
    if executed.is_file():
        try:
            record["html"] = export_html(executed).name
        except Exception as exc:  # the run's result matters more than its HTML copy
            log(f"   (HTML export of {executed.name} failed: {exc})")
    record["figures"] = sorted(p.name for p in out_dir.glob("*.png")) if out_dir.is_dir() else []
    record["tables"] = sorted(p.name for p in out_dir.glob("*.html")) if out_dir.is_dir() else []
    return record


def write_index(run_dir: Path, records: List[Dict[str, Any]], params: Dict[str, Any]) -> Path:
    """``index.html``: per notebook its status, time, executed notebook, HTML copy, figures and tables."""
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>samkit run " + esc(run_dir.name) + "</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "img{max-width:360px;max-height:260px;margin:4px;border:1px solid #ddd}"
        "table{border-collapse:collapse;margin:0.6em 0}td,th{border:1px solid #ccc;padding:2px 8px;font-size:90%}"
        ".ok{color:#080}.failed{color:#c00}pre{background:#f6f6f6;padding:0.6em;overflow:auto;font-size:85%}"
        "caption{font-weight:bold;text-align:left}</style></head><body>",
        f"<h1>samkit course run {esc(run_dir.name)}</h1>",
        f"<p>parameters: <code>{esc(json.dumps(params, default=str))}</code></p>",
        "<table><tr><th>notebook</th><th>status</th><th>time</th><th>files</th></tr>",
    ]
    for r in records:
        links = [f"<a href='{esc(r['executed'])}'>ipynb</a>"]
        if r.get("html"):
            links.append(f"<a href='{esc(r['html'])}'>html</a>")
        parts.append(f"<tr><td><a href='#{esc(r['notebook'])}'>{esc(r['title'])}</a></td>"
                     f"<td class='{r['status']}'>{esc(r['status'])}</td><td>{r['seconds']:.1f} s</td>"
                     f"<td>{' · '.join(links)}</td></tr>")
    total = sum(r["seconds"] for r in records)
    parts.append(f"<tr><th>total</th><td></td><th>{total:.1f} s</th><td></td></tr></table>")
    for r in records:
        parts.append(f"<h2 id='{esc(r['notebook'])}'>{esc(r['title'])} "
                     f"<small class='{r['status']}'>({esc(r['status'])}, {r['seconds']:.1f} s)</small></h2>")
        if r["status"] != "ok" and r.get("failing_cell"):
            fc = r["failing_cell"]
            parts.append(f"<p class='failed'>failed in cell {fc.get('cell')}: {esc(fc.get('error', ''))}</p>"
                         f"<pre>{esc(fc.get('source', ''))}</pre><pre>{esc(fc.get('traceback', ''))}</pre>")
        folder = run_dir / r["out_dir"]
        for t in r.get("tables", []):
            parts.append((folder / t).read_text(encoding="utf-8"))
        for f in r.get("figures", []):
            src = f"{r['out_dir']}/{f}"
            parts.append(f"<a href='{esc(src)}'><img src='{esc(src)}' alt='{esc(f)}' title='{esc(f)}'></a>")
    parts.append("</body></html>")
    index = run_dir / "index.html"
    index.write_text("\n".join(parts), encoding="utf-8")
    return index


def run(notebooks: Sequence[Path], out: Path, params: Dict[str, Any], kernel: str = KERNEL,
        progress: bool = True, run_name: Optional[str] = None, log=print,
        cell_timeout: Optional[int] = CELL_TIMEOUT) -> Dict[str, Any]:
    """Execute ``notebooks`` in order into ``out/<timestamp>``; stop at the first failure.

    Returns ``{"run_dir": Path, "records": [...], "ok": bool}``.
    """
    name = run_name or _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out) / name
    run_dir.mkdir(parents=True, exist_ok=False)
    records: List[Dict[str, Any]] = []
    ok = True
    for nb in notebooks:
        record = run_notebook(nb, run_dir, parameters_for(nb, params), kernel=kernel, progress=progress, log=log,
                              cell_timeout=cell_timeout)
        records.append(record)
        _write_timings(run_dir, records)
        if record["status"] != "ok":
            ok = False
            fc = record["failing_cell"]
            log(f"\n{nb.stem} FAILED after {record['seconds']:.1f} s in cell {fc.get('cell')}:\n"
                f"---- cell source ----\n{fc.get('source', '')}\n"
                f"---- error ----\n{fc.get('traceback') or fc.get('error')}")
            break
        log(f"   {nb.stem}: {record['seconds']:.1f} s, {len(record['figures'])} figures, "
            f"{len(record['tables'])} tables")
    index = write_index(run_dir, records, params)
    log(f"\n{'all notebooks ran' if ok else 'stopped at the first failure'}; "
        f"total {sum(r['seconds'] for r in records):.1f} s\nindex: {index}")
    return {"run_dir": run_dir, "records": records, "ok": ok}


def _write_timings(run_dir: Path, records: List[Dict[str, Any]]) -> None:
    timings = {"notebooks": {r["notebook"]: {"seconds": r["seconds"], "status": r["status"]} for r in records},
               "total_seconds": round(sum(r["seconds"] for r in records), 2)}
    (run_dir / "timings.json").write_text(json.dumps(timings, indent=2))


DESCRIPTION = "Execute the course notebooks with papermill into runs/<timestamp>/."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The runner's options (``python -m samkit.runner`` and ``samkit run`` share them)."""
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="a notebook parameter (value read as YAML); repeatable")
    parser.add_argument("-f", "--parameters-file", action="append", default=[], metavar="YAML",
                        help="a YAML mapping of parameters (per-notebook sections allowed); repeatable")
    parser.add_argument("--notebooks", default=None, help="which notebooks, e.g. 01,03 (default: all)")
    parser.add_argument("--small", action="store_true", help="the quick configuration (small=True)")
    parser.add_argument("--out", default="runs", help="parent folder of the run (default: runs/)")
    parser.add_argument("--notebook-dir", default=None, help="folder holding NN_name.ipynb (default: ./notebooks)")
    parser.add_argument("--kernel", default=KERNEL, help="Jupyter kernel name (default: python3)")
    parser.add_argument("--name", default=None, help="run folder name (default: a timestamp)")
    parser.add_argument("--no-progress", action="store_true", help="hide papermill's progress bars")
    parser.add_argument("--cell-timeout", type=int, default=CELL_TIMEOUT,
                        help=f"fail a notebook whose cell runs longer than this many seconds (default {CELL_TIMEOUT})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m samkit.runner", description=DESCRIPTION)
    add_arguments(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_from_args(build_parser().parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    """Run what the parsed options ask for; 0 when every notebook ran, 1 when one failed, 2 on bad input."""
    try:
        params = load_parameters(args.parameter, args.parameters_file, args.small)
        books = find_notebooks(Path(args.notebook_dir) if args.notebook_dir else default_notebook_dir(),
                               args.notebooks)
    except (RunnerError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = run(books, Path(args.out), params, kernel=args.kernel, progress=not args.no_progress,
                 run_name=args.name, cell_timeout=args.cell_timeout)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
