"""GrabCut refinement of a predicted mask (samkit.refine) and Predictor.predict(refine=True)."""
import numpy as np
import pytest

import samkit
from samkit import Predictor
from samkit.evaluate import mask_iou
from samkit.refine import grabcut_refine

pytest.importorskip("cv2")


def _disc_scene(size: int = 160, seed: int = 0):
    """A red disc on a noisy green-grey background, its true mask, and a coarse guess of it: the disc
    seen through 16-pixel cells and shifted, as a model's mask on the token grid looks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - 80) ** 2 + (xx - 76) ** 2 <= 40 ** 2
    image = np.empty((size, size, 3), np.float32)
    image[:] = (70, 120, 80)
    image[disc] = (200, 40, 40)
    image += rng.normal(0, 12, image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    blocky = np.kron(disc[::16, ::16], np.ones((16, 16), bool))[:size, :size]
    coarse = np.roll(blocky, (6, 8), axis=(0, 1))
    logits = np.where(coarse, 2.0, -2.0).astype(np.float32)
    return image, disc, logits


def test_refinement_follows_the_image_edges():
    image, disc, logits = _disc_scene()
    before = mask_iou(logits > 0, disc)
    box = np.array([36, 40, 116, 120], float)  # the disc's box, XYXY
    with_box = grabcut_refine(image, logits, box=box)
    with_click = grabcut_refine(image, logits, points=np.array([[76, 80]]), labels=np.array([1]))
    assert before < 0.85
    assert mask_iou(with_box, disc) > 0.95 and mask_iou(with_click, disc) > 0.95
    assert not with_box[:, :30].any()  # outside the box stays background
    # shrunk for the cut (max_side), the answer still comes back at the image's size and close
    small = grabcut_refine(image, logits, box=box, max_side=48)
    assert small.shape == disc.shape and mask_iou(small, disc) > 0.85


def test_nothing_to_refine_and_bad_input():
    image, disc, logits = _disc_scene()
    empty = np.full(disc.shape, -5.0, np.float32)
    assert not grabcut_refine(image, empty).any()  # no mask and no click: nothing to cut from
    with pytest.raises(ValueError, match="uint8"):
        grabcut_refine(image.astype(np.float32), logits)
    with pytest.raises(ValueError, match="do not match"):
        grabcut_refine(image, logits[:-1])


def test_predictor_refine_option():
    image, disc, _ = _disc_scene(seed=1)
    predictor = Predictor(samkit.load_model("tiny"))
    predictor.set_image(image)
    plain, scores, low_res = predictor.predict(box=np.array([36, 40, 116, 120]), multimask_output=False)
    refined, scores_r, low_res_r = predictor.predict(box=np.array([36, 40, 116, 120]), multimask_output=False,
                                                     refine=True)
    assert refined.dtype == bool and refined.shape == plain.shape == (1, *disc.shape)
    np.testing.assert_allclose(scores, scores_r, atol=1e-4)  # the IoU predictions and logits stay the model's
    np.testing.assert_allclose(low_res, low_res_r, atol=1e-3)
    assert mask_iou(refined[0], disc) >= mask_iou(plain[0], disc) - 0.02
    three, _, _ = predictor.predict(point_coords=np.array([[76, 80]]), point_labels=np.array([1]), refine=True)
    assert three.shape == (3, *disc.shape)
    with pytest.raises(ValueError, match="refine"):
        predictor.predict(box=np.array([36, 40, 116, 120]), refine=True, return_logits=True)
    predictor.set_embedding(predictor.get_image_embedding(), disc.shape)
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(box=np.array([36, 40, 116, 120]), refine=True)


def test_click_session_refines_the_shown_mask():
    """ClickSession(refine=True) cuts the shown mask exactly as Predictor.predict(refine=True) does,
    and switching it off brings the model's own mask back."""
    from samkit.clicks import BoxPrompt, ClickSession

    image, disc, _ = _disc_scene(seed=2)
    predictor = Predictor(samkit.load_model("tiny"))
    session = ClickSession(predictor, image, multimask=False, refine=True)
    session.add(BoxPrompt(36, 40, 116, 120))
    predictor.set_image(image)
    expected, _, _ = predictor.predict(box=np.array([36, 40, 116, 120]), multimask_output=False, refine=True)
    plain, _, _ = predictor.predict(box=np.array([36, 40, 116, 120]), multimask_output=False)
    np.testing.assert_array_equal(session.current_mask, expected[0])
    assert session.timings["refine_ms"] > 0
    session.refine = False
    np.testing.assert_array_equal(session.current_mask, plain[0])


