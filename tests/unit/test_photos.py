import socket

import numpy as np
import pytest
from scipy import ndimage as ndi

from samkit.data import photos
from samkit.data.photo_masks import OBJECTS


@pytest.fixture(scope="module")
def dataset():
    return photos.real_photo_dataset()


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a photo tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_every_source_loads_offline(monkeypatch):
    _no_network(monkeypatch)
    for source in photos.EVAL_PHOTO_SOURCES:
        image = photos.load_source(source)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, source
        assert image.shape[0] >= 300 and image.shape[1] >= 300, source
        assert image.std() > 10, f"{source} looks blank"
    assert photos.load_source("matplotlib:grace_hopper.jpg").shape == (600, 512, 3)
    assert photos.load_source("skimage:stereo_motorcycle").shape == (500, 741, 3)


def test_unknown_sources_are_refused_with_the_known_ones_named():
    with pytest.raises(ValueError, match="skimage:NAME"):
        photos.load_source("imageio:chelsea.png")
    with pytest.raises(ValueError, match="no sample image"):
        photos.load_source("skimage:no_such_photo")
    with pytest.raises(ValueError, match="outlined photos"):
        photos.photo_instances("skimage:moon")


def test_items_have_the_evaluation_item_format(dataset):
    assert [it["file"] for it in dataset] == list(OBJECTS)
    for it in dataset:
        image, masks = it["image"], it["masks"]
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert masks.dtype == bool and masks.ndim == 3 and masks.shape[1:] == image.shape[:2]
        assert len(it["names"]) == len(it["categories"]) == len(masks)
        assert it["boxes"].shape == (len(masks), 4) and it["boxes"].dtype == np.float32
        for box, mask in zip(it["boxes"], masks):
            ys, xs = np.nonzero(mask)
            assert tuple(box) == (xs.min(), ys.min(), xs.max(), ys.max())
        assert len(set(it["names"])) == len(it["names"]), f"{it['image_id']}: repeated object names"
        assert set(it["categories"]) <= set(photos.CATEGORIES)
        assert it["image_id"] == photos.IMAGE_IDS[it["file"]]
        assert it["file"] in photos.EVAL_PHOTO_SOURCES


def test_counts_people_animals_objects(dataset):
    categories = [c for it in dataset for c in it["categories"]]
    assert len(categories) >= 30
    assert categories.count("person") >= 3  # astronaut, cameraman, Grace Hopper
    assert categories.count("animal") >= 1  # the cat
    assert categories.count("object") >= 25
    assert len(dataset) >= 7
    names = {n for it in dataset for n in it["names"]}
    for everyday in ("cup", "saucer", "spoon", "camera", "tripod", "rocket", "motorcycle", "tower building"):
        assert everyday in names


def test_masks_non_empty_large_and_inside(dataset):
    for it in dataset:
        h, w = it["image"].shape[:2]
        for name, mask in zip(it["names"], it["masks"]):
            assert mask.sum() >= 1000, f"{it['image_id']}/{name}: {mask.sum()} px"
            assert not mask.all(), f"{it['image_id']}/{name} covers the whole photo"
        for name, obj in OBJECTS[it["file"]].items():
            for outline in obj["polygons"] + obj["holes"]:
                xy = np.asarray(outline)
                assert xy.shape[1] == 2 and len(xy) >= 4, f"{it['image_id']}/{name}: too few vertices"
                assert (xy[:, 0] >= 0).all() and (xy[:, 0] <= w).all(), f"{it['image_id']}/{name}: x outside"
                assert (xy[:, 1] >= 0).all() and (xy[:, 1] <= h).all(), f"{it['image_id']}/{name}: y outside"


def test_masks_are_visible_parts(dataset):
    """An object never overlaps the objects it stands behind, and every 'behind' names a real object."""
    for it in dataset:
        by_name = dict(zip(it["names"], it["masks"]))
        for name, obj in OBJECTS[it["file"]].items():
            for front in obj["behind"]:
                assert front in by_name, f"{it['image_id']}: {name} is behind unknown {front}"
                assert not (by_name[name] & by_name[front]).any(), f"{it['image_id']}: {name} overlaps {front}"
    coffee = next(it for it in dataset if it["image_id"] == "coffee")
    saucer, cup = (coffee["masks"][coffee["names"].index(n)] for n in ("saucer", "cup"))
    drawn_saucer = photos.rasterize(OBJECTS["skimage:coffee"]["saucer"]["polygons"], saucer.shape)
    assert drawn_saucer.sum() > saucer.sum() + 10_000  # the cup hides a large part of it


