"""BSDS500 (Berkeley Segmentation Data Set, Arbelaez et al., TPAMI 2011): the edge-detection benchmark of §7.2.

Layout (as in the official archive under ``BSR/BSDS500/data``)::

    images/{train,val,test}/<id>.jpg                 200 / 100 / 200 images, 481x321 or 321x481
    groundTruth/{train,val,test}/<id>.mat            one MATLAB file per image

Each ``.mat`` holds ``groundTruth``: a 1 x K cell array (K = 4-9 human annotators), each cell a struct with
``Segmentation`` (H x W uint16 region labels, 1..R) and ``Boundaries`` (H x W logical, the region borders).

Archive: ``BSR_bsds500.tgz`` from the Berkeley vision group (see :data:`BSDS500_URL`), 70,763,455 bytes.
Its licence allows research use; do not redistribute it. CI uses :func:`write_bsds_sample`, which writes a
few generated images in the same layout.
"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import numpy as np

__all__ = ["BSDS500", "write_bsds_sample", "download_bsds500", "load_ground_truth", "BSDS500_URL",
           "BSDS500_SIZE", "SPLITS"]

SPLITS = ("train", "val", "test")

# The official archive (Berkeley Computer Vision Group, "Contour Detection and Image Segmentation Resources").
BSDS500_URL = "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/BSR_bsds500.tgz"
# Byte size reported consistently by several independent users of the archive. No official sha256 is
# published; compute it on the first real download and pin it here.
BSDS500_SIZE = 70_763_455

PathLike = Union[str, Path]


def _data_root(root: Path) -> Path:
    """Accept the data folder itself or any folder above it in the archive's layout."""
    for candidate in (root, root / "data", root / "BSDS500" / "data", root / "BSR" / "BSDS500" / "data"):
        if (candidate / "images").is_dir() and (candidate / "groundTruth").is_dir():
            return candidate
    raise FileNotFoundError(f"no BSDS500 layout under {root}: expected images/<split>/*.jpg and "
                            f"groundTruth/<split>/*.mat (or BSR/BSDS500/data/...)")


def load_ground_truth(path: PathLike) -> Tuple[np.ndarray, np.ndarray]:
    """Read one BSDS ``.mat`` file.

    Returns:
        segmentations K x H x W int32 (region labels) and boundaries K x H x W bool, one per annotator.
    """
    from scipy.io import loadmat

    path = Path(path)
    try:
        cells = loadmat(str(path))["groundTruth"]
    except KeyError:
        raise ValueError(f"{path}: no 'groundTruth' variable") from None
    segs, bounds = [], []
    for k in range(cells.size):
        entry = cells.flat[k]
        try:
            segs.append(np.asarray(entry["Segmentation"][0, 0], dtype=np.int32))
            bounds.append(np.asarray(entry["Boundaries"][0, 0]).astype(bool))
        except (ValueError, IndexError, KeyError):
            raise ValueError(f"{path}: groundTruth cell {k} lacks the 'Segmentation'/'Boundaries' fields") from None
    if not segs:
        raise ValueError(f"{path}: groundTruth is empty")
    return np.stack(segs), np.stack(bounds)


class BSDS500:
    """The BSDS500 images and their human annotations.

    Arguments:
        root: the ``data`` folder (or the extracted archive's top folder).
        split: ``'train'``, ``'val'`` or ``'test'`` (the paper evaluates on ``test``).

    Items are dicts: ``image`` H x W x 3 uint8 RGB, ``boundaries`` K x H x W bool (one map per annotator),
    ``segmentations`` K x H x W int32, ``masks`` N x H x W bool (the regions of the first annotator, so
    the point-prompt evaluation accepts it), ``name`` (the image id).
    """

    def __init__(self, root: PathLike, split: str = "test") -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.root = _data_root(Path(root))
        self.split = split
        image_dir, gt_dir = self.root / "images" / split, self.root / "groundTruth" / split
        if not image_dir.is_dir():
            raise FileNotFoundError(f"missing image folder {image_dir}")
        self.image_paths = sorted(image_dir.glob("*.jpg"))
        if not self.image_paths:
            raise FileNotFoundError(f"no .jpg images in {image_dir}")
        self.gt_paths = [gt_dir / (p.stem + ".mat") for p in self.image_paths]
        missing = [str(p) for p in self.gt_paths if not p.exists()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} ground-truth files are missing, e.g. {missing[0]}")

    def __len__(self) -> int:
        return len(self.image_paths)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        from PIL import Image

        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        path = self.image_paths[index]
        image = np.asarray(Image.open(path).convert("RGB"))
        segs, bounds = load_ground_truth(self.gt_paths[index])
        if segs.shape[1:] != image.shape[:2]:
            raise ValueError(f"{self.gt_paths[index]}: annotations {segs.shape[1:]} do not match the image "
                             f"{image.shape[:2]} of {path}")
        labels = np.unique(segs[0])
        masks = segs[0][None] == labels[:, None, None]
        return dict(image=image, boundaries=bounds, segmentations=segs, masks=masks, name=path.stem)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