def test_widget_refine_switch():
    pytest.importorskip("ipycanvas")
    from samkit.widgets import ClickSegmenter

    image, disc, _ = _disc_scene(seed=3)
    seg = ClickSegmenter(samkit.load_model("tiny"), image, display_size=(160, 160), threaded=False)
    try:
        assert not seg.refine and not seg.refine_box.value
        seg.handle_click(76, 80)
        plain = seg.current_mask.copy()
        seg.refine_box.value = True           # the checkbox, as a user ticks it
        assert seg.refine and seg.session.refine
        assert seg.current_mask.shape == plain.shape == disc.shape
        seg.handle_click(70, 86)
        assert "edge cut" in seg.status.value, seg.status.value
        seg.undo()
        seg.set_refine(False)
        assert not seg.refine_box.value
        np.testing.assert_array_equal(seg.current_mask, plain)
    finally:
        seg.close()


def test_click_refinement_stays_on_the_clicked_object():
    """Two discs of one colour: a click's coarse mask of the left one, with a stray fragment on the right one
    (as a model's mask often has). The cut keeps to the clicked disc: the fragment neither stretches the crop
    over its neighbour nor joins the mask, and the boundary moves at most ``band`` of the mask's size."""
    rng = np.random.default_rng(4)
    yy, xx = np.mgrid[:160, :240]
    left = (yy - 80) ** 2 + (xx - 60) ** 2 <= 30 ** 2
    right = (yy - 80) ** 2 + (xx - 170) ** 2 <= 30 ** 2
    image = np.empty((160, 240, 3), np.float32)
    image[:] = (60, 110, 70)
    image[left | right] = (200, 40, 40)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    coarse = np.roll(np.kron(left[::10, ::10], np.ones((10, 10), bool)), (4, 5), axis=(0, 1))
    coarse[75:85, 165:175] = True  # the stray fragment on the other disc
    logits = np.where(coarse, 2.0, -2.0).astype(np.float32)
    cut = grabcut_refine(image, logits, points=np.array([[60.0, 80.0]]), labels=np.array([1]))
    assert mask_iou(cut, left) > 0.9 and not (cut & right).any()
    again = grabcut_refine(image, logits, points=np.array([[60.0, 80.0]]), labels=np.array([1]))
    np.testing.assert_array_equal(cut, again)  # the same input gives the same cut


def test_a_negative_click_far_from_the_object_does_not_stretch_the_crop():
    """A negative click lies outside the object, possibly across the image: the crop follows the clicked mask
    and the positive clicks, so a far negative click changes nothing (a crop stretched to it would be shrunk
    for the cut and coarsen the object's edges)."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[:600, :600]
    disc = (yy - 80) ** 2 + (xx - 90) ** 2 <= 40 ** 2
    image = np.empty((600, 600, 3), np.float32)
    image[:] = (60, 110, 70)
    image[disc] = (200, 40, 40)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    coarse = np.roll(np.kron(disc[::8, ::8], np.ones((8, 8), bool)), (3, 3), axis=(0, 1))
    logits = np.where(coarse, 2.0, -2.0).astype(np.float32)
    alone = grabcut_refine(image, logits, points=np.array([[90.0, 80.0]]), labels=np.array([1]))
    far = grabcut_refine(image, logits, points=np.array([[90.0, 80.0], [560.0, 560.0]]), labels=np.array([1, 0]))
    np.testing.assert_array_equal(far, alone)
    assert mask_iou(far, disc) > 0.9
