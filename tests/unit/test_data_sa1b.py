import json

import numpy as np
import pytest
from PIL import Image

from samkit.data import SA1B, SceneGenerator, generate_scenes, select_images
from samkit.data.sa1b import encode_mask


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("sa1b")
    generate_scenes(root, 3, size=96, seed=5, progress=False, min_objects=10, max_objects=20)
    return root


def test_round_trip_masks_identical(scenes):
    ds = SA1B(scenes)
    gen = SceneGenerator(96, seed=5, min_objects=10, max_objects=20)
    assert len(ds) == 3 and ds.ids == [1, 2, 3]
    for i in range(3):
        item = ds[i]
        image, masks = gen(i)
        assert item["image"].shape == (96, 96, 3) and item["image"].dtype == np.uint8
        assert item["masks"].dtype == bool and np.array_equal(item["masks"], masks)
        assert item["image_id"] == i + 1 and item["file"].endswith(f"sa_{i + 1}.jpg")
        # JPEG is lossy but close
        assert np.abs(item["image"].astype(int) - image.astype(int)).mean() < 6
        # boxes: XYXY from toBbox, x1 one past the last foreground column
        m = item["masks"][0]
        rows, cols = np.nonzero(m)
        assert item["boxes"][0].tolist() == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def test_max_images_and_masks(scenes):
    ds = SA1B(scenes, max_images=2, max_masks_per_image=3)
    assert len(ds) == 2
    item = ds[-1]
    assert item["masks"].shape[0] == 3 and item["boxes"].shape == (3, 4) and item["ann_ids"].shape == (3,)
    with pytest.raises(IndexError):
        ds[2]


def test_select_images_deterministic(scenes):
    ds = SA1B(scenes)
    a = select_images(ds, n_images=2, n_masks=3, seed=1, min_area=0.002)
    b = select_images(ds, n_images=2, n_masks=3, seed=1, min_area=0.002)
    assert [x["index"] for x in a] == [x["index"] for x in b]
    for x, y in zip(a, b):
        assert x["masks"].shape[0] == 3 and np.array_equal(x["masks"], y["masks"])
        frac = x["masks"].reshape(3, -1).mean(1)
        assert (frac >= 0.002).all() and (frac <= 0.9).all()
    with pytest.raises(ValueError, match="have 500 masks"):
        select_images(ds, n_images=1, n_masks=500)


def _write(root, record, image=True, size=(8, 10)):
    root.mkdir(exist_ok=True)
    if image:
        Image.fromarray(np.zeros(size + (3,), np.uint8)).save(root / "sa_7.jpg")
    (root / "sa_7.json").write_text(json.dumps(record))


def _record(h=8, w=10, rle_size=None):
    m = np.zeros((h, w), bool)
    m[2:5, 3:7] = True
    seg = encode_mask(m)
    if rle_size is not None:
        seg["size"] = rle_size
    return {"image": {"image_id": 7, "width": w, "height": h, "file_name": "sa_7.jpg"},
            "annotations": [{"id": 1, "segmentation": seg, "bbox": [3, 2, 3, 2], "area": 12}]}


def test_missing_image_names_file_and_field(tmp_path):
    _write(tmp_path / "d", _record(), image=False)
    with pytest.raises(FileNotFoundError, match=r"sa_7\.json.*image\.file_name.*sa_7\.jpg"):
        SA1B(tmp_path / "d")[0]


def test_bad_schema_names_file_and_field(tmp_path):
    rec = _record()
    del rec["annotations"][0]["segmentation"]["counts"]
    _write(tmp_path / "d", rec)
    with pytest.raises(ValueError, match=r"sa_7\.json.*annotations\[0\]\.segmentation\.counts"):
        SA1B(tmp_path / "d")[0]
    rec = _record()
    rec["image"]["width"] = "10"
    _write(tmp_path / "e", rec)
    with pytest.raises(ValueError, match=r"sa_7\.json.*image\.width"):
        SA1B(tmp_path / "e")[0]


def test_rle_size_mismatch_names_file_and_field(tmp_path):
    _write(tmp_path / "d", _record(rle_size=[8, 11]))
    with pytest.raises(ValueError, match=r"sa_7\.json.*annotations\[0\]\.segmentation\.size.*\[8, 11\]"):
        SA1B(tmp_path / "d")[0]


def test_image_size_mismatch(tmp_path):
    _write(tmp_path / "d", _record(), size=(9, 10))
    with pytest.raises(ValueError, match=r"image\.height"):
        SA1B(tmp_path / "d")[0]


def test_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="sa_<id>.json"):
        SA1B(tmp_path)


def test_stored_bbox_within_one_pixel(scenes):
    ds = SA1B(scenes)
    record = ds.load_record(0)
    item = ds[0]
    for ann, box in zip(record["annotations"], item["boxes"]):
        x, y, w, h = ann["bbox"]
        assert np.allclose([x, y, x + w, y + h], box, atol=1.0)


def test_committed_samples_match_generator():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "data" / "samples" / "sa1b"
    ds = SA1B(root)
    gen = SceneGenerator(256, seed=0)
    assert len(ds) == 3
    for i in range(3):
        assert np.array_equal(ds[i]["masks"], gen(i)[1])
