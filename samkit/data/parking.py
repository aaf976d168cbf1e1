"""NDISPark (parked cars, instance masks) and generated parking lots in its exact layout.

NDISPark, the "Night and Day Instance Segmented Park" data set (Ciampi et al.), is one of the 23 data
sets of SAM's zero-shot evaluation.

* Source: Zenodo record 6560823, archive ``ndis_park.zip``, 118,187,828 bytes.
* Licence: ODC-By 1.0 (attribution required; cite Ciampi et al.).
* Layout after unzipping::

      train/imgs/*.jpg          train/train_coco_annotations.json
      validation/imgs/*.jpg     validation/val_coco_annotations.json
      test/                     (car counts only, no masks; not read here)

* COCO instance annotations; category id 3 is ``car`` (:data:`CAR_CATEGORY_ID`). Train: 112 daytime
  images, 111 of them with cars, 2,577 instance masks (one image has no car). Validation: 30 night images,
  725 annotated cars.
* The archive's SHA-256 is not pinned yet: :func:`download_ndispark` checks the byte size; compute the
  hash on a first real download and pin it in :data:`NDISPARK_SHA256`.

:class:`NDISPark` reads either split with :class:`samkit.data.coco.COCOInstances` (cars only).
:func:`generate_parking` writes look-alike lots (rows of parked cars seen from above or obliquely;
train by day, validation by night) in the same layout, for tests, samples and offline notebooks.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

from .coco import COCOInstances

__all__ = [
    "NDISPark",
    "download_ndispark",
    "generate_parking",
    "safe_extract",
    "NDISPARK_URL",
    "NDISPARK_SIZE",
    "NDISPARK_SHA256",
    "CAR_CATEGORY_ID",
]

PathLike = Union[str, os.PathLike]

NDISPARK_URL = "https://zenodo.org/records/6560823/files/ndis_park.zip?download=1"
NDISPARK_FILE = "ndis_park.zip"
NDISPARK_SIZE = 118_187_828
NDISPARK_SHA256: Optional[str] = None  # pin after the first verified download
CAR_CATEGORY_ID = 3
SPLITS = {
    "train": ("train/imgs", "train/train_coco_annotations.json"),
    "validation": ("validation/imgs", "validation/val_coco_annotations.json"),
}


def _split_root(root: Path) -> Path:
    """``root`` itself, or its single sub-folder holding ``train/`` or ``validation/`` (archives often
    unpack into one top folder)."""
    if (root / "train").is_dir() or (root / "validation").is_dir():
        return root
    subs = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    for sub in subs:
        if (sub / "train").is_dir() or (sub / "validation").is_dir():
            return sub
    return root


class NDISPark(COCOInstances):
    """One split of NDISPark (or a generated look-alike), cars only.

    Arguments:
        root: the unpacked archive (holding ``train/`` and ``validation/``, possibly one level down).
        split: ``"train"`` or ``"validation"`` (``"val"`` is accepted).
        **kwargs: passed to :class:`COCOInstances` (``skip_empty``, ``missing_segmentation``, ...).

    Items as :class:`COCOInstances` (``image`` H x W x 3 uint8, ``masks`` N x H x W bool, ``boxes``
    N x 4 XYXY, ...), every mask a car.
    """

    def __init__(self, root: PathLike, split: str = "train", **kwargs: Any) -> None:
        split = "validation" if split == "val" else split
        if split not in SPLITS:
            raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
        self.root = _split_root(Path(root))
        self.split = split
        images, annotations = SPLITS[split]
        ann = self.root / annotations
        if not ann.is_file():
            raise FileNotFoundError(
                f"NDISPark {split} annotations not found: {ann} (expected layout: {images}/ and "
                f"{annotations} under {self.root}; see samkit.data.parking.download_ndispark)")
        kwargs.setdefault("category_ids", [CAR_CATEGORY_ID])
        super().__init__(self.root / images, ann, **kwargs)


def safe_extract(archive: PathLike, dest: PathLike) -> List[Path]:
    """Unzip ``archive`` into ``dest``, refusing any member that would land outside ``dest``
    (absolute paths, ``..``), and return the extracted paths."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    with zipfile.ZipFile(archive) as zf:
        for member in zf.infolist():
            name = member.filename
            target = (dest / name).resolve()
            if os.path.isabs(name) or (target != dest and dest not in target.parents):
                raise ValueError(f"{archive}: member '{name}' would be written outside {dest}; refusing to unzip")
        for member in zf.infolist():
            zf.extract(member, dest)
            out.append(dest / member.filename)
    return out


