"""The course notebooks, executed in their small configuration and compared with their stored outputs.

For each ``notebooks/NN_*.ipynb``:

1. papermill injects the small configuration (``small=True``, ``device="cpu"``, a temporary ``out_dir``)
   after the ``parameters`` cell, without executing (``prepare_only``): the stored outputs stay in place;
2. nbval executes that notebook once, in a fresh ``python3`` kernel of this environment, and compares every
   cell's output with the stored one, after the regexes of ``nbval_sanitize.cfg`` (paths, durations, progress
   bars, memory addresses); cells tagged ``nbval-ignore-output`` (or holding ``# NBVAL_IGNORE_OUTPUT``) are
   executed but not compared, images are never compared (nbval's default).

So the test fails when a notebook raises, when a stored output no longer matches what the code produces
(regenerate with ``python notebooks/build_notebooks.py --execute``), or when a notebook stops writing its
figures. It also checks the stored notebooks are clean (small, no widget state, Colab badge, parameters cell)
and exercises ``python -m samkit.runner`` on two throw-away notebooks.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
SMALL = {"small": True, "device": "cpu"}
MAX_NOTEBOOK_BYTES = 1_000_000
MAX_IMAGE_BYTES = 100_000
NOTEBOOK_TIMEOUT = 300  # seconds per notebook in the small configuration (they take well under a minute)


def _ids(paths):
    return [p.stem for p in paths]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_stored_notebook_is_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name} is {path.stat().st_size} bytes: shrink its outputs"
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state: strip it"
    assert "papermill" not in nb.metadata, f"{path.name} stores papermill metadata: strip it"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", []), "first code cell must be tagged parameters"
    for name in ("small", "out_dir", "device", "seed"):
        assert f"\n{name} =" in "\n" + code[0].source or f"\n{name}=" in "\n" + code[0].source, \
            f"{path.name}: parameters cell lacks {name}"
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert f"colab.research.google.com/github/samkit-course/samkit/blob/main/notebooks/{path.name}" in first_md.source
    assert any(c.get("outputs") for c in code), f"{path.name} has no stored outputs: nbval would check nothing"
    for cell in code:
        if "injected-parameters" in cell.metadata.get("tags", []):
            pytest.fail(f"{path.name} still holds papermill's injected-parameters cell")
        for out in cell.get("outputs", []):
            png = out.get("data", {}).get("image/png", "")
            assert len(png) < MAX_IMAGE_BYTES, f"{path.name}: a stored image of {len(png)} bytes (base64)"
            assert out.get("output_type") != "error", f"{path.name}: a stored error output"


def _prepare(path: Path, tmp_path: Path) -> Path:
    """Inject the small configuration after the parameters cell, keeping the stored outputs."""
    import papermill as pm

    declared = pm.inspect_notebook(str(path))
    params = {k: v for k, v in dict(SMALL, out_dir=str(tmp_path / "out" / path.stem)).items() if k in declared}
    prepared = tmp_path / path.name
    pm.execute_notebook(str(path), str(prepared), parameters=params, prepare_only=True, kernel_name="python3",
                        progress_bar=False)
    return prepared


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_notebook_small_configuration(path: Path, tmp_path: Path, capsys) -> None:
    prepared = _prepare(path, tmp_path)
    stored = nbformat.read(prepared, as_version=4)
    assert any(c.get("outputs") for c in stored.cells), "papermill dropped the stored outputs"
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(tmp_path / "pytest.ini"),
           "--rootdir", str(tmp_path), "--nbval", "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
           "--nbval-cell-timeout", str(NOTEBOOK_TIMEOUT), str(prepared)]
    env = dict(os.environ, SAMKIT_OFFLINE="1", MPLBACKEND="module://matplotlib_inline.backend_inline",
               PYTHONHASHSEED="0")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=NOTEBOOK_TIMEOUT + 120)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n  {path.stem}: {seconds:.1f} s (nbval, small configuration)")
    assert proc.returncode == 0, f"nbval failed for {path.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    figures = list((tmp_path / "out" / path.stem).glob("*.png"))
    assert figures, f"{path.name} wrote no PNG figure into its out_dir"


_OK_NOTEBOOK = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from samkit.notebook_utils import setup
S = setup(model=None, device="cpu", seed=seed, out_dir=out_dir)
fig, ax = plt.subplots()
ax.plot([0, 1], [value, value])
S.save(fig, "line")
S.table([{"value": value}], "values")
"""


def _write_notebook(path: Path, body: str, params: str) -> None:
    cells = [nbformat.v4.new_markdown_cell(f"# {path.stem} title"),
             nbformat.v4.new_code_cell(params), nbformat.v4.new_code_cell(body)]
    cells[1].metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_runner_collects_and_stops_at_failure(tmp_path: Path, capsys) -> None:
    from samkit import runner

    books = tmp_path / "books"
    books.mkdir()
    _write_notebook(books / "01_ok.ipynb", _OK_NOTEBOOK, "value = 1.0\nseed = 0\nout_dir = 'x'")
    _write_notebook(books / "02_fails.ipynb", "x = 1\nraise ValueError('boom in cell')", "out_dir = 'x'")
    _write_notebook(books / "03_never.ipynb", "print('unreachable')", "out_dir = 'x'")
    start = time.perf_counter()
    code = runner.main(["--notebook-dir", str(books), "--out", str(tmp_path / "runs"), "--name", "r",
                        "-p", "value", "2.5", "-p", "unused", "null", "--no-progress"])
    log = capsys.readouterr().out
    with capsys.disabled():
        print(f"\n  runner on 3 throw-away notebooks: {time.perf_counter() - start:.1f} s")
    assert code == 1
    run = tmp_path / "runs" / "r"
    timings = json.loads((run / "timings.json").read_text())
    assert timings["notebooks"]["01_ok"]["status"] == "ok"
    assert timings["notebooks"]["02_fails"]["status"] == "failed"
    assert "03_never" not in timings["notebooks"], "the runner must stop at the first failure"
    assert "boom in cell" in log and "raise ValueError" in log, "the failing cell must be shown"
    assert (run / "01_ok.ipynb").is_file() and (run / "01_ok.html").is_file()
    assert (run / "01_ok" / "line.png").is_file()
    executed = nbformat.read(run / "01_ok.ipynb", as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "value = 2.5" in injected[0].source and "unused" not in injected[0].source
    index = (run / "index.html").read_text()
    for needle in ("01_ok.html", "01_ok/line.png", "<td>2.500</td>", "boom in cell", "02_fails"):
        assert needle in index, f"index.html lacks {needle!r}"


def test_runner_parameters(tmp_path: Path) -> None:
    from samkit import runner

    f = tmp_path / "p.yaml"
    f.write_text("model: vit_b\nepochs: 3\n'03': {epochs: 7}\n")
    params = runner.load_parameters([("device", "cuda"), ("checkpoint", "null")], [str(f)], small=True)
    assert params["small"] is True and params["checkpoint"] is None and params["epochs"] == 3
    nb03 = Path("03_decoder_from_scratch.ipynb")
    assert runner.parameters_for(nb03, params)["epochs"] == 7
    assert runner.parameters_for(Path("01_iou_explained.ipynb"), params)["epochs"] == 3
    with pytest.raises(ValueError, match="not a valid parameter name"):
        runner.load_parameters([("bad-name", "1")])
    with pytest.raises(FileNotFoundError):
        runner.load_parameters([], [str(tmp_path / "missing.yaml")])
    with pytest.raises(runner.RunnerError, match="no notebook matches"):
        runner.find_notebooks(NOTEBOOK_DIR, "99")
