"""The shipped weights segment: clicks and boxes on a held-out generated scene (the full measurement, on
real photos too, is `python -m samkit.model_card`)."""
import numpy as np
import pytest
import torch

import samkit
from samkit.data.photos import tight_boxes
from samkit.evaluate import first_click
from samkit.model_card import held_out_scenes


@pytest.fixture(scope="module")
def scenes():
    """The 4 largest objects of each of 2 held-out scenes (seed 1 at 512 px, never trained on)."""
    out = []
    for item in held_out_scenes(2, size=512, min_area=1000):
        masks = item["masks"]
        order = np.argsort(masks.reshape(len(masks), -1).sum(1))[::-1][:4]
        out.append((item["image"], masks[order]))
    return out


def scores(model, scenes):
    """Mean IoU of the best of 3 masks for a centre click, and of the mask for the tight box."""
    p = samkit.Predictor(model, cache=False)
    click, box = [], []
    for image, masks in scenes:
        p.set_image(image)
        for gt in masks:
            click.append(first_click(p, gt)["ious"].max())
            m, _, _ = p.predict(box=tight_boxes(gt[None])[0], multimask_output=False)
            box.append((m[0] & gt).sum() / (m[0] | gt).sum())
    return float(np.mean(click)), float(np.mean(box))


def test_shipped_weights_segment_held_out_scenes(scenes):
    assert sum(len(m) for _, m in scenes) == 8
    click, box = scores(samkit.load_model("tiny"), scenes)
    torch.manual_seed(0)
    click0, box0 = scores(samkit.build_model("tiny").eval(), scenes)
    print(f"shipped: click {click:.3f}, box {box:.3f}; random weights: click {click0:.3f}, box {box0:.3f}")
    assert click >= 0.55 and box >= 0.60, (click, box)
    assert click > click0 + 0.2 and box > box0 + 0.2, (click, click0, box, box0)
