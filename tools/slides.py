"""Build the course deck (reveal.js slides) from the outputs of an executed course run.

    python -m tools.slides                        # latest run in runs/ -> slides/index.html
    python -m tools.slides --run runs/20250101-120000 --out /tmp/deck.html
    python -m tools.slides --update-reveal 4.6.1  # re-vendor reveal.js from npm (maintainers)

The deck's text and the figures each slide shows are in ``slides/deck.py``. This module:

1. finds the run (``runs/<timestamp>/`` written by ``python -m samkit.runner``) and reads, for each notebook,
   its status (``timings.json``), its papermill parameters and what ``notebook_utils.setup`` / ``data_note``
   printed (``model: ...``, ``data: ...``), so that every figure says which model and data produced it;
2. writes a slides notebook (markdown cells; a slide with a figure puts its text, tables and the run's
   sentences (``claims.json``) left and the figure, as a ``data:`` URI, right; tables from the run's ``.md`` files)
   into the run folder (``<run>/slides.ipynb``);
3. converts it with nbconvert's slides exporter and the ``slides/template/samkit_reveal`` template into one
   self-contained HTML file: images as ``data:`` URIs, reveal.js (vendored in ``slides/reveal.js``, MIT) inlined,
   no CDN, so the deck opens offline.
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from samkit import narrate

PathLike = Union[str, Path]

REPO = Path(__file__).resolve().parent.parent
SLIDES_DIR = REPO / "slides"
DECK_FILE = SLIDES_DIR / "deck.py"
TEMPLATE_DIR = SLIDES_DIR / "template"
TEMPLATE_NAME = "samkit_reveal"
REVEAL_DIR = SLIDES_DIR / "reveal.js"
#: the speed table measured on the project's CPU, used when a run has no ``bench/speed.json`` of its own
SHIPPED_BENCH = REPO / "benchmarks" / "results" / "speed_cpu.json"
#: the files of the reveal.js npm package the deck uses (MIT licence, kept in ``slides/reveal.js``)
REVEAL_FILES = ("LICENSE", "dist/reveal.js", "dist/reveal.css", "dist/theme/white.css")
REVEAL_VERSION = "4.6.1"
CARD_FIGURES = REPO / "samkit" / "assets" / "card" / "figures.json"
#: placeholder for reveal_url_prefix; every reference to it is replaced by the inlined file
_INLINE_PREFIX = "samkit-inline-reveal"
QUOTE_LABEL = "Quoted from the paper"
COURSE_LABEL = "From the course presentation"
#: figures at least this many times wider than high go across the slide, under the text (not beside it)
WIDE_FIGURE = 2.2
#: the slides' design size in CSS pixels (reveal.js scales it to the window); every slide must fit in it
SLIDE_SIZE = (1280, 800)


# ------------------------------------------------------------------------------------------ the run
@dataclass
class NotebookRecord:
    """What a run knows about one notebook: where its outputs are and what produced them."""

    stem: str  # "03_decoder_from_scratch"
    out_dir: Path  # <run>/<stem>/ (figures and tables)
    status: str  # "ok", "failed" or "not run"
    # papermill parameters (out_dir dropped)
    parameters: Dict[str, Any] = field(default_factory=dict)
    model: Optional[str] = None  # the "model: ..." line setup() printed
    data: List[str] = field(default_factory=list)  # the "data: ..." lines
    notes: List[str] = field(default_factory=list)  # the "NOTE: ..." lines (fallbacks)

    @property
    def number(self) -> str:
        return self.stem.split("_")[0]

    @property
    def teaching_setup(self) -> bool:
        """True when the outputs come from the embedded tiny model, random weights or generated
        data."""
        text = " ".join([self.model or ""] + self.data).lower()
        return any(k in text for k in ("embedded tiny", "random", "generated"))


@dataclass
class RunInfo:
    """A run folder and its notebooks, keyed by number (``"03"``)."""

    run_dir: Optional[Path]
    notebooks: Dict[str, NotebookRecord] = field(default_factory=dict)


def find_run(run: Optional[PathLike] = "latest", runs_dir: PathLike = "runs") -> Path:
    """The run folder: ``run`` itself, or with ``"latest"``/``None`` the newest folder of
    ``runs_dir`` that holds a ``timings.json`` (by that file's modification time)."""
    if run not in (None, "latest"):
        path = Path(run)
        if not path.is_dir():
            raise FileNotFoundError(
                f"run folder {path} does not exist (make run writes runs/<timestamp>/)"
            )
        if not (path / "timings.json").is_file():
            raise FileNotFoundError(f"{path} is not a course run: it has no timings.json")
        return path
    root = Path(runs_dir)
    runs = [p.parent for p in root.glob("*/timings.json")] if root.is_dir() else []
    if not runs:
        raise FileNotFoundError(
            f"no course run in {root}/ (a folder with timings.json): run `make run` first"
        )
    return max(runs, key=lambda p: ((p / "timings.json").stat().st_mtime, p.name))


def _printed_lines(nb) -> List[str]:
    lines: List[str] = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stdout":
                text = out.get("text", "")
                lines += ("".join(text) if isinstance(text, list) else text).splitlines()
    return lines


def read_notebook_record(run_dir: Path, stem: str, status: str) -> NotebookRecord:
    """Status, papermill parameters and the model/data lines printed by the executed
    ``<run>/<stem>.ipynb``."""
    import nbformat

    record = NotebookRecord(stem=stem, out_dir=run_dir / stem, status=status)
    executed = run_dir / f"{stem}.ipynb"
    if not executed.is_file():
        return record
    nb = nbformat.read(executed, as_version=4)
    params = dict(nb.metadata.get("papermill", {}).get("parameters", {}) or {})
    params.pop("out_dir", None)
    record.parameters = params
    for line in _printed_lines(nb):
        line = line.strip()
        if line.startswith("model: ") and record.model is None:
            record.model = line[len("model: ") :]
        elif line.startswith("data: ") and line[len("data: ") :] not in record.data:
            record.data.append(line[len("data: ") :])
        elif line.startswith("NOTE: "):
            record.notes.append(line[len("NOTE: ") :])
    return record


def read_run(run_dir: Optional[Path]) -> RunInfo:
    """Every notebook of ``run_dir`` listed in its ``timings.json`` plus any output folder without a
    record."""
    info = RunInfo(run_dir=run_dir)
    if run_dir is None:
        return info
    timings_path = run_dir / "timings.json"
    try:
        timings = json.loads(timings_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{timings_path}: cannot read the run's timings ({exc})") from exc
    if not isinstance(timings.get("notebooks"), dict):
        raise ValueError(f"{timings_path}: field 'notebooks' is missing or not a mapping")
    stems = dict(timings["notebooks"])
    for folder in run_dir.iterdir():
        if folder.is_dir() and re.match(r"^\d\d_", folder.name) and folder.name not in stems:
            stems[folder.name] = {"status": "unknown"}
    for stem, entry in sorted(stems.items()):
        status = entry.get("status", "unknown") if isinstance(entry, dict) else "unknown"
        record = read_notebook_record(run_dir, stem, status)
        info.notebooks[record.number] = record
    return info


def provenance(record: Optional[NotebookRecord], run_name: str, number: str) -> str:
    """One line saying which notebook, model, weights and data produced a figure or table."""
    if record is None:
        return f"notebook {number} was not part of run {run_name}"
    parts = [f"run {run_name}, notebook {record.stem}"]
    parts.append(
        f"model: {record.model}"
        if record.model
        else f"model parameter: {record.parameters.get('model', 'not recorded')}"
    )
    parts += [f"data: {d}" for d in record.data]
    shown = {
        k: v
        for k, v in record.parameters.items()
        if k in ("small", "epochs", "checkpoint", "device", "data_root", "seed")
    }
    if shown:
        parts.append("parameters: " + ", ".join(f"{k}={v!r}" for k, v in shown.items()))
    parts += [f"note: {n}" for n in record.notes]
    return " · ".join(parts)


# ----------------------------------------------------------------------------------------- the deck
def load_deck(path: PathLike = DECK_FILE) -> List[Dict[str, Any]]:
    """``SLIDES`` of ``slides/deck.py`` (a list of dicts, see that file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"deck file {path} does not exist")
    spec = importlib.util.spec_from_file_location("samkit_deck", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    slides = getattr(module, "SLIDES", None)
    if not isinstance(slides, list) or not all(
        isinstance(s, dict) and "title" in s for s in slides
    ):
        raise ValueError(f"{path}: SLIDES must be a list of dicts, each with a 'title'")
    return slides


def _split_ref(ref: str) -> tuple:
    number, sep, name = ref.partition("/")
    if not sep or not re.match(r"^\d\d$", number) or not name:
        raise ValueError(
            f"deck reference {ref!r} must look like 'NN/name' (notebook number / file stem)"
        )
    return number, name


def _quotes_markdown(quoted: Sequence[Sequence[str]], paper: str) -> str:
    """The quoted facts as block quotes: the paper's under ``QUOTE_LABEL``, the course presentation's (``where``
    is ``"course"``) under ``COURSE_LABEL``."""
    blocks = []
    for label, items in ((f"**{QUOTE_LABEL}** ({paper})", [q for q in quoted if q[0] != "course"]),
                         (f"**{COURSE_LABEL}**", [q for q in quoted if q[0] == "course"])):
        if items:
            blocks.append("\n".join([f"> {label}:"] + [f"> - {text}" + ("" if where == "course" else f" *({where})*")
                                                        for where, text in items]))
    return "\n\n".join(blocks)


_SECTION = re.compile(r"\b([Ss]ections?) (\d+(?:[-–]\d+)?)\b")


def qualify_sections(text: str, number: str) -> str:
    """A notebook's "section 2" on a slide, which has no sections: "notebook 03's section 2"."""
    return _SECTION.sub(lambda m: f"notebook {number}'s {m.group(1).lower()} {m.group(2)}", text)


def _table_markdown(record: Optional[NotebookRecord], name: str) -> Optional[str]:
    if record is None:
        return None
    md = record.out_dir / f"{name}.md"
    if md.is_file():
        return qualify_sections(md.read_text(encoding="utf-8").strip(), record.number)
    csv_path = record.out_dir / f"{name}.csv"
    if csv_path.is_file():
        import csv

        with open(csv_path, newline="") as f:
            rows = list(csv.reader(f))
        if rows:
            out = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
            out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
            return "\n".join(out)
    return None


def _claims(record: Optional[NotebookRecord], name: str) -> Optional[List[str]]:
    """The sentences a notebook of the run wrote with ``samkit.narrate.<name>`` (its ``claims.json``)."""
    if record is None:
        return None
    path = record.out_dir / "claims.json"
    if not path.is_file():
        return None
    try:
        claims = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the run's sentences ({exc})") from exc
    # written again from their numbers, so that the deck says what samkit.narrate says today
    said = [narrate.render(c) for c in claims if isinstance(c, dict) and c.get("narrate") == name and "data" in c]
    return said or None


def _aspect(png: bytes) -> float:
    """Width / height of a PNG, from its header."""
    import struct

    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("a slide figure must be a PNG file")
    width, height = struct.unpack(">II", png[16:24])
    return width / max(height, 1)


def _markdown_html(text: str) -> str:
    """Markdown (with tables and inline HTML) -> HTML, for the text column of a slide with a figure."""
    import mistune

    return mistune.create_markdown(escape=False, plugins=["table"])(text)


def _missing(what: str, number: str, record: Optional[NotebookRecord], run_name: str) -> str:
    if record is None:
        why = (
            f"notebook {number} is not in run {run_name}"
            if run_name != "none"
            else "no course run was found"
        )
    elif record.status != "ok":
        state = "failed" if record.status == "failed" else record.status
        why = f"notebook {record.stem} {state} in run {run_name}"
    else:
        why = f"notebook {record.stem} of run {run_name} did not write it"
    text = f"Missing: {what} ({why}; make run, then make slides, fills it in)."
    return f'<p class="missing">{_escape(text)}</p>'


def _bench_markdown(path: Path) -> Optional[str]:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        rows = data["rows"]
        meta = data.get("meta", {})
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path}: expected JSON with 'rows' (from benchmarks/bench_speed.py): {exc}"
        ) from exc

    def num(v):
        return "–" if v is None else (f"{v:.3g}" if isinstance(v, (int, float)) else str(v))

    out = [
        "| measurement | unit | official | samkit | official / samkit |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.get('row', '?')} | {r.get('unit', '')} | {num(r.get('official'))} | "
            f"{num(r.get('samkit'))} | {num(r.get('ratio'))} |"
        )
    try:
        shown = path.resolve().relative_to(REPO).as_posix()
    except ValueError:
        shown = path.name
    where = (
        f"measured by benchmarks/bench_speed.py ({shown}) on {meta.get('cpu', 'unknown CPU')}, "
        f"{meta.get('threads', '?')} threads, torch {meta.get('torch', '?')}, "
        f"{meta.get('time', '')}; "
        "ViT-B with random weights (speed does not depend on the weights)"
    )
    return "\n".join(out) + f'\n\n<p class="provenance">{_escape(where)}</p>'


