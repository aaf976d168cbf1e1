"""Everything mode accepts what the predictor accepts, checks its settings, and keeps its memory bounded
on large photos (the batch size follows the image size)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import samkit
from samkit.automatic import DEFAULT_MEMORY_BUDGET, AutomaticMaskGenerator, batch_size_for


class _Identity:
    @staticmethod
    def apply_coords(coords, original_size):
        return np.asarray(coords, dtype=np.float64).copy()


class SquarePredictor:
    """Each point gives three squares around it (half sides 40, 80, 160 px) at full resolution, cheaply."""

    def __init__(self):
        self.model = SimpleNamespace(mask_threshold=0.0)
        self.transform = _Identity()
        self.device = torch.device("cpu")
        self.batches = []

    def set_image(self, image):
        self.size = image.shape[:2]

    def reset_image(self):
        self.size = None

    def predict_torch(self, point_coords, point_labels, multimask_output=True, return_logits=False):
        h, w = self.size
        self.batches.append(len(point_coords))
        logits = torch.full((len(point_coords), 3, h, w), -5.0)
        for i, (x, y) in enumerate(point_coords[:, 0].round().long().tolist()):
            for k, half in enumerate((40, 80, 160)):
                logits[i, k, max(0, y - half):y + half, max(0, x - half):x + half] = 5.0
        return logits, torch.full((len(point_coords), 3), 0.95), None


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return samkit.build_model("tiny").eval()


def test_grayscale_rgba_and_pil_images_are_accepted_like_the_predictor(tiny):
    rgb = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    gen = AutomaticMaskGenerator(tiny, points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0,
                                 progress=False)
    reference = gen.generate(rgb)
    rgba = np.concatenate([rgb, np.full((48, 64, 1), 255, np.uint8)], axis=2)
    for image in (rgba, Image.fromarray(rgb), Image.fromarray(rgba)):
        records = gen.generate(image)
        assert [r["bbox"] for r in records] == [r["bbox"] for r in reference]
    gray = gen.generate(rgb[..., 0])
    assert all(r["segmentation"].shape == (48, 64) for r in gray)
    with pytest.raises(TypeError, match="uint8"):
        gen.generate(rgb.astype(np.float64))


@pytest.mark.parametrize("kwargs, name", [
    (dict(pred_iou_thresh=float("nan")), "pred_iou_thresh"),
    (dict(stability_score_thresh=2.0), "stability_score_thresh"),
    (dict(box_nms_thresh=-0.1), "box_nms_thresh"),
    (dict(stability_score_offset=float("inf")), "stability_score_offset"),
    (dict(min_mask_region_area="100"), "min_mask_region_area"),
    (dict(memory_budget=0), "memory_budget"),
])
def test_settings_must_be_finite_and_in_range(kwargs, name):
    with pytest.raises(ValueError, match=name):
        AutomaticMaskGenerator(SquarePredictor(), **kwargs)


def test_batch_size_follows_the_image_size():
    assert batch_size_for((1024, 1024), (1024, 1024), 64, DEFAULT_MEMORY_BUDGET) == 22
    assert batch_size_for((3000, 4000), (3000, 4000), 64, DEFAULT_MEMORY_BUDGET) == 1
    assert batch_size_for((480, 640), (480, 640), 64, DEFAULT_MEMORY_BUDGET) == 64
    assert batch_size_for((3000, 4000), (3000, 4000), 64, None) == 64
    assert batch_size_for((30000, 40000), (30000, 40000), 64, 1) == 1  # never below one point


def test_large_photo_is_processed_in_bounded_memory(limited):
    """16 points on a megapixel image in one batch (the old fixed batch size) hold about 600 MB of logits
    and masks; with a 96 MB budget the batches shrink to 2 points and the child stays under 384 MiB.
    (benchmarks/amg_memory.py measures the default budget on a 12-megapixel photo.)"""
    image = np.zeros((1000, 1000, 3), np.uint8)
    budget = 96 << 20

    def run():
        predictor = SquarePredictor()
        gen = AutomaticMaskGenerator(predictor, points_per_side=4, output_mode="coco_rle", progress=False,
                                     memory_budget=budget)
        records = gen.generate(image)
        return len(records), max(predictor.batches)

    outcome, result = limited(run, budget=384 << 20)
    assert outcome == "returned", result
    n_masks, largest_batch = eval(result)
    assert n_masks > 0 and largest_batch == 2 == batch_size_for((1000, 1000), (1000, 1000), 64, budget)


def test_the_batch_size_does_not_change_the_result():
    image = np.zeros((300, 400, 3), np.uint8)
    kw = dict(points_per_side=4, progress=False, output_mode="coco_rle")
    whole = AutomaticMaskGenerator(SquarePredictor(), memory_budget=None, **kw).generate(image)
    small = SquarePredictor()
    split = AutomaticMaskGenerator(small, memory_budget=3 * 300 * 400 * 15 * 3, **kw).generate(image)
    assert max(small.batches) == 3 and whole == split
