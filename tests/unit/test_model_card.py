"""The model card command on the shipped weights, at a tiny size (the real card evaluates 40 scenes)."""
import json

import numpy as np
import torch

import samkit
from samkit import model_card


def test_grid_ceiling_by_hand():
    block = np.zeros((64, 64), bool)
    block[16:32, 32:48] = True          # exactly 4 x 4 cells of a 16 x 16 grid: survives, corners rounded
    speck = np.zeros((64, 64), bool)
    speck[5, 5] = True                  # 1/16 of a cell: pooled below 0.5, lost
    data = [{"masks": np.stack([block, speck])}]
    kept = model_card.grid_ceiling_miou(data, 16, max_objects=1)
    assert 0.95 < kept < 1.0
    assert model_card.grid_ceiling_miou(data, 16) == kept / 2
    assert model_card.grid_ceiling_miou(data, 64) == 1.0  # one cell per pixel: nothing lost


def test_hours_text():
    assert model_card.hours_text(45 * 60) == "45 min"
    assert model_card.hours_text(4 * 3600 + 50 * 60 + 10) == "4 h 50 min"


def test_card_written_from_a_checkpoint(tmp_path):
    import samkit

    ckpt = tmp_path / "model.pth"
    torch.save(samkit.load_model("tiny").state_dict(), ckpt)
    run = tmp_path / "tiny_phase9"
    run.mkdir()
    (run / "config.yaml").write_text("model: tiny\nlr: 0.001\nbatch_size: 2\nimg_size: 512\n"
                                     "data: {kind: scenes, n_images: 8, image_size: 512, seed: 3}\n")
    (run / "metrics.jsonl").write_text("".join(json.dumps({"kind": "train", "step": i, "loss": 1.0 - 0.1 * i,
                                                           "time": 30.0 * i}) + "\n" for i in range(1, 4)))
    out = tmp_path / "card"
    model_card.main([str(ckpt), "--n-scenes", "1", "--max-objects", "2", "--out", str(out), "--runs", str(run),
                     "--photos", "1", "--ambiguity-scenes", "1"])
    text = (out / "MODEL_CARD.md").read_text()
    assert "`samkit train configs/tiny_phase9.yaml`" in text and "64 x 64 grid" in text
    assert not (out / "sam_tiny.pt").exists()  # installed only with --install
    figures = json.loads((out / "card" / "figures.json").read_text())
    assert 0 <= figures["scenes"]["1pt_oracle"] <= 1 and figures["scenes"]["objects"] <= 2
    assert figures["coins"]["objects"] > 0 and (out / "card" / "coins.jpg").is_file()
    assert "](card/coins.jpg)" in text and "(green star)" in text
    real = figures["real_photos"]
    assert real["images"] == 1 and real["objects"] >= 1 and 0 <= real["box_mIoU"] <= 1 and 0 <= real["iou_mae"] <= 1
    assert 0 <= figures["everything"]["recall"] <= 1 and figures["ambiguity"]["cases"] >= 0
    assert (out / "card" / "calibration.png").exists() and "Real photos it never saw" in text
    # the box answered by SAM 2's single-mask rule, and by mask token 0 alone beside it
    assert 0 <= real["box_token0_mIoU"] <= 1
    assert f"Mask token 0 alone, as SAM 1 answers, scores {real['box_token0_mIoU']:.3f}" in text
    cut = figures["real_photos_refined"]  # the same objects, masks cut along the photo's edges
    assert cut["objects"] == real["objects"] and 0 <= cut["box_mIoU"] <= 1
    assert f"| cut along the photo's edges (`refine=True`) | {cut['1pt_oracle']:.3f} |" in text
    # the size table reads box_prompts' own per-object IoUs: its bands average back to the box figure
    bands = real["by_size"]
    assert sum(b["objects"] for b in bands) == real["objects"]
    assert abs(sum(b["box_mIoU"] * b["objects"] for b in bands) / real["objects"] - real["box_mIoU"]) < 1e-6


