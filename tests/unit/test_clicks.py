"""The click session without a user interface: prompts, decoding through the predictor, undo,
saving."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import samkit
from samkit.clicks import PALETTE, BoxPrompt, ClickSession, PointPrompt, split_prompts

H, W = 90, 120


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return samkit.Predictor(samkit.build_model("tiny").eval())


@pytest.fixture(scope="module")
def image():
    img = np.full((H, W, 3), 40, np.uint8)
    img[20:70, 30:90] = (200, 60, 60)
    return img


def test_split_prompts_keeps_the_last_box():
    coords, labels, box = split_prompts(
        [PointPrompt(1, 2, 1), BoxPrompt(0, 0, 5, 5), PointPrompt(3, 4, 0), BoxPrompt(1, 1, 9, 9)]
    )
    assert (
        coords.tolist() == [[1, 2], [3, 4]]
        and labels.tolist() == [1, 0]
        and box.tolist() == [1, 1, 9, 9]
    )
    assert split_prompts([]) == (None, None, None)


def test_decodes_through_the_predictor(predictor, image):
    session = ClickSession(predictor, image)
    calls = []
    real = session.predictor.predict_low_res

    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    session.predictor.predict_low_res = spy
    session.add(PointPrompt(60.0, 45.0, 1))
    assert len(calls) == 1 and session.decode_count == 1
    predictor.set_image(image)
    masks, iou, low = predictor.predict(
        np.array([[60.0, 45.0]]), np.array([1]), multimask_output=True
    )
    np.testing.assert_allclose(session.scores, iou, atol=1e-5)
    assert session.selected == int(np.argmax(iou))
    for i in range(3):
        np.testing.assert_array_equal(session.output_mask(i), masks[i])
    # a second prompt: one mask, with the shown mask's low-res logits fed back
    session.add(PointPrompt(5.0, 5.0, 0))
    m2, iou2, _ = predictor.predict(
        np.array([[60.0, 45.0], [5.0, 5.0]]),
        np.array([1, 0]),
        mask_input=low[int(np.argmax(iou))][None],
        multimask_output=False,
    )
    np.testing.assert_allclose(session.scores, iou2, atol=1e-5)
    np.testing.assert_array_equal(session.current_mask, m2[0])


def test_own_predictor_shares_the_cache_not_the_image(predictor, image):
    session = ClickSession(predictor, image)
    assert session.predictor is not predictor and session.predictor.cache is predictor.cache
    predictor.set_image(np.ascontiguousarray(image[::-1]))  # someone else uses the shared one
    session.add(PointPrompt(60.0, 45.0, 1))
    predictor.set_image(image)
    masks, _, _ = predictor.predict(np.array([[60.0, 45.0]]), np.array([1]))
    np.testing.assert_array_equal(session.current_mask, masks[session.selected])


def test_undo_keep_clear(predictor, image):
    session = ClickSession(predictor, image)
    assert session.keep() is None and not session.undo()
    session.add(PointPrompt(60.0, 45.0, 1))
    first = session.current_mask
    session.add(BoxPrompt(20.0, 10.0, 100.0, 80.0))
    assert session.scores.shape == (1,)
    count = session.decode_count
    assert session.undo()
    assert session.decode_count == count  # remembered: no decoding
    np.testing.assert_array_equal(session.current_mask, first)
    obj = session.keep()
    assert obj.colour == PALETTE[0] and session.prompts == [] and len(session.masks) == 1
    session.add(PointPrompt(10.0, 10.0, 1))
    assert session.clear(objects=False) and len(session.objects) == 1 and session.prompts == []
    assert session.clear() and session.objects == []
    assert session.undo() and len(session.objects) == 1


def test_stale_prompts_until_update(predictor, image):
    session = ClickSession(predictor, image)
    session.add(PointPrompt(60.0, 45.0, 1), decode=False)
    assert session.stale and session.result is None
    assert session.update() and not session.stale
    assert not session.update()  # nothing new: no decoding
    assert session.result.prompts == (PointPrompt(60.0, 45.0, 1),)


def test_bad_prompts_and_inputs(predictor, image):
    with pytest.raises(TypeError, match="predictor_or_model"):
        ClickSession(object(), image)
    with pytest.raises(ValueError, match="multimask"):
        ClickSession(predictor, image, multimask="often")
    with pytest.raises(TypeError, match="uint8"):
        ClickSession(predictor, image.astype(np.float32))
    session = ClickSession(predictor, image[..., 0])  # grey: converted, as the predictor does
    assert session.image.shape == (H, W, 3)
    with pytest.raises(ValueError, match="empty"):
        session.add(BoxPrompt(10.0, 10.0, 10.5, 40.0))
    with pytest.raises(ValueError, match="label"):
        session.add(PointPrompt(10.0, 10.0, 2))
    with pytest.raises(ValueError, match="finite"):
        session.add(PointPrompt(float("nan"), 10.0, 1))
    with pytest.raises(ValueError, match="outside the image"):
        session.add(PointPrompt(500.0, 10.0, 1))
    with pytest.raises(ValueError, match="no prediction"):
        ClickSession(predictor, image).select(0)


def test_save_png_and_coco_rle(predictor, image, tmp_path):
    from PIL import Image
    from pycocotools import mask as mask_utils

    session = ClickSession(predictor, image)
    session.add(PointPrompt(60.0, 45.0, 1))
    session.keep()
    session.add(BoxPrompt(0.0, 0.0, 50.0, 40.0))
    png, js = session.save(tmp_path / "out")
    picture = np.asarray(Image.open(png))
    assert picture.shape == (H, W, 3)
    doc = json.loads(js.read_text())
    assert doc["image"] == {"height": H, "width": W} and len(doc["annotations"]) == 2
    for ann, mask in zip(doc["annotations"], session.masks):
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
    changed = (picture != image).any(axis=-1)
    assert not changed[~np.any(session.masks, axis=0)].any()  # the picture is painted only on masks
