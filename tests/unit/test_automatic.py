"""AutomaticMaskGenerator: helpers, filters and records (a scripted predictor), and the tiny model end to end."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision.ops import masks_to_boxes

import samkit
from samkit import amg_utils
from samkit.automatic import AutomaticMaskGenerator, render_masks


# ----------------------------------------------------------------------------------------------
# A scripted predictor: each point gives three discs centred on it (radii 6, 12, 1000 px) with
# logits = radius - distance, and predicted IoUs 0.9, 0.8, 0.7. No network, exact expectations.
# ----------------------------------------------------------------------------------------------
class _Identity:
    @staticmethod
    def apply_coords(coords, original_size):
        return np.asarray(coords, dtype=np.float64).copy()


class DiscPredictor:
    radii = (6.0, 12.0, 1000.0)
    ious = (0.9, 0.8, 0.7)

    def __init__(self):
        self.model = SimpleNamespace(mask_threshold=0.0)
        self.transform = _Identity()
        self.device = torch.device("cpu")
        self.size = None
        self.set_calls = []

    def set_image(self, image):
        self.size = image.shape[:2]
        self.set_calls.append(image.shape[:2])

    def reset_image(self):
        self.size = None

    def predict_torch(self, point_coords, point_labels, multimask_output=True, return_logits=False):
        h, w = self.size
        yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing="ij")
        pts = point_coords[:, 0].float()  # B x 2
        dist = ((xx[None] - pts[:, 0, None, None]) ** 2 + (yy[None] - pts[:, 1, None, None]) ** 2).sqrt()
        logits = torch.stack([r - dist for r in self.radii], dim=1)  # B x 3 x H x W
        iou = torch.tensor(self.ious).repeat(len(pts), 1)
        return logits, iou, None


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return samkit.build_model("tiny").eval()


def _blank(h=64, w=96):
    return np.full((h, w, 3), 90, dtype=np.uint8)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def test_point_grid_is_cell_centres():
    g = amg_utils.build_point_grid(2)
    np.testing.assert_allclose(g, [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    grids = amg_utils.build_layer_point_grids(8, 2, 2)
    assert [len(x) for x in grids] == [64, 16, 4]


def test_point_grid_matches_official():
    from segment_anything.utils import amg
    for n in (1, 3, 16, 32):
        assert np.array_equal(amg_utils.build_point_grid(n), amg.build_point_grid(n))
    for size, layers in [((480, 640), 1), ((321, 481), 2), ((50, 30), 2)]:
        theirs = amg.generate_crop_boxes(size, layers, 512 / 1500)
        assert amg_utils.generate_crop_boxes(size, layers, 512 / 1500) == theirs


def test_crop_boxes_cover_image():
    boxes, layers = amg_utils.generate_crop_boxes((100, 200), 2, 512 / 1500)
    assert len(boxes) == 1 + 4 + 16 and layers == [0] + [1] * 4 + [2] * 16
    assert boxes[0] == [0, 0, 200, 100]
    for layer in (1, 2):
        covered = np.zeros((100, 200), bool)
        for b, box_layer in zip(boxes, layers):
            if box_layer == layer:
                covered[b[1]:b[3], b[0]:b[2]] = True
        assert covered.all()


def test_boxes_inclusive_and_empty():
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:9] = True
    masks[1, 9, 11] = True
    boxes = amg_utils.masks_to_boxes_xyxy(masks)
    assert boxes[:2].tolist() == masks_to_boxes(masks[:2]).long().tolist() == [[3, 2, 8, 4], [11, 9, 11, 9]]
    assert boxes[2].tolist() == [0, 0, 0, 0]


def test_stability_score_by_hand():
    logits = torch.tensor([[[3.0, 0.5, -0.5, -3.0]]])  # > +1: 1 pixel, > -1: 3 pixels
    assert amg_utils.stability_score(logits, 0.0, 1.0).item() == pytest.approx(1 / 3)


def test_rle_round_trip_and_uncompressed_matches_official():
    rng = np.random.default_rng(0)
    masks = rng.random((4, 7, 9)) > 0.5
    masks[1] = True
    masks[2] = False
    rles = amg_utils.encode_rles(masks)
    for m, r in zip(masks, rles):
        assert np.array_equal(amg_utils.decode_rle(r), m)
        assert amg_utils.rle_area(r) == m.sum()
        un = amg_utils.rle_to_uncompressed(r)
        assert np.array_equal(amg_utils.decode_rle(un), m)
    from segment_anything.utils import amg
    official = amg.mask_to_rle_pytorch(torch.from_numpy(masks))
    assert [amg_utils.rle_to_uncompressed(r) for r in rles] == official


def test_remove_small_regions():
    m = np.zeros((20, 20), bool)
    m[2:12, 2:12] = True
    m[5, 5] = False          # a 1-pixel hole
    m[17:19, 17:19] = True   # a 4-pixel island
    filled, changed = amg_utils.remove_small_regions(m, 5, "holes")
    assert changed and filled[5, 5]
    cleaned, changed = amg_utils.remove_small_regions(filled, 5, "islands")
    assert changed and not cleaned[17:19, 17:19].any() and cleaned[2:12, 2:12].all()
    same, changed = amg_utils.remove_small_regions(cleaned, 5, "islands")
    assert not changed and np.array_equal(same, cleaned)


# ----------------------------------------------------------------------------------------------
# pipeline with the scripted predictor
# ----------------------------------------------------------------------------------------------
def test_records_and_nms_with_discs():
    image = _blank(64, 96)
    gen = AutomaticMaskGenerator(DiscPredictor(), points_per_side=2, pred_iou_thresh=0.75,
                                 stability_score_thresh=0.0, box_nms_thresh=0.7, progress=False)
    records = gen.generate(image)
    # the 0.7-IoU whole-image masks are filtered; the 4 small + 4 medium discs do not overlap enough to merge
    assert len(records) == 8
    assert set(records[0]) == {"segmentation", "area", "bbox", "predicted_iou", "point_coords",
                               "stability_score", "crop_box"}
    assert [r["predicted_iou"] for r in records] == pytest.approx([0.9] * 4 + [0.8] * 4)
    for r in records:
        seg = r["segmentation"]
        assert seg.dtype == bool and seg.shape == (64, 96) and seg.sum() == r["area"]
        x0, y0, w, h = r["bbox"]
        ys, xs = np.nonzero(seg)
        assert [x0, y0, x0 + w, y0 + h] == [xs.min(), ys.min(), xs.max(), ys.max()]
        assert r["crop_box"] == [0, 0, 96, 64]
        px, py = r["point_coords"][0]
        assert seg[int(py), int(px)]
    assert {tuple(r["point_coords"][0]) for r in records} == {(24.0, 16.0), (72.0, 16.0), (24.0, 48.0), (72.0, 48.0)}


def test_filters_are_applied():
    image = _blank(64, 96)
    # stability of a disc with logits r - d and offset 1: ((r-1)/(r+1))**2 roughly; the small disc fails 0.6
    gen = AutomaticMaskGenerator(DiscPredictor(), points_per_side=1, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.6, box_nms_thresh=1.0, progress=False)
    radii = sorted(np.sqrt(r["area"] / np.pi) for r in gen.generate(image))
    assert len(radii) == 2 and radii[0] > 10  # radius-6 disc dropped, radius-12 and the whole image kept
    gen.max_mask_area_frac = 0.95
    assert len(gen.generate(image)) == 1      # the whole-image mask goes too


def test_crops_drop_masks_cut_by_crop_edges():
    image = _blank(120, 160)
    pred = DiscPredictor()
    gen = AutomaticMaskGenerator(pred, points_per_side=2, pred_iou_thresh=0.85, stability_score_thresh=0.0,
                                 crop_n_layers=1, progress=False)
    records = gen.generate(image)
    assert len(pred.set_calls) == 5 and pred.set_calls[0] == (120, 160)
    crops = {tuple(r["crop_box"]) for r in records}
    assert len(crops) > 1
    for r in records:  # every mask lies in its crop and is in image coordinates
        x0, y0, w, h = r["crop_box"]
        ys, xs = np.nonzero(r["segmentation"])
        assert xs.min() >= x0 and xs.max() < x0 + w and ys.min() >= y0 and ys.max() < y0 + h
    # duplicates across crops are removed: no two records with (almost) the same box
    boxes = torch.tensor([r["bbox"] for r in records], dtype=torch.float32)
    boxes[:, 2:] += boxes[:, :2]
    from torchvision.ops import box_iou
    iou = box_iou(boxes, boxes) - torch.eye(len(boxes))
    assert iou.max() <= 0.7


def test_output_modes_agree():
    image = _blank(48, 64)
    kw = dict(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0, progress=False)
    binary = AutomaticMaskGenerator(DiscPredictor(), **kw).generate(image)
    coco = AutomaticMaskGenerator(DiscPredictor(), output_mode="coco_rle", **kw).generate(image)
    unc = AutomaticMaskGenerator(DiscPredictor(), output_mode="uncompressed_rle", **kw).generate(image)
    assert len(binary) == len(coco) == len(unc) > 0
    for a, b, c in zip(binary, coco, unc):
        assert isinstance(b["segmentation"]["counts"], str)
        assert isinstance(c["segmentation"]["counts"], list)
        s_b = dict(b["segmentation"], counts=b["segmentation"]["counts"].encode())
        assert np.array_equal(amg_utils.decode_rle(s_b), a["segmentation"])
        assert np.array_equal(amg_utils.decode_rle(c["segmentation"]), a["segmentation"])


def test_min_region_area_fills_holes():
    class HolePredictor(DiscPredictor):
        def predict_torch(self, *args, **kwargs):
            logits, iou, _ = super().predict_torch(*args, **kwargs)
            logits[:, :, 20, 18] = -5.0  # punch a 1-pixel hole into every mask (the point is at 20, 20)
            return logits, iou, None

    image = _blank(40, 40)
    kw = dict(points_per_side=1, pred_iou_thresh=0.85, stability_score_thresh=0.0, progress=False)
    raw = AutomaticMaskGenerator(HolePredictor(), **kw).generate(image)
    clean = AutomaticMaskGenerator(HolePredictor(), min_mask_region_area=10, **kw).generate(image)
    assert not raw[0]["segmentation"][20, 18] and clean[0]["segmentation"][20, 18]
    assert clean[0]["area"] == raw[0]["area"] + 1


# ----------------------------------------------------------------------------------------------
# arguments and errors
# ----------------------------------------------------------------------------------------------
def test_defaults_match_official():
    import inspect

    from segment_anything import SamAutomaticMaskGenerator as official
    ours = inspect.signature(AutomaticMaskGenerator).parameters
    for name, p in inspect.signature(official).parameters.items():
        assert name in ours and ours[name].default == p.default, name


def test_preset_paper():
    gen = AutomaticMaskGenerator(DiscPredictor(), preset="paper", progress=False)
    assert (gen.crop_n_layers, gen.crop_n_points_downscale_factor, gen.min_mask_region_area,
            gen.max_mask_area_frac) == (2, 2, 100, 0.95)
    assert [len(g) for g in gen.point_grids] == [1024, 256, 64]
    gen = AutomaticMaskGenerator(DiscPredictor(), preset="paper", crop_n_layers=1, progress=False)
    assert gen.crop_n_layers == 1 and gen.min_mask_region_area == 100
    with pytest.raises(ValueError, match="preset"):
        AutomaticMaskGenerator(DiscPredictor(), preset="fast")


@pytest.mark.parametrize("kwargs, match", [
    (dict(points_per_side=0), "zero points"),
    (dict(points_per_side=2, crop_n_layers=2, crop_n_points_downscale_factor=2), "zero points"),
    (dict(points_per_side=None), "exactly one"),
    (dict(point_grids=[np.zeros((4, 2))]), "exactly one"),
    (dict(points_per_side=None, point_grids=[np.zeros((0, 2))]), "zero points"),
    (dict(points_per_side=None, point_grids=[np.full((1, 2), 0.5)], crop_n_layers=1), "one per layer"),
    (dict(output_mode="png"), "output_mode"),
    (dict(points_per_batch=0), "points_per_batch"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutomaticMaskGenerator(DiscPredictor(), **kwargs)


def test_bad_images():
    gen = AutomaticMaskGenerator(DiscPredictor(), points_per_side=1, progress=False)
    with pytest.raises(ValueError, match="empty"):
        gen.generate(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="3 channels"):
        gen.generate(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        gen.generate(np.zeros((10, 10, 3), np.float32))
    crops = AutomaticMaskGenerator(DiscPredictor(), points_per_side=1, crop_n_layers=1, progress=False)
    with pytest.raises(ValueError, match="smaller than a crop"):
        crops.generate(np.zeros((1, 1, 3), np.uint8))


def test_grey_images_are_accepted_like_the_predictor():
    """One image check for the whole kit (samkit.predictor.as_rgb_uint8): grey is repeated to RGB."""
    gen = AutomaticMaskGenerator(DiscPredictor(), points_per_side=2, pred_iou_thresh=0.0,
                                 stability_score_thresh=0.0, progress=False)
    grey = _blank(48, 64)[..., 0]
    from_grey, from_rgb = gen.generate(grey), gen.generate(np.repeat(grey[..., None], 3, axis=2))
    assert len(from_grey) == len(from_rgb) > 0
    for a, b in zip(from_grey, from_rgb):
        assert np.array_equal(a["segmentation"], b["segmentation"])
    assert render_masks(grey, from_grey).shape == (48, 64, 3)


# ----------------------------------------------------------------------------------------------
# the tiny model end to end, and rendering
# ----------------------------------------------------------------------------------------------
def test_tiny_model_end_to_end(tiny):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
    image[10:40, 20:60] = (250, 30, 30)
    gen = samkit.AutomaticMaskGenerator(tiny, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                                        box_nms_thresh=1.0, progress=True)
    assert gen.predictor.transform.target_length == tiny.img_size == 512
    records = gen.generate(image)
    assert 0 < len(records) <= 12
    for r in records:
        assert r["segmentation"].shape == (60, 80)
        assert r["crop_box"] == [0, 0, 80, 60]
        assert r["area"] == r["segmentation"].sum()


def test_render_masks():
    image = _blank(48, 64)
    records = AutomaticMaskGenerator(DiscPredictor(), points_per_side=2, pred_iou_thresh=0.85,
                                     stability_score_thresh=0.0, progress=False).generate(image)
    out = render_masks(image, records, alpha=0.5, seed=0)
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    covered = np.any([r["segmentation"] for r in records], axis=0)
    assert np.array_equal(out[~covered], image[~covered])
    assert (out[covered] != image[covered]).any(axis=-1).all()
    assert np.array_equal(out, render_masks(image, records, alpha=0.5, seed=0))
    assert np.array_equal(render_masks(image, records, alpha=0.0), image)
