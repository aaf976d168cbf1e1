"""End to end: notebook 06 in JupyterLab 4, driven by headless Chromium through Playwright.

JupyterLab runs on 127.0.0.1 (a free port) with a fresh token-less configuration in a temporary folder
(settings: windowing mode ``none``, so that every cell is in the DOM; no news or update checks). Chromium is
Debian's (``/usr/bin/chromium``; ``playwright install`` is never used). The test opens a copy of notebook 06 in
its small configuration, runs all cells, waits for the kernel, then clicks on the canvas, right-clicks, and
undoes, reading the widget's state back through the kernel (a probe cell) and comparing canvas pixels.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "06_click_to_segment.ipynb"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROBE = ("seg.wait(60)\n"
         "_probe_n = globals().get('_probe_n', 0) + 1\n"
         "print('PROBE', json.dumps({'n': _probe_n, 'prompts': len(seg.prompts), 'labels': [getattr(p, 'label', None) "
         "for p in seg.prompts], 'masks': len(seg.masks), 'area': int(seg.masks[-1].sum()) if seg.masks else 0}))")


def find_chromium() -> str:
    for candidate in (os.environ.get("SAMKIT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("Chromium not found (apt-get install -y chromium, or set SAMKIT_CHROMIUM): browser test skipped")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_notebook(folder: Path) -> Path:
    """A copy of notebook 06 without outputs, in its small configuration, with a probe cell at the end."""
    import nbformat

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source += (f"\nsmall = True\ndevice = 'cpu'\nout_dir = {str(folder / 'out')!r}\n")
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    probe = nbformat.v4.new_code_cell("import json\n" + PROBE)
    probe.metadata["tags"] = ["probe"]
    nb.cells.append(probe)
    path = folder / NOTEBOOK.name
    nbformat.write(nb, path)
    return path


def write_settings(settings: Path) -> None:
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))


@pytest.fixture
def lab(tmp_path):
    """A JupyterLab server; yields (base URL, notebook file name, folder for logs)."""
    find_chromium()
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.fail("playwright is not installed: pip install playwright (part of the test extras; never run "
                    "`playwright install`, the test uses Debian's Chromium)")
    root, config = tmp_path / "root", tmp_path / "config"
    root.mkdir()
    config.mkdir()
    write_settings(tmp_path / "settings")
    nb_path = prepare_notebook(root)
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), SAMKIT_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", "--ServerApp.token=", "--ServerApp.password=", "--allow-root",
         f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--ServerApp.open_browser=False"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    pytest.fail("JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, nb_path.name, tmp_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def wait_until(fn, timeout: float, what: str, interval: float = 0.25):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last value {last!r})")


def kernel_idle(page) -> bool:
    return page.evaluate("""() => {
        const s = document.querySelector('.jp-Notebook-ExecutionIndicator');
        const busy = [...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));
        return !!s && s.getAttribute('data-status') === 'idle' && !busy;
    }""")


def read_probe(cell) -> dict:
    text = cell.locator(".jp-OutputArea").inner_text()
    if "PROBE" not in text:
        return {"n": 0}
    return json.loads(text.split("PROBE", 1)[1].strip().splitlines()[0])


def probe(page, timeout: float = 60) -> dict:
    """Re-run the probe cell (the last one) and return the widget state it prints."""
    cell = page.locator(".jp-CodeCell").last
    cell.scroll_into_view_if_needed()
    n = read_probe(cell)["n"]
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")
    state = wait_until(lambda: (lambda st: st if st["n"] > n else None)(read_probe(cell)), timeout,
                       "the probe cell's output")
    wait_until(lambda: kernel_idle(page), timeout, "the kernel to go idle")
    return state


def canvas_pixels(page, canvas) -> list:
    """The visible canvas (ipycanvas composites the layers into one element) as a flat RGBA list."""
    return canvas.evaluate("c => Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")


def changed_pixels(a: list, b: list) -> int:
    return sum(1 for i in range(0, min(len(a), len(b)), 4) if a[i:i + 3] != b[i:i + 3])


def test_click_right_click_undo_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    base, name, folder = lab
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{base}/lab/tree/{name}", wait_until="domcontentloaded", timeout=120_000)
            page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=120_000)
            # the status bar says "Python 3 (ipykernel) | Idle" once the kernel is connected
            wait_until(lambda: page.locator(".jp-StatusBar-TextItem", has_text="| Idle").count() > 0, 180,
                       "the kernel to start")

            # Run > Run All Cells (again if the first click came before the kernel accepted it)
            for attempt in range(3):
                page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
                page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
                try:
                    wait_until(lambda: page.locator(".jp-InputPrompt", has_text=re.compile(r"\[(\*|1)\]")).count(),
                               30, "the first cell to start")
                    break
                except AssertionError:
                    if attempt == 2:
                        raise
            wait_until(lambda: "PROBE" in page.locator(".jp-CodeCell").last.locator(".jp-OutputArea").inner_text(),
                       300, "all cells to run")
            wait_until(lambda: kernel_idle(page), 120, "the kernel to go idle")
            assert not page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'] "
                                    ":text('Traceback')").count()

            canvas = page.locator(".jp-OutputArea-output canvas").first
            canvas.wait_for(state="attached", timeout=60_000)
            start = probe(page)
            assert start["prompts"] == 0 and start["masks"] == 1, start   # the notebook's own clicks ended in keep()

            def screen_xy(x_image: float, y_image: float):
                """Image pixels -> display pixels (x 1.25 for the 512 px astronaut) -> the page, canvas in view."""
                canvas.scroll_into_view_if_needed()
                box = canvas.bounding_box()
                scale = box["width"] / canvas.evaluate("c => c.width")
                return box["x"] + x_image * 1.25 * scale, box["y"] + y_image * 1.25 * scale

            before = canvas_pixels(page, canvas)
            page.mouse.click(*screen_xy(215, 110))                  # the astronaut's face
            after_click = probe(page)
            assert after_click["prompts"] == 1 and after_click["labels"] == [1], after_click
            assert after_click["masks"] == 2 and after_click["area"] > 0, after_click
            clicked = wait_until(lambda: (lambda p: p if changed_pixels(before, p) > 50 else None)(
                canvas_pixels(page, canvas)), 30, "the mask overlay to appear on the canvas")

            canvas.locator("xpath=ancestor::div[contains(@class, 'widget-vbox')][1]").screenshot(
                path=str(folder / "widget.png"), timeout=10_000)   # for people reading the test's files
            page.mouse.click(*screen_xy(100, 400), button="right")
            after_right = probe(page)
            assert after_right["prompts"] == 2 and after_right["labels"] == [1, 0], after_right
            assert page.locator(".lm-Menu").count() == 0 or not page.locator(".lm-Menu").first.is_visible(), \
                "the right click opened a context menu"

            page.get_by_role("button", name="Undo").first.click()
            after_undo = probe(page)
            assert after_undo["prompts"] == 1 and after_undo["labels"] == [1], after_undo
            assert after_undo["area"] == after_click["area"]
            wait_until(lambda: changed_pixels(clicked, canvas_pixels(page, canvas)) == 0, 30,
                       "the canvas to show the one-click mask again")
            assert not [e for e in errors if "ipycanvas" in e or "ipyevents" in e], errors
        except BaseException:
            if page is not None:  # keep a picture of the failure next to the server log
                page.screenshot(path=str(folder / "failure.png"), full_page=True)
                print(f"screenshot: {folder / 'failure.png'}, server log: {folder / 'jupyterlab.log'}")
            raise
        finally:
            browser.close()
