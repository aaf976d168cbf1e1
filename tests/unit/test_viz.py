import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from samkit import viz  # noqa: E402


def _sample():
    image = np.zeros((40, 50, 3), np.uint8)
    masks = np.zeros((3, 40, 50), bool)
    masks[0, 5:30, 5:40] = True
    masks[1, 10:15, 10:15] = True
    masks[2, 20:25, 30:35] = True
    return {"image": image, "masks": masks, "boxes": np.array([[5, 5, 40, 30]] * 3, float), "file": "x/a.jpg"}


def test_mask_points_box_and_png(tmp_path):
    s = _sample()
    fig, ax = plt.subplots()
    ax.imshow(s["image"])
    viz.show_mask(torch.from_numpy(s["masks"][0]), ax, color=(1, 0, 0))
    viz.show_points(np.array([[10, 12], [30, 22], [0, 0]]), np.array([1, 0, -1]), ax)
    viz.show_box(np.array([5, 5, 40, 30]), ax)
    assert len(ax.collections) >= 2 and len(ax.patches) == 1
    path = viz.save_figure(fig, tmp_path / "sub" / "fig")
    assert path.suffix == ".png" and path.read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)
    with pytest.raises(ValueError):
        viz.show_points(np.zeros((2, 2)), np.zeros(3))


def test_show_anns_largest_first_and_records():
    s = _sample()
    fig, ax = plt.subplots()
    viz.show_anns(s["masks"], ax, image=s["image"], seed=0)
    overlay = ax.images[-1].get_array()
    colours = viz.random_colors(3, 0)
    # the largest mask gets the first colour; small masks drawn on top keep theirs
    assert np.allclose(overlay[6, 6, :3], colours[0]) and np.allclose(overlay[12, 12, :3], colours[1])
    records = [{"segmentation": m, "area": int(m.sum())} for m in s["masks"]]
    fig2, ax2 = plt.subplots()
    viz.show_anns(records, ax2)
    assert np.allclose(ax2.images[-1].get_array()[12, 12, :3], colours[1])
    viz.show_sample(s, max_masks=2, boxes=True)
    plt.close("all")


def test_plot_curves_from_records_and_csv(tmp_path):
    records = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(10)] + [{"step": 9, "miou": 0.5}]
    ax = viz.plot_curves(records, keys=["loss", "miou"])
    assert len(ax.lines) == 2
    path = tmp_path / "log.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["step", "loss"])
        w.writeheader()
        for r in records[:10]:
            w.writerow(r)
    ax = viz.plot_curves(path)
    assert [l.get_label() for l in ax.lines] == ["loss"]
    with pytest.raises(ValueError, match="nope"):
        viz.plot_curves(records, keys=["nope"])
    plt.close("all")
