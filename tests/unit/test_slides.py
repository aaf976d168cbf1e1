"""The course deck builds from a run folder into one offline HTML file (tools.slides)."""
from __future__ import annotations

import html
import json
import re
import socket
import struct
import zlib
from pathlib import Path

import nbformat
import pytest

from tools import slides

STDOUT = {
    "model": "model: samkit's embedded tiny teaching model (trained on generated scenes, not on SA-1B) "
             "(256 px input, 4.1 M parameters)",
    "data": "data: generated look-alikes of NDISPark (no real copy found).",
}


def _png(width: int = 6, height: int = 4) -> bytes:
    """A valid RGB PNG, made without any imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes([200, 30, 30]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def _refs(deck, key):
    return sorted({ref for s in deck for ref in s.get(key, [])})


def make_fake_run(root: Path, skip_figures=(), failed=()) -> Path:
    """runs/<timestamp>/ in the runner's layout: executed notebooks with papermill parameters and the lines
    setup() prints, <stem>/<figure>.png and <stem>/<table>.md|.csv|.html, timings.json."""
    deck = slides.load_deck()
    run = root / "20250101-120000"
    run.mkdir(parents=True)
    numbers = sorted({ref.split("/")[0] for key in ("figures", "tables", "claims") for ref in _refs(deck, key)})
    stems = {n: f"{n}_notebook{n}" for n in numbers}
    timings = {"notebooks": {}, "total_seconds": 1.0}
    for n, stem in stems.items():
        (run / stem).mkdir()
        nb = nbformat.v4.new_notebook()
        nb.metadata["papermill"] = {"parameters": {"model": "tiny", "small": True, "out_dir": str(run / stem)}}
        cell = nbformat.v4.new_code_cell("S = setup(...)")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                               text="device: cpu\n" + STDOUT["model"] + "\n" + STDOUT["data"] + "\n")]
        nb.cells.append(cell)
        nbformat.write(nb, run / f"{stem}.ipynb")
        timings["notebooks"][stem] = {"seconds": 1.0, "status": "failed" if n in failed else "ok"}
    for ref in _refs(deck, "figures"):
        if ref not in skip_figures:
            n, name = ref.split("/")
            (run / stems[n] / f"{name}.png").write_bytes(_png())
    for ref in _refs(deck, "tables"):
        n, name = ref.split("/")
        (run / stems[n] / f"{name}.md").write_text(f"**{name}**\n\n| a | b |\n|---|---|\n| 1 | 0.500 |\n")
    # the edge tables: the paper's rows and the measured ones, apart
    (run / stems["05"] / "edge_detection_paper.md").write_text(
        "**the paper's Table 3: the 200 test images of BSDS500**\n\n| method | ODS |\n|---|---|\n| HED | 0.788 |\n")
    (run / stems["05"] / "edge_detection.md").write_text(
        "**measured here: 2 generated scenes of 384 px**\n\n| method | ODS |\n|---|---|\n| SAM (tiny) | 0.412 |\n")
    claims = {}
    for ref in _refs(deck, "claims"):
        n, name = ref.split("/")
        claims.setdefault(n, []).append({"narrate": name, "data": {}, "text": f"Sentence {name} of the run."})
    for n, items in claims.items():
        (run / stems[n] / "claims.json").write_text(json.dumps(items))
    (run / "timings.json").write_text(json.dumps(timings))
    return run


def sections(page: str):
    """The deck's slides: the HTML of each innermost <section>."""
    return [s for s in re.findall(r"<section[^>]*>(.*?)</section>", page, re.S) if "<h" in s]


def heading(title: str) -> str:
    return r"<h[12][^>]*>" + re.escape(html.escape(title, quote=False)) + "<"


def slide_html(page: str, title: str) -> str:
    hits = [s for s in sections(page) if re.search(heading(title), s)]
    assert len(hits) == 1, f"slide {title!r} found {len(hits)} times"
    return hits[0]


RENDER = slides.narrate.render  # the real one, for the test of re-rendering


