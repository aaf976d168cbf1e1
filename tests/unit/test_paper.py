"""samkit.paper: every published number has a source, and the tables are consistent with what the paper says
about them (the checks a careless transcription would fail)."""
from __future__ import annotations

import pytest

from samkit import paper


def test_every_fact_names_its_source():
    facts = paper.facts()
    assert len(facts) >= 20
    for name, fact in facts.items():
        assert fact.source.strip(), name
        cite = fact.cite()
        assert fact.source in cite
        if name.startswith("COURSE"):
            assert "course presentation" in fact.source and fact.origin == "", name
        else:
            assert cite.startswith(paper.PAPER_SHORT), name


def test_fig9a_counts_give_the_papers_16_of_23():
    wins, total = paper.point_wins()
    assert (wins, total) == (paper.POINT_VS_RITM.value["sam_higher"], paper.POINT_VS_RITM.value["datasets"]) == (16, 23)
    deltas = paper.POINT_VS_RITM.value["delta_by_dataset"]
    assert max(deltas.values()) == pytest.approx(46.9)   # "by as much as ~47 IoU" (§7.1)
    assert "NDISPark" in deltas and len(set(deltas)) == 23


def test_table1_shares_add_up():
    rows = paper.GEOGRAPHY.value
    regions = [r for r in rows if "income" not in r["region"]]
    income = [r for r in rows if "income" in r["region"]]
    for key in ("share_sa1b", "share_coco", "share_open_images"):
        assert sum(r[key] for r in regions) == pytest.approx(1.0, abs=0.002), key
        assert sum(r[key] for r in income) == pytest.approx(1.0, abs=0.002), key
    per_image = [r["masks"] / r["images"] for r in regions]
    lo, hi = paper.MASKS_PER_IMAGE_REGION.value
    assert lo - 1 <= min(per_image) and max(per_image) <= hi + 1   # "94-108", from rounded counts


def test_data_engine_totals():
    stages = {r["stage"]: r for r in paper.DATA_ENGINE.value}
    human = stages["assisted-manual"]["masks"] + stages["semi-automatic"]["masks"]
    assert human == pytest.approx(10.2e6)                           # "for a total of 10.2M masks"
    assert stages["fully automatic"]["masks"] == paper.SA1B.value["masks"]
    assert paper.SA1B.value["masks"] / paper.SA1B.value["images"] == pytest.approx(paper.SA1B.value["masks_per_image"])


def test_edge_table_and_recipes():
    rows = {r["method"]: r for r in paper.edge_rows()}
    assert rows["SAM"]["ODS"] == 0.768 and rows["HED"]["ODS"] == 0.788 and rows["Sobel filter"]["OIS"] is None
    assert rows["HED"]["trained on BSDS"] and not rows["SAM"]["trained on BSDS"]
    b, h = paper.TRAIN_VIT_B.value, paper.TRAIN_VIT_H.value
    assert (b["iterations"], b["batch_images"], b["layer_decay"], b["drop_path"]) == (180_000, 128, 0.6, 0.6)
    assert (h["iterations"], h["batch_images"], h["lr"], h["warmup"]) == (90_000, 256, 8e-4, 250)
    course = paper.COURSE_DECODER_RUN.value
    assert course["layer_decay"] is None and course["drop_path"] is None and course["lr_decay_per_epoch"] == 0.6
