"""samkit.course (the notebooks' measurements) and the edge baselines it sits beside."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from samkit import course, evaluate
from samkit.data.synthetic import SceneGenerator


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return samkit.build_model("tiny").eval()


@pytest.fixture(scope="module")
def items():
    scenes = SceneGenerator(size=96, seed=0, max_objects=10)
    out = []
    for i in range(2):
        image, masks = scenes(i)
        out.append({"image": image, "masks": masks[:3]})
    return out


def test_validate_items_is_the_training_validation(model, items):
    from samkit.train import PreparedImages, validate

    mine = course.validate_items(model, items)
    assert mine["n_masks"] == sum(len(x["masks"]) for x in items)
    assert 0.0 <= mine["miou_point_oracle"] <= 1.0 and mine["miou_point_confident"] <= mine["miou_point_oracle"] + 1e-6
    data = PreparedImages(course._ItemSource(items), model.img_size)

    def embed(i, record):
        x = model.preprocess(record.image.float()[None])
        return model.image_encoder(x).to(torch.float16).to(torch.float32)

    with torch.no_grad():
        theirs = validate(model, data, embed, masks_per_image=10 ** 9)
    assert mine == theirs


def test_amg_candidates_cover_the_grid(model, items):
    cand = course.amg_candidates(model, items[0]["image"], points_per_side=4, points_per_batch=5)
    assert {k: len(v) for k, v in cand.items()} == {k: 48 for k in ("predicted_iou", "stability", "area", "max_logit")}
    assert np.all((cand["stability"] >= 0) & (cand["stability"] <= 1))


def test_data_engine_simulation_counts(model, items):
    out = course.simulate_data_engine(model, items, points_per_side=4, max_clicks=2)
    assert out["scenes"] == 2 and out["objects"] == 6
    am, sa, fa = out["assisted_manual"], out["semi_automatic"], out["fully_automatic"]
    assert am["masks_per_image"] == 3 and 1 <= am["clicks_per_mask"] <= 2
    assert sa["masks_per_image"] == pytest.approx(sa["prefilled_per_image"] + sa["added_per_image"])
    assert 0 <= fa["precision"] <= 1 and 0 <= fa["recall"] <= 1


def test_scene_edge_items_and_graded_baselines():
    items = course.scene_edge_items(1, size=64, seed=0)
    image, (full, coarse) = items[0]["image"], items[0]["boundaries"]
    assert image.shape == (64, 64, 3) and full.shape == coarse.shape == (64, 64)
    assert full.any() and (coarse & ~full).sum() <= full.sum()
    canny = evaluate.canny_edges(image, levels=4)
    assert canny.dtype == np.float32 and len(np.unique(canny)) > 2 and canny.max() <= 1
    assert set(np.unique(evaluate.canny_edges(image))) <= {0.0, 1.0}          # the binary default is unchanged
    felz = evaluate.felzenszwalb_edges(image, scales=(50, 200))
    assert felz.shape == (64, 64) and set(np.unique(felz)) <= {0.0, 0.5, 1.0}
    with pytest.raises(ValueError):
        evaluate.felzenszwalb_edges(image, scales=())


def test_mask_share(model, items):
    share = course.mask_share(model, items)
    assert 0.0 <= share <= 1.0
    with pytest.raises(ValueError, match="no non-empty"):
        course.mask_share(model, [{"image": items[0]["image"], "masks": np.zeros((1, 96, 96), bool)}])
