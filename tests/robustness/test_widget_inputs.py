"""The click widget: a save that fails writes neither file, a folder is not a file name, and a malformed
mouse event shows an error in the status line instead of escaping the handler."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import samkit
from samkit.widgets import ClickSegmenter, PointPrompt

H, W = 60, 80


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return samkit.Predictor(samkit.build_model("tiny").eval())


@pytest.fixture
def seg(predictor):
    image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    s = ClickSegmenter(predictor, image, display_size=(2 * W, 2 * H))
    s.handle_click(80, 60)
    yield s
    s.close()


def test_a_failed_save_leaves_neither_file(seg, tmp_path):
    (tmp_path / "out.json").mkdir()  # the JSON cannot be written there
    with pytest.raises(IsADirectoryError, match="out.json"):
        seg.save(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_save_that_fails_while_writing_leaves_neither_file(seg, tmp_path, monkeypatch):
    from pathlib import Path

    real = Path.write_bytes

    def full_disk(self, data):
        if self.name.startswith(".out.json"):
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk)
    with pytest.raises(OSError, match="No space"):
        seg.save(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_save_replaces_an_earlier_pair_completely(seg, tmp_path):
    seg.save(tmp_path / "out")
    seg.keep()
    png, js = seg.save(tmp_path / "out.png")
    assert len(json.loads(js.read_text())["annotations"]) == 1 and png.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.png"]


@pytest.mark.parametrize("make", [lambda d: str(d) + "/", lambda d: d])
def test_a_folder_is_not_taken_as_a_file_name(seg, tmp_path, make):
    """Before: save("dir/") wrote dir.png and dir.json beside the folder."""
    folder = tmp_path / "dir"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder.*dir/masks"):
        seg.save(make(folder))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"] and not list(folder.iterdir())


@pytest.mark.parametrize("event", [
    {"type": "mousedown", "relativeX": "left", "relativeY": 3},
    {"type": "mouseup", "relativeX": None, "relativeY": 3},
    {"type": "mousedown", "relativeX": 5, "relativeY": 5, "button": "middle"},
    {"type": "mousemove", "relativeX": float("nan"), "relativeY": 3},
    {"type": "mousedown", "relativeX": 5, "relativeY": 5, "boundingRectWidth": "wide"},
    ["mousedown", 5, 5],
])
def test_malformed_mouse_events_are_reported_not_raised(seg, event):
    before = list(seg.prompts)
    seg._on_dom_event(event)  # must not raise
    assert "malformed mouse event" in seg.status.value
    assert seg.prompts == before
    # the widget still works afterwards
    seg._on_dom_event({"type": "mousedown", "relativeX": 40, "relativeY": 30, "button": 0})
    seg._on_dom_event({"type": "mouseup", "relativeX": 40, "relativeY": 30})
    seg.wait(10)
    assert seg.prompts[-1] == PointPrompt(20.0, 15.0, 1)
