"""Real photos for zero-shot checks, never used for training.

Every photo here ships inside a package samkit already installs, so everything loads offline:
scikit-image's sample photos (``skimage.data``, only those bundled with the wheel) and matplotlib's
``grace_hopper.jpg``. :data:`EVAL_PHOTO_SOURCES` lists them all; the scene generator must keep every one of
them out of its texture pool (:data:`SKIMAGE_EVAL_NAMES` gives the scikit-image names, aliases included).

Two kinds of ground truth:

* ``coins``: derived from the photo itself (bright coins on a dark background: region-based
  segmentation and connected components), :func:`coins_instances`.
* every other photo: objects outlined by hand as polygons (:mod:`samkit.data.photo_masks`), people, a cat
  and everyday objects, :func:`real_photo_dataset`. :func:`save_ground_truth_figures` draws the outlines on
  the photos so a reader can check them.

:data:`DEMO_PROMPTS` keeps hand-placed prompts (a click and a box per object) for qualitative figures.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .photo_masks import OBJECTS

PathLike = Union[str, os.PathLike]

#: every photo the evaluation uses, as ``"package:name"``; none may ever be used for training.
#: ``skimage:stereo_motorcycle`` is the left view of the stereo pair (its right view is the same scene).
EVAL_PHOTO_SOURCES: Tuple[str, ...] = (
    "skimage:coins",
    "skimage:astronaut",
    "skimage:camera",
    "skimage:chelsea",
    "skimage:coffee",
    "skimage:rocket",
    "skimage:stereo_motorcycle",
    "matplotlib:grace_hopper.jpg",
)

#: the scikit-image function names behind those sources, aliases included (``cat`` returns ``chelsea``).
SKIMAGE_EVAL_NAMES: Tuple[str, ...] = ("coins", "astronaut", "camera", "chelsea", "cat", "coffee", "rocket",
                                       "stereo_motorcycle")

#: short image ids of the hand-outlined photos (the item's ``image_id``).
IMAGE_IDS: Dict[str, str] = {
    "skimage:astronaut": "astronaut",
    "skimage:camera": "camera",
    "skimage:chelsea": "chelsea",
    "skimage:coffee": "coffee",
    "skimage:rocket": "rocket",
    "skimage:stereo_motorcycle": "motorcycle_left",
    "matplotlib:grace_hopper.jpg": "grace_hopper",
}

CATEGORIES: Tuple[str, ...] = ("person", "animal", "object")

# Demo prompts in original pixels: point (x, y) and box (x0, y0, x1, y1) per object. Apart from the face, which
# has no outline, they are the outlined objects' centre points (where the evaluation clicks first) and tight boxes.
DEMO_PROMPTS: Dict[str, Dict[str, Dict[str, Tuple[float, ...]]]] = {
    "astronaut": {
        "face": {"point": (222, 130), "box": (180, 80, 268, 184)},
        "mission patch": {"point": (170, 385), "box": (133, 348, 207, 423)},
        "helmet": {"point": (397, 428), "box": (278, 344, 510, 511)},
    },
    "coffee": {
        "cup": {"point": (292, 132), "box": (172, 18, 408, 308)},
        "spoon": {"point": (364, 284), "box": (326, 66, 424, 326)},
        "saucer": {"point": (143, 242), "box": (76, 68, 478, 388)},
    },
    "chelsea": {
        "left eye": {"point": (172, 116), "box": (134, 84, 210, 148)},
        "nose": {"point": (263, 244), "box": (230, 226, 292, 264)},
    },
}


def photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as ``H x W x 3`` uint8 RGB (grayscale photos are repeated to RGB)."""
    from skimage import data

    if not hasattr(data, name):
        raise ValueError(f"scikit-image has no sample image {name!r}")
    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3]).astype(np.uint8)


def coins_instances(min_area: int = 250) -> Tuple[np.ndarray, np.ndarray]:
    """The ``coins`` photo and one mask per coin: ``(H x W x 3 uint8, N x H x W bool)``.

    Ground truth derived from the photo itself (region-based segmentation: dark/bright markers,
    watershed on the Sobel elevation map, hole filling), then connected components of at least
    ``min_area`` pixels. Every one of the 24 coins comes out as its own component.
    """
    from scipy import ndimage as ndi
    from skimage import data, filters, segmentation

    gray = data.coins()
    markers = np.zeros_like(gray, dtype=np.int32)
    markers[gray < 30] = 1
    markers[gray > 150] = 2
    regions = segmentation.watershed(filters.sobel(gray), markers)
    fg = ndi.binary_fill_holes(regions == 2)
    labels, n = ndi.label(fg)
    masks = [labels == i for i in range(1, n + 1)]
    masks = [m for m in masks if m.sum() >= min_area]
    return photo("coins"), np.stack(masks)


