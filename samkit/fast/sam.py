""":class:`FastSam`: samkit's inference speed-ups for a plain :class:`~samkit.model.sam.Sam`."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..model.image_encoder import ImageEncoderViT, unpack_detail
from ..model.sam import Sam
from . import decoder, encoder
from .postprocess import postprocess_masks


class FastSam:
    """The same calls as :class:`~samkit.model.sam.Sam`, the same numbers (to float rounding), fewer
    operations.

    It reads the model's weights at every call and never changes the model. With autograd on
    (training), the decoder keeps the plain attention order (the folded orders leave
    ``k_proj.bias`` out of the graph, which DDP rejects) and the image encoder is the plain one, as
    are encoders other than the ViT and a ViT in train mode; the rest is differentiable and gives
    the plain model's gradients. The fast path calls the small layers (``Linear``, ``LayerNorm``,
    ``PatchEmbed``, ...) but not the encoder, decoder or attention modules' ``forward``: hooks on
    those need the plain model.

    Args:
        model: the plain model.
        fold_attention: evaluate the decoder's image attentions in the order with the fewest
            multiply-adds (:mod:`samkit.fast.attention`); False keeps the plain order.
        keep_image_side: let an :class:`~samkit.fast.ImageSession` keep the transformer's
            first-layer image side between prompts on one image.
        sparse_postprocess: post-process a few masks on the CPU with sparse resize matrices.

    Always on: one image pass for many prompts and the upscaling on the token layout
    (:mod:`samkit.fast.decoder`), post-processing as two matrices (:mod:`samkit.fast.postprocess`)
    and the encoder's windowed and chunked attention (:mod:`samkit.fast.encoder`).
    """

    def __init__(self, model: Sam, fold_attention: bool = True, keep_image_side: bool = True,
                 sparse_postprocess: bool = True) -> None:
        self.model = model
        self.fold_attention = fold_attention
        self.keep_image_side = keep_image_side
        self.sparse_postprocess = sparse_postprocess

    def __repr__(self) -> str:
        return (f"FastSam({self.model.name}, fold_attention={self.fold_attention}, "
                f"keep_image_side={self.keep_image_side}, "
                f"sparse_postprocess={self.sparse_postprocess})")

    def encode_image(self, images: Tensor) -> Tensor:
        """``model.image_encoder(images)``: ``B x 3 x S x S`` preprocessed -> ``B x C x E x E``."""
        enc = self.model.image_encoder
        plain = torch.is_grad_enabled() or enc.training or _tracing()
        if plain or not isinstance(enc, ImageEncoderViT):
            return enc(images)
        return encoder.encode(enc, images)

    def dense_pe(self) -> Tensor:
        """``prompt_encoder.get_dense_pe()``, ``1 x C x E x E``, in float32 even under autocast."""
        g = self.model.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix
        with torch.autocast(g.device.type, enabled=False):
            return self.model.prompt_encoder.get_dense_pe()

    def image_side(self, image_embeddings: Tensor,
                   image_pe: Optional[Tensor] = None) -> decoder.ImageSide:
        """The first-layer image side of ``image_embeddings`` (``1 x C x E x E``) for prompts
        without a mask input."""
        no_mask = self.model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        pe = image_pe if image_pe is not None else self.dense_pe()
        transformer = self.model.mask_decoder.transformer
        image_embeddings, _ = unpack_detail(image_embeddings, self.model.mask_decoder.transformer_dim)
        return decoder.image_side(transformer, image_embeddings + no_mask, pe)

    def encode_prompts_and_decode(self, image_embeddings: Tensor, point_coords=None,
                                  point_labels=None, boxes=None, mask_input=None,
                                  multimask_output: bool = True, image_pe: Optional[Tensor] = None,
                                  image_side: Optional[decoder.ImageSide] = None
                                  ) -> Tuple[Tensor, Tensor]:
        """:meth:`Sam.encode_prompts_and_decode`: ``B x M x 4E x 4E`` low-res logits and ``B x M``
        IoU predictions.

        ``image_pe``: :meth:`dense_pe`, when the caller kept it; ``image_side``: :meth:`image_side`
        of ``image_embeddings``, valid only without ``mask_input``.
        """
        model = self.model
        if image_side is not None and mask_input is not None:
            raise ValueError("image_side is the image side without a mask input: "
                             "pass image_side or mask_input, not both")
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = model.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        pe = image_pe if image_pe is not None else self.dense_pe()
        fold = self.fold_attention and not torch.is_grad_enabled()
        dec = model.mask_decoder
        if dec.uses_dynamic_single_mask(multimask_output, mask_input is not None):
            return dec.single_mask(*decoder.predict_masks(dec, image_embeddings, pe, sparse, dense,
                                                          side=image_side, fold_attention=fold))
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        return decoder.predict_masks(dec, image_embeddings, pe, sparse, dense,
                                     mask_slice, side=image_side, fold_attention=fold)

    def postprocess_masks(self, masks: Tensor, input_size: Tuple[int, ...],
                          original_size: Tuple[int, ...]) -> Tensor:
        """:meth:`Sam.postprocess_masks`: ``B x M x 4E x 4E`` -> ``B x M x H x W`` logits."""
        if torch.is_grad_enabled() and masks.requires_grad:
            return self.model.postprocess_masks(masks, input_size, original_size)
        sparse = self.sparse_postprocess and not _tracing()
        return postprocess_masks(masks, self.model.img_size, input_size, original_size, sparse)


def _tracing() -> bool:
    """True while exporting (TorchScript/ONNX tracing) or compiling: the plain model runs then."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
