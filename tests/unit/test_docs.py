"""The README and docs/ point at files that exist: relative links, configs and benchmarks they name."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    text = page.read_text()
    links = [t for t in re.findall(r"\]\(([^)#\s]+)", text) if "://" not in t]
    missing = [t for t in links if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_configs_and_benchmarks_exist(page):
    text = page.read_text()
    named = set(re.findall(r"(?:configs|benchmarks)/[\w.-]+\.(?:yaml|py)", text))
    missing = sorted(n for n in named if not (ROOT / n).exists())
    assert not missing, f"{page.name} names files that do not exist: {missing}"


def test_the_readme_links_the_embedded_models_record():
    assert "](docs/embedded_model.md)" in (ROOT / "README.md").read_text()


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_section_links_name_a_heading(page):
    bad = []
    for target, anchor in re.findall(r"\]\(([^)#\s]*\.md)#([^)\s]+)\)", page.read_text()):
        headings = re.findall(r"^#+ (.+)$", (page.parent / target).read_text(), flags=re.M)
        if anchor not in {_slug(h) for h in headings}:
            bad.append(f"{target}#{anchor}")
    assert not bad, f"{page.name} links to sections that do not exist: {bad}"