def download_ndispark(root: PathLike, progress: bool = True, keep_archive: bool = True) -> Path:
    """Download ``ndis_park.zip`` from Zenodo (record 6560823) into ``root``, check it, unzip it safely.

    Does nothing when ``root`` already holds the training annotations. Returns the folder to pass to
    :class:`NDISPark`. The data set is under ODC-By 1.0: cite Ciampi et al. when you use it.
    """
    from ..checkpoints import download, verify_once  # imported here: only this function needs the network code

    root = Path(root).expanduser()
    split_root = _split_root(root) if root.is_dir() else root
    if (split_root / SPLITS["train"][1]).is_file():
        return split_root
    archive = root / NDISPARK_FILE
    if archive.is_file():
        verify_once(archive, sha256=NDISPARK_SHA256, size=NDISPARK_SIZE)
    else:
        download(NDISPARK_URL, archive, sha256=NDISPARK_SHA256, size=NDISPARK_SIZE, progress=progress)
    safe_extract(archive, root)
    if not keep_archive:
        archive.unlink()
    return _split_root(root)


# ---------------------------------------------------------------------------------------------
# generated parking lots
# ---------------------------------------------------------------------------------------------

_CAR_COLOURS = np.array([
    [0.92, 0.92, 0.9], [0.08, 0.08, 0.09], [0.62, 0.63, 0.65], [0.38, 0.39, 0.41], [0.7, 0.1, 0.1],
    [0.12, 0.22, 0.55], [0.08, 0.12, 0.3], [0.15, 0.35, 0.2], [0.78, 0.72, 0.58], [0.85, 0.7, 0.15],
    [0.55, 0.3, 0.15], [0.95, 0.95, 0.97],
], dtype=np.float32)
_CAR_WEIGHTS = np.array([5, 4, 5, 3, 2, 2, 1.5, 1, 1, 0.5, 0.7, 2.0])


def _rounded_rect(length: float, width: float, radius: float, n: int = 6) -> np.ndarray:
    """Outline of a rounded rectangle centred at 0 (long side along x), as K x 2 (x, y)."""
    hx, hy = length / 2 - radius, width / 2 - radius
    pts = []
    for cx, cy, a0 in ((hx, hy, 0.0), (-hx, hy, 0.5 * np.pi), (-hx, -hy, np.pi), (hx, -hy, 1.5 * np.pi)):
        for a in np.linspace(a0, a0 + 0.5 * np.pi, n):
            pts.append((cx + radius * np.cos(a), cy + radius * np.sin(a)))
    return np.asarray(pts)


