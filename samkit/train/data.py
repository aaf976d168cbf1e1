"""Training data: each ``data.kind`` (generated scenes, SA-1B, COCO, NDISPark, generated parking
lots) as a source of ``(image, masks)`` pairs, prepared in the model's input frame
(:class:`PreparedImage`), and the seeded order of the images in each epoch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from samkit.predictor import as_rgb_uint8
from samkit.train.config import DataConfig, TrainConfig
from samkit.transforms import ResizeLongestSide


# --------------------------------------------------------------------------------------------------
# Data: sources -> prepared images (input frame)
# --------------------------------------------------------------------------------------------------
class _Items:
    """``index -> (image H x W x 3 uint8, masks N x H x W bool)`` over a reader whose items are
    dicts."""

    def __init__(self, reader: Any, indices: Optional[Sequence[int]] = None) -> None:
        self.reader = reader
        self.indices = list(range(len(reader))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __call__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        item = self.reader[self.indices[i]]
        return item["image"], np.asarray(item["masks"], dtype=bool)


class _ListItems:
    def __init__(self, items: List[Dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __call__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.items[i]["image"], np.asarray(self.items[i]["masks"], dtype=bool)


class _SceneItems:
    """Scenes ``start .. start + count - 1`` of a :class:`samkit.data.synthetic.SceneGenerator`."""

    def __init__(self, generator: Any, start: int, count: int) -> None:
        self.generator = generator
        self.start, self.count = start, count

    def __len__(self) -> int:
        return self.count

    def __call__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        return self.generator(self.start + i)


def _root(data: DataConfig) -> Path:
    if not data.root:
        raise ValueError(f"data.kind={data.kind!r} needs data.root (the data set folder)")
    root = Path(data.root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data.root not found: {root} (data.kind={data.kind!r})")
    return root


def _texture_dir(data: DataConfig) -> Optional[str]:
    """``data.texture_dir``; ``"photos"`` names the fetched Debian wallpapers (fetched on first use)."""
    if data.texture_dir == "photos":
        from samkit.data.textures import fetch_photo_textures

        return str(fetch_photo_textures())
    return data.texture_dir


def _clipart_dir(data: DataConfig) -> Optional[str]:
    """``data.clipart_dir``; ``"noto"`` names the fetched Noto emoji (fetched on first use)."""
    if data.clipart_dir == "noto":
        from samkit.data.clipart import fetch_clipart

        return str(fetch_clipart())
    return data.clipart_dir


def _scenes(data: DataConfig) -> Tuple[Any, Any]:
    """The training scenes, then the validation scenes after them, from one generator built from ``data``."""
    from samkit.data.synthetic import SceneGenerator

    generator = SceneGenerator(size=data.image_size, seed=data.seed, composite_prob=data.composite_prob,
                               object_scale=tuple(data.object_scale), hero_prob=data.hero_prob,
                               min_visible=data.min_visible, hero_detail=data.hero_detail,
                               texture_dir=_texture_dir(data), photo_scope=data.photo_scope,
                               coherent_parts=data.coherent_parts, clipart_dir=_clipart_dir(data),
                               clipart_prob=data.clipart_prob)
    n = data.n_images if data.n_images is not None else 64
    return _SceneItems(generator, 0, n), _SceneItems(generator, n, data.n_val)


def _sa1b(data: DataConfig) -> Tuple[Any, Any]:
    from samkit.data.sa1b import SA1B, select_images

    reader = SA1B(_root(data))
    if data.masks_per_image is not None:
        n = data.n_images if data.n_images is not None else len(reader) - data.n_val
        items = select_images(
            reader,
            n + data.n_val,
            data.masks_per_image,
            seed=data.seed,
            max_area=data.max_mask_fraction,
        )
        return _ListItems(items[:n]), _ListItems(items[n:])
    n = data.n_images if data.n_images is not None else len(reader) - data.n_val
    if n + data.n_val > len(reader):
        raise ValueError(
            f"data.n_images + data.n_val = {n + data.n_val} but {reader.root} holds "
            f"{len(reader)} images"
        )
    return _Items(reader, range(n)), _Items(reader, range(n, n + data.n_val))


def _coco_reader(images_dir: Path, annotations: Path, data: DataConfig) -> Any:
    from samkit.data.coco import COCOInstances

    return COCOInstances(
        images_dir,
        annotations,
        category_ids=data.category_ids,
        skip_empty=True,
        missing_segmentation="skip",
    )


def _head(reader: Any, n: Optional[int]) -> _Items:
    count = len(reader) if n is None else min(n, len(reader))
    return _Items(reader, range(count))


def _coco(data: DataConfig) -> Tuple[Any, Any]:
    root = _root(data)
    train = _coco_reader(root / data.images_dir, root / data.annotations, data)
    if data.val_annotations:
        val = _coco_reader(
            root / (data.val_images_dir or data.images_dir), root / data.val_annotations, data
        )
        return _head(train, data.n_images), _head(val, data.n_val)
    n = data.n_images if data.n_images is not None else len(train) - data.n_val
    return _Items(train, range(n)), _Items(train, range(n, min(len(train), n + data.n_val)))


def _ndispark(data: DataConfig) -> Tuple[Any, Any]:
    from samkit.data.parking import NDISPark

    root = _root(data)
    kwargs = dict(skip_empty=True, missing_segmentation="skip")
    if data.category_ids is not None:
        kwargs["category_ids"] = data.category_ids
    return (
        _head(NDISPark(root, "train", **kwargs), data.n_images),
        _head(NDISPark(root, "validation", **kwargs), data.n_val),
    )


class _ParkingItems:
    def __init__(self, size: int, seed: int, night: bool, count: int) -> None:
        self.size, self.seed, self.night, self.count = (size, size * 3 // 4), seed, night, count

    def __len__(self) -> int:
        return self.count

    def __call__(self, i: int) -> Tuple[np.ndarray, np.ndarray]:
        from samkit.data.parking import parking_lot

        return parking_lot(i, self.size, self.seed, self.night)


def _parking(data: DataConfig) -> Tuple[Any, Any]:
    """Generated lots (``samkit.data.parking.parking_lot``, ``image_size`` wide, 4:3): day lots
    train, night lots validate, as in NDISPark. With ``root`` set, a folder in NDISPark's layout is
    read instead."""
    if data.root:
        return _ndispark(data)
    n = data.n_images if data.n_images is not None else 111
    return (
        _ParkingItems(data.image_size, data.seed, False, n),
        _ParkingItems(data.image_size, data.seed, True, data.n_val),
    )


# kind -> function(DataConfig) -> (train source, val source);
# a source is len() + __call__(i) -> (image, masks)
DATA_SOURCES: Dict[str, Callable[[DataConfig], Tuple[Any, Any]]] = {
    "scenes": _scenes,
    "sa1b": _sa1b,
    "coco": _coco,
    "ndispark": _ndispark,
    "parking": _parking,
}


@dataclass
class PreparedImage:
    """One image in the model's input frame.

    image: ``3 x h x w`` uint8, resized so that ``max(h, w) == img_size`` (not normalised, not
    padded). masks: ``K x img_size x img_size`` bool, resized like the image and zero-padded
    right/bottom.
    """

    index: int
    image: torch.Tensor
    masks: torch.Tensor
    input_size: Tuple[int, int]
    original_size: Tuple[int, int]


def prepare_image(
    image: np.ndarray,
    masks: np.ndarray,
    img_size: int,
    max_masks: Optional[int] = None,
    max_mask_fraction: float = 0.9,
    index: int = 0,
) -> PreparedImage:
    """Resize an image and its masks to the input frame; drop empty and too-large masks.

    Args:
        image: ``H x W x 3`` uint8 RGB.
        masks: ``N x H x W`` bool, original pixels.
        max_masks: keep at most the first ``max_masks`` masks that pass the filter.
    """
    try:
        image = as_rgb_uint8(image)  # grey and RGBA are brought to RGB, as the predictor does
    except (TypeError, ValueError) as exc:
        raise ValueError(f"image {index}: {exc}") from None
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(
            f"image {index}: masks {masks.shape} do not match the image {image.shape[:2]}"
        )
    area = masks.reshape(len(masks), -1).mean(1) if len(masks) else np.zeros(0)
    keep = np.flatnonzero((area > 0) & (area <= max_mask_fraction))
    if max_masks is not None:
        keep = keep[:max_masks]
    transform = ResizeLongestSide(img_size)
    resized = transform.apply_image(image)
    h, w = resized.shape[:2]
    out = torch.zeros(len(keep), img_size, img_size, dtype=torch.bool)
    for start in range(0, len(keep), 16):  # resize in chunks: large masks are big as floats
        chunk = torch.from_numpy(masks[keep[start : start + 16]])
        out[start : start + len(chunk), :h, :w] = transform.apply_masks_torch(chunk) > 0.5
    out = out[out.flatten(1).any(1)]  # a tiny mask can vanish when downscaled
    return PreparedImage(
        index,
        torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1),
        out,
        (h, w),
        (image.shape[0], image.shape[1]),
    )


class PreparedImages(torch.utils.data.Dataset):
    """A source of ``(image, masks)`` pairs as :class:`PreparedImage` records.

    Indexable by an int or by ``(epoch, position, index)`` tuples (what the training sampler
    yields); the tuple comes back as ``record.index`` so the loop knows each image's place in the
    epoch.
    """

    def __init__(
        self,
        source: Any,
        img_size: int,
        max_masks: Optional[int] = None,
        max_mask_fraction: float = 0.9,
        cache_in_memory: bool = False,
    ) -> None:
        self.source = source
        self.img_size = img_size
        self.max_masks = max_masks
        self.max_mask_fraction = max_mask_fraction
        self.cache_in_memory = cache_in_memory
        self._memory: Dict[
            int, Tuple[PreparedImage, np.ndarray]
        ] = {}  # masks bit-packed (8x smaller)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: Union[int, Tuple[int, int, int]]) -> PreparedImage:
        index = key[2] if isinstance(key, tuple) else int(key)
        if not 0 <= index < len(self):
            raise IndexError(f"image index {index} out of range for {len(self)} images")
        if index in self._memory:
            stub, bits = self._memory[index]
            masks = np.unpackbits(bits, count=stub.masks.shape[0] * self.img_size**2).astype(bool)
            record = dataclasses.replace(
                stub, masks=torch.from_numpy(masks).reshape(-1, self.img_size, self.img_size)
            )
        else:
            image, masks = self.source(index)
            record = prepare_image(
                image, masks, self.img_size, self.max_masks, self.max_mask_fraction, index
            )
            if self.cache_in_memory:
                bits = np.packbits(record.masks.numpy().reshape(-1))
                self._memory[index] = (
                    dataclasses.replace(record, masks=record.masks[:, :0, :0]),
                    bits,
                )
        if isinstance(key, tuple):
            record = dataclasses.replace(record, index=key)  # type: ignore[arg-type]
        return record


def build_datasets(cfg: TrainConfig, img_size: int) -> Tuple[PreparedImages, PreparedImages]:
    """The training and validation sets of ``cfg.data``, in the input frame of a model of
    ``img_size``."""
    train_src, val_src = DATA_SOURCES[cfg.data.kind](cfg.data)
    keep = cfg.data.masks_per_image
    return (
        PreparedImages(
            train_src, img_size, keep, cfg.data.max_mask_fraction, cfg.data.cache_in_memory
        ),
        PreparedImages(
            val_src, img_size, keep, cfg.data.max_mask_fraction, cfg.data.cache_in_memory
        ),
    )


def _collate(records: List[PreparedImage]) -> List[PreparedImage]:
    return records


# --------------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------------
def _seed_int(*parts: int) -> int:
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)
    return int(state[0]) & ((1 << 63) - 1)


def _generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(_seed_int(*parts))


def epoch_order(seed: int, epoch: int, n: int) -> List[int]:
    """The order of the ``n`` training images in ``epoch`` (a seeded permutation)."""
    return torch.randperm(n, generator=_generator(seed, epoch, 0x0D)).tolist()
