import zipfile

import numpy as np
import pytest

from samkit.data import NDISPark, generate_parking
from samkit.data.parking import CAR_CATEGORY_ID, parking_lot, safe_extract


@pytest.fixture(scope="module")
def lots(tmp_path_factory):
    root = tmp_path_factory.mktemp("ndis")
    generate_parking(root, n_train=2, n_val=1, size=(160, 120), seed=2, progress=False)
    return root


def test_layout(lots):
    assert (lots / "train" / "train_coco_annotations.json").is_file()
    assert (lots / "validation" / "val_coco_annotations.json").is_file()
    assert len(list((lots / "train" / "imgs").glob("*.jpg"))) == 2
    assert len(list((lots / "validation" / "imgs").glob("*.jpg"))) == 1


def test_round_trip_identical(lots):
    train = NDISPark(lots, "train")
    val = NDISPark(lots, "val")
    assert len(train) == 2 and len(val) == 1
    for i in range(2):
        item = train[i]
        image, masks = parking_lot(i, size=(160, 120), seed=2, night=False)
        assert item["image"].shape == (120, 160, 3)
        assert np.array_equal(item["masks"], masks) and len(masks) > 3
        assert (item["category_ids"] == CAR_CATEGORY_ID).all()
    night_item = val[0]
    _, masks = parking_lot(0, size=(160, 120), seed=2, night=True)
    assert np.array_equal(night_item["masks"], masks)
    # night is darker than day
    assert night_item["image"].mean() < train[0]["image"].mean() * 0.8


def test_nested_root_and_errors(lots, tmp_path):
    with pytest.raises(ValueError, match="split"):
        NDISPark(lots, "test")
    with pytest.raises(FileNotFoundError, match="train_coco_annotations.json"):
        NDISPark(tmp_path, "train")
    nested = tmp_path / "outer"
    nested.mkdir()
    (nested / "ndis_park").symlink_to(lots, target_is_directory=True)
    assert len(NDISPark(nested, "train")) == 2


def test_safe_extract(tmp_path):
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("train/imgs/a.txt", "x")
    safe_extract(good, tmp_path / "out")
    assert (tmp_path / "out" / "train" / "imgs" / "a.txt").read_text() == "x"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(ValueError, match="outside"):
        safe_extract(bad, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists()


def test_download_uses_existing_data(lots):
    from samkit.data import download_ndispark

    assert download_ndispark(lots) == lots  # already there: no network


def test_committed_samples_match_generator():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "data" / "samples" / "ndispark"
    train, val = NDISPark(root, "train"), NDISPark(root, "validation")
    assert len(train) == 4 and len(val) == 2
    assert np.array_equal(train[3]["masks"], parking_lot(3, size=(320, 240), seed=0)[1])
    assert np.array_equal(val[1]["masks"], parking_lot(1, size=(320, 240), seed=0, night=True)[1])
