"""The predictor: compute an image's embedding once, then answer prompts in milliseconds.

Same semantics as the official ``SamPredictor`` (resize the long side with ``int(x + 0.5)``
rounding, pad right/bottom, +0.5 point shift in the prompt encoder, a padding point when there is no
box, 256x256 mask-input logits, multimask slicing, threshold 0.0). Beyond it: input checks with
clear errors, several images at once (:meth:`Predictor.set_images` / :meth:`Predictor.predict_batch`)
with ragged point prompts padded by label -1, and an :class:`~samkit.cache.EmbeddingCache` so that
setting an image the model has already seen costs no encoder pass.

By default the predictor runs the model through :class:`samkit.fast.FastSam` (the same numbers,
fewer operations) and keeps the current image's :class:`samkit.fast.ImageSession`
(``predictor.session``); ``Predictor(model, fast=False)`` runs the plain model.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from .cache import EmbeddingCache, image_key
from .fast import FastSam, ImageSession
from .model.sam import Sam
from .transforms import ResizeLongestSide


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Check an image and bring it to ``H x W x 3`` uint8 RGB.

    Grayscale (``H x W`` or ``H x W x 1``) is repeated to three channels; RGBA drops its alpha channel.
    Anything else (floats, other channel counts, empty images) raises a ``ValueError``/``TypeError``.
    """
    if isinstance(image, torch.Tensor):
        raise TypeError("image must be a numpy array (H x W x 3 uint8); for tensors use set_torch_image")
    if not isinstance(image, np.ndarray):
        try:  # PIL images and the like
            image = np.asarray(image)
        except Exception as exc:  # pragma: no cover
            raise TypeError(f"image must be a numpy array, got {type(image).__name__}") from exc
    if image.dtype != np.uint8:
        hint = " (for floats in [0, 1] use (image * 255).round().astype(np.uint8))" if image.dtype.kind == "f" else ""
        raise TypeError(f"image must be uint8 with values 0-255, got dtype {image.dtype}{hint}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3:
        raise ValueError(f"image must be H x W x 3, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.shape[2] != 3:
        raise ValueError(f"image must have 3 channels (RGB), got {image.shape[2]} (shape {image.shape})")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image is empty (shape {image.shape})")
    return np.ascontiguousarray(image)


def _numbers(value, name: str, dtype=float) -> np.ndarray:
    """``value`` as a numpy array of ``dtype``; a ValueError naming ``name`` if it is not numeric."""
    try:
        return np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers, got {value!r:.80}") from exc


def check_prompts(original_size: Tuple[int, int], point_coords=None, point_labels=None, box=None,
                  mask_input=None, mask_input_size: Optional[Tuple[int, int]] = None) -> None:
    """Validate prompts given in original-image pixels; raise a ``ValueError`` naming the problem.

    Every number must be finite; points must lie in the image (padding points, label -1, excepted);
    a box needs ``x1 >= x0`` and ``y1 >= y0``; ``mask_input`` must be ``1 x mask_input_size`` logits.
    """
    H, W = original_size
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels must be given together")
    if point_coords is not None:
        pc, pl = _numbers(point_coords, "point_coords"), _numbers(point_labels, "point_labels")
        if pc.ndim != 2 or pc.shape[1] != 2:
            raise ValueError(f"point_coords must be N x 2 (x, y), got shape {pc.shape}")
        if pl.ndim != 1 or pl.shape[0] != pc.shape[0]:
            raise ValueError(f"point_labels must have one label per point: {pc.shape[0]} points, "
                             f"labels of shape {pl.shape}")
        if not np.isin(pl, (-1, 0, 1)).all():
            raise ValueError("point_labels must be 1 (foreground), 0 (background) or -1 (padding), "
                             f"got {np.unique(pl)}")
        if not np.isfinite(pc).all():
            raise ValueError("point_coords contain NaN or inf")
        outside = (pc[:, 0] < 0) | (pc[:, 0] > W) | (pc[:, 1] < 0) | (pc[:, 1] > H)
        outside &= pl != -1
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise ValueError(f"point {i} at (x={pc[i, 0]:g}, y={pc[i, 1]:g}) lies outside the image "
                             f"(width {W}, height {H})")
    if box is not None:
        b = _numbers(box, "box")
        if b.shape not in ((4,), (1, 4)):
            raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got shape {b.shape}")
        if not np.isfinite(b).all():
            raise ValueError(f"box contains NaN or inf: {b.reshape(4).tolist()}")
        x0, y0, x1, y1 = b.reshape(4)
        if x1 < x0 or y1 < y0:
            raise ValueError(f"box must be (x0, y0, x1, y1) with x1 >= x0 and y1 >= y0, got {b.reshape(4).tolist()}")
    if mask_input is not None and mask_input_size is not None:
        m = _numbers(mask_input, "mask_input", np.float32)
        if m.shape != (1, *mask_input_size):
            raise ValueError(f"mask_input must be 1 x {mask_input_size[0]} x {mask_input_size[1]} low-res logits "
                             f"(the low_res_logits of a previous predict), got shape {m.shape}")
        if not np.isfinite(m).all():
            raise ValueError(f"mask_input contains {int((~np.isfinite(m)).sum())} NaN or inf values; pass the "
                             "low_res_logits of a previous predict (finite logits)")


def as_predictor(model_or_predictor) -> "Predictor":
    """A predictor for whatever the caller holds: a predictor (anything with ``set_image`` and
    ``predict`` or ``predict_torch``, e.g. :class:`samkit.onnx.OnnxPredictor`) as it is, an
    :class:`~samkit.AutomaticMaskGenerator`'s own predictor, or a new :class:`Predictor` for a
    :class:`~samkit.model.Sam`."""
    obj = model_or_predictor
    if hasattr(obj, "set_image") and (hasattr(obj, "predict") or hasattr(obj, "predict_torch")):
        return obj
    inner = getattr(model_or_predictor, "predictor", None)  # an AutomaticMaskGenerator
    if inner is not None:
        return inner
    if not isinstance(model_or_predictor, Sam):
        raise TypeError("expected a samkit Sam model, a Predictor or an AutomaticMaskGenerator, got "
                        f"{type(model_or_predictor).__name__}")
    return Predictor(model_or_predictor)


def _check_encoder_output(features: torch.Tensor) -> None:
    if not bool(torch.isfinite(features).all()):
        raise ValueError("the image encoder produced NaN or inf: the model's weights are broken (load a "
                         "checkpoint with samkit.load_model, which refuses non-finite weights)")


def _check_finite_tensors(**tensors: Optional[torch.Tensor]) -> None:
    for name, t in tensors.items():
        if t is not None and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains NaN or inf")


class Predictor:
    """Efficient repeated prompting of one image (or a batch of images).

    Args:
        model: a :class:`~samkit.model.Sam`.
        cache: an :class:`EmbeddingCache`; ``None`` makes a private in-memory one, ``False`` disables caching.
        fast: ``True`` runs the model through :class:`~samkit.fast.FastSam` (default), ``False``
            runs the plain model, a ``FastSam(model, ...)`` picks the speed-ups.
    """

    def __init__(self, model: Sam, cache: Union[EmbeddingCache, None, bool] = None,
                 fast: Union[bool, FastSam] = True) -> None:
        self.model = model
        if isinstance(fast, FastSam):
            if fast.model is not model:
                raise ValueError("fast is a FastSam of another model; "
                                 "pass FastSam(model) or fast=True")
            self.fast: Optional[FastSam] = fast
        else:
            self.fast = FastSam(model) if fast else None
        self.transform = ResizeLongestSide(model.img_size)
        if cache is None or cache is True:
            cache = EmbeddingCache()
        self.cache: Optional[EmbeddingCache] = None if cache is False else cache
        self.reset_image()

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def mask_input_size(self) -> Tuple[int, int]:
        return tuple(self.model.prompt_encoder.mask_input_size)

    # ------------------------------------------------------------------ images
    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Compute (or fetch from the cache) the embedding of an ``H x W x 3`` uint8 image.

        The previous image is forgotten first: if this image is refused, ``predict`` raises until an
        image is set, instead of answering for the previous one.
        """
        self.reset_image()
        if image_format not in ("RGB", "BGR"):
            raise ValueError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}")
        image = as_rgb_uint8(image)
        rgb = image if image_format == "RGB" else image[..., ::-1]
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        input_image = self.transform.apply_image(image)
        input_torch = torch.as_tensor(input_image, device=self.device).permute(2, 0, 1).contiguous()[None]
        self.set_torch_image(input_torch, image.shape[:2])
        self.image = rgb

    @torch.no_grad()
    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: Tuple[int, ...]) -> None:
        """``1 x 3 x h x w`` image already resized so its long side is ``img_size``."""
        if transformed_image.ndim != 4 or transformed_image.shape[1] != 3 or \
                max(transformed_image.shape[2:]) != self.model.img_size:
            raise ValueError(f"set_torch_image expects 1 x 3 x h x w with long side {self.model.img_size}, "
                             f"got {tuple(transformed_image.shape)}")
        self.reset_image()
        self.original_size = tuple(int(s) for s in original_image_size)
        self.input_size = tuple(transformed_image.shape[-2:])
        self.features = self._embed(transformed_image)
        self.is_image_set = True

    def set_embedding(self, embedding: torch.Tensor, original_size: Tuple[int, int]) -> None:
        """Use a precomputed ``1 x C x E x E`` embedding of an image of size ``(H, W)``."""
        c, e = self.model.embedding_channels, self.model.prompt_encoder.image_embedding_size
        if not isinstance(embedding, torch.Tensor) or tuple(embedding.shape) != (1, c, *e):
            got = tuple(getattr(embedding, "shape", ())) or type(embedding).__name__
            raise ValueError(f"embedding must be a 1 x {c} x {e[0]} x {e[1]} tensor, got {got}")
        self.reset_image()
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = self.transform.get_preprocess_shape(*self.original_size,
                                                              self.model.img_size)
        self.features = embedding.to(self.device)
        self.is_image_set = True

    def _embed(self, transformed_image: torch.Tensor) -> torch.Tensor:
        key = image_key(self.model, transformed_image) if self.cache is not None else None
        if key is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached.to(self.device)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            features = self._encode(self.model.preprocess(transformed_image.float()))
        self.model.train(was_training)
        _check_encoder_output(features)
        if key is not None:
            self.cache.put(key, features)
        return features

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        if self.fast is not None:
            return self.fast.encode_image(images)
        return self.model.image_encoder(images)

    @torch.no_grad()
    def set_images(self, images: Sequence[np.ndarray]) -> None:
        """Embed several images at once (one encoder batch for those not in the cache)."""
        self.reset_image()
        if len(images) == 0:
            raise ValueError("set_images needs at least one image")
        feats: List[Optional[torch.Tensor]] = []
        todo, inputs, sizes, in_sizes, keys = [], [], [], [], []
        for i, img in enumerate(images):
            img = as_rgb_uint8(img)
            t = torch.as_tensor(self.transform.apply_image(img), device=self.device).permute(2, 0, 1)[None]
            sizes.append(tuple(img.shape[:2]))
            in_sizes.append(tuple(t.shape[-2:]))
            key = image_key(self.model, t) if self.cache is not None else None
            cached = self.cache.get(key) if key is not None else None
            feats.append(cached.to(self.device) if cached is not None else None)
            if cached is None:
                todo.append(i)
                inputs.append(self.model.preprocess(t.float()))
                keys.append(key)
        if todo:
            was_training = self.model.training
            self.model.eval()
            out = self._encode(torch.cat(inputs))
            self.model.train(was_training)
            _check_encoder_output(out)
            for j, i in enumerate(todo):
                feats[i] = out[j: j + 1]
                if keys[j] is not None:
                    self.cache.put(keys[j], out[j: j + 1])
        self.features = torch.cat(feats)  # B x C x h x w
        self.original_sizes, self.input_sizes = sizes, in_sizes
        self.original_size, self.input_size = sizes[0], in_sizes[0]
        self.is_image_set = True

    def get_image_embedding(self) -> torch.Tensor:
        """The current embedding, ``1 x C x 64 x 64`` (``B x ...`` after :meth:`set_images`)."""
        self._require_image()
        return self.features

    @property
    def session(self) -> ImageSession:
        """The current image's :class:`~samkit.fast.ImageSession`: its embedding, and what the
        decoder keeps between prompts on it. A new one comes with every new embedding."""
        self._require_image()
        if self._session is None or self._session.features is not self.features:
            self._session = ImageSession(self.model, self.features, self.fast)
        return self._session

    def reset_image(self) -> None:
        self.is_image_set = False
        self.image: Optional[np.ndarray] = None  # H x W x 3 uint8 RGB, kept by set_image for refine=True
        self._session: Optional[ImageSession] = None
        self.features: Optional[torch.Tensor] = None
        self.original_size: Optional[Tuple[int, int]] = None
        self.input_size: Optional[Tuple[int, int]] = None
        self.original_sizes: List[Tuple[int, int]] = []
        self.input_sizes: List[Tuple[int, int]] = []

    def _require_image(self) -> None:
        if not self.is_image_set:
            raise RuntimeError("no image is set: call set_image(image) before predict()")

    # ----------------------------------------------------------------- prompts
    def predict(self, point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                box: Optional[np.ndarray] = None, mask_input: Optional[np.ndarray] = None,
                multimask_output: bool = True, return_logits: bool = False, refine: bool = False
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for one set of prompts on the current image; prompts in original pixels.

        Args:
            point_coords: ``N x 2`` (x, y); point_labels: ``N`` (1 foreground, 0 background).
            box: ``4`` XYXY; mask_input: ``1 x 256 x 256`` logits from a previous call.
            refine: cut each mask along the image's edges with GrabCut, seeded by the model's mask and the
                prompts (:func:`samkit.refine.grabcut_refine`; needs OpenCV and an image given to
                ``set_image``). Not SAM's design: a per-image colour model that a network trained on
                generated scenes lacks. The IoU predictions and low-res logits stay the model's.
        Returns:
            masks ``C x H x W`` (bool, or float logits with ``return_logits``), IoU predictions ``C``, and
            low-res logits ``C x 256 x 256``; C = 3 with ``multimask_output`` else 1 (mask token 0, or for a
            model using SAM 2's rule, such as the embedded ``tiny``, the best multimask output when token 0's
            mask is unstable and no ``mask_input`` is given: :meth:`samkit.model.MaskDecoder.single_mask`).
        """
        if refine and return_logits:
            raise ValueError("refine=True returns masks, not logits: pass one of refine and return_logits")
        if refine and self.image is None:
            raise RuntimeError("refine=True needs the image itself: give it to set_image() "
                               "(set_torch_image and set_embedding keep no image)")
        low_res, iou = self.predict_low_res(point_coords, point_labels, box, mask_input, multimask_output)
        masks = self.upscale_masks(low_res[None], return_logits or refine)[0]
        masks = masks if masks.dtype == torch.bool else masks.float()
        masks = masks.cpu().numpy()
        if refine:
            from .refine import grabcut_refine

            masks = np.stack([grabcut_refine(self.image, m, box=box, points=point_coords, labels=point_labels)
                              for m in masks])
        return masks, iou.float().cpu().numpy(), low_res.float().cpu().numpy()

    @torch.no_grad()
    def predict_low_res(self, point_coords: Optional[np.ndarray] = None,
                        point_labels: Optional[np.ndarray] = None, box: Optional[np.ndarray] = None,
                        mask_input: Union[np.ndarray, torch.Tensor, None] = None,
                        multimask_output: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`predict` without the upsampling: the decoder's answer, on the model's device.

        Same prompts (original pixels; ``mask_input`` may also be a ``1 x 256 x 256`` tensor). Returns
        low-res logits ``C x 256 x 256`` and IoU predictions ``C``; :meth:`upscale_masks` turns the
        outputs one wants to see into masks (the click widget upsamples only the mask it shows).
        """
        self._require_image()
        if self.features.shape[0] != 1:
            raise RuntimeError("several images are set: use predict_batch()")
        check_prompts(self.original_size, point_coords, point_labels, box, mask_input, self.mask_input_size)
        coords_t = labels_t = box_t = mask_t = None
        if point_coords is not None:
            coords = self.transform.apply_coords(np.asarray(point_coords), self.original_size)
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=self.device)[None]
            labels_t = torch.as_tensor(np.asarray(point_labels), dtype=torch.int, device=self.device)[None]
        if box is not None:
            b = self.transform.apply_boxes(np.asarray(box, dtype=float), self.original_size)
            box_t = torch.as_tensor(b, dtype=torch.float, device=self.device)[None, :]
        if mask_input is not None:
            mask_t = torch.as_tensor(mask_input, dtype=torch.float, device=self.device)[None]
        low_res, iou = self.session.decode(coords_t, labels_t, box_t, mask_t, multimask_output)
        return low_res[0], iou[0]

    @torch.no_grad()
    def upscale_masks(self, low_res: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        """``B x C x 256 x 256`` low-res logits of the current image -> ``B x C x H x W`` masks at the
        original image size: bool (logit > the model's threshold), or the logits with ``return_logits``."""
        self._require_image()
        masks = self.session.postprocess_masks(low_res, self.input_size, self.original_size)
        return masks if return_logits else masks > self.model.mask_threshold

    @torch.no_grad()
    def predict_torch(self, point_coords: Optional[torch.Tensor] = None, point_labels: Optional[torch.Tensor] = None,
                      boxes: Optional[torch.Tensor] = None, mask_input: Optional[torch.Tensor] = None,
                      multimask_output: bool = True, return_logits: bool = False
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prompts for the current image, already in the input frame (see ``transform``).

        Args:
            point_coords: ``B x N x 2``; point_labels: ``B x N``; boxes: ``B x 4``; mask_input: ``B x 1 x 256 x 256``.
        Returns:
            ``B x C x H x W`` masks, ``B x C`` IoU predictions, ``B x C x 256 x 256`` low-res logits.
        """
        self._require_image()
        _check_finite_tensors(point_coords=point_coords, boxes=boxes, mask_input=mask_input)
        low_res, iou = self.session.decode(point_coords, point_labels, boxes, mask_input, multimask_output)
        return self.upscale_masks(low_res, return_logits), iou, low_res

    @torch.no_grad()
    def predict_batch(self, point_coords: Optional[Sequence[Optional[np.ndarray]]] = None,
                      point_labels: Optional[Sequence[Optional[np.ndarray]]] = None,
                      boxes: Optional[Sequence[Optional[np.ndarray]]] = None,
                      multimask_output: bool = True, return_logits: bool = False
                      ) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One prompt set per image set by :meth:`set_images` (in original pixels), decoded in one call.

        Images with the same number of points share one decoder call. Returns one ``(masks, iou, low_res)``
        per image, equal to what :meth:`predict` gives for each image alone.
        """
        self._require_image()
        B = self.features.shape[0]
        sizes = self.original_sizes or [self.original_size]
        in_sizes = self.input_sizes or [self.input_size]
        point_coords = list(point_coords) if point_coords is not None else [None] * B
        point_labels = list(point_labels) if point_labels is not None else [None] * B
        boxes = list(boxes) if boxes is not None else [None] * B
        if not (len(point_coords) == len(point_labels) == len(boxes) == B):
            raise ValueError(f"give one prompt set per image: {B} images set")
        has_points = any(p is not None for p in point_coords)
        has_boxes = any(b is not None for b in boxes)
        if has_boxes and not all(b is not None for b in boxes):
            raise ValueError("predict_batch needs a box for every image or for none")
        if not has_points and not has_boxes:
            raise ValueError("predict_batch needs point prompts or boxes")
        # Transform every prompt to its image's input frame.
        per_image = []
        for i in range(B):
            c = lab = b = None
            if point_coords[i] is not None:
                check_prompts(sizes[i], point_coords[i], point_labels[i])
                c = self.transform.apply_coords(np.asarray(point_coords[i], dtype=float), sizes[i])
                lab = np.asarray(point_labels[i], dtype=np.int64)
            if has_boxes:
                check_prompts(sizes[i], box=boxes[i])
                b = self.transform.apply_boxes(np.asarray(boxes[i], dtype=float), sizes[i])[0]
            per_image.append((c, lab, b))
        # Padding tokens take part in attention, so images are grouped by their number of points and
        # each group is decoded in one call: results equal one-by-one prediction exactly.
        groups: dict = {}
        for i, (c, _, _) in enumerate(per_image):
            groups.setdefault(0 if c is None else len(c), []).append(i)
        out: List[Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]]] = [None] * B
        sam = self.fast or self.model  # the same two calls either way
        for n, idx in groups.items():
            coords_t = labels_t = boxes_t = None
            if n > 0:
                coords_t = torch.as_tensor(np.stack([per_image[i][0] for i in idx]), dtype=torch.float,
                                           device=self.device)
                labels_t = torch.as_tensor(np.stack([per_image[i][1] for i in idx]), dtype=torch.int,
                                           device=self.device)
            if has_boxes:
                boxes_t = torch.as_tensor(np.stack([per_image[i][2] for i in idx]), dtype=torch.float,
                                          device=self.device)
            if coords_t is None and boxes_t is None:
                raise ValueError(f"image {idx[0]} has neither points nor a box")
            low_res, iou = sam.encode_prompts_and_decode(self.features[idx], coords_t, labels_t,
                                                         boxes_t, None, multimask_output)
            for j, i in enumerate(idx):
                m = sam.postprocess_masks(low_res[j: j + 1], in_sizes[i], sizes[i])[0]
                m = m > self.model.mask_threshold if not return_logits else m.float()
                out[i] = (m.cpu().numpy(), iou[j].float().cpu().numpy(), low_res[j].float().cpu().numpy())
        return out
