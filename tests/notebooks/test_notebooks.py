"""The course notebooks: the stored outputs (full course configuration) are checked for what they claim, and
every notebook is executed in its small configuration.

Stored notebooks (``notebooks/NN_*.ipynb``, written by ``make course`` from a full run):

* they match their sources (``notebooks/src``) cell for cell, carry the Colab badge and install line of the
  repository named in ``pyproject.toml``, and were made from the full configuration (not ``small=True``);
* every sentence about a result was written by :mod:`samkit.narrate` from numbers stored beside it
  (``Session.say`` keeps them in the output's metadata): each is re-rendered from those numbers and must be
  identical, so a sentence cannot drift from its numbers;
* figures are legible (at least 900 px wide, at least 100 dpi, true colour), and no output holds a progress bar,
  a temporary or machine-specific path, widget state or an error.

Small configuration (CI): papermill injects ``small=True, device="cpu"`` and a temporary ``out_dir`` after the
parameters cell without executing (``prepare_only``), then nbval executes the notebook in a fresh kernel and
compares the outputs of the cells whose output does not depend on the configuration (the toy examples and the
tables and sentences built from the paper's numbers) with the stored ones, after the regexes of
``nbval_sanitize.cfg``. Cells tagged ``nbval-ignore-output`` (their results depend on the configuration) are
executed but not compared. The run must also write its figures and its ``claims.json``, whose sentences are
re-rendered from their numbers like the stored ones.
"""
from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
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
MAX_NOTEBOOK_BYTES = 8_000_000
MIN_FIGURE_WIDTH = 900
MIN_DPI = 100
NOTEBOOK_TIMEOUT = 600  # seconds per notebook in the small configuration (they take about a minute)

sys.path.insert(0, str(NOTEBOOK_DIR))
import build_notebooks  # noqa: E402


def _ids(paths):
    return [p.stem for p in paths]


def _outputs(nb):
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                yield i, cell, out


def _rerender(record: dict) -> str:
    from samkit import narrate

    assert callable(getattr(narrate, record["narrate"], None)), \
        f"samkit.narrate has no function {record['narrate']!r}"
    return narrate.render(record)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_stored_notebook_matches_its_source(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    built = build_notebooks.build(path.stem)
    assert [(c.cell_type, c.source) for c in nb.cells] == [(c.cell_type, c.source) for c in built.cells], \
        f"{path.name} differs from notebooks/src/{path.stem}.py: rebuild it (make course)"
    repo = build_notebooks.repository_url()
    first_md = next(c for c in nb.cells if c.cell_type == "markdown")
    assert build_notebooks.colab_url(repo, path.stem) in first_md.source
    assert any(f"samkit @ git+{repo}" in c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_stored_outputs_are_the_full_run_and_clean(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name} is {path.stat().st_size} bytes"
    assert "widgets" not in nb.metadata and "papermill" not in nb.metadata
    assert nb.metadata.get("samkit", {}).get("configuration") == "full", \
        f"{path.name}: the stored outputs must come from the full course configuration (make course)"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "parameters" in code[0].metadata.get("tags", [])
    assert any(c.get("outputs") for c in code), f"{path.name} has no stored outputs"
    for i, cell, out in _outputs(nb):
        where = f"{path.name} cell {i}"
        assert out.get("output_type") != "error", f"{where}: a stored error"
        assert "injected-parameters" not in cell.metadata.get("tags", [])
        text = json.dumps({k: v for k, v in out.items() if k != "data"}) + json.dumps(
            {k: v for k, v in out.get("data", {}).items() if not k.startswith("image/")})
        hit = build_notebooks.MACHINE_PATHS.search(text)
        assert not hit, f"{where}: machine-specific path {hit.group(0)!r}"
        assert not re.search(r"\d+%\|", text), f"{where}: a progress bar is stored"
        assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {}), f"{where}: widget state"
    for i, cell in enumerate(nb.cells):
        shown = [_plain_text(out) for out in cell.get("outputs", [])]
        shown = [t for t in shown if len(t) > 40]
        assert len(shown) == len(set(shown)), f"{path.name} cell {i}: the same text is shown twice"


def _plain_text(out) -> str:
    """What an output shows as text: a stream, or its Markdown / plain text (a string repr unquoted)."""
    if out.get("output_type") == "stream":
        return "".join(out.get("text", "")).strip()
    data = out.get("data", {})
    text = data.get("text/markdown", data.get("text/plain", ""))
    text = ("".join(text) if isinstance(text, list) else text).strip()
    if data.get("text/markdown") is None and text[:1] in "'\"" and text[-1:] == text[:1]:
        try:
            text = str(ast.literal_eval(text)).strip()
        except (ValueError, SyntaxError):
            pass
    return text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_stored_figures_are_legible(path: Path) -> None:
    from PIL import Image

    nb = nbformat.read(path, as_version=4)
    figures = 0
    for i, _, out in _outputs(nb):
        for mime in ("image/png", "image/jpeg"):
            data = out.get("data", {}).get(mime)
            if data is None:
                continue
            figures += 1
            img = Image.open(io.BytesIO(base64.b64decode(data)))
            where = f"{path.name} cell {i}"
            assert img.width >= MIN_FIGURE_WIDTH, f"{where}: figure {img.width} px wide"
            dpi = img.info.get("dpi", (0, 0))[0]
            assert dpi >= MIN_DPI - 0.5, f"{where}: figure at {dpi} dpi"
            assert img.mode in ("RGB", "RGBA"), f"{where}: figure in mode {img.mode} (palette?)"
    if path.stem != "06_click_to_segment" or figures:
        assert figures, f"{path.name} stores no figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_stored_sentences_follow_their_numbers(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    said = 0
    for i, _, out in _outputs(nb):
        record = out.get("metadata", {}).get("samkit")
        if not record:
            continue
        said += 1
        stored = out["data"]["text/markdown"]
        stored = "".join(stored) if isinstance(stored, list) else stored
        assert _rerender(record) == stored, f"{path.name} cell {i}: the stored sentence does not follow its numbers"
    assert said, f"{path.name}: no sentence written from the run's numbers"


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
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=NOTEBOOK_TIMEOUT + 300)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n  {path.stem}: {seconds:.1f} s (nbval, small configuration)")
    assert proc.returncode == 0, f"nbval failed for {path.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    out_dir = tmp_path / "out" / path.stem
    assert list(out_dir.glob("*.png")), f"{path.name} wrote no PNG figure into its out_dir"
    claims = json.loads((out_dir / "claims.json").read_text()) if (out_dir / "claims.json").is_file() else []
    assert claims, f"{path.name} wrote no claims.json (its sentences and numbers)"
    for claim in claims:
        assert _rerender(claim) == claim["text"]


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