def test_outlines_follow_image_edges(dataset):
    """The image gradient is stronger on the drawn boundaries than on the same boundaries moved by 5 px.

    Catches outlines that are offset, transposed or scaled; a few objects whose interior has stronger
    edges than their outline (the mission patch's lettering) may score below 1.
    """
    from skimage import color, filters

    def strength(edges, mask):
        ring = mask & ~ndi.binary_erosion(mask)
        ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = False
        return edges[ring].mean()

    ratios, shifted_ratios = [], []
    for it in dataset:
        edges = filters.sobel(filters.gaussian(color.rgb2gray(it["image"]), 1.0))
        for mask in it["masks"]:
            moved = [strength(edges, np.roll(mask, s, (0, 1))) for s in ((5, 0), (-5, 0), (0, 5), (0, -5))]
            ratios.append(strength(edges, mask) / max(moved))
            shifted = np.roll(mask, (4, -3), (0, 1))
            shifted_ratios.append(strength(edges, shifted) / strength(edges, mask))
    ratios = np.array(ratios)
    assert (ratios > 1.0).mean() >= 0.9, np.round(ratios, 2)
    assert np.median(ratios) >= 1.15
    assert np.median(shifted_ratios) < 0.9  # the check does see a small offset


def test_rasterize_convention():
    # pixel centres inside the polygon or on its edge are in
    square = [(0, 0), (4, 0), (4, 4), (0, 4)]
    m = photos.rasterize([square], (8, 8))
    assert m.sum() == 25 and m[:5, :5].all()
    inner = [(0.5, 0.5), (3.5, 0.5), (3.5, 3.5), (0.5, 3.5)]
    assert photos.rasterize([inner], (8, 8)).sum() == 9
    ring = photos.rasterize([square], (8, 8), holes=[[(1, 1), (3, 1), (3, 3), (1, 3)]])
    assert ring.sum() == 25 - 9 and not ring[2, 2]
    clipped = photos.rasterize([[(-5, -5), (20, -5), (20, 2), (-5, 2)]], (8, 8))
    assert clipped.sum() == 3 * 8
    with pytest.raises(ValueError, match="3 vertices"):
        photos.rasterize([[(0, 0), (1, 1)]], (8, 8))


def test_deterministic(dataset):
    again = photos.real_photo_dataset()
    for a, b in zip(dataset, again):
        assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["masks"], b["masks"])
        assert a["names"] == b["names"] and a["categories"] == b["categories"]


def test_coins_come_separately():
    items = photos.real_photo_dataset(include_coins=True)
    coins = items[-1]
    assert coins["image_id"] == "coins" and coins["file"] == "skimage:coins"
    assert len(coins["masks"]) == 24 == len(coins["names"]) and set(coins["categories"]) == {"object"}
    assert "coins" not in {it["image_id"] for it in photos.real_photo_dataset()}
    assert photos.coins_dataset()[0]["masks"].shape == coins["masks"].shape


def test_sources_and_skimage_names_cover_every_photo_used():
    assert set(OBJECTS) | {"skimage:coins"} == set(photos.EVAL_PHOTO_SOURCES)
    skimage_names = {s.split(":", 1)[1] for s in photos.EVAL_PHOTO_SOURCES if s.startswith("skimage:")}
    assert skimage_names <= set(photos.SKIMAGE_EVAL_NAMES)
    assert "cat" in photos.SKIMAGE_EVAL_NAMES  # skimage.data.cat() is chelsea


def test_demo_prompts_land_on_their_objects(dataset):
    by_id = {it["image_id"]: it for it in dataset}
    for image_id, objects in photos.DEMO_PROMPTS.items():
        it = by_id[image_id]
        for name, prompt in objects.items():
            if name not in it["names"]:
                continue
            mask = it["masks"][it["names"].index(name)]
            x, y = prompt["point"]
            assert mask[int(y), int(x)], f"{image_id}/{name}: the demo click misses the object"
            ys, xs = np.nonzero(mask)
            assert tuple(prompt["box"]) == (xs.min(), ys.min(), xs.max(), ys.max()), f"{image_id}/{name}"


def test_evaluation_reads_the_items(dataset):
    from samkit.evaluate import _iterate_objects

    objects, counts = _iterate_objects(dataset, None, progress=False, desc="")
    assert sum(1 for _ in objects) == sum(len(it["masks"]) for it in dataset)
    assert counts["skipped_empty"] == 0 and counts["images"] == len(dataset)


def test_ground_truth_figures(tmp_path):
    paths = photos.save_ground_truth_figures(tmp_path, scale=1.0, image_ids=["rocket"])
    assert [p.name for p in paths] == ["rocket.png"]
    from PIL import Image

    with Image.open(paths[0]) as im:
        assert im.size == (640, 427)
    with pytest.raises(ValueError, match="unknown image ids"):
        photos.save_ground_truth_figures(tmp_path, image_ids=["moon"])


def test_objects_at_lists_the_outlines_under_a_point_largest_first():
    hits = photos.objects_at("astronaut", 215, 110)  # her face: inside the astronaut's outline
    assert [name for name, _ in hits][:1] == ["astronaut"]
    assert all(mask[110, 215] for _, mask in hits)
    assert [m.sum() for _, m in hits] == sorted((m.sum() for _, m in hits), reverse=True)
    assert photos.objects_at("skimage:astronaut", 215, 110)[0][0] == "astronaut"
    assert photos.objects_at("coins", 50, 60) == []  # no hand-drawn outlines
    with pytest.raises(ValueError, match="outside"):
        photos.objects_at("astronaut", 600, 10)
