"""Generated scenes with exact instance masks, written in SA-1B's format.

SA-1B may not be redistributed, so the kit trains its embedded model, runs its tests and fills its samples
with generated look-alikes. Each scene is a "dead leaves" picture: shapes fall one after another onto a
textured background and hide what lies under them; each instance mask is the **visible** part of a
shape after all later shapes are drawn.

* Shapes: ellipses, polygons (convex and star-like), smooth Fourier blobs, thresholded smooth noise
  (irregular, sometimes with holes), rounded rectangles, thin bent bands (stems, cables, limbs), rings and
  shapes with holes, an animal silhouette (scikit-image's ``horse``), and large "stuff" regions with a
  wavy edge (floor, table, sky).
* Appearance: textures cut from scikit-image's bundled images at a random scale, rotation and flip, or
  flat colours; colour jitter (brightness, contrast, saturation, tint, channel order), occasional linear
  shading and round "3-D" shading, soft drop shadows, a textured (sometimes defocused) background, then a
  global light gradient, blur and sensor noise; JPEG compression when written.
* Scale: object sizes from a few pixels to half the image, many small ones and a few large ones, in
  clutter and heavy occlusion. Masks smaller than ``min_area`` pixels are dropped.

* Objects made of parts (``composite_prob``): a silhouette with limbs, cut into parts of different
  appearance, with small subparts inside (a face, a label, a button), so that a click has the nested
  answers SA-1B's masks give (whole, part, subpart). The masks then nest: each part's mask holds its
  subparts, and the whole object's mask holds its parts. With ``clipart_dir`` / ``clipart_prob``, some of them
  are drawings of real things (Noto's emoji: people, animals, cups, vehicles) split into their drawn parts
  (:mod:`samkit.data.clipart`).

Evaluation photos are kept out of training: the texture pool excludes by default every scikit-image photo
that samkit evaluates on (:data:`DEFAULT_EXCLUDE`: ``coins``, ``astronaut``, ``camera``, ``chelsea``,
``cat`` (the same photo as ``chelsea``), ``coffee`` and ``rocket``). Pass ``exclude=`` to change the list.

:class:`SceneGenerator` draws scenes in memory (deterministic in ``(seed, index)``), for training on the
fly; :func:`generate_scenes` writes them to disk as ``sa_<id>.jpg`` + ``sa_<id>.json``, readable by
:class:`samkit.data.sa1b.SA1B`. ``python -m samkit.data.synthetic --samples`` rewrites the small samples
committed under ``data/samples/``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.draw import polygon as draw_polygon

__all__ = [
    "SceneGenerator",
    "generate_scenes",
    "texture_names",
    "DEFAULT_EXCLUDE",
    "TEXTURE_SOURCES",
    "write_sa1b_record",
]

PathLike = Union[str, os.PathLike]

#: every bundled (offline) scikit-image picture usable as a texture.
TEXTURE_SOURCES: Tuple[str, ...] = (
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text",
)

#: the texture sources samkit evaluates on (:data:`samkit.data.photos.SKIMAGE_EVAL_NAMES`; ``cat`` is
#: ``chelsea``): never training textures.
DEFAULT_EXCLUDE: Tuple[str, ...] = ("coins", "astronaut", "camera", "chelsea", "cat", "coffee", "rocket")

_TEXTURE_CACHE: Dict[str, List[np.ndarray]] = {}
_HORSE: Optional[np.ndarray] = None


def texture_names(exclude: Sequence[str] = DEFAULT_EXCLUDE) -> List[str]:
    """The texture pool: :data:`TEXTURE_SOURCES` without ``exclude``."""
    unknown = set(exclude) - set(TEXTURE_SOURCES)
    if unknown:
        raise ValueError(f"unknown scikit-image texture names in exclude: {sorted(unknown)}; "
                         f"known: {list(TEXTURE_SOURCES)}")
    return [n for n in TEXTURE_SOURCES if n not in set(exclude)]


def _load_texture(name: str) -> List[np.ndarray]:
    """A pyramid (full, 1/2, 1/4 resolution) of float32 H x W x 3 images in [0, 1]."""
    if name in _TEXTURE_CACHE:
        return _TEXTURE_CACHE[name]
    if name.startswith("file:"):  # a picture of a texture folder (samkit.data.textures)
        from PIL import Image

        with Image.open(name[5:]) as pic:
            img = np.asarray(pic.convert("RGB"))
    else:
        import skimage.data

        img = np.asarray(getattr(skimage.data, name)())
    img = img.astype(np.float32)
    if img.max() > 1.5:
        img /= 255.0
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.shape[2] == 4:  # RGBA (logo): composite on white
        alpha = img[:, :, 3:4]
        img = img[:, :, :3] * alpha + (1.0 - alpha)
    img = np.clip(img, 0.0, 1.0)
    while max(img.shape[:2]) > 1100:  # large pictures (retina) are halved for speed
        img = _halve(img)
    levels = [np.ascontiguousarray(img)]
    for _ in range(2):
        levels.append(_halve(levels[-1]))
    _TEXTURE_CACHE[name] = levels
    return levels


def _halve(img: np.ndarray) -> np.ndarray:
    h, w = (img.shape[0] // 2) * 2, (img.shape[1] // 2) * 2
    img = img[:h, :w]
    return np.ascontiguousarray(0.25 * (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]))


def _horse() -> np.ndarray:
    global _HORSE
    if _HORSE is None:
        import skimage.data

        _HORSE = ~np.asarray(skimage.data.horse()).astype(bool)  # the horse is dark on white
        rows, cols = np.nonzero(_HORSE)
        _HORSE = _HORSE[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    return _HORSE


@lru_cache(maxsize=64)
def _smooth_upsample_matrix(n_out: int, n_in: int) -> np.ndarray:
    """n_out x n_in matrix that enlarges a 1-D signal smoothly (Gaussian weights, rows sum to 1).

    ``A @ small @ B.T`` enlarges a 2-D array; two small matrix products are much faster than
    ``scipy.ndimage.zoom``.
    """
    pos = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    w = np.exp(-0.5 * ((pos[:, None] - np.arange(n_in)[None, :]) / 0.7) ** 2)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def _smooth_upsample(small: np.ndarray, h: int, w: int) -> np.ndarray:
    """Enlarge an h' x w' (x C) array to h x w with :func:`_smooth_upsample_matrix`."""
    a = _smooth_upsample_matrix(h, small.shape[0])
    b = _smooth_upsample_matrix(w, small.shape[1])
    if small.ndim == 2:
        return a @ small @ b.T
    return np.stack([a @ np.ascontiguousarray(small[:, :, c]) @ b.T for c in range(small.shape[2])], axis=2)


def _soft_shadow(mask: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian-blurred float copy of ``mask``, blurred at reduced resolution when ``sigma`` is large."""
    f = max(1, int(sigma // 2))
    small = mask[::f, ::f].astype(np.float32)
    small = ndimage.gaussian_filter(small, sigma / f, truncate=2.0)
    if f == 1:
        return small
    return _smooth_upsample(small, mask.shape[0], mask.shape[1])


def _reflect(x: np.ndarray, n: int) -> np.ndarray:
    """Mirror coordinates into [0, n - 1] (texture tiled by reflection, no seams)."""
    if x.size and x.min() >= 0 and x.max() <= n - 1:
        return x
    period = 2 * (n - 1) if n > 1 else 1
    x = np.mod(x, period)
    return np.where(x > n - 1, period - x, x)


def _sample_bilinear(tex: np.ndarray, u: np.ndarray, v: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Bilinear (or nearest) samples of ``tex`` (H x W x 3) at float columns ``u`` and rows ``v`` -> N x 3."""
    h, w = tex.shape[:2]
    u = _reflect(u, w)
    v = _reflect(v, h)
    if nearest:
        return tex.reshape(-1, 3)[(v + 0.5).astype(np.int32).clip(0, h - 1) * w
                                  + (u + 0.5).astype(np.int32).clip(0, w - 1)]
    u0 = np.minimum(u.astype(np.int32), w - 2) if w > 1 else np.zeros(u.shape, np.int32)
    v0 = np.minimum(v.astype(np.int32), h - 2) if h > 1 else np.zeros(v.shape, np.int32)
    du = (u - u0).astype(np.float32)[:, None]
    dv = (v - v0).astype(np.float32)[:, None]
    flat = tex.reshape(-1, 3)
    i00 = v0 * w + u0
    top = flat[i00] * (1 - du) + flat[i00 + 1] * du
    bottom = flat[i00 + w] * (1 - du) + flat[i00 + w + 1] * du
    return top * (1 - dv) + bottom * dv


def _object_light(rng: np.random.Generator, radius: float) -> Tuple[np.ndarray, float, np.ndarray]:
    """One light over an object made of parts: a slope (per pixel, across the object), the strength of a
    round shading, and where on the object (in radii from its centre) the light is brightest."""
    slope = rng.normal(0, 0.5, 2) / max(radius, 1.0)
    return slope.astype(np.float32), float(rng.uniform(0.25, 0.6)), rng.uniform(-0.5, 0.5, 2)


def _lit(look, light: Tuple[np.ndarray, float, np.ndarray]):
    """``look`` (an appearance function) under the object's one ``light`` (:func:`_object_light`)."""
    slope, strength, spot = light

    def appearance(rows: np.ndarray, cols: np.ndarray, centre: Tuple[float, float], radius: float) -> np.ndarray:
        dy, dx = rows - centre[0], cols - centre[1]
        factor = 1.0 + np.clip(slope[0] * dy + slope[1] * dx, -0.5, 0.5)
        r = max(radius, 1.0)
        r2 = ((dy / r - spot[0]) ** 2 + (dx / r - spot[1]) ** 2) / 2.0
        factor = factor * (1.0 + 0.15 * strength - strength * np.minimum(r2, 1.0))
        return look(rows, cols, centre, radius) * factor[:, None].astype(np.float32)

    return appearance


def _dyed(look, dye: np.ndarray):
    """``look`` with its colour channels scaled by ``dye`` (the same material in another colour)."""

    def appearance(rows: np.ndarray, cols: np.ndarray, centre: Tuple[float, float], radius: float) -> np.ndarray:
        return look(rows, cols, centre, radius) * dye

    return appearance


class SceneGenerator:
    """Draws dead-leaves scenes with exact visible-instance masks, deterministically.

    Arguments:
        size: side of the square image in pixels.
        seed: the scene with ``(seed, index)`` is always the same.
        exclude: scikit-image picture names kept out of the texture pool (default: the evaluation photos).
        min_objects, max_objects: how many shapes fall on each scene (before occlusion).
        min_area: drop visible masks smaller than this many pixels (default: 0.05% of the image, >= 16).
        object_scale: the range of object radii, as fractions of the side (log-uniform: many small shapes,
            few large ones); real photos often hold an object of half the frame or more.
        hero_prob: the chance that a scene has a large object in front (a fifth to a half of the side
            across its radius, near the centre, at most a few small shapes in front of it): the subject of
            a photo.
        composite_prob: the chance that a shape of at least 5% of the side is an object made of parts
            (:meth:`_composite`); 0 (the default) draws the plain dead-leaves scenes, whose masks never
            overlap.
        min_visible: drop masks of which less than this fraction shows (visible pixels over the pixels the
            shape covers inside the frame, before the shapes in front hide some): the scattered fragments of
            a shape buried in clutter, which no one would point at as an object. 0 (the default) keeps them.
            The image is the same whatever its value.
        hero_detail: the chance that a scene's subject (``hero_prob``) is a busier object made of parts
            (``_composite(detailed=True)``: more parts, limbs and subparts, and gaps through it). 0 (the
            default) leaves every scene as it was.
        texture_dir: a folder of photos added to the texture pool, for objects and backgrounds alike
            (:func:`samkit.data.textures.fetch_photo_textures` writes Debian's wallpapers there). Its pictures
            are drawn as often as each scikit-image one. None (the default) leaves every scene as it was.
        photo_scope: where the ``texture_dir`` pictures may appear: ``"all"`` (the default) or ``"backdrop"``
            (the background and the large "stuff" regions only; objects keep scikit-image's textures).
        coherent_parts: the chance that an object made of parts looks like one object, as a photo's subject
            does, not like shapes of unrelated looks that happen to touch: one light falls on the whole
            object (a shading across its outline, round or sloping, over every part), and each part after the
            first is, with even odds, the first part's material in another dye (a shirt and trousers of the
            same cloth) or a look of its own. 0 (the default) leaves every scene as it was.
        clipart_dir: a folder of emoji split into their drawn parts (:func:`samkit.data.clipart.fetch_clipart`
            writes Noto's there): drawings of the things photos show (people, animals, cups, vehicles).
        clipart_prob: the chance that an object made of parts is one of those drawings instead of
            :meth:`_composite`'s random silhouette: its parts, subparts and whole are the drawing's, its
            colours the drawing's under a texture's grain, a colour jitter and a light. 0 (the default)
            leaves every scene as it was.

    ``generator(index) -> (image H x W x 3 uint8 RGB, masks N x H x W bool)``; masks in back-to-front order
    (an object made of parts gives its parts' masks, each holding its subparts, then the whole object's).
    """

    def __init__(self, size: int = 512, seed: int = 0, exclude: Sequence[str] = DEFAULT_EXCLUDE,
                 min_objects: int = 8, max_objects: int = 50, min_area: Optional[int] = None,
                 composite_prob: float = 0.0, object_scale: Tuple[float, float] = (0.02, 0.35),
                 hero_prob: float = 0.0, min_visible: float = 0.0, hero_detail: float = 0.0,
                 texture_dir: Optional[PathLike] = None, photo_scope: str = "all",
                 coherent_parts: float = 0.0, clipart_dir: Optional[PathLike] = None,
                 clipart_prob: float = 0.0) -> None:
        if size < 32:
            raise ValueError(f"size must be >= 32, got {size}")
        if not 1 <= min_objects <= max_objects:
            raise ValueError(f"need 1 <= min_objects <= max_objects, got {min_objects}, {max_objects}")
        self.size = int(size)
        self.seed = int(seed)
        self.exclude = tuple(exclude)
        self.textures = texture_names(self.exclude)
        self.n_builtin = len(self.textures)  # the scikit-image textures come first in the pool
        if photo_scope not in ("all", "backdrop"):
            raise ValueError(f"photo_scope must be 'all' or 'backdrop', got {photo_scope!r}")
        self.photo_scope = photo_scope
        if texture_dir is not None:  # photo textures join the pool (python -m samkit.data.textures)
            from samkit.data.textures import texture_files

            self.textures += [f"file:{p.resolve()}" for p in texture_files(texture_dir)]
        if not self.textures:
            raise ValueError("exclude leaves no texture")
        self.min_objects = min_objects
        self.max_objects = max_objects
        self.min_area = int(min_area) if min_area is not None else max(16, int(5e-4 * size * size))
        if not 0.0 <= composite_prob <= 1.0:
            raise ValueError(f"composite_prob must be in [0, 1], got {composite_prob}")
        self.composite_prob = float(composite_prob)
        if not 0.0 < object_scale[0] <= object_scale[1]:
            raise ValueError(f"object_scale must be (low, high) with 0 < low <= high, got {object_scale}")
        self.object_scale = (float(object_scale[0]), float(object_scale[1]))
        if not 0.0 <= hero_prob <= 1.0:
            raise ValueError(f"hero_prob must be in [0, 1], got {hero_prob}")
        self.hero_prob = float(hero_prob)
        if not 0.0 <= min_visible <= 1.0:
            raise ValueError(f"min_visible must be in [0, 1], got {min_visible}")
        self.min_visible = float(min_visible)
        if not 0.0 <= hero_detail <= 1.0:
            raise ValueError(f"hero_detail must be in [0, 1], got {hero_detail}")
        self.hero_detail = float(hero_detail)
        if not 0.0 <= coherent_parts <= 1.0:
            raise ValueError(f"coherent_parts must be in [0, 1], got {coherent_parts}")
        self.coherent_parts = float(coherent_parts)
        if not 0.0 <= clipart_prob <= 1.0:
            raise ValueError(f"clipart_prob must be in [0, 1], got {clipart_prob}")
        self.clipart_prob = float(clipart_prob)
        self.clipart_dir = clipart_dir
        self.clipart: List[str] = []
        if clipart_prob > 0:
            if clipart_dir is None:
                raise ValueError("clipart_prob > 0 needs clipart_dir (python -m samkit.data.clipart fetches it)")
            from samkit.data.clipart import clipart_names

            self.clipart = clipart_names(clipart_dir)
            if not self.clipart:
                raise ValueError(f"clip-art folder {clipart_dir} holds no drawing")

    def preload(self) -> "SceneGenerator":
        """Load every texture of the pool now (the first scenes are otherwise slower)."""
        for name in self.textures:
            _load_texture(name)
        _horse()
        return self

    # ------------------------------------------------------------------ appearance
    def _colour_fn(self, rng: np.random.Generator, big: bool = False, backdrop: bool = False):
        """A function (rows, cols) -> N x 3 colours in [0, 1] for one object (texture or flat)."""
        s = self.size
        if rng.random() < (0.8 if big else 0.7):
            pool = len(self.textures) if backdrop or self.photo_scope == "all" else self.n_builtin
            name = self.textures[rng.integers(pool)]
            levels = _load_texture(name)
            scale = float(np.exp(rng.uniform(np.log(0.35), np.log(2.5))))  # texture px per image px
            level = 0
            while level < 2 and scale > 1.6:
                scale /= 2.0
                level += 1
            tex = levels[level]
            nearest = scale >= 0.8  # not enlarged: nearest samples look the same after the final blur
            theta = rng.uniform(0, 2 * np.pi) if rng.random() < 0.6 else rng.integers(4) * np.pi / 2
            flip = -1.0 if rng.random() < 0.5 else 1.0
            c, si = float(np.cos(theta) * scale), float(np.sin(theta) * scale)
            tu, tv = float(rng.uniform(0, tex.shape[1])), float(rng.uniform(0, tex.shape[0]))
            perm = rng.permutation(3) if rng.random() < 0.25 else np.arange(3)
            grey = tex[0, 0, 0] == tex[0, 0, 1] and tex[-1, -1, 0] == tex[-1, -1, 2]
            tint = rng.uniform(0.35, 1.0, 3).astype(np.float32) if (grey and rng.random() < 0.6) else None

            def colours(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
                x = flip * cols.astype(np.float32)
                y = rows.astype(np.float32)
                out = _sample_bilinear(tex, c * x - si * y + tu, si * x + c * y + tv, nearest)[:, perm]
                if tint is not None:
                    out = out * (tint / tint.max())
                return out
        else:
            base = rng.uniform(0.05, 0.95, 3).astype(np.float32)
            if rng.random() < 0.4:  # near-grey objects are common in real scenes
                base[:] = base.mean() + 0.1 * (base - base.mean())
            amp = rng.uniform(0.0, 0.05)

            def colours(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
                out = np.broadcast_to(base, (len(rows), 3)).copy()
                if amp > 0:
                    out += rng.normal(0, amp, (len(rows), 1)).astype(np.float32)
                return out

        # colour jitter and shading
        brightness = rng.uniform(0.65, 1.35)
        contrast = rng.uniform(0.6, 1.4)
        saturation = rng.uniform(0.3, 1.4)
        gradient = rng.normal(0, 0.6, 2) / s if rng.random() < 0.35 else None
        round_shade = rng.uniform(0.2, 0.6) if rng.random() < 0.25 else 0.0

        def appearance(rows: np.ndarray, cols: np.ndarray, centre: Tuple[float, float], radius: float
                       ) -> np.ndarray:
            col = colours(rows, cols)
            mean = col.mean(axis=0, keepdims=True)
            grey = col.mean(axis=1, keepdims=True)
            col = grey + saturation * (col - grey)
            col = mean + contrast * (col - mean)
            factor = np.full(len(rows), brightness, dtype=np.float32)
            if gradient is not None:
                factor *= 1.0 + (gradient[0] * (cols - centre[1]) + gradient[1] * (rows - centre[0]))
            if round_shade:
                r2 = ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / max(radius, 1.0) ** 2
                factor *= 1.0 - round_shade * np.minimum(r2, 1.0) + 0.15 * round_shade
            return col * factor[:, None]

        return appearance

    # ------------------------------------------------------------------ shapes
    def _shape(self, rng: np.random.Generator, radius: float) -> np.ndarray:
        """A bool mask of one shape, about 2 * radius across (local frame)."""
        r = max(radius, 1.5)
        kind = rng.choice(
            ["ellipse", "polygon", "blob", "noise", "roundrect", "band", "ring", "horse"],
            p=[0.2, 0.18, 0.19, 0.13, 0.14, 0.09, 0.05, 0.02])
        if kind == "band" and r < 6:
            kind = "ellipse"
        n = int(np.ceil(2 * r)) + 3
        yy, xx = np.arange(n, dtype=np.float32)[:, None], np.arange(n, dtype=np.float32)[None, :]
        yy -= (n - 1) / 2
        xx -= (n - 1) / 2
        theta = rng.uniform(0, np.pi)
        ct, st = float(np.cos(theta)), float(np.sin(theta))
        u = ct * xx + st * yy
        v = -st * xx + ct * yy
        aspect = float(np.exp(rng.uniform(np.log(0.3), 0)))
        if kind == "ellipse":
            mask = (u / r) ** 2 + (v / (r * aspect)) ** 2 <= 1.0
        elif kind == "roundrect":
            p = rng.uniform(3, 10)
            mask = np.abs(u / r) ** p + np.abs(v / (r * aspect)) ** p <= 1.0
        elif kind == "polygon":
            k = int(rng.integers(3, 10))
            ang = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * (rng.uniform(0.45, 1.0, k) if rng.random() < 0.5 else rng.uniform(0.85, 1.0, k))
            mask = np.zeros((n, n), dtype=bool)
            rr, cc = draw_polygon((n - 1) / 2 + rad * np.sin(ang) * aspect, (n - 1) / 2 + rad * np.cos(ang),
                                  shape=(n, n))
            mask[rr, cc] = True
        elif kind == "blob":
            ang = np.arctan2(v, u)
            dist = np.sqrt(u ** 2 + (v / aspect) ** 2)
            rho = np.ones_like(ang)
            for k in range(2, 7):
                rho += rng.uniform(0, 0.35 / k * 2) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
            mask = dist <= 0.8 * r * rho
        elif kind == "noise":
            g = int(rng.integers(4, 9))
            field = _smooth_upsample(rng.normal(0, 1, (g, g)).astype(np.float32), n, n)
            field /= field.std() + 1e-6
            fall = (xx ** 2 + yy ** 2) / (r ** 2)
            mask = field - 2.2 * fall > rng.uniform(-1.2, 0.2)
        elif kind == "band":
            length = r * rng.uniform(1.0, 2.0)
            n2 = int(np.ceil(2 * length)) + 3
            yy, xx = np.arange(n2, dtype=np.float32)[:, None], np.arange(n2, dtype=np.float32)[None, :]
            yy -= (n2 - 1) / 2
            xx -= (n2 - 1) / 2
            u = ct * xx + st * yy
            v = -st * xx + ct * yy
            thick = max(1.5, r * rng.uniform(0.05, 0.25))
            amp = rng.uniform(0, 0.3) * length
            wave = amp * np.sin(u / length * np.pi * rng.uniform(0.5, 2.0) + rng.uniform(0, 2 * np.pi))
            taper = 1.0 - rng.uniform(0, 0.7) * (u / length + 1) / 2
            mask = (np.abs(v - wave) <= thick * taper) & (np.abs(u) <= length)
        elif kind == "ring":
            outer = (u / r) ** 2 + (v / (r * aspect)) ** 2 <= 1.0
            f = rng.uniform(0.3, 0.75)
            du, dv = rng.uniform(-0.15, 0.15, 2) * r
            inner = ((u - du) / (f * r)) ** 2 + ((v - dv) / (f * r * aspect)) ** 2 <= 1.0
            mask = outer & ~inner
        else:  # horse silhouette
            horse = _horse()
            zoom = 2 * r / max(horse.shape)
            mask = ndimage.zoom(horse.astype(np.float32), zoom, order=1) > 0.5
            if rng.random() < 0.5:
                mask = mask[:, ::-1]
        if kind in ("ellipse", "polygon", "blob", "roundrect") and rng.random() < 0.12 and r > 8:
            # a hole (a handle, a doughnut, a gap between limbs)
            hy, hx = rng.uniform(-0.3, 0.3, 2) * r
            hr = rng.uniform(0.12, 0.3) * r
            cy, cx = (mask.shape[0] - 1) / 2 + hy, (mask.shape[1] - 1) / 2 + hx
            ry, rx = np.ogrid[0:mask.shape[0], 0:mask.shape[1]]
            mask = mask & ((ry - cy) ** 2 + (rx - cx) ** 2 > hr ** 2)
        return mask

    def _composite(self, rng: np.random.Generator, radius: float, detailed: bool = False
                   ) -> Tuple[np.ndarray, List[int]]:
        """An object made of parts, about 2 * radius across: a body cut into 1-3 parts (bands across an
        axis, like torso and legs, or Voronoi cells), 0-3 limbs attached to its outline, and 0-3 subparts
        inside the parts (a face, a label, a button).

        ``detailed``: a busier object, as a photo's subject is: 2-5 parts, 1-5 limbs, 1-5 subparts, and
        in half of them 1-4 gaps through the body where what lies behind shows (the frame of a bicycle, the
        space between a chair's legs or between an arm and a body).

        Returns a local ``int16`` map (0 outside, ``p >= 1`` part ``p``) and ``parents``: ``parents[p]`` is
        the part that subpart ``p`` lies in, or -1 for a part (``parents[0]`` is unused).
        """
        body = self._shape(rng, 0.8 * radius)
        n = int(np.ceil(3.6 * radius)) + 3
        out = np.zeros((n, n), dtype=np.int16)
        top, left = (n - body.shape[0]) // 2, (n - body.shape[1]) // 2
        out[top:top + body.shape[0], left:left + body.shape[1]][body] = 1
        parents = [-1, -1]
        n_cells = int(rng.integers(2, 6)) if detailed else int(rng.integers(1, 4))
        if detailed and rng.random() < 0.5:  # gaps through the body
            ry, rx = np.ogrid[0:n, 0:n]
            inside = np.argwhere(out > 0)
            for _ in range(int(rng.integers(1, 5)) if len(inside) else 0):
                y, x = inside[int(rng.integers(len(inside)))]
                hr = radius * rng.uniform(0.08, 0.25)
                out[(ry - y) ** 2 + ((rx - x) / rng.uniform(0.4, 1.0)) ** 2 <= hr ** 2] = 0
        ys, xs = np.nonzero(out)
        if n_cells > 1 and len(ys) > 4 * n_cells:
            if rng.random() < 0.5:  # bands across an axis
                t = rng.uniform(0, np.pi)
                proj = xs * np.cos(t) + ys * np.sin(t)
                cell = np.searchsorted(np.quantile(proj, np.sort(rng.uniform(0.2, 0.8, n_cells - 1))), proj)
            else:  # Voronoi cells around seeds inside the body
                seeds = rng.choice(len(ys), n_cells, replace=False)
                cell = ((ys[:, None] - ys[seeds]) ** 2 + (xs[:, None] - xs[seeds]) ** 2).argmin(1)
            out[ys, xs] = 1 + cell
            parents += [-1] * (int(cell.max()))
        centre = np.array([ys.mean(), xs.mean()]) if len(ys) else np.array([n / 2, n / 2])
        for _ in range(int(rng.integers(1, 6) if detailed else rng.integers(0, 4))):  # limbs (a head, an arm)
            sil = out > 0
            edge = np.argwhere(sil & ~ndimage.binary_erosion(sil))
            if not len(edge):
                break
            r = radius * rng.uniform(0.2, 0.5)
            limb = self._shape(rng, r)
            at = edge[int(rng.integers(len(edge)))].astype(np.float64)
            direction = (at - centre) / (np.linalg.norm(at - centre) + 1e-6)
            cy, cx = at + direction * 0.6 * r
            self._paste(out, limb, cy, cx, len(parents), out == 0)
            parents.append(-1)
        for _ in range(int(rng.integers(1, 6) if detailed else rng.integers(0, 4))):  # subparts, in one part
            inside = np.argwhere(np.isin(out, [p for p in range(1, len(parents)) if parents[p] == -1]))
            if not len(inside):
                break
            y, x = inside[int(rng.integers(len(inside)))]
            parent = int(out[y, x])
            self._paste(out, self._shape(rng, radius * rng.uniform(0.08, 0.25)), y, x, len(parents),
                        out == parent)
            parents.append(parent)
        ys, xs = np.nonzero(out)
        if not len(ys):  # a shape that came out empty: nothing to place
            return out[:0, :0], parents
        return out[ys.min():ys.max() + 1, xs.min():xs.max() + 1], parents

    def _clipart(self, rng: np.random.Generator, radius: float) -> Tuple[np.ndarray, List[int], tuple]:
        """A drawing of :attr:`clipart` about ``2 * radius`` across (its longer side), maybe mirrored.

        Returns its local part map and ``parents`` as :meth:`_composite` does, and what its look needs:
        ``(colours of the cropped drawing, scale in image pixels per drawing pixel, mirrored)``.
        """
        from samkit.data.clipart import load_clipart

        art = load_clipart(self.clipart_dir, self.clipart[int(rng.integers(len(self.clipart)))])
        ys, xs = np.nonzero(art.parts)
        parts = art.parts[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        rgb = art.rgb[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        h, w = parts.shape
        scale = 2.0 * radius * rng.uniform(0.9, 1.25) / max(h, w)
        rows = np.minimum(((np.arange(max(1, round(h * scale))) + 0.5) / scale).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(max(1, round(w * scale))) + 0.5) / scale).astype(np.int64), w - 1)
        local = parts[rows[:, None], cols[None, :]]
        mirrored = bool(rng.random() < 0.5)
        if mirrored:
            local = local[:, ::-1]
        return np.ascontiguousarray(local), list(art.parents), (rgb, float(scale), mirrored)

    def _clipart_look(self, rng: np.random.Generator, spec: tuple, top: int, left: int, width: int,
                      radius: float):
        """The appearance of a drawing placed with its local map's corner at ``(top, left)``: its own
        colours, often under the grain of a texture, jittered, and in half the cases under one light."""
        rgb, scale, mirrored = spec
        grain = self._colour_fn(rng) if rng.random() < 0.6 else None
        grain_strength = rng.uniform(0.2, 0.7)
        brightness = rng.uniform(0.7, 1.3)
        saturation = rng.uniform(0.5, 1.3)
        perm = rng.permutation(3) if rng.random() < 0.2 else np.arange(3)

        def appearance(rows: np.ndarray, cols: np.ndarray, centre: Tuple[float, float], r: float) -> np.ndarray:
            x = cols - left
            if mirrored:
                x = width - 1 - x
            col = _sample_bilinear(rgb, (x + 0.5) / scale - 0.5, (rows - top + 0.5) / scale - 0.5)[:, perm]
            if grain is not None:
                t = grain(rows, cols, centre, r).mean(axis=1)
                col = col * (1.0 + grain_strength * (t / (t.mean() + 1e-3) - 1.0))[:, None]
            grey = col.mean(axis=1, keepdims=True)
            return (grey + saturation * (col - grey)) * brightness

        if rng.random() < 0.5:
            return _lit(appearance, _object_light(rng, radius))
        return appearance

    @staticmethod
    def _paste(out: np.ndarray, shape: np.ndarray, cy: float, cx: float, value: int, where: np.ndarray) -> None:
        """Set ``out`` to ``value`` where ``shape``, centred at ``(cy, cx)``, covers a pixel of ``where``."""
        h, w = shape.shape
        y0, x0 = int(round(cy - h / 2)), int(round(cx - w / 2))
        ys, xs = max(y0, 0), max(x0, 0)
        ye, xe = min(y0 + h, out.shape[0]), min(x0 + w, out.shape[1])
        if ye <= ys or xe <= xs:
            return
        region = shape[ys - y0:ye - y0, xs - x0:xe - x0] & where[ys:ye, xs:xe]
        out[ys:ye, xs:xe][region] = value

    def _stuff(self, rng: np.random.Generator) -> np.ndarray:
        """A large region of the whole image bounded by a wavy line (floor, table top, sky)."""
        s = self.size
        cols = np.arange(s, dtype=np.float32)
        edge = rng.uniform(0.25, 0.75) * s + rng.uniform(-0.2, 0.2) * (cols - s / 2)
        for k in range(1, 4):
            edge += rng.uniform(0, 0.04) * s / k * np.sin(2 * np.pi * k * cols / s + rng.uniform(0, 6.3))
        rows = np.arange(s, dtype=np.float32)[:, None]
        mask = rows >= edge[None, :]
        k = int(rng.integers(4))
        return np.rot90(mask, k).copy()

    # ------------------------------------------------------------------ scene
    def __call__(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index)])
        s = self.size
        label = np.zeros((s, s), dtype=np.int16)  # 0 = background, k = object k (later is in front)

        # 1. lay out every shape back to front on the label map; the appearance of each is drawn now
        #    (so the random stream does not depend on visibility) and painted later, visible pixels only
        background = self._colour_fn(rng, big=True, backdrop=True)
        defocus = rng.uniform(1.0, 3.0) if rng.random() < 0.4 else 0.0
        looks = [None]     # appearance function of object k
        places = [None]    # (centre, radius) of object k
        shadows = []       # (k, top, left, soft shadow, strength)
        n_obj = int(rng.integers(self.min_objects, self.max_objects + 1))
        # radii: log-uniform, so many small shapes and few large ones (2% to 35% of the side by default)
        low, high = self.object_scale
        radii = np.sort(np.exp(rng.uniform(np.log(low * s), np.log(high * s), n_obj)))[::-1]
        # mostly large behind small, shuffled so that big shapes also occlude small ones
        radii = radii[np.argsort(np.arange(n_obj) + rng.normal(0, n_obj * 0.15, n_obj))]
        hero = -1  # index in radii of the scene's subject, if it has one
        if self.hero_prob and rng.random() < self.hero_prob:
            hero = n_obj - int(rng.integers(0, 4))
            radii = np.insert(radii, max(hero, 0), rng.uniform(0.2, 0.5) * s)
            hero = max(hero, 0)
        drawn = [0]        # pixels label k covers inside the frame before the shapes in front hide some
        if rng.random() < 0.45:  # a "stuff" region first (floor, table, sky)
            stuff = self._stuff(rng)
            label[stuff] = 1
            drawn.append(int(stuff.sum()))
            looks.append(self._colour_fn(rng, big=True, backdrop=True))
            places.append(((s / 2, s / 2), float(s)))
        group = [0]        # object made of parts that label k belongs to (0: a plain shape)
        parent = [0]       # for a subpart's label, its part's label (0 otherwise)
        for index, radius in enumerate(radii):
            parts: Optional[np.ndarray] = None
            art = None  # a drawing's colours, when the object is one (clipart_prob)
            composite_prob = max(self.composite_prob, 0.7) if index == hero else self.composite_prob
            if composite_prob and radius >= 0.05 * s and rng.random() < composite_prob:
                if self.clipart_prob and rng.random() < self.clipart_prob:
                    parts, parents, art = self._clipart(rng, float(radius))
                else:
                    detailed = index == hero and self.hero_detail > 0 and rng.random() < self.hero_detail
                    parts, parents = self._composite(rng, float(radius), detailed)
                shape = parts > 0
            else:
                shape = self._shape(rng, float(radius))
            h, w = shape.shape
            cy, cx = rng.uniform(-0.1, 1.1, 2) * s
            if index == hero:
                cy, cx = rng.uniform(0.3, 0.7, 2) * s
            elif len(places) > 2 and rng.random() < 0.5:  # clutter: rest on or beside an earlier shape
                (py, px), pr = places[int(rng.integers(1, len(places)))]
                if pr < s / 2:
                    cy, cx = np.array([py, px]) + rng.normal(0, 0.6, 2) * pr
            look = self._colour_fn(rng)
            shadow = rng.random() < 0.3 and radius > 4
            shadow_shift = (rng.normal(0, 0.25, 2) * radius).astype(int)
            strength = rng.uniform(0.25, 0.6)
            y0, x0 = int(round(cy - h / 2)), int(round(cx - w / 2))
            ys, xs, ye, xe = max(y0, 0), max(x0, 0), min(y0 + h, s), min(x0 + w, s)
            if ye <= ys or xe <= xs:
                continue
            local = shape[ys - y0: ye - y0, xs - x0: xe - x0]
            if not local.any():
                continue
            k = len(looks)
            if parts is None:
                label[ys:ye, xs:xe][local] = k
                drawn.append(int(local.sum()))
                looks.append(look)
                places.append(((cy, cx), float(radius)))
                group.append(0)
                parent.append(0)
            else:
                local_parts = parts[ys - y0: ye - y0, xs - x0: xe - x0]
                if art is not None:
                    look = self._clipart_look(rng, art, y0, x0, w, float(radius))
                coherent = art is None and self.coherent_parts > 0 and rng.random() < self.coherent_parts
                light = _object_light(rng, float(radius)) if coherent else None
                for p in range(1, len(parents)):
                    label[ys:ye, xs:xe][local_parts == p] = k + p - 1
                    drawn.append(int((local_parts == p).sum()))
                    if p == 1 or art is not None:
                        part_look = look
                    elif coherent and rng.random() < 0.5:  # the first part's material, dyed
                        part_look = _dyed(look, rng.uniform(0.45, 1.35, 3).astype(np.float32))
                    else:
                        part_look = self._colour_fn(rng)
                    looks.append(part_look if light is None else _lit(part_look, light))
                    places.append(((cy, cx), float(radius)))
                    group.append(k)
                    parent.append(k + parents[p] - 1 if parents[p] > 0 else 0)
            if shadow:
                soft = _soft_shadow(local, max(1.0, 0.15 * float(radius)))
                shadows.append((k, ys + shadow_shift[0], xs + shadow_shift[1], soft, strength))

        # 2. paint the visible pixels of each label
        canvas = np.empty((s, s, 3), dtype=np.float32)
        flat = canvas.reshape(-1, 3)
        order = np.argsort(label.ravel(), kind="stable")
        bounds = np.concatenate([[0], np.cumsum(np.bincount(label.ravel(), minlength=len(looks)))])
        if defocus:  # a defocused background: drawn coarse, smoothed and enlarged
            c = s // 4
            rr, cc = np.divmod(np.arange(c * c), c)
            small = background(rr * 4.0, cc * 4.0, (s / 2, s / 2), s).reshape(c, c, 3)
            small = ndimage.gaussian_filter(small, (defocus / 4, defocus / 4, 0), truncate=2.0)
            big = _smooth_upsample(small, s, s)
            idx = order[bounds[0]: bounds[1]]
            flat[idx] = big.reshape(-1, 3)[idx]
        for k in range(0 if not defocus else 1, len(looks)):
            idx = order[bounds[k]: bounds[k + 1]]
            if len(idx) == 0:
                continue
            rr, cc = np.divmod(idx, s)
            if k == 0:
                flat[idx] = background(rr, cc, (s / 2, s / 2), s)
            else:
                flat[idx] = looks[k](rr, cc, *places[k])

        # 3. shadows fall on what lies behind each shadowed shape
        for k, top, left, soft, strength in shadows:
            a0, b0 = max(top, 0), max(left, 0)
            a1, b1 = min(top + soft.shape[0], s), min(left + soft.shape[1], s)
            if a1 <= a0 or b1 <= b0:
                continue
            part = soft[a0 - top: a1 - top, b0 - left: b1 - left] * (label[a0:a1, b0:b1] < k)
            canvas[a0:a1, b0:b1] *= (1.0 - strength * part)[:, :, None]

        # 4. global light, white balance, blur (which also anti-aliases edges) and sensor noise
        if rng.random() < 0.5:
            g = rng.normal(0, 0.35, 2)
            ramp = 1.0 + g[0] * (np.arange(s) / s - 0.5)[:, None] + g[1] * (np.arange(s) / s - 0.5)[None, :]
            canvas *= ramp[:, :, None].astype(np.float32)
        if rng.random() < 0.25:
            canvas *= rng.uniform(0.85, 1.15, 3).astype(np.float32)
        sigma = rng.uniform(0.4, 1.1)
        canvas = ndimage.gaussian_filter(canvas, (sigma, sigma, 0), truncate=2.0)
        noise = rng.uniform(0.0, 0.03)
        if noise > 0.004:
            canvas += noise * rng.standard_normal((s, s, 1), dtype=np.float32)
        image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

        counts = bounds[1:] - bounds[:-1]
        drawn = np.maximum(np.asarray(drawn), 1)
        if not any(group):
            keep = np.asarray([k for k in range(1, len(looks)) if counts[k] >= self.min_area
                               and counts[k] >= self.min_visible * drawn[k]], dtype=np.int16)
            return image, label[None, :, :] == keep[:, None, None]
        return image, self._nested_masks(label, counts, group, parent, drawn)

    def _nested_masks(self, label: np.ndarray, counts: np.ndarray, group: List[int], parent: List[int],
                      drawn: np.ndarray) -> np.ndarray:
        """Masks of a scene with objects made of parts: a plain shape's visible pixels; a part's with its
        subparts'; after an object's last part, the whole object when two or more of its labels show.
        ``counts``/``drawn``: each label's visible pixels and the pixels it covered before occlusion."""
        masks: List[np.ndarray] = []
        n = len(group)
        first = 0  # index in masks of the current object's first mask
        for k in range(1, n):
            if group[k] == k:
                first = len(masks)
            if group[k] == 0:
                members = [k]
            else:
                members = [k] + [j for j in range(k + 1, n) if parent[j] == k]
            area = int(sum(counts[j] for j in members))
            if area >= self.min_area and area >= self.min_visible * sum(drawn[j] for j in members):
                masks.append(np.isin(label, members))
            last_of_group = group[k] and (k + 1 == n or group[k + 1] != group[k])
            if last_of_group:
                members = [j for j in range(group[k], k + 1) if counts[j] > 0]
                whole = int(sum(counts[j] for j in members))
                covered = sum(drawn[j] for j in range(group[k], k + 1))
                if len(members) >= 2 and whole >= self.min_area and whole >= self.min_visible * covered:
                    mask = np.isin(label, members)
                    if not any(np.array_equal(m, mask) for m in masks[first:]):
                        masks.append(mask)
        if not masks:
            return np.zeros((0, *label.shape), dtype=bool)
        return np.stack(masks)


def write_sa1b_record(out_dir: PathLike, image_id: int, image: np.ndarray, masks: np.ndarray,
                      rng: Optional[np.random.Generator] = None, quality: int = 92) -> Path:
    """Write ``sa_<image_id>.jpg`` + ``sa_<image_id>.json`` (SA-1B's schema) and return the JSON path.

    ``bbox`` is ``pycocotools.mask.toBbox`` of the RLE (XYWH); ``point_coords`` one random pixel of the
    mask; ``predicted_iou`` and ``stability_score`` 1.0; ``crop_box`` the whole image.
    """
    from pycocotools import mask as mask_utils

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = rng if rng is not None else np.random.default_rng(image_id)
    h, w = image.shape[:2]
    name = f"sa_{image_id}"
    Image.fromarray(image).save(out_dir / f"{name}.jpg", quality=quality)
    anns = []
    if len(masks):
        rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).view(np.uint8)))
        boxes = mask_utils.toBbox(rles)
        areas = mask_utils.area(rles)
        for i, rle in enumerate(rles):
            x0, y0, bw, bh = (int(v) for v in boxes[i])
            for _ in range(50):  # a random pixel of the mask, by rejection inside its box
                py, px = y0 + int(rng.integers(bh)), x0 + int(rng.integers(bw))
                if masks[i, py, px]:
                    break
            else:
                rr, cc = np.nonzero(masks[i])
                j = int(rng.integers(len(rr)))
                py, px = int(rr[j]), int(cc[j])
            anns.append({
                "id": int(image_id) * 1000 + i,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                "bbox": [float(v) for v in boxes[i]],
                "area": int(areas[i]),
                "predicted_iou": 1.0,
                "stability_score": 1.0,
                "crop_box": [0.0, 0.0, float(w), float(h)],
                "point_coords": [[float(px), float(py)]],
            })
    record = {"image": {"image_id": int(image_id), "width": int(w), "height": int(h),
                        "file_name": f"{name}.jpg"},
              "annotations": anns}
    path = out_dir / f"{name}.json"
    with open(path, "w") as f:
        json.dump(record, f)
    return path


