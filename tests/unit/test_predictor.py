"""Predictor semantics, input checks, batching and the embedding cache (tiny model, random weights)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from samkit.cache import EmbeddingCache


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return samkit.build_model("tiny").eval()


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)


def test_shapes(model, image):
    p = samkit.Predictor(model)
    p.set_image(image)
    assert p.input_size == (384, 512) and p.original_size == (120, 160)
    assert p.get_image_embedding().shape == (1, 96, 64, 64)
    masks, iou, low = p.predict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]))
    assert masks.shape == (3, 120, 160) and masks.dtype == bool
    assert iou.shape == (3,) and low.shape == (3, 256, 256)
    masks, iou, low = p.predict(box=np.array([10, 10, 100, 90]), multimask_output=False)
    assert masks.shape == (1, 120, 160) and iou.shape == (1,)
    logits, _, _ = p.predict(box=np.array([10, 10, 100, 90]), multimask_output=False, return_logits=True)
    assert logits.dtype == np.float32
    assert ((logits > 0) == masks).all()


def test_mask_input_feedback(model, image):
    p = samkit.Predictor(model)
    p.set_image(image)
    _, iou, low = p.predict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]))
    best = low[np.argmax(iou)][None]
    masks, _, _ = p.predict(point_coords=np.array([[80, 60], [20, 20]]), point_labels=np.array([1, 0]),
                            mask_input=best, multimask_output=False)
    assert masks.shape == (1, 120, 160)


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10, 5), np.uint8), "3 channels"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((2, 10, 10, 3), np.uint8), "H x W x 3"),
])
def test_bad_images(model, bad, msg):
    with pytest.raises((ValueError, TypeError), match=msg):
        samkit.Predictor(model).set_image(bad)


def test_gray_and_rgba_are_converted(model, image):
    p = samkit.Predictor(model)
    p.set_image(image[..., 0])
    e_gray = p.get_image_embedding()
    p.set_image(np.repeat(image[..., :1], 3, axis=2))
    assert torch.equal(e_gray, p.get_image_embedding())
    rgba = np.concatenate([image, np.full_like(image[..., :1], 255)], axis=2)
    p.set_image(rgba)
    e_rgba = p.get_image_embedding()
    p.set_image(image)
    assert torch.equal(e_rgba, p.get_image_embedding())


def test_bad_prompts(model, image):
    p = samkit.Predictor(model)
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]))
    p.set_image(image)
    with pytest.raises(ValueError, match="outside the image"):
        p.predict(point_coords=np.array([[500, 10]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="one label per point"):
        p.predict(point_coords=np.array([[5, 10], [6, 7]]), point_labels=np.array([1]))
    with pytest.raises(ValueError, match="x1 >= x0"):
        p.predict(box=np.array([50, 10, 20, 40]))
    with pytest.raises(ValueError, match="together"):
        p.predict(point_coords=np.array([[5, 10]]))
    with pytest.raises(ValueError, match="mask_input"):
        p.predict(point_coords=np.array([[5, 10]]), point_labels=np.array([1]), mask_input=np.zeros((1, 32, 32)))


def test_cache_skips_the_encoder(model, image):
    cache = EmbeddingCache()
    p = samkit.Predictor(model, cache=cache)
    calls = []  # the patch embedding runs once per encoder pass, on the plain and on the fast path
    handle = model.image_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        p.set_image(image)
        first = p.get_image_embedding().clone()
        p.set_image(image.copy())
        assert len(calls) == 1 and cache.hits == 1
        assert torch.equal(first, p.get_image_embedding())
        p.set_image(image[::-1].copy())
        assert len(calls) == 2
    finally:
        handle.remove()


def test_cache_on_disk(tmp_path, model, image):
    p = samkit.Predictor(model, cache=EmbeddingCache(tmp_path))
    p.set_image(image)
    ref = p.get_image_embedding().clone()
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))
    fresh = samkit.Predictor(model, cache=EmbeddingCache(tmp_path))
    fresh.set_image(image)
    assert fresh.cache.hits == 1
    assert torch.allclose(ref, fresh.get_image_embedding(), atol=1e-2)  # stored as float16


def test_cache_key_changes_with_weights(image):
    torch.manual_seed(1)
    m = samkit.build_model("tiny").eval()
    p = samkit.Predictor(m)
    p.set_image(image)
    with torch.no_grad():
        m.image_encoder.neck[0].weight.mul_(2)
    p.set_image(image)
    assert p.cache.hits == 0 and p.cache.misses == 2


def test_batched_images_match_single(model, image):
    other = np.ascontiguousarray(image[:100, :90])
    single = samkit.Predictor(model, cache=False)
    batch = samkit.Predictor(model, cache=False)
    batch.set_images([image, other])
    assert batch.get_image_embedding().shape[0] == 2
    outs = batch.predict_batch(point_coords=[np.array([[80, 60]]), np.array([[10, 10], [50, 40], [60, 80]])],
                               point_labels=[np.array([1]), np.array([1, 0, 1])], multimask_output=True)
    cases = [(image, [[80, 60]], [1], outs[0]), (other, [[10, 10], [50, 40], [60, 80]], [1, 0, 1], outs[1])]
    for img, pc, pl, out in cases:
        single.set_image(img)
        m, s, low = single.predict(point_coords=np.array(pc), point_labels=np.array(pl))
        assert out[0].shape == m.shape
        np.testing.assert_allclose(out[2], low, atol=1e-4)
        np.testing.assert_allclose(out[1], s, atol=1e-4)


def test_predict_low_res_and_upscale_give_predict():
    torch.manual_seed(0)
    predictor = samkit.Predictor(samkit.build_model("tiny").eval())
    image = np.random.default_rng(3).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    predictor.set_image(image)
    point, label = np.array([[30.0, 20.0]]), np.array([1])
    masks, iou, low = predictor.predict(point, label, multimask_output=True)
    low_t, iou_t = predictor.predict_low_res(point, label, multimask_output=True)
    assert low_t.shape == (3, *predictor.mask_input_size) and iou_t.shape == (3,)
    np.testing.assert_allclose(low_t.numpy(), low, atol=1e-5)
    np.testing.assert_allclose(iou_t.numpy(), iou, atol=1e-5)
    low_np = torch.from_numpy(low)
    np.testing.assert_array_equal(predictor.upscale_masks(low_np[None])[0].numpy(), masks)
    np.testing.assert_array_equal(predictor.upscale_masks(low_np[1:2][None])[0, 0].numpy(), masks[1])
    logits = predictor.upscale_masks(low_np[None], return_logits=True)[0]
    assert logits.dtype == torch.float32 and logits.shape == (3, 50, 70)
    fed, _ = predictor.predict_low_res(point, label, mask_input=low_np[:1], multimask_output=False)
    np.testing.assert_allclose(fed.numpy(), predictor.predict(point, label, mask_input=low[:1],
                                                              multimask_output=False)[2], atol=1e-5)


def test_set_embedding_equals_set_image(model, image):
    p = samkit.Predictor(model)
    p.set_image(image)
    q = samkit.Predictor(model, cache=False)
    q.set_embedding(p.get_image_embedding().clone(), image.shape[:2])
    assert q.input_size == p.input_size and q.original_size == p.original_size
    kw = dict(point_coords=np.array([[80, 60]]), point_labels=np.array([1]), return_logits=True)
    for a, b in zip(p.predict(**kw), q.predict(**kw)):
        np.testing.assert_allclose(a, b, atol=1e-5)
    wrong = r"must be a 1 x 96 x 64 x 64 tensor, got \(2, 96, 64, 64\)"
    with pytest.raises(ValueError, match=wrong):
        q.set_embedding(torch.zeros(2, 96, 64, 64), (10, 10))