@pytest.fixture(autouse=True, scope="module")
def _sentences_as_written():
    """The fake runs' sentences carry no numbers to write them from: the deck takes them as written."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(slides.narrate, "render", lambda record: record["text"])
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run = make_fake_run(root, skip_figures=("06/click_refined",), failed=("06",))
    out = root / "deck" / "index.html"
    slides.build("latest", out, runs_dir=root, bench_json=root / "nothing.json", card_json=None, log=lambda *_: None)
    return run, out, out.read_text(encoding="utf-8")


def test_deck_has_every_slide_in_order(built):
    _, out, page = built
    assert out.is_file() and out.stat().st_size > 50_000        # reveal.js is inside
    titles = [s["title"] for s in slides.load_deck() if not s.get("optional")]
    positions = [m.start() if (m := re.search(heading(t), page)) else -1 for t in titles]
    assert all(p >= 0 for p in positions), [t for t, p in zip(titles, positions) if p < 0]
    assert positions == sorted(positions)


def test_every_figure_slide_embeds_its_images(built):
    run, _, page = built
    for s in slides.load_deck():
        if not s.get("figures"):
            continue
        body = slide_html(page, s["title"])
        n_images = len(re.findall(r'<img[^>]+src="data:image/png;base64,', body))
        if s["title"] == "Demo: refining with a second click":     # its figure was left out of the run
            assert n_images == 0 and "Missing: figure 06/click_refined.png" in body
            assert "failed in run" in body
        else:
            assert n_images == len(s["figures"]), s["title"]
    for s in slides.load_deck():
        if not s.get("figures") and not s.get("optional"):
            assert "data:image/png" not in slide_html(page, s["title"])


def test_figures_say_which_model_and_data(built):
    _, _, page = built
    body = slide_html(page, "Experiment 1: a mask decoder from scratch")
    assert "embedded tiny teaching model" in body
    assert "generated look-alikes of NDISPark" in body
    assert "teaching setup, not the paper" in body
    assert "small=True" in body


def test_quoted_numbers_are_labelled(built):
    _, _, page = built
    for title, numbers in [("SA-1B: the data set", ["11M images", "1.1B masks", "99.1%"]),
                           ("How good are the automatic masks?", ["94%"]),
                           ("Training method", ["20 x focal"]),
                           ("Zero-shot: a single point, a valid mask", ["16 of the 23"])]:
        body = slide_html(page, title)
        for number in numbers:
            quote = body[body.find(slides.QUOTE_LABEL):]
            assert slides.QUOTE_LABEL in body and number in quote, (title, number)
    edge = slide_html(page, "Zero-shot edge detection")
    assert "the paper's Table 3" in edge and "HED" in edge and "measured here" not in edge
    assert "The paper&#x27;s numbers (samkit.paper)" in edge or "The paper's numbers (samkit.paper)" in edge
    assert "teaching setup" not in edge
    measured = slide_html(page, "Zero-shot edge detection, measured here")
    assert "measured here: 2 generated scenes" in measured and "SAM (tiny)" in measured
    # numbers only the paper has must not appear outside a quote
    for s in sections(page):
        if "99.1%" in s or "1.1B" in s:
            assert slides.QUOTE_LABEL in s


def test_no_cell_errored_and_no_network(built, monkeypatch, tmp_path):
    run, _, page = built
    nb = nbformat.read(run / "slides.ipynb", as_version=4)
    nbformat.validate(nb)
    assert all(c.cell_type == "markdown" or not any(o.get("output_type") == "error" for o in c.get("outputs", []))
               for c in nb.cells)
    assert "Traceback" not in page and "output_error" not in page
    assert slides.external_references(page) == []
    assert "Reveal.initialize" in page and "unpkg.com" not in page and "cdnjs" not in page

    def refuse(*args, **kwargs):
        raise AssertionError("the deck build tried to open a network connection")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    out = slides.build(run, tmp_path / "again.html", runs_dir=run.parent, notebook_out=tmp_path / "s.ipynb",
                       card_json=None, log=lambda *_: None)
    assert slides.external_references(out.read_text(encoding="utf-8")) == []


def test_external_references_catches_cdn_links():
    page = ('<script src="https://unpkg.com/reveal.js/dist/reveal.js"></script>'
            '<link rel="stylesheet" href="//cdn.example.org/x.css"><img src="data:image/png;base64,AAAA">'
            '<a href="https://example.org">a plain link is fine</a><style>@import url(./fonts/x.css);</style>')
    assert slides.external_references(page) == ["https://unpkg.com/reveal.js/dist/reveal.js",
                                                "//cdn.example.org/x.css", "./fonts/x.css"]


def test_missing_run_and_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="make run"):
        slides.find_run("latest", tmp_path)
    with pytest.raises(FileNotFoundError, match="timings.json"):
        slides.find_run(tmp_path)
    with pytest.raises(ValueError, match="NN/name"):
        slides._split_ref("loss_curves")
    with pytest.raises(FileNotFoundError, match="reveal.js file"):
        slides.read_reveal_assets(tmp_path)


def test_slides_show_the_runs_sentences(built):
    _, _, page = built
    body = slide_html(page, "Experiment 1: what the decoder learned")
    assert "Sentence decoder_training of the run." in body
    for s in slides.load_deck():
        for ref in s.get("claims", []):
            assert f"Sentence {ref.split('/')[1]} of the run." in slide_html(page, s["title"]), (s["title"], ref)


def test_slides_write_the_runs_sentences_again_from_their_numbers(tmp_path, monkeypatch):
    """A sentence on a slide is samkit.narrate's wording of today, written from the numbers the run stored
    (not the text the run printed), and its "section N" names the notebook the section is in."""
    monkeypatch.setattr(slides.narrate, "render", RENDER)
    data = {"name": "photos", "gain_1_to_3": 0.171}
    record = slides.NotebookRecord("05_zero_shot", tmp_path, "ok")
    (tmp_path / "claims.json").write_text(json.dumps([{"narrate": "people_clicks", "data": data,
                                                       "text": "an older wording"}]))
    assert slides._claims(record, "people_clicks") == [RENDER({"narrate": "people_clicks", "data": data})]
    assert slides.qualify_sections("the case of section 2; sections 4-6 measure", "03") == \
        "the case of notebook 03's section 2; notebook 03's sections 4-6 measure"
    with pytest.raises(ValueError, match="not a samkit.narrate record"):
        RENDER({"narrate": "pct", "data": {"x": 0.5}})


def test_card_slide_is_a_table_of_data_sets(tmp_path):
    """The embedded model's slide: one row per data set, real photos first, readable headers; the ambiguity and
    everything-mode figures in its provenance line."""
    figures = json.loads(slides.CARD_FIGURES.read_text())
    md = slides._card_markdown(slides.CARD_FIGURES)
    lines = md.splitlines()
    assert lines[0].startswith("| data | objects | 1 click, best of 3 |") and "1pt_oracle" not in md
    assert lines[2] == (f"| real photos, held out from training | {figures['real_photos']['objects']} | "
                        f"{figures['real_photos']['1pt_oracle']:.3f} | {figures['real_photos']['1pt_confident']:.3f}"
                        f" | {figures['real_photos']['3pt']:.3f} | {figures['real_photos']['box_mIoU']:.3f} | "
                        f"{figures['real_photos']['box_fill_mIoU']:.3f} |")
    assert f"in {100 * figures['ambiguity']['rate']:.0f}% of {figures['ambiguity']['cases']} cases" in md
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a mapping"):
        slides._card_markdown(tmp_path / "bad.json")
    assert slides._card_markdown(tmp_path / "absent.json") is None


def test_deck_quotes_the_paper_module():
    """The deck's quoted numbers come from samkit.paper (one place for notebooks, slides and the card)."""
    from samkit import paper

    text = " ".join(t for s in slides.load_deck() for _, t in s.get("quoted", []))
    assert f"{paper.TRAIN_VIT_B.value['iterations']:,}" in text
    assert f"{paper.POINT_VS_RITM.value['sam_higher']} of" in text
    source = (slides.DECK_FILE).read_text()
    for number in ("1.1B", "99.1", "0.768", "4.3M", "180,000", "16 of"):
        assert number not in source, f"slides/deck.py writes {number!r} by hand: format it from samkit.paper"