def generate_scenes(out_dir: PathLike, n_images: int, size: int = 512, seed: int = 0,
                    exclude: Sequence[str] = DEFAULT_EXCLUDE, start_id: int = 1, quality: int = 92,
                    progress: bool = True, workers: int = 1, **kwargs) -> List[Path]:
    """Write ``n_images`` generated scenes as an SA-1B folder (``sa_<id>.jpg`` + ``sa_<id>.json``).

    Image ``start_id + i`` is ``SceneGenerator(size, seed, exclude, **kwargs)(i)``. The masks read back
    by :class:`samkit.data.sa1b.SA1B` are exactly the generator's (RLE is lossless); the image is JPEG
    (``quality``). ``workers > 1`` draws scenes in that many processes (same output). Returns the
    JSON paths.
    """
    from tqdm.auto import tqdm

    gen = SceneGenerator(size=size, seed=seed, exclude=exclude, **kwargs)
    jobs = [(gen, Path(out_dir), start_id, seed, i, quality) for i in range(n_images)]
    if workers > 1 and n_images > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            it = pool.imap(_write_one, jobs, chunksize=4)
            return list(tqdm(it, total=n_images, desc="scenes", disable=not progress))
    return [_write_one(job) for job in tqdm(jobs, desc="scenes", disable=not progress)]