def coins_dataset() -> list:
    """``coins`` as a one-item dataset (the item dict of samkit's readers) for the evaluations."""
    image, masks = coins_instances()
    return [{"image": image, "masks": masks, "image_id": "coins", "file": "skimage:coins"}]


# ----------------------------------------------------------------------------------------------
# Hand-outlined photos
# ----------------------------------------------------------------------------------------------
def load_source(source: str) -> np.ndarray:
    """A photo named as in :data:`EVAL_PHOTO_SOURCES`, as ``H x W x 3`` uint8 RGB, read from the installed package.

    ``"skimage:NAME"`` calls ``skimage.data.NAME()`` (``stereo_motorcycle`` gives its left view);
    ``"matplotlib:FILE"`` reads matplotlib's bundled sample data. Nothing is downloaded.
    """
    package, _, name = source.partition(":")
    if package == "skimage":
        if name == "stereo_motorcycle":
            from skimage import data

            return np.ascontiguousarray(data.stereo_motorcycle()[0][..., :3]).astype(np.uint8)
        return photo(name)
    if package == "matplotlib":
        from matplotlib import cbook
        from PIL import Image

        try:
            path = cbook.get_sample_data(name, asfileobj=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"matplotlib ships no sample file {name!r} ({err})") from err
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    raise ValueError(f"unknown photo source {source!r}: expected 'skimage:NAME' or 'matplotlib:FILE', "
                     f"e.g. one of {EVAL_PHOTO_SOURCES}")


def rasterize(polygons: Sequence[Sequence[Tuple[float, float]]], shape: Tuple[int, int],
              holes: Sequence[Sequence[Tuple[float, float]]] = ()) -> np.ndarray:
    """``H x W`` bool mask of the union of ``polygons`` minus the union of ``holes``.

    Vertices are ``(x, y)`` in pixels. A pixel (row ``r``, column ``c``) is in when its centre ``(x=c, y=r)``
    lies inside a polygon or on its edge (``skimage.draw.polygon``); parts outside the image are clipped.
    """
    from skimage.draw import polygon as fill

    mask = np.zeros(shape, dtype=bool)
    for value, outlines in ((True, polygons), (False, holes)):
        for outline in outlines:
            xy = np.asarray(outline, dtype=float).reshape(-1, 2)
            if len(xy) < 3:
                raise ValueError(f"a polygon needs at least 3 vertices, got {len(xy)}")
            rr, cc = fill(xy[:, 1], xy[:, 0], shape)
            mask[rr, cc] = value
    return mask


def photo_instances(source: str) -> Tuple[np.ndarray, np.ndarray, List[str], List[str]]:
    """One hand-outlined photo: ``(image H x W x 3 uint8, masks N x H x W bool, names, categories)``.

    Each mask is the object's visible part: its polygons minus its holes minus the polygons of the objects
    it stands ``behind``. Objects come in the order of :data:`samkit.data.photo_masks.OBJECTS`.
    """
    if source not in OBJECTS:
        raise ValueError(f"no hand-drawn outlines for {source!r}; outlined photos: {list(OBJECTS)}")
    image = load_source(source)
    shape = image.shape[:2]
    objects = OBJECTS[source]
    drawn = {name: rasterize(o["polygons"], shape, o["holes"]) for name, o in objects.items()}
    masks, names, categories = [], [], []
    for name, o in objects.items():
        mask = drawn[name].copy()
        for front in o["behind"]:
            if front not in drawn:
                raise ValueError(f"{source}: {name!r} is behind {front!r}, which is not an object of this photo")
            mask &= ~drawn[front]
        masks.append(mask)
        names.append(name)
        categories.append(o["category"])
    return image, np.stack(masks), names, categories


def objects_at(photo_name: str, x: float, y: float) -> List[Tuple[str, np.ndarray]]:
    """The hand-outlined objects of a photo that hold pixel ``(x, y)``: ``(name, H x W bool mask)`` pairs, largest
    first (for a click on a face: the person before the face's parts).

    ``photo_name``: a source as in :data:`EVAL_PHOTO_SOURCES` or its image id (``"astronaut"``, ``"coffee"``, ...).
    A photo without outlines (``coins``, a user's upload) gives ``[]``; a point outside the photo raises.
    """
    sources = {**{s: s for s in OBJECTS}, **{i: s for s, i in IMAGE_IDS.items()}}
    if photo_name not in sources:
        return []
    _, masks, names, _ = photo_instances(sources[photo_name])
    h, w = masks.shape[1:]
    col, row = int(round(x)), int(round(y))
    if not (0 <= col < w and 0 <= row < h):
        raise ValueError(f"point ({x}, {y}) lies outside the {w} x {h} photo {photo_name!r}")
    hits = [(name, mask) for name, mask in zip(names, masks) if mask[row, col]]
    return sorted(hits, key=lambda hit: -int(hit[1].sum()))


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """N x 4 float32 ``[x0, y0, x1, y1]`` of N x H x W bool masks, ends inclusive (last foreground column/row)."""
    boxes = np.zeros((len(masks), 4), dtype=np.float32)
    for k, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[k] = (xs.min(), ys.min(), xs.max(), ys.max())
    return boxes