def test_optional_slide_dropped_when_its_figure_is_not_in_the_run(tmp_path):
    """The edge-cut slide belongs to runs that cut masks along edges (refine on): without its figure the deck
    leaves it out instead of showing a 'Missing' slide; with it, the slide is there."""
    title = "The embedded model: masks cut along the photo's edges"
    assert any(s["title"] == title and s.get("optional") for s in slides.load_deck())
    for skip, expected in (((), 1), (("05/real_photos_cut",), 0)):
        root = tmp_path / f"runs{len(skip)}"
        make_fake_run(root, skip_figures=skip)
        out = root / "deck" / "index.html"
        slides.build("latest", out, runs_dir=root, bench_json=root / "nothing.json", card_json=None,
                     log=lambda *_: None)
        page = out.read_text(encoding="utf-8")
        assert len([s for s in sections(page) if re.search(heading(title), s)]) == expected


def test_course_quotes_are_not_labelled_as_the_papers():
    md = slides._quotes_markdown([("§5", "11M images"), ("course", "20 s for 3 epochs on a T4")], "Kirillov")
    paper_block, course_block = md.split("\n\n")
    assert slides.QUOTE_LABEL in paper_block and "11M images *(§5)*" in paper_block
    assert "20 s" not in paper_block
    assert slides.COURSE_LABEL in course_block and "20 s for 3 epochs on a T4" in course_block
    assert slides.QUOTE_LABEL not in slides._quotes_markdown([("course", "20 s")], "Kirillov")