def _write_one(job: Tuple["SceneGenerator", Path, int, int, int, int]) -> Path:
    gen, out_dir, start_id, seed, i, quality = job
    image, masks = gen(i)
    return write_sa1b_record(out_dir, start_id + i, image, masks, rng=np.random.default_rng([seed, i, 1]),
                             quality=quality)


def write_samples(root: PathLike = "data/samples") -> None:
    """Rewrite the committed samples: 3 scenes at 256 px and a 4 + 2 image parking layout at 320 x 240."""
    from .parking import generate_parking

    root = Path(root)
    generate_scenes(root / "sa1b", 3, size=256, seed=0, progress=False)
    generate_parking(root / "ndispark", n_train=4, n_val=2, size=(320, 240), seed=0, progress=False)


def _main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Generate SA-1B-format scenes or the committed samples.")
    parser.add_argument("--samples", action="store_true", help="rewrite data/samples (3 scenes, 4+2 lots)")
    parser.add_argument("--out", default=None, help="output folder (default data/samples or runs/scenes)")
    parser.add_argument("-n", "--n-images", type=int, default=10)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes for writing scenes")
    parser.add_argument("--benchmark", action="store_true", help="time the generator (in memory and to disk)")
    args = parser.parse_args(argv)
    if args.samples:
        write_samples(args.out or "data/samples")
        return
    if args.benchmark:
        gen = SceneGenerator(args.size, args.seed).preload()
        start = time.perf_counter()
        n_masks = sum(len(gen(i)[1]) for i in range(1, args.n_images + 1))
        dt = (time.perf_counter() - start) / args.n_images
        print(f"{args.n_images} scenes at {args.size} px: {dt * 1000:.1f} ms/image in memory, "
              f"{n_masks / args.n_images:.1f} masks/image; 1,000 images: {dt * 1000:.0f} s")
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate_scenes(tmp, args.n_images, size=args.size, seed=args.seed, progress=False,
                            workers=args.workers)
            dt = (time.perf_counter() - start) / args.n_images
        print(f"written (JPEG + JSON, {args.workers} worker(s)): {dt * 1000:.1f} ms/image; "
              f"1,000 images: {dt * 1000:.0f} s")
        return
    generate_scenes(args.out or "runs/scenes", args.n_images, size=args.size, seed=args.seed,
                    workers=args.workers)


if __name__ == "__main__":
    _main()