def test_what_it_is_describes_the_carded_model():
    from samkit.model import get_config

    conv = model_card.what_it_is(512, 64, 4_600_000)
    assert "convolutional image encoder" in conv and "48, 96, 160, 224" in conv
    vit = model_card.what_it_is(512, 32, 5_000_000, config=get_config("tiny_v1"))
    assert "ViT image encoder" in vit and "6 blocks" in vit and "convolutional" not in vit
    assert "`tiny_v1` configuration" in vit and "`tiny` configuration" in conv


def test_nested_pairs_finds_parts_inside_wholes():
    whole = np.zeros((8, 8), bool)
    whole[1:7, 1:7] = True
    part = np.zeros((8, 8), bool)
    part[2:4, 2:4] = True
    other = np.zeros((8, 8), bool)
    other[0, 0] = True
    masks = np.stack([part, whole, other])
    assert model_card.nested_pairs(masks) == [(0, 1)]
    almost = whole.copy()
    almost[1, 1] = False
    assert model_card.nested_pairs(np.stack([whole, almost])) == []  # 35 of 36 pixels: the same object



def test_quick_table_scores_the_shipped_weights(capsys):
    rows = model_card.quick_table(["shipped"], max_photos=1, ambiguity_scenes=1, scenes=1, ambiguity_coherent=1.0)
    printed = capsys.readouterr().out
    assert "| shipped |" in printed and "1 click oracle" in printed and "scenes: 1 click oracle, box" in printed
    assert "drawn as one object (1)" in printed and rows[0]["ambiguity_coherent"]["cases"] >= 0
    (row,) = rows
    scenes = row["scenes"]
    assert scenes["objects"] >= 1 and 0 <= scenes["1pt_oracle"] <= 1 and 0 <= scenes["box_mIoU"] <= 1
    assert row["images"] == 1 and row["objects"] >= 1
    assert 0 <= row["1pt_confident"] <= row["1pt_oracle"] <= 1 and 0 <= row["box_fill_mIoU"] <= 1
    assert row["everything"]["photos"] == 1 and row["ambiguity"]["cases"] >= 0


def test_shipped_weights_are_float16_and_load_into_a_float32_model(tmp_path):
    from samkit import checkpoints

    model = samkit.load_model("tiny")
    shipped = model_card.shipped_state_dict(model)
    assert all(v.dtype == torch.float16 for v in shipped.values() if v.is_floating_point())
    path = tmp_path / "sam_tiny.pt"
    torch.save(shipped, path)
    full = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    assert path.stat().st_size < 0.6 * full  # half the bytes (plus the file's own overhead)
    again = samkit.build_model("tiny")
    checkpoints.load_into(again, path)
    for k, v in again.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32
            assert torch.allclose(v, model.state_dict()[k], rtol=1e-3, atol=1e-4), k


def test_install_writes_the_shipped_file_and_measures_its_rounded_weights(tmp_path):
    from samkit import checkpoints

    model = samkit.build_model("tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 1e-2)    # values that float16 cannot hold exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (tmp_path / "sam_tiny.pt").write_bytes(b"the old weights")
    model_card.install(model, tmp_path / "sam_tiny.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["sam_tiny.pt"]  # no temporary file left behind
    shipped = torch.load(tmp_path / "sam_tiny.pt", weights_only=True)
    again = samkit.build_model("tiny")
    checkpoints.load_into(again, tmp_path / "sam_tiny.pt")
    changed = 0
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            assert v.dtype == torch.float32 and shipped[k].dtype == torch.float16
            assert torch.equal(v, shipped[k].float()) and torch.equal(v, again.state_dict()[k]), k
            changed += not torch.equal(v, before[k])
    assert changed > 0  # the model now holds the rounded weights, not the ones it had


def test_ambiguity_on_clipart_scenes(tmp_path, monkeypatch):
    from samkit.data import clipart

    from .test_data_clipart import _folder

    folder = _folder(tmp_path)
    monkeypatch.setattr(clipart, "fetch_clipart", lambda *a, **k: folder)  # no network: a drawing made here
    model = samkit.load_model("tiny")
    r = model_card.ambiguity_rate(model, n_scenes=2, size=128, clipart_prob=1.0)
    plain = model_card.ambiguity_rate(model, n_scenes=2, size=128)
    assert r["cases"] >= 1 and 0 <= r["whole"] <= 1 and 0 <= r["part"] <= 1
    assert r != plain  # other scenes: their objects made of parts are the drawing