#: the model card's data sets on its slide: figures.json key -> row label (real photos first: they are the test)
CARD_DATA = (
    ("real_photos", "real photos, held out from training"),
    ("real_photos_refined", "the same, masks cut along edges"),
    ("coins", "real photo coins"),
    ("scenes_large", "held-out generated scenes (objects of 512 px or more)"),
)
#: columns of that table: figures.json key -> header
CARD_COLUMNS = (("objects", "objects"), ("1pt_oracle", "1 click, best of 3"),
                ("1pt_confident", "1 click, most confident"), ("3pt", "3 clicks"), ("box_mIoU", "box"),
                ("box_fill_mIoU", "box filled in (no model)"))


def _card_markdown(path: Path) -> Optional[str]:
    """The embedded model's card as one table of mIoU (one row per data set) and a line for the ambiguity and
    everything-mode figures."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the model card figures: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the model card figures are not a mapping")

    def cell(value: Any) -> str:
        if isinstance(value, bool) or value is None:
            return "–"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    out = ["| data | " + " | ".join(h for _, h in CARD_COLUMNS) + " |", "|---" * (len(CARD_COLUMNS) + 1) + "|"]
    for key, label in CARD_DATA:
        values = data.get(key)
        if isinstance(values, dict):
            out.append(f"| {label} | " + " | ".join(cell(values.get(k)) for k, _ in CARD_COLUMNS) + " |")
    notes = []
    amb, every = data.get("ambiguity"), data.get("everything")
    if isinstance(amb, dict) and "rate" in amb:
        notes.append(f"a click on a part gives both the part and the whole in {100 * amb['rate']:.0f}% of "
                     f"{amb.get('cases', '?')} cases")
    if isinstance(every, dict) and "recall" in every:
        notes.append(f"everything mode with the official thresholds finds {100 * every['recall']:.0f}% of the "
                     f"photos' {every.get('objects', '?')} objects")
    where = ("mIoU from the embedded tiny model's card (" + path.name + "; samkit/assets/MODEL_CARD.md has the rest)"
             + ("; " + "; ".join(notes) if notes else ""))
    return "\n".join(out) + f"\n\n<p class=\"provenance\">{_escape(where)}</p>"


def _present(run: RunInfo, slide: Dict[str, Any]) -> bool:
    """Whether every sentence and figure an optional slide names is in the run."""
    for ref in slide.get("claims", []):
        number, name = _split_ref(ref)
        if _claims(run.notebooks.get(number), name) is None:
            return False
    for ref in slide.get("figures", []):
        number, name = _split_ref(ref)
        record = run.notebooks.get(number)
        if record is None or not (record.out_dir / f"{name}.png").is_file():
            return False
    return True


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=False)


def _slide_cell(markdown: str, attachments: Dict[str, Dict[str, str]]):
    import nbformat

    cell = nbformat.v4.new_markdown_cell(markdown)
    cell.metadata["slideshow"] = {"slide_type": "slide"}
    if attachments:
        cell["attachments"] = attachments
    return cell


def build_notebook(run: RunInfo, deck: Optional[List[Dict[str, Any]]] = None, paper: Optional[str] = None,
                   bench_json: Optional[Path] = None, card_json: Optional[Path] = CARD_FIGURES):
    """The slides notebook: one markdown cell per slide (``slideshow.slide_type = "slide"``), figures as PNG
    inlined as ``data:`` URIs in a two-column layout (text left, figure right, sized to fit the slide), tables as
    Markdown, the run's sentences written from its numbers (``claims``), a provenance line under each."""
    import nbformat

    if deck is None:
        deck = load_deck()
        if paper is None:
            paper = _deck_paper(DECK_FILE)
    paper = paper or "Kirillov et al., Segment Anything, 2023"
    run_name = run.run_dir.name if run.run_dir is not None else "none"
    nb = nbformat.v4.new_notebook()
    nb.metadata["title"] = "Segment Anything"
    nb.metadata["samkit"] = {
        "run": str(run.run_dir) if run.run_dir else None,
        "built": _dt.datetime.now().isoformat(timespec="seconds"),
    }
    for slide in deck:
        extra = slide.get("extra")
        extra_md = None
        if extra == "bench":
            extra_md = _bench_markdown(bench_json) if bench_json is not None else None
        elif extra == "card":
            extra_md = _card_markdown(card_json) if card_json is not None else None
        elif extra is not None:
            raise ValueError(
                f"slide {slide['title']!r}: unknown extra {extra!r} (use 'bench' or 'card')"
            )
        if slide.get("optional") and extra is not None and extra_md is None:
            continue
        if slide.get("optional") and extra is None and not _present(run, slide):
            continue  # a slide about something this run did not do (e.g. a setting left off)
        head = ("# " if slide.get("title_slide") else "## ") + slide["title"]
        parts: List[str] = []
        if slide.get("text"):
            parts.append(slide["text"])
        if slide.get("title_slide"):
            parts.append(_run_summary(run, run_name))
        sources: List[str] = []
        for ref in slide.get("claims", []):
            number, name = _split_ref(ref)
            record = run.notebooks.get(number)
            said = _claims(record, name)
            if said is None:
                parts.append(_missing(f"the sentence {ref}", number, record, run_name))
                continue
            parts.append("\n\n".join(qualify_sections(t, number) for t in said))
            sources.append(number)
        if slide.get("quoted"):
            parts.append(_quotes_markdown(slide["quoted"], paper))
        found_tables = 0
        for ref in slide.get("tables", []):
            number, name = _split_ref(ref)
            record = run.notebooks.get(number)
            md = _table_markdown(record, name)
            if md is None:
                if not slide.get("fallback_table"):
                    parts.append(_missing(f"table {ref}", number, record, run_name))
                continue
            found_tables += 1
            parts.append(md)
            sources.append(number)
        if slide.get("tables") and not found_tables and slide.get("fallback_table"):
            parts.append(slide["fallback_table"].strip())
            parts.append(_missing(f"the measured rows ({', '.join(slide['tables'])})",
                                  _split_ref(slide["tables"][0])[0],
                                  run.notebooks.get(_split_ref(slide["tables"][0])[0]), run_name))
        images: List[str] = []
        aspects: List[float] = []
        for ref in slide.get("figures", []):
            number, name = _split_ref(ref)
            record = run.notebooks.get(number)
            png = record.out_dir / f"{name}.png" if record is not None else None
            if png is None or not png.is_file():
                parts.append(_missing(f"figure {ref}.png", number, record, run_name))
                continue
            raw = png.read_bytes()
            aspects.append(_aspect(raw))
            data = base64.b64encode(raw).decode("ascii")
            images.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
            sources.append(number)
        if extra_md is not None:
            parts.append(extra_md)
        elif extra is not None:
            what = "benchmark results (make bench)" if extra == "bench" else "the model card (samkit/assets/card)"
            parts.append(f"<p class=\"missing\">Missing: {what}.</p>")
        lines = []
        for number in dict.fromkeys(sources):
            record = run.notebooks.get(number)
            line = provenance(record, run_name, number)
            if slide.get("paper_tables") and not slide.get("figures") and record is not None:
                # the slide's tables hold the paper's numbers only: no run's model or data made them
                line = f"The paper's numbers (samkit.paper), written out by run {run_name}, notebook {record.stem}"
            elif record is not None and record.teaching_setup:
                line = ("Made with samkit's teaching setup, not the paper's model or data: " + line)
            lines.append(f"<p class=\"provenance\">{_escape(line)}</p>")
        attachments: Dict[str, Dict[str, str]] = {}
        if images and parts and min(aspects) >= WIDE_FIGURE:
            # a wide, short figure: the text above it, the figure across the slide
            body = f'<div class="stack"><div class="figure n{len(images)}">{"".join(images)}</div></div>'
            cell_md = "\n\n".join([head] + parts + [body] + lines)
        elif images:
            left = _markdown_html("\n\n".join(parts)) if parts else ""
            kind = "cols" if parts else "cols figure-only"
            body = (f'<div class="{kind}">' + (f'<div class="left">{left}</div>' if parts else "") +
                    f'<div class="right n{len(images)}">{"".join(images)}</div></div>')
            cell_md = "\n\n".join([head, body] + lines)
        else:
            cell_md = "\n\n".join([head] + parts + lines)
        nb.cells.append(_slide_cell(cell_md, attachments))
    return nb


