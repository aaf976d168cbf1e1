"""The SAM loss: focal, dice, IoU and the min-over-masks selection."""
import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from samkit.losses import dice_loss, focal_loss, iou_of_masks, sam_loss


def test_focal_matches_torchvision_per_mask():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 2, 8, 9, generator=g) * 3
    targets = torch.rand(3, 2, 8, 9, generator=g) > 0.6
    ours = focal_loss(logits, targets)
    assert ours.shape == (3, 2)
    for b in range(3):
        for m in range(2):
            ref = sigmoid_focal_loss(logits[b, m], targets[b, m].float(), alpha=0.25, gamma=2.0, reduction="mean")
            torch.testing.assert_close(ours[b, m], ref)
    ref = sigmoid_focal_loss(logits, targets.float(), alpha=-1, gamma=0.5, reduction="none").mean((-2, -1))
    torch.testing.assert_close(focal_loss(logits, targets, alpha=-1, gamma=0.5), ref)


def test_dice_hand_computed():
    big = 50.0
    t = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    # perfect prediction: p = t, sums 2 and 2, overlap 2 -> 1 - (4 + 1) / (4 + 1) = 0
    assert dice_loss(torch.where(t > 0, big, -big), t).item() == pytest.approx(0.0, abs=1e-6)
    # all background predicted: 1 - (0 + 1) / (0 + 2 + 1) = 2/3
    assert dice_loss(torch.full((2, 2), -big), t).item() == pytest.approx(2 / 3, abs=1e-6)
    # logits 0: p = 0.5 everywhere, sum p = 2, overlap 1 -> 1 - (2 + 1) / (2 + 2 + 1) = 0.4
    assert dice_loss(torch.zeros(2, 2), t).item() == pytest.approx(0.4, abs=1e-6)
    # both empty -> 0 thanks to the smoothing term
    assert dice_loss(torch.full((2, 2), -big), torch.zeros(2, 2)).item() == pytest.approx(0.0, abs=1e-6)


def test_iou_of_masks():
    gt = torch.tensor([[1, 1, 0, 0]] * 2, dtype=torch.bool)
    pred = torch.tensor([[1.0, -1.0, 2.0, -3.0]] * 2)   # threshold 0 -> [1, 0, 1, 0]
    assert iou_of_masks(pred, gt).item() == pytest.approx(2 / 6)
    assert iou_of_masks(-torch.ones(2, 4), torch.zeros(2, 4, dtype=torch.bool)).item() == 1.0
    with pytest.raises(ValueError, match="differ in H x W"):
        iou_of_masks(pred, gt[:, :3])


def test_min_selection_backpropagates_only_the_best_mask():
    gt = torch.zeros(2, 1, 4, 4)
    gt[:, :, :2] = 1
    good = torch.where(gt[:, 0] > 0, 5.0, -5.0)
    logits = torch.stack([-good, good, torch.zeros_like(good)], dim=1)  # mask 1 is right
    logits[1] = logits[1][[2, 0, 1]]                                     # for prompt 1 mask 2 is right
    logits.requires_grad_(True)
    iou_pred = torch.full((2, 3), 0.5, requires_grad=True)
    out = sam_loss(logits, iou_pred, gt)
    assert out["selected"].tolist() == [1, 2]
    out["loss"].backward()
    g = logits.grad.abs().flatten(2).sum(-1)
    assert (g[0, [0, 2]] == 0).all() and g[0, 1] > 0
    assert (g[1, [0, 1]] == 0).all() and g[1, 2] > 0
    # the IoU head is supervised on all three masks (iou_on_all)
    assert (iou_pred.grad != 0).all()
    iou_pred.grad = None
    sam_loss(logits, iou_pred, gt, iou_on_all=False)["loss"].backward()
    assert (iou_pred.grad != 0).sum() == 2


def test_sam_loss_tiny_hand_example():
    # one prompt, one mask, a 1 x 2 image: gt [1, 0], logits [0, 0] (p = 0.5), iou_pred 0.25
    logits = torch.zeros(1, 1, 1, 2)
    gt = torch.tensor([[[[1.0, 0.0]]]])
    iou_pred = torch.tensor([[0.25]])
    out = sam_loss(logits, iou_pred, gt)
    ln2 = torch.log(torch.tensor(2.0)).item()
    focal_px = [0.25 * ln2 * 0.25, 0.75 * ln2 * 0.25]                   # alpha_t * CE * (1 - p_t)^2
    focal = sum(focal_px) / 2
    dice = 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)                            # = 1/3
    true_iou = 0.0                                                      # nothing above 0
    iou_mse = (0.25 - true_iou) ** 2
    assert out["focal"].item() == pytest.approx(focal, rel=1e-5)
    assert out["dice"].item() == pytest.approx(dice, rel=1e-5)
    assert out["iou_mse"].item() == pytest.approx(iou_mse, rel=1e-5)
    assert out["loss"].item() == pytest.approx(20 * focal + dice + iou_mse, rel=1e-5)


def test_normalisation_is_a_mean_over_prompts():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 3, 6, 6, generator=g)
    iou_pred = torch.rand(4, 3, generator=g)
    gt = torch.rand(4, 1, 6, 6, generator=g) > 0.5
    whole = sam_loss(logits, iou_pred, gt)["loss"]
    parts = [sam_loss(logits[i:i + 1], iou_pred[i:i + 1], gt[i:i + 1])["loss"] for i in range(4)]
    torch.testing.assert_close(whole, torch.stack(parts).mean())
    doubled = sam_loss(logits.repeat(2, 1, 1, 1), iou_pred.repeat(2, 1), gt.repeat(2, 1, 1, 1))["loss"]
    torch.testing.assert_close(whole, doubled)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="iou_pred"):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 1), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="gt"):
        sam_loss(torch.zeros(2, 3, 4, 4), torch.zeros(2, 3), torch.zeros(3, 1, 4, 4))
