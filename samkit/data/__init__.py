"""Data for samkit: prompt simulation, SA-1B and COCO readers, NDISPark, generated scenes and lots.

* :mod:`samkit.data.prompts`: the points and boxes of SAM's training and evaluation.
* :class:`SA1B`, :func:`select_images`: SA-1B folders (``sa_<id>.jpg`` + ``.json``).
* :class:`COCOInstances`: COCO-format instance masks (polygons, RLE).
* :class:`NDISPark`, :func:`download_ndispark`: the parked-cars data set of the zero-shot evaluation.
* :class:`SceneGenerator`, :func:`generate_scenes`: generated SA-1B look-alikes (SA-1B itself may not be
  redistributed).
* :func:`textures.fetch_photo_textures`: photo textures for the scenes (wallpapers from pinned Debian packages).
* :func:`clipart.fetch_clipart`: objects made of parts for the scenes (Noto's emoji, from a pinned npm package).
* :func:`generate_parking`: generated lots in NDISPark's layout.
* :class:`BSDS500`, :func:`write_bsds_sample`: the edge-detection benchmark's layout.
* :mod:`samkit.data.photos`: real photos held out of training, for zero-shot checks: 36 hand-outlined
  objects in seven photos bundled with installed packages (:func:`photos.real_photo_dataset`) and ``coins``.

Every item is a dict: ``image`` H x W x 3 uint8 RGB, ``masks`` N x H x W bool, ``boxes`` N x 4 float XYXY
(original image pixels), ``image_id``, ``file``.
"""
from . import clipart, photos, prompts, textures
from .bsds import BSDS500, download_bsds500, write_bsds_sample
from .coco import COCOInstances
from .parking import NDISPark, download_ndispark, generate_parking
from .sa1b import SA1B, select_images
from .synthetic import SceneGenerator, generate_scenes

__all__ = [
    "prompts",
    "photos",
    "textures",
    "clipart",
    "BSDS500",
    "download_bsds500",
    "write_bsds_sample",
    "SA1B",
    "select_images",
    "COCOInstances",
    "NDISPark",
    "download_ndispark",
    "generate_scenes",
    "SceneGenerator",
    "generate_parking",
]
