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
    colours = np.round(viz.random_colors(3, 0) * 255)
    # the largest mask gets the first colour; small masks drawn on top keep theirs
    assert np.array_equal(overlay[6, 6, :3], colours[0]) and np.array_equal(overlay[12, 12, :3], colours[1])
    assert overlay[6, 6, 3] == round(0.55 * 255) and overlay[0, 0, 3] == 0
    records = [{"segmentation": m, "area": int(m.sum())} for m in s["masks"]]
    fig2, ax2 = plt.subplots()
    viz.show_anns(records, ax2)
    assert np.array_equal(ax2.images[-1].get_array()[12, 12, :3], colours[1])
    from pycocotools import mask as mask_utils

    rles = []
    for m in s["masks"]:
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rles.append({"segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})
    fig3, ax3 = plt.subplots()
    viz.show_anns(rles, ax3)                          # COCO RLE with text counts, as JSON files hold them
    assert np.array_equal(ax3.images[-1].get_array(), ax2.images[-1].get_array())
    viz.show_sample(s, max_masks=2, boxes=True)
    plt.close("all")


def test_mask_overlay_and_blend():
    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:5, 1:7] = True
    masks[1, 2:4, 3:5] = True
    rgba = viz.mask_overlay(masks, [(255, 0, 0), (0, 0, 255)], 0.5, outline=1)
    assert rgba.shape == (6, 8, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[0, 0]) == (0, 0, 0, 0)
    assert tuple(rgba[1, 1]) == (255, 0, 0, 255)                  # the first mask's outline, opaque
    assert tuple(rgba[2, 2]) == (255, 0, 0, 128)                  # its inside
    assert tuple(rgba[2, 3]) == (0, 0, 255, 255)                  # the second mask, on top
    image = np.full((6, 8, 3), 100, np.uint8)
    out = viz.blend(image, rgba)
    assert tuple(out[0, 0]) == (100, 100, 100) and tuple(out[1, 1]) == (255, 0, 0)
    assert tuple(out[2, 2]) == (178, 50, 50)                      # 100 * (1 - 128/255) + 255 * 128/255, rounded
    many = viz.mask_overlay([masks[0]] * 200, np.zeros((200, 3)), 1.0)   # more colours than uint8 indices
    assert many.shape == (6, 8, 4) and many[2, 2, 3] == 255


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
    assert [line.get_label() for line in ax.lines] == ["loss"]
    with pytest.raises(ValueError, match="nope"):
        viz.plot_curves(records, keys=["nope"])
    plt.close("all")


def test_distinct_colors_differ():
    for n in (1, 3, 10, 25):
        c = viz.distinct_colors(n)
        assert c.shape == (n, 3) and c.min() >= 0 and c.max() <= 1
        gaps = np.abs(c[:, None] - c[None]).sum(-1) + np.eye(n) * 9
        assert gaps.min() > 0.05, n  # no two alike


def test_contrasting_color_avoids_the_colour_under_the_mask():
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :15] = (40, 60, 230)    # a blue object
    image[:, 15:] = (250, 220, 10)   # a yellow one
    left, right = np.zeros((20, 30), bool), np.zeros((20, 30), bool)
    left[:, :15], right[:, 15:] = True, True
    on_blue, on_yellow = viz.contrasting_color(image, left), viz.contrasting_color(image, right)
    assert np.linalg.norm(on_blue - image[0, 0] / 255) > 0.9 and on_blue[2] < 0.5   # not blue
    assert np.linalg.norm(on_yellow - image[0, 20] / 255) > 0.9                       # not yellow
    np.testing.assert_allclose(viz.contrasting_color(image.astype(float) / 255, left), on_blue)  # float images
    np.testing.assert_allclose(viz.contrasting_color(image, np.zeros((20, 30), bool)), viz.OVERLAY_COLORS[0])
    with pytest.raises(ValueError, match="same size"):
        viz.contrasting_color(image, np.zeros((20, 29), bool))
