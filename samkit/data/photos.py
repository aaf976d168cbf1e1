"""Real photos for zero-shot checks: scikit-image's bundled sample photos, never used for training.

The scene generator keeps these photos out of its texture pool (``synthetic.DEFAULT_EXCLUDE``), so a
model trained on generated scenes has never seen them. Only ``coins`` has an unambiguous ground
truth that can be derived (bright coins on a dark background: threshold + connected components);
the others come with hand-placed demo prompts (a click and a box per object) for qualitative figures.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

# Demo prompts in original pixels: point (x, y) and box (x0, y0, x1, y1) per object.
DEMO_PROMPTS: Dict[str, Dict[str, Dict[str, Tuple[float, ...]]]] = {
    "astronaut": {
        "face": {"point": (180, 105), "box": (135, 35, 230, 160)},
        "mission patch": {"point": (152, 330), "box": (122, 298, 184, 364)},
        "helmet": {"point": (420, 400), "box": (330, 330, 512, 512)},
    },
    "coffee": {
        "cup": {"point": (215, 160), "box": (170, 15, 405, 245)},
        "spoon": {"point": (355, 215), "box": (320, 180, 390, 245)},
        "saucer": {"point": (120, 250), "box": (40, 100, 475, 355)},
    },
    "chelsea": {
        "left eye": {"point": (150, 140), "box": (115, 110, 185, 170)},
        "nose": {"point": (240, 205), "box": (210, 185, 270, 225)},
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