# ----------------------------------------------------------------------------------------------
def _boundaries(seg: np.ndarray) -> np.ndarray:
    """Thin region borders: pixels whose right or lower neighbour has another label, thinned to one pixel."""
    from skimage.morphology import thin

    b = np.zeros(seg.shape, dtype=bool)
    b[:, :-1] |= seg[:, :-1] != seg[:, 1:]
    b[:-1, :] |= seg[:-1, :] != seg[1:, :]
    return thin(b)


def _scene(rng: np.random.Generator, h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    """A generated picture (background + ellipses and rectangles) and its region labels (1..R)."""
    yy, xx = np.mgrid[0:h, 0:w]
    seg = np.ones((h, w), dtype=np.uint16)
    colours = [rng.integers(0, 256, 3)]
    for region in range(2, 2 + int(rng.integers(3, 6))):
        cx, cy = rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h
        rx, ry = rng.uniform(0.08, 0.25) * w, rng.uniform(0.08, 0.25) * h
        if rng.random() < 0.5:
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        else:
            inside = (np.abs(xx - cx) < rx) & (np.abs(yy - cy) < ry)
        seg[inside] = region
        colours.append(rng.integers(0, 256, 3))
    palette = np.array(colours, dtype=np.float64)
    image = palette[seg - 1] + rng.normal(0, 6, (h, w, 3))
    # relabel to consecutive labels (a shape may be fully covered)
    _, seg = np.unique(seg, return_inverse=True)
    return np.clip(image, 0, 255).astype(np.uint8), (seg.reshape(h, w) + 1).astype(np.uint16)


def _coarser(rng: np.random.Generator, seg: np.ndarray) -> np.ndarray:
    """Another annotator: merges one random region into the background (humans differ in detail)."""
    labels = np.unique(seg)
    if len(labels) <= 2:
        return seg.copy()
    out = seg.copy()
    out[out == rng.choice(labels[1:])] = labels[0]
    _, out = np.unique(out, return_inverse=True)
    return (out.reshape(seg.shape) + 1).astype(np.uint16)


def write_bsds_sample(root: PathLike, n: int = 3, size: Tuple[int, int] = (160, 120), seed: int = 0,
                      split: str = "test", annotators: int = 3) -> Path:
    """Write ``n`` generated images with ``annotators`` human-like annotations in the BSDS500 layout.

    Arguments:
        root: output folder (becomes the ``data`` folder: ``root/images/<split>``, ``root/groundTruth/<split>``).
        size: ``(width, height)`` of each image.

    Returns:
        ``root``. The ``.mat`` files use the real files' nesting (a 1 x K cell of structs with
        ``Segmentation`` uint16 and ``Boundaries`` logical), so :class:`BSDS500` reads both alike.
    """
    from PIL import Image
    from scipy.io import savemat

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 1 or annotators < 1:
        raise ValueError(f"n and annotators must be >= 1, got {n}, {annotators}")
    w, h = size
    root = Path(root)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "groundTruth" / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        image, seg = _scene(rng, h, w)
        name = f"{100000 + i}"
        Image.fromarray(image).save(root / "images" / split / f"{name}.jpg", quality=95)
        cells = np.empty((1, annotators), dtype=object)
        for k in range(annotators):
            s = seg if k == 0 else _coarser(rng, seg)
            cells[0, k] = {"Segmentation": s, "Boundaries": _boundaries(s)}
        savemat(str(root / "groundTruth" / split / f"{name}.mat"), {"groundTruth": cells})
    return root


def download_bsds500(root: PathLike, progress: bool = True, extract: bool = True) -> Path:
    """Download the official BSDS500 archive into ``root`` (verified by size) and extract it.

    Returns:
        the ``data`` folder (``root/BSR/BSDS500/data``) to pass to :class:`BSDS500`.
    """
    from ..checkpoints import download, verify_once

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    archive = root / "BSR_bsds500.tgz"
    if archive.exists():
        verify_once(archive, size=BSDS500_SIZE)  # its size, and the digest recorded when it was downloaded
    else:
        download(BSDS500_URL, archive, size=BSDS500_SIZE, progress=progress)
    data = root / "BSR" / "BSDS500" / "data"
    if extract and not data.is_dir():
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers()
                       if not (m.name.startswith("/") or ".." in Path(m.name).parts) and (m.isfile() or m.isdir())]
            tar.extractall(root, members=members)
    return data
