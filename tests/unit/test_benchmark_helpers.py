"""The small helpers the zoom and mask-choice benchmarks measure with: padded crops pasted back, the half-size
canvas, and the table of quality estimates."""
import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


box_zoom = _load("box_zoom")
mask_choice = _load("mask_choice")


def _image(h=30, w=40):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_a_window_past_the_photo_is_padded_with_its_mean_colour():
    image = _image()
    window = box_zoom.crop_window((30, 20, 39, 29), image.shape, factor=3.0, min_side=8, clip=False)
    assert window[2] > 40 and window[3] > 30  # it reaches past the right and bottom edges
    out = box_zoom.crop(image, window)
    a, b, e, d = window
    assert out.shape == (d - b, e - a, 3)
    np.testing.assert_array_equal(out[:30 - b, :40 - a], image[b:, a:])
    np.testing.assert_array_equal(out[-1, -1], image.reshape(-1, 3).mean(0).round().astype(np.uint8))
    clipped = box_zoom.crop_window((30, 20, 39, 29), image.shape, factor=3.0, min_side=8)
    assert clipped[2] == 40 and clipped[3] == 30


def test_a_mask_on_the_crop_pastes_back_where_it_came_from():
    image = _image()
    truth = np.zeros(image.shape[:2], dtype=bool)
    truth[22:29, 31:38] = True
    window = box_zoom.crop_window((31, 22, 37, 28), image.shape, factor=4.0, min_side=8, clip=False)
    a, b, e, d = window
    on_crop = np.zeros((d - b, e - a), dtype=bool)
    on_crop[22 - b:29 - b, 31 - a:38 - a] = True
    on_crop[-1, -1] = True  # outside the photo: dropped
    np.testing.assert_array_equal(box_zoom.paste(on_crop, window, image.shape), truth)


def test_the_half_size_canvas_holds_the_photo_shrunk_in_its_top_left():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    image[:, 15:] = 200  # right half bright
    out = box_zoom.half_size(image)
    assert out.shape == image.shape
    assert (out[:10, :7] == 0).all() and (out[:10, 8:15] == 200).all()
    assert (out[10:] == 100).all() and (out[:, 15:] == 100).all()  # the rest: the mean colour


def test_the_estimate_table_scores_each_signal_against_the_true_iou():
    rng = np.random.default_rng(1)

    def rows(n):
        out = []
        for _ in range(n):
            true = rng.uniform(0, 1, 3)
            out.append({"estimates": {"true IoU": list(true), "exact": list(true),
                                      "off by 0.2": list(np.clip(true + 0.2, 0, 1.2)),
                                      "noise": list(rng.uniform(0, 1, 3))}})
        return out

    lines = mask_choice.estimate_table({"scenes": rows(40), "photos": rows(20)}, fit_on="scenes")
    assert lines[0].startswith("| data | masks |") and "linear fit" in lines[0]
    scenes = [c.strip() for c in lines[2].split("|")[1:-1]]
    assert scenes[0] == "scenes" and scenes[1] == "120"
    assert scenes[3] == "0.000 / +1.00"  # the exact estimate
    assert scenes[4].startswith("0.200")
    assert scenes[6].startswith("0.000")  # the fit recovers the exact column


def test_the_zoom_benchmark_scores_every_object_of_a_scene():
    import samkit
    from samkit.model_card import held_out_scenes

    data = held_out_scenes(1, min_fraction=0.005)
    rows = box_zoom.score(samkit.Predictor(samkit.load_model("tiny")), data, [1.5], pad=True, half=True)
    assert len(rows) == len(data[0]["masks"]) > 1
    for row in rows:
        assert row["click best of 3"] >= row["click"] - 1e-9
        assert all(0.0 <= row[k] <= 1.0 for k in ("box", "box, crop 1.5x", "click best of 3, whole at half size",
                                                  "click most confident, whole at half size"))
