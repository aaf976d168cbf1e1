import numpy as np
import pytest
import torch

from samkit.data import prompts


def _masks():
    m = torch.zeros(3, 20, 30, dtype=torch.bool)
    m[0, 2:6, 3:9] = True
    m[1, 10:19, 20:29] = True
    # m[2] empty
    return m


def test_sample_points_shapes_inside_and_empty():
    m = _masks()
    g = torch.Generator().manual_seed(0)
    coords, labels = prompts.sample_points(m, n=50, generator=g)
    assert coords.shape == (3, 50, 2) and coords.dtype == torch.float32
    assert labels.shape == (3, 50) and labels.dtype == torch.long
    for b in range(2):
        x, y = coords[b, :, 0].long(), coords[b, :, 1].long()
        assert m[b, y, x].all()
        assert (labels[b] == 1).all()
        # integer pixel indices, nothing added
        assert torch.equal(coords[b], coords[b].floor())
    assert (labels[2] == -1).all() and (coords[2] == 0).all()


def test_sample_points_uniform_covers_mask():
    m = torch.zeros(1, 8, 8, dtype=torch.bool)
    m[0, 1, 1] = m[0, 6, 7] = m[0, 3, 4] = True
    g = torch.Generator().manual_seed(1)
    coords, _ = prompts.sample_points(m, n=3000, generator=g)
    pts, counts = torch.unique(coords[0], dim=0, return_counts=True)
    assert {tuple(p.tolist()) for p in pts} == {(1.0, 1.0), (7.0, 6.0), (4.0, 3.0)}
    assert counts.min() > 850  # ~1000 each


def test_sample_points_deterministic():
    m = _masks()
    a = prompts.sample_points(m, 5, torch.Generator().manual_seed(3))
    b = prompts.sample_points(m, 5, torch.Generator().manual_seed(3))
    c = prompts.sample_points(m, 5, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_sample_points_rejects_bad_input():
    with pytest.raises(ValueError):
        prompts.sample_points(torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(TypeError):
        prompts.sample_points(np.zeros((1, 4, 4), bool))


def test_noisy_boxes_bound_order_and_zero_noise():
    m = _masks()
    tight = prompts.noisy_boxes(m, noise_std=0.0)
    assert torch.equal(tight[0], torch.tensor([3.0, 2.0, 8.0, 5.0]))
    assert torch.equal(tight[1], torch.tensor([20.0, 10.0, 28.0, 18.0]))
    assert (tight[2] == 0).all()
    g = torch.Generator().manual_seed(0)
    big = torch.zeros(64, 200, 300, dtype=torch.bool)
    big[:, 20:180, 30:280] = True
    boxes = prompts.noisy_boxes(big, noise_std=0.5, max_noise=7.0, generator=g)
    ref = torch.tensor([30.0, 20.0, 279.0, 179.0])
    shift = (boxes - ref).abs()
    assert shift.max() <= 7.0 + 1e-5
    assert shift.max() > 6.0  # std 0.5*250 px: the clip is reached
    assert (boxes[:, 0] <= boxes[:, 2]).all() and (boxes[:, 1] <= boxes[:, 3]).all()
    assert boxes.min() >= 0 and (boxes[:, 2] <= 299).all() and (boxes[:, 3] <= 199).all()


def test_noisy_boxes_std_scales_with_side_and_clips_to_image():
    g = torch.Generator().manual_seed(0)
    m = torch.zeros(2000, 40, 40, dtype=torch.bool)
    m[:, 10:30, 10:30] = True  # side 19 px -> std 1.9 px
    boxes = prompts.noisy_boxes(m, noise_std=0.1, max_noise=20, generator=g)
    std = (boxes[:, 0] - 10).std().item()
    assert 1.6 < std < 2.2
    full = torch.ones(50, 40, 40, dtype=torch.bool)
    boxes = prompts.noisy_boxes(full, noise_std=0.3, generator=g)
    assert boxes.min() >= 0 and boxes.max() <= 39
    a = prompts.noisy_boxes(m[:5], generator=torch.Generator().manual_seed(9))
    b = prompts.noisy_boxes(m[:5], generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


def test_sample_error_points_labels():
    gt = torch.zeros(3, 10, 10, dtype=torch.bool)
    pred = torch.zeros(3, 10, 10, dtype=torch.bool)
    gt[0, 2:5, 2:5] = True                      # pred empty: all FN -> label 1
    pred[1, 2:5, 2:5] = True                    # gt empty: all FP -> label 0
    gt[2, 1:3, 1:3] = pred[2, 1:3, 1:3] = True  # exact -> padding
    g = torch.Generator().manual_seed(0)
    coords, labels = prompts.sample_error_points(pred, gt, generator=g)
    assert coords.shape == (3, 1, 2) and labels.shape == (3, 1)
    assert labels.tolist() == [[1], [0], [-1]]
    assert (coords[2] == 0).all()
    x, y = coords[0, 0].long().tolist()
    assert gt[0, y, x] and not pred[0, y, x]


def test_sample_error_points_mixed_labels_match_region():
    gt = torch.zeros(200, 12, 12, dtype=torch.bool)
    pred = torch.zeros(200, 12, 12, dtype=torch.bool)
    gt[:, 0:6, :] = True
    pred[:, 3:9, :] = True
    coords, labels = prompts.sample_error_points(pred, gt, torch.Generator().manual_seed(2))
    rows = coords[:, 0, 1]
    assert ((rows < 3) == (labels[:, 0] == 1)).all()
    assert ((rows >= 6) & (rows < 9) == (labels[:, 0] == 0)).all()
    assert (labels == 1).any() and (labels == 0).any()


def test_center_point():
    m = np.zeros((11, 21), bool)
    m[1:10, 3:12] = True   # 9x9 square, centre column 7, row 5
    assert prompts.center_point(m) == (7.0, 5.0)
    # image border counts as boundary: a mask touching the border is not centred on it
    m = np.zeros((9, 9), bool)
    m[:, :5] = True
    x, y = prompts.center_point(torch.from_numpy(m))
    assert (x, y) == (2.0, 2.0)  # x: 3 px from the left border and from the edge; first such row
    # ties: first in row-major order
    m = np.zeros((4, 6), bool)
    m[1, 1] = m[1, 4] = True
    assert prompts.center_point(m) == (1.0, 1.0)
    with pytest.raises(ValueError, match="empty"):
        prompts.center_point(np.zeros((3, 3), bool))


def test_next_click():
    gt = np.zeros((20, 20), bool)
    gt[2:18, 2:18] = True
    pred = np.zeros((20, 20), bool)
    (x, y), label = prompts.next_click(pred, gt)
    assert label == 1 and gt[int(y), int(x)]
    assert (x, y) == prompts.center_point(gt)
    # large false positive region outside gt -> negative click there
    pred = gt.copy()
    pred[:, :] = True
    pred[2:18, 2:18] = True
    small_gt = np.zeros((20, 20), bool)
    small_gt[0:3, 0:3] = True
    (x, y), label = prompts.next_click(pred, small_gt)
    assert label == 0 and pred[int(y), int(x)] and not small_gt[int(y), int(x)]
    assert prompts.next_click(gt, gt) is None
    coords, labels = prompts.next_clicks(torch.from_numpy(np.stack([pred, gt])),
                                         torch.from_numpy(np.stack([small_gt, gt])))
    assert labels.tolist() == [[0], [-1]] and (coords[1] == 0).all()
