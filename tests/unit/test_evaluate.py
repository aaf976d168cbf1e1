"""Zero-shot evaluations: point/box prompt mIoU, edge maps, the BSDS metrics and the BSDS500 reader."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from scipy import ndimage

import samkit
from samkit import evaluate
from samkit.data.bsds import BSDS500, load_ground_truth, write_bsds_sample


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return samkit.build_model("tiny").eval()


def _dataset():
    image = np.full((48, 64, 3), 40, np.uint8)
    masks = np.zeros((3, 48, 64), bool)
    masks[0, 8:30, 10:40] = True
    masks[1, 30:45, 45:60] = True   # masks[2] stays empty: skipped and counted
    image[masks[0]] = (220, 40, 40)
    image[masks[1]] = (40, 200, 40)
    return [dict(image=image, masks=masks)]


# ----------------------------------------------------------------------------------------------
# prompts
# ----------------------------------------------------------------------------------------------
def test_point_prompts_tiny(tiny):
    table = evaluate.point_prompts(tiny, _dataset(), n_points=(1, 2, 3), progress=False)
    assert [(r["selection"], r["n_points"]) for r in table.rows] == [
        ("confident", 1), ("confident", 2), ("confident", 3), ("oracle", 1), ("oracle", 2), ("oracle", 3)]
    assert all(0.0 <= r["mIoU"] <= 1.0 and r["objects"] == 2 for r in table.rows)
    assert "1 empty masks skipped" in table.notes[0]
    # the oracle picks the best of the same three masks the confident choice picks from
    for a, b in zip(table.per_object["oracle"][1], table.per_object["confident"][1]):
        assert a >= b
    # each object's first click: the three predicted and true IoUs the two selections chose from
    assert len(table.first_clicks) == 2
    for first, oracle, confident in zip(table.first_clicks, table.per_object["oracle"][1],
                                        table.per_object["confident"][1]):
        assert first["scores"].shape == first["ious"].shape == (3,)
        assert first["ious"].max() == pytest.approx(oracle)
        assert first["ious"][np.argmax(first["scores"])] == pytest.approx(confident)
    text = str(table)
    assert "oracle" in text and "mIoU" in text
    assert table.to_markdown().count("|") > 10
    assert table.value(selection="oracle", n_points=1) == pytest.approx(np.mean(table.per_object["oracle"][1]))
    ax = evaluate.plot_miou_vs_points(table)
    assert len(ax.get_lines()) == 2


class _GroundTruthPredictor:
    """Answers every prompt with the ground-truth mask it was given (a perfect model)."""

    def __init__(self, gt_for_point):
        self.gt_for_point = gt_for_point
        self.model = type("M", (), {"mask_threshold": 0.0})()

    def set_image(self, image):
        pass

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True):
        if box is not None:
            x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        else:
            x, y = point_coords[0]
        gt = self.gt_for_point(int(x), int(y))
        n = 3 if multimask_output else 1
        wrong = np.zeros_like(gt)
        masks = np.stack([gt] + [wrong] * (n - 1))
        scores = np.array([0.1, 0.9, 0.5][:n])  # the confident choice is a wrong (empty) mask
        return masks, scores, np.zeros((n, 8, 8), np.float32)


def test_point_prompt_protocol_with_a_perfect_predictor():
    data = _dataset()
    masks = data[0]["masks"]
    predictor = _GroundTruthPredictor(lambda x, y: masks[0] if masks[0][y, x] else masks[1])
    table = evaluate.point_prompts(predictor, data, n_points=(1, 2), progress=False)
    assert table.value(selection="oracle", n_points=1) == 1.0
    assert table.value(selection="confident", n_points=1) == 0.0
    # the second click lands in the missed object and the single-mask answer is exact
    assert table.value(selection="confident", n_points=2) == 1.0
    boxes = evaluate.box_prompts(predictor, data, progress=False)
    assert boxes.rows[0]["mIoU"] == 1.0 and boxes.rows[0]["objects"] == 2


def test_box_prompts_tiny_and_max_objects(tiny):
    table = evaluate.box_prompts(tiny, _dataset(), max_objects=1, progress=False)
    assert table.rows[0]["objects"] == 1 and 0.0 <= table.rows[0]["mIoU"] <= 1.0


def test_prompt_errors(tiny):
    with pytest.raises(ValueError, match="selection"):
        evaluate.point_prompts(tiny, _dataset(), selection="best", progress=False)
    with pytest.raises(ValueError, match="'masks'"):
        evaluate.point_prompts(tiny, [dict(image=np.zeros((4, 4, 3), np.uint8))], progress=False)
    empty = [dict(image=np.zeros((8, 8, 3), np.uint8), masks=np.zeros((1, 8, 8), bool))]
    with pytest.raises(ValueError, match="no non-empty"):
        evaluate.box_prompts(tiny, empty, progress=False)


# ----------------------------------------------------------------------------------------------
# edge maps
# ----------------------------------------------------------------------------------------------
class SquarePredictor:
    """Scripted: every point gives the same three masks, the square rows 10-29, columns 15-39, as logits
    of twice the signed distance to its boundary (no network, exact expectations)."""

    def __init__(self):
        from types import SimpleNamespace

        self.model = SimpleNamespace(mask_threshold=0.0)
        self.transform = SimpleNamespace(apply_coords=lambda c, size: np.asarray(c, dtype=np.float64))
        self.device = torch.device("cpu")

    def set_image(self, image):
        self.size = image.shape[:2]

    def reset_image(self):
        self.size = None

    def predict_torch(self, point_coords, point_labels, multimask_output=True, return_logits=False):
        yy, xx = torch.meshgrid(torch.arange(self.size[0]).float(), torch.arange(self.size[1]).float(),
                                indexing="ij")
        d = torch.minimum(torch.minimum(yy - 9.5, 29.5 - yy), torch.minimum(xx - 14.5, 39.5 - xx))
        logits = (2 * d).expand(len(point_coords), 3, *self.size)
        return logits, torch.tensor([[0.9, 0.8, 0.7]]).repeat(len(point_coords), 1), None


def test_edge_map_traces_the_mask_outline():
    image = np.full((40, 56, 3), 30, np.uint8)
    e = evaluate.edge_map(SquarePredictor(), image, points_per_side=4)
    assert e.shape == (40, 56) and e.dtype == np.float32
    assert e.max() == 1.0                                     # normalised by its maximum, not clipped
    square = np.zeros((40, 56), bool)
    square[10:30, 15:40] = True
    near = ndimage.binary_dilation(square, iterations=2) & ~ndimage.binary_erosion(square, iterations=2)
    assert e[~near].max() == 0.0                              # nothing away from the outline
    assert e[10:30, 13:17].max(axis=1).min() > 0.2            # every row of the left side ...
    assert e[10:30, 38:42].max(axis=1).min() > 0.2            # ... and of the right side
    assert e[8:12, 15:40].max(axis=0).min() > 0.2             # every column of the top side
    assert (e > 0)[12:28, 13:17].sum(axis=1).max() <= 2       # thinned: at most 2 pixels across


def test_edge_map_tiny(tiny):
    image = np.full((40, 56, 3), 30, np.uint8)
    image[10:30, 15:40] = (230, 230, 60)
    gen = samkit.AutomaticMaskGenerator(tiny, progress=False)
    e = evaluate.edge_map(gen, image[..., 0], points_per_side=4)   # grey, as the predictor accepts
    assert e.shape == (40, 56) and e.dtype == np.float32 and e.max() == 1.0


def test_baselines_find_a_square():
    image = np.zeros((40, 40, 3), np.uint8)
    image[10:30, 10:30] = 255
    for e in (evaluate.sobel_edges(image), evaluate.canny_edges(image)):
        assert e.shape == (40, 40) and 0 <= e.min() and e.max() == 1.0
        assert e[20, 20] == 0 and e[2, 2] == 0          # flat regions
        assert e[18:22, 8:12].max() > 0                   # the square's left side


def test_edge_nms_thins_a_thick_ridge():
    e = np.zeros((30, 30))
    e[:, 13:18] = [0.3, 0.7, 1.0, 0.7, 0.3]
    thin = evaluate.edge_nms(e)
    assert (thin[5:25, 15] > 0).all() and not thin[5:25, 13].any() and not thin[5:25, 17].any()


# ----------------------------------------------------------------------------------------------
# BSDS metrics
# ----------------------------------------------------------------------------------------------
def _outline(h=60, w=80):
    gt = np.zeros((h, w), bool)
    gt[10, 10:70] = gt[50, 10:70] = True
    gt[10:51, 10] = gt[10:51, 69] = True
    return gt


def test_perfect_prediction_scores_one():
    gt = _outline()
    soft = np.zeros(gt.shape)
    soft[gt] = np.linspace(0.02, 1.0, gt.sum())  # every threshold recovers a part of the outline
    m = evaluate.edge_metrics([soft], [[gt]], thresholds=49, progress=False)
    # thinning removes the 4 corner pixels of the outline (198 pixels), which a 0.75 px tolerance cannot
    # match diagonally: R = 194/198 at best, as in the benchmark. The benchmark's pixel matcher breaks ties
    # at random (seeded from gettimeofday in its C++ code, so no seed reaches it), and at each of the 4
    # corners the pair of pixels next to it may go unmatched on some runs (150 runs: 194 x 107, 192 x 35,
    # 190 x 8; 188 seen too): R lies in [186/198, 194/198] and precision stays 1.
    def f(r):
        return 2 * r / (1 + r)
    for key in ("ODS", "OIS"):
        assert f(186 / 198) - 1e-9 <= m[key] <= f(194 / 198) + 1e-9, (key, m[key])
    assert gt.sum() == 198 and 186 / 198 - 1e-9 <= m["R50"] <= 194 / 198 + 1e-9
    assert m["AP"] > 0.93  # precision 1 over recall ~0.02-0.98, 0 outside the curve


def test_shifted_prediction_by_hand():
    h, w = 60, 80
    tolerance = 0.0075 * np.hypot(h, w)  # 0.75 px
    gt = np.zeros((h, w), bool)
    gt[10:50, 20] = True                  # a 40-pixel vertical edge
    far = np.zeros((h, w), bool)
    far[10:50, 40] = True                 # the same edge 20 px away (far beyond the tolerance)
    assert 20 > tolerance
    m = evaluate.edge_metrics([far.astype(float)], [[gt]], thresholds=5, progress=False)
    assert m["ODS"] == 0.0 and m["R50"] == 0.0
    # half right, half shifted: P = R = 1/2, F = 1/2
    half = np.zeros((h, w))
    half[10:30, 20] = 1.0
    half[30:50, 40] = 1.0
    m = evaluate.edge_metrics([half], [[gt]], thresholds=5, progress=False)
    assert m["ODS"] == pytest.approx(0.5) and m["OIS"] == pytest.approx(0.5)
    # the edge plus a far copy: R = 1, P = 1/2, F = 2/3, recall at 50% precision = 1
    both = (gt | far).astype(float)
    m = evaluate.edge_metrics([both], [[gt]], thresholds=5, progress=False)
    assert m["ODS"] == pytest.approx(2 / 3) and m["R50"] == pytest.approx(1.0)
    # two annotators, one agreeing: recall sums over both (1/2), a pixel matching either is correct (P = 1)
    m = evaluate.edge_metrics([gt.astype(float)], [[gt, far]], thresholds=5, progress=False)
    assert m["ODS"] == pytest.approx(2 / 3)


def test_recall_at_precision_interpolates():
    recall = np.array([1.0, 0.8, 0.4, 0.1])
    precision = np.array([0.2, 0.4, 0.6, 0.9])
    # precision crosses 0.5 halfway between (0.8, 0.4) and (0.4, 0.6): recall 0.6
    assert evaluate.recall_at_precision(recall, precision, 0.5) == pytest.approx(0.6)
    assert evaluate.recall_at_precision(recall, precision, 0.95) == 0.0
    assert evaluate.recall_at_precision(recall, precision, 0.1) == 1.0


def test_metric_input_errors():
    with pytest.raises(ValueError, match="ground truths"):
        evaluate.edge_metrics([np.zeros((4, 4))], [], progress=False)
    with pytest.raises(ValueError, match="same shape"):
        evaluate.edge_metrics([np.zeros((4, 4))], [[np.zeros((5, 4), bool)]], progress=False)


# ----------------------------------------------------------------------------------------------
# BSDS500 reader
# ----------------------------------------------------------------------------------------------
def test_bsds_sample_round_trip(tmp_path):
    root = write_bsds_sample(tmp_path / "data", n=2, size=(48, 32), seed=1, annotators=3)
    ds = BSDS500(tmp_path, split="test")  # finds the data folder below the given root
    assert len(ds) == 2
    item = ds[0]
    assert item["image"].shape == (32, 48, 3) and item["image"].dtype == np.uint8
    assert item["boundaries"].shape == (3, 32, 48) and item["boundaries"].dtype == bool
    assert item["segmentations"].shape == (3, 32, 48)
    assert item["masks"].shape[1:] == (32, 48) and item["masks"].sum(0).max() == 1
    assert item["boundaries"][0].any()
    # the .mat nests like the real files: a 1 x K cell of structs with Segmentation / Boundaries
    from scipy.io import loadmat
    raw = loadmat(str(root / "groundTruth" / "test" / f"{item['name']}.mat"))["groundTruth"]
    assert raw.shape == (1, 3) and set(raw[0, 0].dtype.names) == {"Segmentation", "Boundaries"}
    segs, bounds = load_ground_truth(root / "groundTruth" / "test" / f"{item['name']}.mat")
    assert np.array_equal(segs, item["segmentations"])
    # the generated edges score well against their own annotations
    m = evaluate.edge_metrics([b[0].astype(float) for b in (ds[0]["boundaries"], ds[1]["boundaries"])],
                              [ds[0]["boundaries"], ds[1]["boundaries"]], thresholds=3, progress=False)
    assert m["ODS"] > 0.7


def test_bsds_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="BSDS500 layout"):
        BSDS500(tmp_path)
    root = write_bsds_sample(tmp_path, n=1, size=(16, 12))
    with pytest.raises(ValueError, match="split"):
        BSDS500(root, split="dev")
    for p in (root / "groundTruth" / "test").glob("*.mat"):
        p.unlink()
    with pytest.raises(FileNotFoundError, match="ground-truth"):
        BSDS500(root)