def _deck_paper(path: Path) -> Optional[str]:
    spec = importlib.util.spec_from_file_location("samkit_deck", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return getattr(module, "PAPER", None)


def _run_summary(run: RunInfo, run_name: str) -> str:
    if run.run_dir is None:
        return (
            "*No course run was found: the figure slides say what is missing. "
            "`make run` executes the notebooks, then `make slides` rebuilds this deck.*"
        )
    models = sorted({r.model for r in run.notebooks.values() if r.model})
    data = sorted({d for r in run.notebooks.values() for d in r.data})
    failed = [r.stem for r in run.notebooks.values() if r.status != "ok"]
    lines = [f"Figures and tables: course run `{run_name}`."]
    lines += [f"- model: {m}" for m in models]
    lines += [f"- data: {d}" for d in data]
    if failed:
        lines.append(f"- not complete in this run: {', '.join(failed)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- HTML
def read_reveal_assets(reveal_dir: PathLike = REVEAL_DIR) -> Dict[str, str]:
    """The vendored reveal.js files as text: ``js``, ``css``, ``theme`` (its web-font import
    removed, so the theme falls back to the system sans-serif and nothing is fetched)."""
    reveal_dir = Path(reveal_dir)
    assets = {}
    for key, rel in (
        ("js", "dist/reveal.js"),
        ("css", "dist/reveal.css"),
        ("theme", "dist/theme/white.css"),
    ):
        path = reveal_dir / rel
        if not path.is_file():
            raise FileNotFoundError(
                f"reveal.js file {path} is missing (python -m tools.slides --update-reveal "
                f"{REVEAL_VERSION} vendors it from npm)"
            )
        assets[key] = path.read_text(encoding="utf-8")
    assets["theme"] = re.sub(r"@import url\([^)]*\);?", "", assets["theme"])
    assets["js"] = assets["js"].replace("</script", "<\\/script")
    return assets


def to_html(nb, reveal_dir: PathLike = REVEAL_DIR, template_dir: PathLike = TEMPLATE_DIR) -> str:
    """Convert the slides notebook with nbconvert's ``SlidesExporter`` (the exporter behind
    ``jupyter nbconvert --to slides``) and the samkit template; reveal.js is inlined."""
    from nbconvert import SlidesExporter

    assets = read_reveal_assets(reveal_dir)
    exporter = SlidesExporter(extra_template_basedirs=[str(template_dir)], template_name=TEMPLATE_NAME,
                              reveal_url_prefix=_INLINE_PREFIX, reveal_theme="white", reveal_number="c/t",
                              reveal_width=str(SLIDE_SIZE[0]), reveal_height=str(SLIDE_SIZE[1]))
    body, _ = exporter.from_notebook_node(nb, resources={"samkit_reveal": {"js": assets["js"]}})
    styles = {"dist/reveal.css": assets["css"], "dist/theme/white.css": assets["theme"]}

    def inline(match: "re.Match[str]") -> str:
        rel = match.group(1)
        if rel not in styles:
            raise ValueError(
                f"the slides template references {_INLINE_PREFIX}/{rel}, which samkit does not "
                "vendor"
            )
        return f"<style>\n{styles[rel]}\n</style>"

    body = re.sub(
        r'<link[^>]*href="' + re.escape(_INLINE_PREFIX) + r'/([^"]+)"[^>]*>', inline, body
    )
    if _INLINE_PREFIX in body:
        raise ValueError(
            "reveal.js reference left in the deck after inlining; check slides/template/"
        )
    external = external_references(body)
    if external:
        raise ValueError(f"the deck would load files from the network: {external[:5]}")
    return body


def external_references(html_text: str) -> List[str]:
    """URLs the page would fetch: ``src``/``href`` of ``script``, ``link``, ``img``, ``iframe`` tags
    and CSS ``@import``/``url()`` in style blocks, other than ``data:`` URIs and page anchors. Plain
    text links (``<a href>``) are allowed; the text inside inline scripts is not scanned as
    markup."""
    found = []
    scripts = re.compile(r"(<script\b[^>]*>)(.*?)(</script>)", re.S | re.I)
    markup = scripts.sub(lambda m: m.group(1) + m.group(3), html_text)
    for m in re.finditer(
        r'<(script|link|img|iframe)\b[^>]*\b(?:src|href)=["\']([^"\']+)["\']', markup, re.I
    ):
        if not m.group(2).startswith(("data:", "#")):
            found.append(m.group(2))
    for style in re.findall(r"<style\b[^>]*>(.*?)</style>", markup, re.S | re.I):
        for m in re.finditer(r'@import\s+(?:url\(\s*)?["\']?([^"\')\s;]+)', style):
            found.append(m.group(1))
        for m in re.finditer(r'url\(\s*["\']?([^"\')]+)', style):
            if not m.group(1).startswith(("data:", "#")) and m.group(1) not in found:
                found.append(m.group(1))
    for body in (m.group(2) for m in scripts.finditer(html_text)):
        for m in re.finditer(
            r'\b(?:import\s+[\w{}\s,*]+\s+from\s+|import\s*\()\s*["\']((?:https?:)?//[^"\']+)', body
        ):
            found.append(m.group(1))
    return found


def build(
    run: Optional[PathLike] = "latest",
    out: PathLike = SLIDES_DIR / "index.html",
    runs_dir: PathLike = "runs",
    notebook_out: Optional[PathLike] = None,
    bench_json: Optional[PathLike] = None,
    card_json: Optional[PathLike] = CARD_FIGURES,
    deck_file: PathLike = DECK_FILE,
    reveal_dir: PathLike = REVEAL_DIR,
    allow_no_run: bool = True,
    log=print,
) -> Path:
    """Build the deck from ``run`` (a folder, or ``"latest"`` in ``runs_dir``) into ``out``.

    The slides notebook goes to ``notebook_out`` (default ``<run>/slides.ipynb``, or next to ``out``
    without a run). ``bench_json`` defaults to ``<runs_dir>/bench/speed.json``, or, where ``make bench`` has
    not written one, the table committed in ``benchmarks/results/speed_cpu.json``. Returns the HTML path.
    """
    import nbformat

    try:
        run_dir: Optional[Path] = find_run(run, runs_dir)
    except FileNotFoundError as exc:
        if run not in (None, "latest") or not allow_no_run:
            raise
        log(f"warning: {exc}; building the deck with placeholders")
        run_dir = None
    info = read_run(run_dir)
    deck = load_deck(deck_file)
    bench = Path(bench_json) if bench_json is not None else Path(runs_dir) / "bench" / "speed.json"
    if bench_json is None and not bench.is_file():
        bench = SHIPPED_BENCH  # the table measured on the project's own CPU, committed with the benchmark
    nb = build_notebook(
        info,
        deck,
        paper=_deck_paper(Path(deck_file)),
        bench_json=bench,
        card_json=Path(card_json) if card_json is not None else None,
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    nb_path = (
        Path(notebook_out)
        if notebook_out
        else (run_dir / "slides.ipynb" if run_dir else out.with_suffix(".ipynb"))
    )
    nbformat.write(nb, nb_path)
    out.write_text(to_html(nb, reveal_dir=reveal_dir), encoding="utf-8")
    log(
        f"slides notebook: {nb_path}\ndeck: {out} ({len(nb.cells)} slides, "
        f"{out.stat().st_size / 1e6:.1f} MB, from run {run_dir or 'none'})"
    )
    return out


# ---------------------------------------------------------------------------------------- vendoring
def vendor_reveal(version: str = REVEAL_VERSION, dest: PathLike = REVEAL_DIR) -> Path:
    """Refresh ``slides/reveal.js`` from the npm registry (``npm pack reveal.js@<version>``): keeps
    only ``REVEAL_FILES``. Needs ``npm`` and the network; the deck build itself needs neither."""
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError(
            "npm is not installed: it is needed to download reveal.js from the npm registry"
        )
    dest = Path(dest)
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [npm, "pack", f"reveal.js@{version}"], cwd=tmp, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"npm pack reveal.js@{version} failed:\n{done.stderr}")
        tarballs = list(Path(tmp).glob("reveal.js-*.tgz"))
        if len(tarballs) != 1:
            raise RuntimeError(f"npm pack reveal.js@{version} produced {tarballs}")
        with tarfile.open(tarballs[0]) as tar:
            for rel in REVEAL_FILES:
                member = tar.getmember(f"package/{rel}")
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
    return dest


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.slides",
        description="Build the course deck (slides/index.html) from a course run.",
    )
    parser.add_argument(
        "--run", default="latest", help="run folder, or 'latest' (default) in --runs-dir"
    )
    parser.add_argument("--runs-dir", default="runs", help="where the runs are (default: runs/)")
    parser.add_argument(
        "--out",
        default=str(SLIDES_DIR / "index.html"),
        help="HTML file (default: slides/index.html)",
    )
    parser.add_argument(
        "--notebook", default=None, help="slides notebook (default: <run>/slides.ipynb)"
    )
    parser.add_argument(
        "--bench", default=None, help="speed benchmark JSON (default: <runs-dir>/bench/speed.json)"
    )
    parser.add_argument(
        "--update-reveal",
        metavar="VERSION",
        default=None,
        help="re-vendor reveal.js VERSION from npm into slides/reveal.js and exit",
    )
    args = parser.parse_args(argv)
    if args.update_reveal:
        print(f"reveal.js {args.update_reveal} -> {vendor_reveal(args.update_reveal)}")
        return 0
    try:
        build(
            args.run,
            args.out,
            runs_dir=args.runs_dir,
            notebook_out=args.notebook,
            bench_json=args.bench,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