def test_build_cleans_outputs_for_the_repository() -> None:
    """clean_outputs drops progress bars and widget views, keeps true-colour figures, refuses machine paths."""
    import numpy as np
    from PIL import Image

    def png(w, h, noisy):
        arr = (np.random.default_rng(0).integers(0, 255, (h, w, 3)) if noisy else np.zeros((h, w, 3))).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG", dpi=(110, 110))
        return base64.b64encode(buf.getvalue()).decode()

    outs = [nbformat.v4.new_output("stream", name="stderr", text="train:   0%|          | 0/30 [00:00<?, ?it/s]\r"
                                   "train: 100%|##########| 30/30 [00:02<00:00]\n"),
            nbformat.v4.new_output("stream", name="stdout", text="30 steps\n"),
            nbformat.v4.new_output("display_data", data={"image/png": png(1000, 500, True), "text/plain": "<Figure>"}),
            nbformat.v4.new_output("display_data", data={"image/png": png(1000, 500, False), "text/plain": "<Figure>"})]
    cleaned = build_notebooks.clean_outputs(outs, "test")
    assert [o.output_type for o in cleaned] == ["stream", "display_data", "display_data"]
    assert "image/jpeg" in cleaned[1]["data"] and "image/png" in cleaned[2]["data"]
    jpeg = Image.open(io.BytesIO(base64.b64decode(cleaned[1]["data"]["image/jpeg"])))
    assert jpeg.size == (1000, 500) and jpeg.mode == "RGB" and round(jpeg.info["dpi"][0]) == 110
    with pytest.raises(ValueError, match="machine-specific path"):
        build_notebooks.clean_outputs([nbformat.v4.new_output("stream", name="stdout", text="out_dir: /tmp/x\n")], "t")
    # a sentence of samkit.narrate is written again from the numbers stored with it
    from samkit import narrate

    record = {"narrate": "people_clicks", "data": {"name": "photos", "gain_1_to_3": 0.171}}
    said = nbformat.v4.new_output("display_data", metadata={"samkit": record},
                                  data={"text/markdown": "an older wording", "text/plain": "<Markdown>"})
    (out,) = build_notebooks.clean_outputs([said], "t")
    assert out["data"]["text/markdown"] == narrate.render(record) != "an older wording"
    assert out["metadata"] == {"samkit": record}
