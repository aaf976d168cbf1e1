"""The click-to-segment widget's Python side, driven with synthetic events (no browser)."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch

import samkit
from samkit.widgets import (
    PALETTE,
    BoxPrompt,
    ClickSegmenter,
    PointPrompt,
    click_palette,
    display_shape,
    image_from_upload,
    mask_outline,
)

H, W = 120, 160          # image size (original pixels)
DISPLAY = (320, 240)     # canvas (width, height): 2 display pixels per image pixel


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return samkit.Predictor(samkit.build_model("tiny").eval())


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = np.full((H, W, 3), 40, np.uint8)
    img[30:90, 40:110] = (200, 60, 60)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def seg(predictor, image):
    s = ClickSegmenter(predictor, image, display_size=DISPLAY)
    yield s
    s.close()


def test_display_shape():
    assert display_shape(512, 512) == (640, 640)
    assert display_shape(303, 384) == (505, 640)
    assert display_shape(1000, 2000, 500) == (250, 500)
    assert display_shape(10, 20, (40, 30)) == (30, 40)
    with pytest.raises(ValueError):
        display_shape(10, 10, 4)
    with pytest.raises(TypeError):
        display_shape(10, 10, "big")


def test_constructor_checks(predictor, image):
    with pytest.raises(TypeError, match="predictor_or_model"):
        ClickSegmenter(object(), image)
    with pytest.raises(TypeError, match="uint8"):
        ClickSegmenter(predictor, image.astype(np.float32))
    with pytest.raises(ValueError, match="multimask"):
        ClickSegmenter(predictor, image, multimask="sometimes")


def test_canvas_never_waits_for_a_front_end(seg):
    assert (seg.display_width, seg.display_height) == DISPLAY
    assert (seg.canvas.width, seg.canvas.height) == DISPLAY
    assert len(seg.canvas._canvases) == 3
    assert not any(layer.sync_image_data for layer in seg.canvas._canvases)
    bundle = seg._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == seg.widget.model_id
    assert "enable_custom_widget_manager" in bundle["text/plain"]


def test_left_click_matches_predictor(seg, predictor, image):
    seg.handle_click(150, 120)                       # display px -> image (75, 60)
    assert seg.prompts == [PointPrompt(75.0, 60.0, 1)]
    assert seg.scores.shape == (3,) and seg.selected == int(np.argmax(seg.scores))
    predictor.set_image(image)
    masks, iou, _ = predictor.predict(np.array([[75.0, 60.0]]), np.array([1]), multimask_output=True)
    np.testing.assert_allclose(seg.scores, iou, atol=1e-5)
    assert seg.current_mask.shape == (H, W) and seg.current_mask.dtype == bool
    np.testing.assert_array_equal(seg.current_mask, masks[seg.selected])
    assert len(seg.masks) == 1
    assert seg.choice.options[0][0].startswith("mask 1 · IoU") and not seg.choice.disabled


def test_negative_clicks_and_mask_input(seg, predictor, image):
    seg.handle_click(150, 120)
    first = seg.session.result
    seg.handle_click(20, 20, button=2)                # right click
    seg.handle_click(300, 20, shift=True)             # shift + left click
    seg.handle_click(10, 200, button=1)               # middle button: ignored
    assert [p.label for p in seg.prompts] == [1, 0, 0]
    assert seg.scores.shape == (1,)                   # several prompts: single-mask output
    # the second prompt set got the first answer's low-res logits as mask_input, like the official demo
    predictor.set_image(image)
    _, _, low = predictor.predict(np.array([[75.0, 60.0]]), np.array([1]))
    masks, iou, low2 = predictor.predict(np.array([[75.0, 60.0], [10.0, 10.0]]), np.array([1, 0]),
                                         mask_input=low[first.selected][None], multimask_output=False)
    masks3, iou3, _ = predictor.predict(np.array([[75.0, 60.0], [10.0, 10.0], [150.0, 10.0]]),
                                        np.array([1, 0, 0]), mask_input=low2, multimask_output=False)
    np.testing.assert_allclose(seg.scores, iou3, atol=1e-5)
    np.testing.assert_array_equal(seg.current_mask, masks3[0])


def test_left_click_mode_toggle(seg):
    seg.mode.value = 0
    seg.handle_click(100, 100)
    assert seg.prompts[-1].label == 0


def test_drag_sets_a_box(seg, predictor, image):
    seg.handle_drag(220, 180, 80, 60)                 # any corner order
    assert seg.prompts == [BoxPrompt(40.0, 30.0, 110.0, 90.0)]
    predictor.set_image(image)
    masks, iou, _ = predictor.predict(box=np.array([40.0, 30.0, 110.0, 90.0]), multimask_output=True)
    np.testing.assert_allclose(seg.scores, iou, atol=1e-5)
    np.testing.assert_array_equal(seg.current_mask, masks[seg.selected])
    seg.handle_drag(0, 0, 100, 100)                   # a second box replaces the first in the decoder
    assert len(seg.prompts) == 2 and seg.scores.shape == (1,)
    with pytest.raises(ValueError, match="empty"):
        seg.handle_drag(10, 10, 10.5, 40)


def test_out_of_canvas_click_is_an_error(seg):
    with pytest.raises(ValueError, match="outside the canvas"):
        seg.handle_click(1000, 10)
    with pytest.raises(ValueError, match="finite"):
        seg.handle_click(float("nan"), 10)
    assert seg.prompts == []


def test_select_mask(seg):
    with pytest.raises(ValueError, match="no prediction"):
        seg.select_mask(0)
    seg.handle_click(150, 120)
    for i in range(3):
        seg.select_mask(i)
        assert seg.selected == i and seg.choice.value == i
        np.testing.assert_array_equal(seg.current_mask, seg.session.output_mask(i))
    seg.choice.value = 1                              # the toggle buttons drive the same path
    assert seg.selected == 1
    with pytest.raises(ValueError, match="0..2"):
        seg.select_mask(3)


def test_undo_restores_exact_previous_state(seg):
    seg.handle_click(150, 120)
    mask1, scores1 = seg.current_mask, seg.scores
    seg.handle_click(20, 20, button=2)
    assert len(seg.prompts) == 2
    count = seg.decode_count
    seg.undo()
    assert len(seg.prompts) == 1 and seg.decode_count == count   # shown again without decoding
    np.testing.assert_array_equal(seg.current_mask, mask1)
    np.testing.assert_allclose(seg.scores, scores1)
    seg.undo()
    assert seg.prompts == [] and seg.current_mask is None and seg.masks == []
    seg.undo()                                                    # nothing left: no error
    assert seg.prompts == []


def test_keep_several_objects_each_in_its_colour(seg):
    assert seg.keep() is None                                     # nothing yet
    seg.handle_click(150, 120)
    first = seg.current_mask
    obj = seg.keep()
    assert obj.colour == PALETTE[0] and obj.prompts == (PointPrompt(75.0, 60.0, 1),)
    np.testing.assert_array_equal(obj.mask, first)
    assert seg.prompts == [] and seg.current_mask is None and len(seg.masks) == 1
    seg.handle_click(20, 20)
    assert len(seg.masks) == 2 and len(seg.objects) == 1
    overlay = seg.overlay_rgba()
    colours = {tuple(c) for c in overlay[overlay[..., 3] == 255][:, :3]}
    assert PALETTE[1] in colours                                  # the current object's outline
    if first.any() and not first.all():
        assert PALETTE[0] in colours                              # the kept one's outline
    seg.undo()                                                    # the click
    seg.undo()                                                    # the keep: object 0 is current again
    assert seg.objects == [] and seg.prompts == [PointPrompt(75.0, 60.0, 1)]
    np.testing.assert_array_equal(seg.current_mask, first)


def test_clear(seg):
    seg.handle_click(150, 120)
    seg.keep()
    seg.handle_click(30, 30)
    seg.clear(objects=False)
    assert seg.prompts == [] and len(seg.objects) == 1
    seg.clear()
    assert seg.objects == [] and seg.masks == []
    seg.undo()
    assert len(seg.objects) == 1


def test_overlay_is_crisp_rgba(seg):
    seg.handle_click(150, 120)
    seg.set_opacity(0.4)
    overlay = seg.overlay_rgba()
    assert overlay.shape == (DISPLAY[1], DISPLAY[0], 4) and overlay.dtype == np.uint8
    assert set(np.unique(overlay[..., 3])) <= {0, round(0.4 * 255), 255}   # no blurred edges
    disp = seg._display_mask(seg.current_mask)
    np.testing.assert_array_equal(overlay[..., 3] > 0, disp)
    np.testing.assert_array_equal(overlay[..., 3] == 255, mask_outline(disp))
    assert seg.opacity_slider.value == pytest.approx(0.4)
    with pytest.raises(ValueError):
        seg.set_opacity(1.5)
    pal = click_palette(0.5)
    assert tuple(pal[0]) == (0, 0, 0, 0) and tuple(pal[2]) == (*PALETTE[0], 255)


def test_save_png_and_coco_rle(seg, tmp_path):
    from PIL import Image
    from pycocotools import mask as mask_utils

    seg.handle_click(150, 120)
    seg.keep()
    seg.handle_drag(0, 0, 100, 80)
    png, js = seg.save(tmp_path / "out.png")
    assert png == tmp_path / "out.png" and js == tmp_path / "out.json"
    assert np.asarray(Image.open(png)).shape == (H, W, 3)
    doc = json.loads(js.read_text())
    assert doc["image"] == {"height": H, "width": W}
    anns = doc["annotations"]
    assert len(anns) == 2
    for ann, mask in zip(anns, seg.masks):
        rle = dict(ann["segmentation"], counts=ann["segmentation"]["counts"].encode())
        np.testing.assert_array_equal(mask_utils.decode(rle).astype(bool), mask)
        assert ann["area"] == int(mask.sum())
    assert anns[0]["point_labels"] == [1] and anns[1]["box"] == [0.0, 0.0, 50.0, 40.0]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        seg.save(tmp_path / "missing" / "x")


def test_on_change_callbacks(seg):
    seen = []
    seg.on_change(lambda s: seen.append(len(s.prompts)))
    seg.handle_click(150, 120)
    seg.handle_click(10, 10, button=2)
    seg.undo()
    assert seen == [1, 2, 1]
    seg.on_change(lambda s: 1 / 0)                     # a broken callback is reported, not raised
    seg.handle_click(50, 50)
    assert "ZeroDivisionError" in seg.status.value


def test_status_reports_latency(seg):
    seg.handle_click(150, 120)
    assert "last click" in seg.status.value and "decoder" in seg.status.value
    assert seg.timings["click_ms"] >= seg.timings["decoder_ms"] > 0


def test_clicks_during_a_prediction_coalesce(seg):
    real = seg.session._decode
    calls = []

    def slow(prompts, previous):
        calls.append(len(prompts))
        time.sleep(0.15)
        return real(prompts, previous)

    seg.session._decode = slow
    for i in range(6):                               # a burst, as the front end sends it
        seg.handle_click(20 + 40 * i, 100, button=0 if i % 2 == 0 else 2, wait=False)
    assert seg.busy
    assert seg.wait(timeout=20)
    assert len(seg.prompts) == 6                     # no click lost
    assert [p.label for p in seg.prompts] == [1, 0, 1, 0, 1, 0]
    assert len(calls) <= 3 and calls[-1] == 6        # coalesced; the last decode saw every click
    assert seg.session.result.prompts == tuple(seg.prompts)


def test_concurrent_handlers_do_not_crash(seg):
    errors = []

    def click(i):
        try:
            seg.handle_click(10 + 30 * i, 50 + 10 * i)
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and len(seg.prompts) == 5
    assert seg.session.result.prompts == tuple(seg.prompts)


def test_front_end_events(seg):
    ev = seg.events
    assert ev is not None and ev.prevent_default_action and "contextmenu" in ev.watched_events
    # the canvas shown at half size by CSS: relative coordinates are rescaled to display pixels
    rect = {"boundingRectWidth": DISPLAY[0] / 2, "boundingRectHeight": DISPLAY[1] / 2}

    def send(kind, x, y, button=0, shift=False):
        seg._on_dom_event(dict(rect, type=kind, relativeX=x, relativeY=y, button=button, shiftKey=shift))

    send("mousedown", 75, 60)
    send("mouseup", 76, 60)                          # moved 2 display px: still a click
    seg.wait(10)
    assert seg.prompts == [PointPrompt(75.0, 60.0, 1)]
    send("mousedown", 10, 10, button=2)
    send("contextmenu", 10, 10, button=2)
    send("mouseup", 10, 10, button=2)
    seg.wait(10)
    assert seg.prompts[-1] == PointPrompt(10.0, 10.0, 0)
    send("mousedown", 20, 15)
    send("mousemove", 40, 30)
    send("mouseup", 55, 45)
    seg.wait(10)
    assert seg.prompts[-1] == BoxPrompt(20.0, 15.0, 55.0, 45.0)
    send("mousedown", 20, 15)
    send("mouseleave", 200, 15)                       # left the canvas: the drag is cancelled
    send("mouseup", 55, 45)
    seg.wait(10)
    assert len(seg.prompts) == 3


def test_buttons(seg, tmp_path):
    seg.handle_click(150, 120)
    seg.keep_button.click()
    assert len(seg.objects) == 1
    seg.handle_click(30, 30)
    seg.undo_button.click()
    seg.wait(10)
    assert seg.prompts == []
    seg.path_text.value = str(tmp_path / "saved")
    seg.save_button.click()
    assert (tmp_path / "saved.json").exists() and "saved" in seg.status.value
    seg.clear_button.click()
    assert seg.objects == []


def test_set_image_uses_the_embedding_cache(predictor, image):
    seg = ClickSegmenter(predictor, image, display_size=DISPLAY)
    seg.handle_click(150, 120)
    other = np.ascontiguousarray(image[:, ::-1])
    seg.set_image(other)
    assert seg.prompts == [] and seg.masks == []
    hits = predictor.cache.hits
    seg.set_image(image)
    assert predictor.cache.hits == hits + 1 and "from the cache" in seg.status.value
    # another image set on the shared predictor does not confuse the widget
    predictor.set_image(other)
    seg.handle_click(150, 120)
    predictor.set_image(image)
    masks, _, _ = predictor.predict(np.array([[75.0, 60.0]]), np.array([1]))
    np.testing.assert_array_equal(seg.current_mask, masks[seg.selected])
    seg.close()


def test_image_from_upload():
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((5, 7, 3), 9, np.uint8)).save(buf, format="PNG")
    v8 = ({"name": "a.png", "type": "image/png", "size": 1, "content": memoryview(buf.getvalue())},)
    v7 = {"a.png": {"metadata": {"name": "a.png"}, "content": buf.getvalue()}}
    for value in (v8, v7):
        img = image_from_upload(value)
        assert img.shape == (5, 7, 3) and img.dtype == np.uint8
    with pytest.raises(ValueError, match="no file"):
        image_from_upload(())
    with pytest.raises(ValueError, match="as an image"):
        image_from_upload(({"name": "b.txt", "content": b"hello"},))