class _Camera:
    """Maps ground coordinates (metres) to image pixels: a scale, a rotation and a vertical perspective."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, ground: Tuple[float, float]) -> None:
        self.w, self.h = width, height
        self.tilt = rng.uniform(0.0, 0.55)         # 0 = straight down; larger = far rows shrink
        self.angle = rng.normal(0, 0.08)
        self.gw, self.gh = ground

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        x = pts[:, 0] / self.gw - 0.5              # -0.5..0.5 across
        y = pts[:, 1] / self.gh                    # 0 (far) .. 1 (near)
        ca, sa = np.cos(self.angle), np.sin(self.angle)
        x, y = ca * x - sa * (y - 0.5), sa * x + ca * (y - 0.5) + 0.5
        shrink = 1.0 - self.tilt * (1.0 - y)       # far rows are narrower
        px = (0.5 + x * shrink) * self.w
        py = (self.tilt * 0.5 * y ** 2 + (1 - self.tilt * 0.5) * y) * self.h
        return np.stack([px, py], axis=1)

    def scale_at(self, y_ground: float) -> float:
        return 1.0 - self.tilt * (1.0 - y_ground / self.gh)


def _fill(canvas: np.ndarray, pts: np.ndarray, colour: np.ndarray, alpha: float = 1.0,
          label: Optional[np.ndarray] = None, k: int = 0) -> None:
    h, w = canvas.shape[:2]
    rr, cc = draw_polygon(pts[:, 1], pts[:, 0], shape=(h, w))
    if alpha >= 1.0:
        canvas[rr, cc] = colour
    else:
        canvas[rr, cc] = (1 - alpha) * canvas[rr, cc] + alpha * colour
    if label is not None:
        label[rr, cc] = k


def _lot(rng: np.random.Generator, size: Tuple[int, int], night: bool) -> Tuple[np.ndarray, np.ndarray]:
    """One parking lot: image H x W x 3 uint8 and car masks N x H x W bool (visible parts)."""
    width, height = size
    gw = rng.uniform(30.0, 60.0)                          # metres across
    gh = gw * height / width * rng.uniform(0.9, 1.2)
    cam = _Camera(rng, width, height, (gw, gh))
    px_per_m = width / gw

    # asphalt: grey with coarse stains and fine grain
    base = rng.uniform(0.32, 0.5)
    coarse = ndimage.zoom(rng.normal(0, 1, (8, 8)), (height / 8, width / 8), order=1)[:height, :width]
    fine = rng.normal(0, 1, (height, width))
    shade = base + 0.035 * coarse + 0.025 * fine
    canvas = np.repeat(shade[:, :, None], 3, axis=2).astype(np.float32)
    canvas *= np.array([1.0, 1.0, 1.02 + rng.uniform(-0.02, 0.04)], dtype=np.float32)
    label = np.zeros((height, width), dtype=np.int16)

    # rows of stalls: cars nose-in, perpendicular to the aisle
    stall_w = rng.uniform(2.4, 2.7)
    stall_l = rng.uniform(4.8, 5.4)
    aisle = rng.uniform(5.5, 7.0)
    line_colour = np.array([0.9, 0.9, 0.85] if rng.random() < 0.8 else [0.9, 0.8, 0.2], dtype=np.float32)
    rows_y = []
    y = rng.uniform(-1.0, 2.0)
    while y < gh + stall_l:
        rows_y.append(y)
        y += stall_l if len(rows_y) % 2 else stall_l + aisle
    cars: List[Tuple[float, Any]] = []
    x0 = rng.uniform(-stall_w, 0)
    for r, ry in enumerate(rows_y):
        # painted stall lines
        for sx in np.arange(x0, gw + stall_w, stall_w):
            line = np.array([[sx - 0.06, ry], [sx + 0.06, ry], [sx + 0.06, ry + stall_l], [sx - 0.06, ry + stall_l]])
            _fill(canvas, cam(line), line_colour, alpha=0.8)
        for sx in np.arange(x0, gw, stall_w):
            if rng.random() < 0.22:
                continue  # empty stall
            cars.append((ry + stall_l / 2, (sx + stall_w / 2, ry + stall_l / 2, r)))
    # a painted aisle centre line
    cars.sort(key=lambda c: c[0])  # far cars first, near cars occlude them

    k = 0
    lights = []
    for _, (cx, cy, r) in cars:
        length = rng.uniform(3.9, 4.9)
        wide = rng.uniform(1.7, 1.95)
        jitter_x = rng.normal(0, 0.18)
        jitter_a = rng.normal(0, 0.05)
        facing = 1.0 if (r % 2 == 0) ^ (rng.random() < 0.15) else -1.0
        body = _rounded_rect(length, wide, 0.35)
        # the car's long axis runs along ground y (into the stall)
        rot = np.array([[np.cos(np.pi / 2 + jitter_a), -np.sin(np.pi / 2 + jitter_a)],
                        [np.sin(np.pi / 2 + jitter_a), np.cos(np.pi / 2 + jitter_a)]])
        centre = np.array([cx + jitter_x, cy])

        def place(pts: np.ndarray) -> np.ndarray:
            return cam(pts @ rot.T + centre)

        # shadow (to one side by day)
        if not night:
            off = np.array([0.35, 0.25])
            _fill(canvas, cam(_rounded_rect(length + 0.2, wide + 0.2, 0.45) @ rot.T + centre + off),
                  np.zeros(3, np.float32), alpha=0.45)
        colour = _CAR_COLOURS[rng.choice(len(_CAR_COLOURS), p=_CAR_WEIGHTS / _CAR_WEIGHTS.sum())]
        colour = np.clip(colour * rng.uniform(0.85, 1.12), 0, 1)
        k += 1
        _fill(canvas, place(body), colour, label=label, k=k)
        glass = np.array([0.1, 0.12, 0.15], dtype=np.float32) + rng.uniform(0, 0.12)
        f = facing
        # windscreen, roof, rear window (trapezoids along the long axis)
        ws = np.array([[f * 0.55, -0.72], [f * 0.55, 0.72], [f * 1.25, 0.62], [f * 1.25, -0.62]]) * [1, wide / 1.8]
        rw = np.array([[-f * 0.9, -0.66], [-f * 0.9, 0.66], [-f * 1.35, 0.58], [-f * 1.35, -0.58]]) * [1, wide / 1.8]
        roof = _rounded_rect(1.45, wide * 0.72, 0.15) + [f * -0.18, 0]
        _fill(canvas, place(ws), glass)
        _fill(canvas, place(rw), glass)
        _fill(canvas, place(roof), np.clip(colour * 1.08 + 0.03, 0, 1))
        # side mirrors and a highlight
        for side in (-1, 1):
            mirror = np.array([[f * 0.5, side * wide / 2], [f * 0.62, side * wide / 2],
                               [f * 0.62, side * (wide / 2 + 0.14)], [f * 0.5, side * (wide / 2 + 0.14)]])
            _fill(canvas, place(mirror), colour * 0.9, label=label, k=k)
        if night and rng.random() < 0.12:
            front = place(np.array([[f * length / 2, 0.0]]))[0]
            lights.append((front, cam.scale_at(cy) * px_per_m))

    image = canvas
    if night:
        # sodium lamps: dark, orange, low contrast, pools of light, glare and heavy noise
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        light = np.full((height, width), rng.uniform(0.12, 0.22), dtype=np.float32)
        for _ in range(int(rng.integers(1, 4))):
            ly, lx = rng.uniform(0, height), rng.uniform(0, width)
            rad = rng.uniform(0.2, 0.45) * width
            light += rng.uniform(0.25, 0.6) * np.exp(-((yy - ly) ** 2 + (xx - lx) ** 2) / (2 * rad ** 2))
        image = image * light[:, :, None] * np.array([1.0, 0.72, 0.38], dtype=np.float32)
        image = 0.04 + 0.85 * image
        for (fx, fy), scale in lights:  # headlight glare
            rad = 1.2 * scale
            glare = np.exp(-((yy - fy) ** 2 + (xx - fx) ** 2) / (2 * rad ** 2))
            image = image + glare[:, :, None] * np.array([1.0, 0.95, 0.8], dtype=np.float32)
        image = ndimage.gaussian_filter(image, (0.8, 0.8, 0))
        image = image + rng.normal(0, 0.035, (height, width, 1)).astype(np.float32)
    else:
        image = image * rng.uniform(0.9, 1.15)
        image = ndimage.gaussian_filter(image, (0.5, 0.5, 0))
        image = image + rng.normal(0, 0.01, (height, width, 1)).astype(np.float32)
    image = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    counts = np.bincount(label.ravel(), minlength=k + 1)
    keep = np.asarray([i for i in range(1, k + 1) if counts[i] >= 20], dtype=np.int16)
    masks = label[None] == keep[:, None, None]
    return image, masks


def _write_split(out: Path, images_dir: str, ann_file: str, n: int, size: Tuple[int, int], seed: int,
                 night: bool, progress: bool) -> None:
    from pycocotools import mask as mask_utils
    from tqdm.auto import tqdm

    (out / images_dir).mkdir(parents=True, exist_ok=True)
    images: List[Dict[str, Any]] = []
    annotations: List[Dict[str, Any]] = []
    for i in tqdm(range(n), desc=f"parking {'night' if night else 'day'}", disable=not progress):
        rng = np.random.default_rng([seed, int(night), i])
        image, masks = _lot(rng, size, night)
        camera = 60 + i % 7
        name = f"{camera}_{1531000000 + 3607 * i + (500000 if night else 0)}.jpg"
        Image.fromarray(image).save(out / images_dir / name, quality=90)
        images.append({"id": i, "file_name": name, "width": size[0], "height": size[1]})
        if len(masks):
            rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
            boxes = mask_utils.toBbox(rles)
            areas = mask_utils.area(rles)
            for rle, box, area in zip(rles, boxes, areas):
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i, "category_id": CAR_CATEGORY_ID,
                    "segmentation": {"size": [size[1], size[0]], "counts": rle["counts"].decode("ascii")},
                    "bbox": [float(v) for v in box], "area": int(area), "iscrowd": 0})
    data = {"info": {"description": "samkit generated parking lots in the NDISPark layout"},
            "images": images, "annotations": annotations,
            "categories": [{"id": CAR_CATEGORY_ID, "name": "car", "supercategory": "vehicle"}]}
    with open(out / ann_file, "w") as f:
        json.dump(data, f)


def generate_parking(root: PathLike, n_train: int = 111, n_val: int = 30, size: Tuple[int, int] = (640, 480),
                     seed: int = 0, progress: bool = True) -> Path:
    """Write generated parking lots in NDISPark's layout under ``root`` and return ``root``.

    ``train/``: ``n_train`` daytime lots (sunlit asphalt, shadows); ``validation/``: ``n_val`` night lots
    (dark, sodium-lamp orange, low contrast, glare, noise). ``size`` is ``(width, height)``. Masks are
    the visible part of each car (near cars hide far ones in oblique views), stored as COCO RLE with
    category id 3 (``car``). Lot ``i`` of a split is deterministic in ``(seed, split, i)``.
    """
    root = Path(root)
    _write_split(root, *SPLITS["train"], n_train, size, seed, night=False, progress=progress)
    _write_split(root, *SPLITS["validation"], n_val, size, seed, night=True, progress=progress)
    return root


def parking_lot(index: int, size: Tuple[int, int] = (640, 480), seed: int = 0, night: bool = False
                ) -> Tuple[np.ndarray, np.ndarray]:
    """Lot ``index`` in memory, exactly as :func:`generate_parking` draws it (before JPEG):
    image H x W x 3 uint8, masks N x H x W bool."""
    return _lot(np.random.default_rng([seed, int(night), index]), size, night)
