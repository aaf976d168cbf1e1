""":class:`ImageSession`: one image's embedding and what the decoder keeps between prompts on it."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ..model.sam import Sam
from .decoder import ImageSide
from .sam import FastSam, _tracing


class ImageSession:
    """Prompts on one image: what :class:`samkit.Predictor` holds between clicks
    (``predictor.session``).

    :meth:`decode` is :meth:`Sam.encode_prompts_and_decode` on ``features`` and
    :meth:`postprocess_masks` is :meth:`Sam.postprocess_masks`. With ``fast`` (a :class:`FastSam`)
    the session computes the grid's positional encoding once and, from the second prompt without a
    mask input on, the transformer's first-layer image side (``fast.keep_image_side``). Both are
    rebuilt when what they come from changes (the embedding in place, the weights in place or
    replaced: checked by identity and version counter), and not used with autograd, under autocast
    or while tracing. With ``fast=None`` every call runs the plain model.

    Args:
        model: the model.
        features: its ``1 x C x E x E`` embedding of the image (``B x ...`` for several images:
            then no image side is kept).
        fast: the speed-ups to apply (a ``FastSam`` of ``model``), or None.
    """

    def __init__(self, model: Sam, features: Tensor, fast: Optional[FastSam] = None) -> None:
        if fast is not None and fast.model is not model:
            raise ValueError("fast is a FastSam of another model; build it with FastSam(model)")
        self.model = model
        self.features = features
        self.fast = fast
        self._stamp: Optional[List[Tuple[Tensor, int]]] = None
        self._pe: Optional[Tensor] = None
        self._side: Optional[ImageSide] = None
        self._calls_without_mask = 0

    def decode(self, point_coords: Optional[Tensor] = None, point_labels: Optional[Tensor] = None,
               boxes: Optional[Tensor] = None, mask_input: Optional[Tensor] = None,
               multimask_output: bool = True) -> Tuple[Tensor, Tensor]:
        """Prompts in the input frame (``B x N x 2``, ``B x N``, ``B x 4``, ``B x 1 x 4E x 4E``) ->
        ``B x M x 4E x 4E`` low-res logits and ``B x M`` IoU predictions (M = 3 or 1)."""
        args = (self.features, point_coords, point_labels, boxes, mask_input, multimask_output)
        if self.fast is None:
            return self.model.encode_prompts_and_decode(*args)
        if not self._can_keep():
            return self.fast.encode_prompts_and_decode(*args)
        self._forget_if_changed()
        if self._pe is None:
            self._pe = self.fast.dense_pe()
        side = None
        if mask_input is None and self.fast.keep_image_side and self.features.shape[0] == 1:
            # built at the second such prompt: an image may get only one (an automatic mask crop)
            self._calls_without_mask += 1
            if self._side is None and self._calls_without_mask >= 2:
                self._side = self.fast.image_side(self.features, self._pe)
            side = self._side
        return self.fast.encode_prompts_and_decode(*args, image_pe=self._pe, image_side=side)

    def postprocess_masks(self, masks: Tensor, input_size: Tuple[int, ...],
                          original_size: Tuple[int, ...]) -> Tensor:
        """``B x M x 4E x 4E`` low-res logits -> ``B x M x H x W`` logits in the original frame."""
        return (self.fast or self.model).postprocess_masks(masks, input_size, original_size)

    def _can_keep(self) -> bool:
        device = self.features.device.type
        return not (torch.is_grad_enabled() or _autocast_on(device) or _tracing()
                    or self.features.is_inference())

    def _sources(self) -> List[Tensor]:
        """The tensors the kept positional encoding and image side are computed from."""
        prompt_encoder = self.model.prompt_encoder
        layer = self.model.mask_decoder.transformer.layers[0]
        projections = (layer.cross_attn_token_to_image.k_proj,
                       layer.cross_attn_token_to_image.v_proj,
                       layer.cross_attn_image_to_token.q_proj)
        return [self.features, prompt_encoder.pe_layer.positional_encoding_gaussian_matrix,
                prompt_encoder.no_mask_embed.weight] + \
            [p for m in projections for p in (m.weight, m.bias)]

    def _forget_if_changed(self) -> None:
        stamp = [(t, t._version) for t in self._sources()]
        if self._stamp is None or any(a is not b or va != vb
                                      for (a, va), (b, vb) in zip(self._stamp, stamp)):
            self._stamp, self._pe, self._side, self._calls_without_mask = stamp, None, None, 0


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (what is kept is in full precision)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()
