import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from samkit.data import COCOInstances


def _setup(tmp_path, anns, images=None, write_image=True):
    h, w = 20, 30
    (tmp_path / "imgs").mkdir()
    if write_image:
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(tmp_path / "imgs" / "a.jpg")
        Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(tmp_path / "imgs" / "b.jpg")
    data = {"images": images or [{"id": 1, "file_name": "a.jpg", "width": w, "height": h},
                                 {"id": 2, "file_name": "b.jpg", "width": w, "height": h}],
            "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return tmp_path / "imgs", path


def _rect(h=20, w=30, r0=2, r1=6, c0=3, c1=9):
    m = np.zeros((h, w), bool)
    m[r0:r1, c0:c1] = True
    return m


def test_polygon_rle_uncompressed_crowd_and_filters(tmp_path):
    m = _rect()
    compressed = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()
    # uncompressed RLE: column-major run lengths starting with zeros
    flat = _rect(r0=10, r1=14, c0=20, c1=25).flatten(order="F").astype(int)
    runs, cur, n = [], 0, 0
    for v in flat:
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    runs.append(n)
    anns = [
        {"id": 1, "image_id": 1, "category_id": 3, "segmentation": [[3, 2, 9, 2, 9, 6, 3, 6]], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 3, "segmentation": compressed, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 1, "segmentation": {"size": [20, 30], "counts": runs}, "iscrowd": 1},
        {"id": 4, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]], "iscrowd": 0},
    ]
    imgs, path = _setup(tmp_path, anns)
    ds = COCOInstances(imgs, path)
    assert len(ds) == 2
    item = ds[0]
    assert item["ann_ids"].tolist() == [1, 2, 4]  # crowd skipped by default
    assert np.array_equal(item["masks"][1], m)
    # polygon rasterised by pycocotools covers the rectangle's pixels
    assert item["masks"][0][3:6, 4:9].all() and not item["masks"][0][10:].any()
    assert item["boxes"][1].tolist() == [3, 2, 9, 6]
    assert ds[1]["masks"].shape == (0, 20, 30) and ds[1]["boxes"].shape == (0, 4)

    crowd = COCOInstances(imgs, path, include_crowd=True)[0]
    assert crowd["ann_ids"].tolist() == [1, 2, 3, 4] and crowd["iscrowd"].tolist() == [False, False, True, False]
    assert np.array_equal(crowd["masks"][2], _rect(r0=10, r1=14, c0=20, c1=25))

    cars = COCOInstances(imgs, path, category_ids=[3], skip_empty=True)
    assert len(cars) == 1 and cars[0]["category_ids"].tolist() == [3, 3]
    assert cars.num_annotations() == 2


def test_missing_image_names_file_and_field(tmp_path):
    imgs, path = _setup(tmp_path, [], write_image=False)
    with pytest.raises(FileNotFoundError, match=r"ann\.json.*file_name.*a\.jpg"):
        COCOInstances(imgs, path)[0]


def test_bad_schema_names_file_and_field(tmp_path):
    imgs, path = _setup(tmp_path, [{"id": 1, "image_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]]}])
    with pytest.raises(ValueError, match=r"ann\.json.*annotations\[0\]\.category_id"):
        COCOInstances(imgs, path)


def test_unknown_image_id(tmp_path):
    imgs, path = _setup(tmp_path, [{"id": 1, "image_id": 9, "category_id": 3, "segmentation": [[0, 0, 4, 0, 4, 4]]}])
    with pytest.raises(ValueError, match=r"annotations\[0\]\.image_id"):
        COCOInstances(imgs, path)


def test_rle_size_mismatch_names_file_and_field(tmp_path):
    m = _rect(h=21)
    rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    imgs, path = _setup(tmp_path, [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": rle}])
    ds = COCOInstances(imgs, path)
    with pytest.raises(ValueError, match=r"ann\.json.*annotations\[0\]\.segmentation\.size.*\[21, 30\]"):
        ds[0]


def test_bad_polygon_and_missing_segmentation(tmp_path):
    imgs, path = _setup(tmp_path, [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": [[0, 0, 4]]},
                                   {"id": 2, "image_id": 2, "category_id": 3, "bbox": [1, 2, 3, 4]}])
    with pytest.raises(ValueError, match=r"annotations\[1\]\.segmentation.*missing_segmentation"):
        COCOInstances(imgs, path)
    ds = COCOInstances(imgs, path, missing_segmentation="box")
    with pytest.raises(ValueError, match=r"annotations\[0\]\.segmentation\[0\]"):
        ds[0]
    box = ds[1]["masks"][0]
    assert box.sum() == 12 and box[2:6, 1:4].all()
    assert COCOInstances(imgs, path, missing_segmentation="skip").num_annotations() == 1