def real_photo_dataset(include_coins: bool = False) -> List[Dict[str, Any]]:
    """The real-photo evaluation set: one item per photo, in the item format of samkit's evaluations.

    Each item: ``image`` (H x W x 3 uint8), ``masks`` (N x H x W bool, the visible part of each object),
    ``boxes`` (N x 4 float32 tight XYXY boxes with inclusive ends, the evaluation's box prompts),
    ``names`` and ``categories`` (N strings; categories from :data:`CATEGORIES`), ``image_id`` and ``file``
    (the source, as in :data:`EVAL_PHOTO_SOURCES`). With ``include_coins`` the ``coins`` photo comes last,
    its 24 coins named ``coin 1`` ... in category ``object``.

    Never train on these photos: they choose which weights ship.
    """
    items = []
    for source in OBJECTS:
        image, masks, names, categories = photo_instances(source)
        items.append({"image": image, "masks": masks, "boxes": tight_boxes(masks), "names": names,
                      "categories": categories, "image_id": IMAGE_IDS[source], "file": source})
    if include_coins:
        image, masks = coins_instances()
        items.append({"image": image, "masks": masks, "boxes": tight_boxes(masks),
                      "names": [f"coin {i + 1}" for i in range(len(masks))],
                      "categories": ["object"] * len(masks), "image_id": "coins", "file": "skimage:coins"})
    return items


def show_ground_truth(item: Dict[str, Any], ax: Any = None, alpha: float = 0.3, labels: bool = True,
                      seed: int = 1) -> Any:
    """Draw one item's masks on its photo: a translucent fill and an outline per object, with its name.

    The name is written at the object's centre point (the farthest pixel from its boundary, where the
    point-prompt evaluation clicks first), marked with a small cross.
    """
    import matplotlib.pyplot as plt

    from .. import viz
    from .prompts import center_point

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(item["image"])
    masks = np.asarray(item["masks"]).astype(bool)
    colours = viz.random_colors(len(masks), seed=seed)
    for k, mask in enumerate(masks):
        viz.show_mask(mask, ax, color=colours[k], alpha=alpha)
    if labels:
        names = item.get("names") or [str(k) for k in range(len(masks))]
        for k, (mask, name) in enumerate(zip(masks, names)):
            x, y = center_point(mask)
            ax.plot([x], [y], marker="+", color="white", markersize=6, markeredgewidth=1.2)
            ax.text(x, y + 3, name, color="white", fontsize=7, ha="center", va="top",
                    bbox={"facecolor": tuple(colours[k]), "alpha": 0.7, "pad": 1, "edgecolor": "none"})
    ax.set_title(f"{item.get('file', '')}  {len(masks)} objects", fontsize=9)
    ax.set_axis_off()
    return ax


def save_ground_truth_figures(out_dir: PathLike, scale: float = 2.0, include_coins: bool = False,
                              image_ids: Optional[Sequence[str]] = None) -> List[Path]:
    """Write one PNG per photo (``<out_dir>/<image_id>.png``): the outlines drawn on the photo at ``scale``
    times its full resolution, so every vertex can be checked. Returns the paths."""
    import matplotlib.pyplot as plt

    items = real_photo_dataset(include_coins=include_coins)
    if image_ids is not None:
        unknown = set(image_ids) - {it["image_id"] for it in items}
        if unknown:
            raise ValueError(f"unknown image ids {sorted(unknown)}; known: {[it['image_id'] for it in items]}")
        items = [it for it in items if it["image_id"] in set(image_ids)]
    paths = []
    for item in items:
        h, w = item["image"].shape[:2]
        dpi = 100
        fig = plt.figure(figsize=(w * scale / dpi, h * scale / dpi), dpi=dpi)
        ax = fig.add_axes([0, 0, 1, 1])
        show_ground_truth(item, ax)
        ax.set_title("")
        path = Path(out_dir) / f"{item['image_id']}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi, format="png")  # no tight bounding box: exactly scale x the photo's pixels
        plt.close(fig)
        paths.append(path)
    return paths
