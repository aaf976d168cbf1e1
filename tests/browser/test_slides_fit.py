"""Every slide of the course deck fits the screen: the deck is rendered in headless Chromium at 1280 x 800 and each
slide's content must lie inside reveal.js's 1280 x 800 design frame (no figure or table running past the bottom).

The run the deck is built from is ``SAMKIT_SLIDES_RUN`` (a folder written by ``make course``) when set, otherwise a
stand-in with the real run's shapes: every figure at its notebook's aspect ratio and the largest sizes the
notebooks write (tables of up to 14 rows of long cells, sentences of ~110 words). With ``SAMKIT_SLIDES_SHOTS`` set,
a screenshot of every slide is written there.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from tools import slides

pytestmark = pytest.mark.browser

#: (width, height) in inches of the figures the notebooks save, by name (the largest of each kind)
FIGURE_SIZES = {"real_photos": (14, 9.6), "everything_mode": (15, 13), "decoder_attention": (12, 9.6),
                "predictions_before_after": (12.6, 12), "day_night_predictions": (13, 10), "edge_maps": (14, 9.4),
                "miou_vs_clicks": (15, 6.2), "responsible_ai": (14, 4.8), "three_masks": (14, 4.2),
                "fourier_features": (15, 3.6), "click_refined": (9.5, 7), "click_three_masks": (13, 4.6)}
#: rows of the tables the notebooks write, by name (the full configuration's; others have at most 6)
TABLE_ROWS = {"encoder_shapes": 14, "settings": 12, "finetune_settings": 8, "sa1b_numbers": 7, "text_prompts": 6,
              "edge_detection_paper": 6, "miou_vs_clicks": 6, "zero_shot_tasks": 5, "parameters": 5,
              "miou_before_after": 3, "miou_boxes": 3, "edge_detection": 4, "zero_shot": 2, "day_vs_night": 2}
#: a sentence as long as the longest the notebooks write (~100 words), and the shorter ones said per data set
LONG = ("The mask decoder trained here recovered part of the gap between a random decoder and the trained one, "
        "measured on the held-out masks with one click at each object's centre. ") * 4
SHORT = "On the generated scenes mIoU is 0.335 at 1 click and 0.644 at 9 clicks: more clicks raise it, as they should. "


def _figure(path: Path, size) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    ax.plot([0, 1], [0, 1])
    ax.set_title("a figure of the run")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stand_in_run(root: Path) -> Path:
    deck = slides.load_deck()
    run = root / "course"
    run.mkdir(parents=True)
    refs = {key: sorted({r for s in deck for r in s.get(key, [])}) for key in ("figures", "tables", "claims")}
    numbers = sorted({r.split("/")[0] for rs in refs.values() for r in rs})
    stems = {n: f"{n}_notebook" for n in numbers}
    timings = {"notebooks": {}, "total_seconds": 1.0}
    for n, stem in stems.items():
        (run / stem).mkdir()
        nb = nbformat.v4.new_notebook()
        nb.metadata["papermill"] = {"parameters": {"model": "tiny", "out_dir": "x"}}
        cell = nbformat.v4.new_code_cell("S = setup()")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=(
            "model: samkit's embedded tiny teaching model (trained on generated scenes, not on SA-1B) (512 px input, "
            "3.6 M parameters)\ndata: generated look-alikes of SA-1B (no real copy found). Point data_root at an "
            "SA-1B folder (sa_*.jpg + sa_*.json) to train on the real thing.\n"))]
        nb.cells.append(cell)
        nbformat.write(nb, run / f"{stem}.ipynb")
        timings["notebooks"][stem] = {"seconds": 1.0, "status": "ok"}
    for ref in refs["figures"]:
        n, name = ref.split("/")
        _figure(run / stems[n] / f"{name}.png", FIGURE_SIZES.get(name, (13, 4.6)))
    for ref in refs["tables"]:
        n, name = ref.split("/")
        rows = "".join(f"| row {i} with a long name | {'a long cell of text ' * 2} | 0.123 | 0.456 | 11 |\n"
                       for i in range(TABLE_ROWS.get(name, 6)))
        header = "| setting | value | mIoU | mIoU | n |\n|---|---|---|---|---|\n"
        (run / stems[n] / f"{name}.md").write_text(f"**{name}, a title as long as the notebooks write**\n\n"
                                                   + header + rows)
    claims = {}
    for ref in refs["claims"]:
        n, name = ref.split("/")
        several = name in ("clicks", "box_vs_clicks")
        claims.setdefault(n, []).extend({"narrate": name, "data": {}, "text": SHORT if several else LONG}
                                        for _ in range(3 if several else 1))
    for n, items in claims.items():
        (run / stems[n] / "claims.json").write_text(json.dumps(items))
    (run / "timings.json").write_text(json.dumps(timings))
    return run


def test_every_slide_fits_1280x800(tmp_path, monkeypatch):
    from test_click_browser import CHROMIUM_ARGS, find_chromium  # the same Chromium as the click test

    chromium = find_chromium()
    pytest.importorskip("playwright", reason="playwright is part of the test extras")
    from playwright.sync_api import sync_playwright

    if os.environ.get("SAMKIT_SLIDES_RUN"):
        run = Path(os.environ["SAMKIT_SLIDES_RUN"])
    else:  # the stand-in sentences carry no numbers to write them from: taken as written
        run = _stand_in_run(tmp_path)
        monkeypatch.setattr(slides.narrate, "render", lambda record: record["text"])
    deck = slides.build(run, tmp_path / "deck.html", runs_dir=run.parent, notebook_out=tmp_path / "deck.ipynb",
                        bench_json=slides.SHIPPED_BENCH, log=lambda *_: None)
    shots = os.environ.get("SAMKIT_SLIDES_SHOTS")
    width, height = slides.SLIDE_SIZE
    too_big = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(deck.resolve().as_uri())
        page.wait_for_function("typeof Reveal !== 'undefined' && Reveal.isReady()")
        page.evaluate("Reveal.configure({transition: 'none', backgroundTransition: 'none'})")
        assert page.evaluate("[Reveal.getConfig().width, Reveal.getConfig().height]") == [width, height]
        for i in range(page.evaluate("Reveal.getTotalSlides()")):
            page.evaluate(f"Reveal.slide({i})")
            page.wait_for_timeout(100)
            info = page.evaluate("""() => { const s = Reveal.getCurrentSlide();
                return {title: (s.querySelector('h1,h2') || {}).textContent || '', h: s.scrollHeight,
                        w: s.scrollWidth}; }""")
            if shots:
                Path(shots).mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(Path(shots) / f"slide{i:02d}.png"))
            if info["h"] > height or info["w"] > width:
                too_big.append(f"{i} {info['title'].strip()}: {info['w']} x {info['h']}")
        browser.close()
    assert not too_big, "slides larger than the 1280 x 800 frame:\n" + "\n".join(too_big)
