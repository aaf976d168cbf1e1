"""Annotation readers (COCO, SA-1B, RLE) under malformed input: a clear error naming the file and the
field, never uninitialised memory, never unbounded memory."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from samkit.data import SA1B, COCOInstances
from samkit.data.coco import segmentation_to_mask
from samkit.data.rle import check_rle, rle_counts
from samkit.data.sa1b import decode_rle, encode_mask, read_image

H, W = 20, 30


def _coco(tmp_path, segmentation, **ann):
    return COCOInstances(*_write_coco(tmp_path, segmentation, **ann))


def _write_coco(tmp_path, segmentation, **ann):
    (tmp_path / "imgs").mkdir(exist_ok=True)
    Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(tmp_path / "imgs" / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
            "annotations": [dict({"id": 7, "image_id": 1, "category_id": 1, "segmentation": segmentation}, **ann)],
            "categories": [{"id": 1, "name": "thing"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))  # json writes NaN / Infinity as COCO files written by Python do
    return tmp_path / "imgs", path


# ------------------------------------------------------------------------------------------ polygons
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), 1e9, -5e6])
def test_absurd_polygon_coordinates_are_refused_in_bounded_memory(tmp_path, limited, value):
    """Before the check, pycocotools rasterised such polygons without bound (seen at 21.7 GB); each case
    runs in a child process allowed 512 MiB, so a regression fails the test instead of the machine."""
    ds = _coco(tmp_path, [[1, 1, 10, 1, value, 8]])
    outcome, message = limited(ds.__getitem__, 0, budget=512 << 20)
    assert outcome == "raised" and message.startswith("ValueError"), message
    assert "ann.json: field 'annotations[0].segmentation[0]'" in message, message


def test_polygon_of_absurd_total_length_is_refused(limited):
    zigzag = [v for i in range(4000) for v in ((0, 0) if i % 2 else (W, H))]
    outcome, message = limited(segmentation_to_mask, [zigzag], H, W, budget=512 << 20)
    assert outcome == "raised" and "long in all" in message, message


def test_polygons_slightly_outside_the_image_still_rasterise():
    mask = segmentation_to_mask([[-2, -2, 12, -2, 12, 9, -2, 9]], H, W)
    assert mask[:9, :12].all() and not mask[10:].any()


@pytest.mark.parametrize("image", [{"width": 0, "height": 20}, {"width": -3, "height": 20},
                                   {"width": 300000, "height": 300000}])
def test_absurd_image_sizes_are_refused(tmp_path, image):
    (tmp_path / "imgs").mkdir()
    data = {"images": [dict({"id": 1, "file_name": "a.png"}, **image)], "annotations": []}
    (tmp_path / "ann.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"ann\.json: field.*images\[0\]\.(width|height)"):
        COCOInstances(tmp_path / "imgs", tmp_path / "ann.json")


@pytest.mark.parametrize("bbox", [[1, 1, float("nan"), 4], [1, 1, -3, 4], [1, 1, "2", 4]])
def test_box_only_annotations_need_finite_boxes(tmp_path, bbox):
    with pytest.raises(ValueError, match=r"annotations\[0\]\.bbox"):
        COCOInstances(*_write_coco(tmp_path, None, bbox=bbox), missing_segmentation="box")


def test_iscrowd_must_be_0_or_1(tmp_path):
    with pytest.raises(ValueError, match=r"annotations\[0\]\.iscrowd"):
        _coco(tmp_path, [[1, 1, 10, 1, 5, 8]], iscrowd="yes")


# ------------------------------------------------------------------------------------------ RLE
@pytest.mark.parametrize("counts, reason", [
    ("", "empty"),
    ("0", "summing to 0"),
    ("52", "summing to 7"),
    ("Pa", "truncated"),          # 'a' (0x31) carries the continuation bit: the string stops mid-number
    ("0 0", "outside the RLE alphabet"),
    ("ÿ", "non-ASCII"),
])
def test_malformed_compressed_rle_is_refused(tmp_path, counts, reason):
    """Before: "" and "0" decoded to uninitialised memory (different on every run)."""
    ds = _coco(tmp_path, {"size": [H, W], "counts": counts})
    with pytest.raises(ValueError, match=rf"ann\.json: field 'annotations\[0\]\.segmentation\.counts'.*{reason}"):
        ds[0]


def test_truncated_compressed_rle_is_refused_not_partially_decoded(tmp_path):
    mask = np.zeros((H, W), bool)
    mask[3:15, 4:25] = True
    counts = encode_mask(mask)["counts"]
    with pytest.raises(ValueError, match="truncated"):
        check_rle({"size": [H, W], "counts": counts[:-1]}, H, W)
    with pytest.raises(ValueError, match=r"sa_1\.json.*annotations\[0\]"):
        decode_rle([{"size": [H, W], "counts": counts[:-1]}], H, W, "annotations", "sa_1.json")


def test_rle_counts_match_pycocotools_encoding():
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        mask = rng.random((h, w)) < rng.random()
        flat = mask.flatten(order="F").astype(np.int8)
        edges = np.r_[0, np.flatnonzero(np.diff(flat)) + 1, flat.size]
        runs = ([0] if flat[0] else []) + np.diff(edges).tolist()
        assert rle_counts(encode_mask(mask)["counts"]).tolist() == runs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=130), max_size=40),
       st.integers(1, 12), st.integers(1, 12))
def test_fuzz_compressed_rle_either_refused_or_decoded_exactly(counts, h, w):
    try:
        rle = check_rle({"size": [h, w], "counts": counts}, h, w)
    except ValueError:
        return
    mask = mask_utils.decode(rle)
    assert np.array_equal(mask, mask_utils.decode(rle))  # deterministic: every pixel was written
    runs = rle_counts(counts)
    assert int(mask.sum()) == int(runs[1::2].sum())


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers(-5, 40) | st.floats() | st.text(max_size=4),
                    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(
                        st.sampled_from(["size", "counts", "x"]), inner, max_size=3), max_leaves=30))
def test_fuzz_segmentations_give_a_mask_or_a_value_error(segmentation):
    try:
        mask = segmentation_to_mask(segmentation, 6, 7, "seg", "f.json")
    except ValueError as e:
        assert str(e).startswith("f.json: field 'seg")
        return
    assert mask.shape == (6, 7) and mask.dtype == bool


# ------------------------------------------------------------------------------------------ SA-1B
def _sa1b(root, segmentation, h=8, w=10):
    root.mkdir(exist_ok=True)
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "sa_1.jpg")
    record = {"image": {"image_id": 1, "width": w, "height": h, "file_name": "sa_1.jpg"},
              "annotations": [{"id": 3, "segmentation": segmentation}]}
    (root / "sa_1.json").write_text(json.dumps(record))
    return SA1B(root)


def test_sa1b_list_counts_are_checked_and_decoded_alike(tmp_path):
    """Before: the validator let list counts through and decoding then failed without naming the file."""
    mask = np.zeros((8, 10), bool)
    mask[2:5, 3:7] = True
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.r_[0, np.flatnonzero(np.diff(flat)) + 1, flat.size]
    item = _sa1b(tmp_path / "ok", {"size": [8, 10], "counts": np.diff(edges).tolist()})[0]
    assert np.array_equal(item["masks"][0], mask)
    bad = _sa1b(tmp_path / "bad", {"size": [8, 10], "counts": [5, 3]})
    with pytest.raises(ValueError, match=r"sa_1\.json: field 'annotations\[0\]\.segmentation\.counts' sums to 8"):
        bad.load_record(0)


@pytest.mark.parametrize("counts", ["", "0", "1", "Pa"])
def test_sa1b_malformed_counts_name_file_and_annotation(tmp_path, counts):
    ds = _sa1b(tmp_path, {"size": [8, 10], "counts": counts})
    with pytest.raises(ValueError, match=r"sa_1\.json: field 'annotations\[0\]\.segmentation\.counts'"):
        ds[0]


def test_corrupt_image_file_is_named(tmp_path):
    path = tmp_path / "broken.jpg"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"broken\.jpg: cannot read the image"):
        read_image(path)
