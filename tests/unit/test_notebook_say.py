"""Session.say: the sentence shown is the one its stored numbers re-render to."""
from __future__ import annotations

import json

import torch

from samkit import narrate
from samkit.notebook_utils import Session


def test_say_renders_from_the_numbers_as_stored(tmp_path, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, metadata=None: shown.append((obj.data, metadata)))

    def listing(names: dict) -> str:  # a sentence that depends on a dict's order
        return ", ".join(names)

    monkeypatch.setattr(narrate, "listing", listing, raising=False)
    S = Session(model=None, model_name="tiny", weights="embedded", device=torch.device("cpu"), out_dir=tmp_path,
                seed=0)
    S.say(narrate.listing, names={"photos": 0.2, "coins": -0.03})   # built in one order; stored JSON sorts keys
    text, metadata = shown[0]
    stored = json.loads(json.dumps(metadata["samkit"], sort_keys=True))
    assert text == "coins, photos" == listing(**stored["data"])
    assert json.loads((tmp_path / "claims.json").read_text())[0]["text"] == text
