"""The mask decoder's inference path: the plain :class:`~samkit.model.mask_decoder.MaskDecoder`
computation (same weights, same numbers to float rounding) in fewer operations.

* **One image pass for many prompts.** Without a mask input every prompt sees the same image
  embedding plus the same ``no_mask_embed`` vector, so the image side enters the transformer once
  (batch 1) and only becomes one copy per prompt after the first image-to-token attention.
* **Attention folded into the few tokens** (:mod:`samkit.fast.attention`).
* **The first layer's image side computed once per image** (:class:`ImageSide`, kept by
  :class:`samkit.fast.ImageSession` between clicks): the keys and values of its token-to-image
  attention and the queries of its image-to-token attention do not depend on the prompt.
* **Upscaling on the token layout** (:func:`upscale`): a transposed convolution with kernel 2 and
  stride 2 is one linear map per input pixel, so both steps are matrix products on the
  ``B x hw x C`` tokens the transformer leaves, and only the few mask planes are put back in
  raster order.

Each function takes the plain module whose weights it reads; nothing is stored on it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.image_encoder import unpack_detail
from ..model.mask_decoder import MaskDecoder
from ..model.transformer import TwoWayAttentionBlock, TwoWayTransformer
from .attention import attend_projected_image, attention, image_attends_projected, split_heads


@dataclass
class ImageSide:
    """What the transformer's first layer computes from the image alone: with no mask input it is
    the same for every prompt on an image. Shapes for vit_b (hw = 4096, C = 256, 8 heads of 16)."""

    keys: Tensor   # 1 x hw x C          image embedding + dense prompt, token layout
    pe: Tensor     # 1 x hw x C          positional encoding, token layout
    t2i_k: Tensor  # 1 x heads x hw x d  token-to-image keys, k_proj(keys + pe)
    t2i_v: Tensor  # 1 x heads x hw x d  token-to-image values, v_proj(keys)
    i2t_q: Tensor  # 1 x heads x hw x d  image-to-token queries, q_proj(keys + pe)


def image_side(transformer: TwoWayTransformer, image_embedding: Tensor,
               image_pe: Tensor) -> ImageSide:
    """The first layer's image side of ``image_embedding`` (``1 x C x h x w``, the dense prompt
    added)."""
    layer = transformer.layers[0]
    t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
    pe = image_pe.flatten(2).transpose(1, 2).contiguous()
    k = keys + pe
    return ImageSide(keys, pe, split_heads(t2i, t2i.k_proj(k)), split_heads(t2i, t2i.v_proj(keys)),
                     split_heads(i2t, i2t.q_proj(k)))


def two_way_block(layer: TwoWayAttentionBlock, queries: Tensor, keys: Tensor, query_pe: Tensor,
                  key_pe: Tensor, side: Optional[ImageSide] = None, fold: bool = True
                  ) -> Tuple[Tensor, Tensor]:
    """``layer(queries, keys, query_pe, key_pe)``; ``side``: the first layer's image side."""
    # (1) tokens attend to themselves
    if layer.skip_first_layer_pe:
        queries = attention(layer.self_attn, queries, queries, queries, fold)
    else:
        q = queries + query_pe
        queries = queries + attention(layer.self_attn, q, q, queries, fold)
    queries = layer.norm1(queries)
    # (2) tokens attend to the image
    t2i = layer.cross_attn_token_to_image
    if side is not None:
        out = attend_projected_image(t2i, queries + query_pe, side.t2i_k, side.t2i_v)
    else:
        k = keys + key_pe  # the image side with its PE, unchanged until (4)
        out = attention(t2i, queries + query_pe, k, keys, fold)
    queries = layer.norm2(queries + out)
    # (3) MLP on each token
    queries = layer.norm3(queries + layer.mlp(queries))
    # (4) the image attends to the tokens (a shared batch-1 image becomes one per prompt here)
    q = queries + query_pe
    i2t = layer.cross_attn_image_to_token
    if side is not None:
        out = image_attends_projected(i2t, side.i2t_q, q, queries)
    else:
        out = attention(i2t, k, q, queries, fold)
    return queries, layer.norm4(keys + out)


def two_way_transformer(transformer: TwoWayTransformer, image_embedding: Optional[Tensor],
                        image_pe: Optional[Tensor], point_embedding: Tensor,
                        side: Optional[ImageSide] = None, fold: bool = True
                        ) -> Tuple[Tensor, Tensor]:
    """``transformer(image_embedding, image_pe, point_embedding)``: ``tokens B x N x C`` and
    ``image B x hw x C``; the image may have batch 1 for the B prompts.

    With ``side`` (:func:`image_side` of this image), ``image_embedding`` and ``image_pe`` are not
    read.
    """
    if side is not None:
        keys, key_pe = side.keys, side.pe
    else:  # B x hw x C, contiguous: every later add, norm and projection runs on dense rows
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
    queries = point_embedding
    for i, layer in enumerate(transformer.layers):
        queries, keys = two_way_block(layer, queries, keys, point_embedding, key_pe,
                                      side if i == 0 else None, fold)
    q, k = queries + point_embedding, keys + key_pe
    out = attention(transformer.final_attn_token_to_image, q, k, keys, fold)
    return transformer.norm_final_attn(queries + out), keys


def to_blocked(feature: Tensor, h: int, w: int) -> Tensor:
    """A ``B x C x (2^L h) x (2^L w)`` map in the order :func:`upscale` leaves its pixels after
    L steps: ``B x (4^L hw) x C``, rows ``(i, j, di_1, dj_1, ..., di_L, dj_L)`` for the pixel
    ``(2^L i + sum_l 2^(L-l) di_l, 2^L j + sum_l 2^(L-l) dj_l)``."""
    b, c, hh, ww = feature.shape
    levels = (hh // h).bit_length() - 1
    x = feature.reshape(b, c, h, *[2] * levels, w, *[2] * levels)
    steps = [d for level in range(levels) for d in (3 + level, 4 + levels + level)]
    return x.permute([0, 2, 3 + levels] + steps + [1]).reshape(b, hh * ww, c)


def upscale(decoder: MaskDecoder, src: Tensor, h: int, w: int,
            high_res_features: Optional[Sequence[Tensor]] = None) -> Tensor:
    """``decoder.output_upscaling`` on image tokens: ``B x hw x C`` -> ``B x 16hw x C/8``.

    Each transposed convolution is one ``C -> 4 C'`` linear map per input pixel (its bias
    repeated for the 4 outputs), with the norm and activations per pixel in between. Pixels come
    out in blocked order ``(i, j, di1, dj1, di2, dj2)`` (see :func:`to_blocked`).

    ``high_res_features`` (optional, SAM 2's order, finest first):
    ``(s0: B x C/8 x 4h x 4w, s1: B x C/4 x 2h x 2w)``, already projected to the upscaling widths
    (batch 1 or B); s1 is added after the first transposed convolution and s0 after the second:
    ``act2(up2(act1(norm(up1(x) + s1))) + s0)``.
    """
    up1, norm, act1, up2, act2 = decoder.output_upscaling
    extra = [None, None] if high_res_features is None else list(high_res_features)[::-1]
    y = src
    for level, (up, feature) in enumerate(zip((up1, up2), extra), start=1):
        c = up.weight.shape[1]
        weight = up.weight.permute(2, 3, 1, 0).reshape(4 * c, -1)  # C x C' x 2 x 2 -> 4C' x C
        y = F.linear(y, weight, up.bias.repeat(4))         # B x (4^(level-1) hw) x 4C'
        y = y.reshape(src.shape[0], h * w * 4 ** level, c)
        if feature is not None:
            y = y + to_blocked(feature.to(y.dtype), h, w)
        if level == 1:
            y = act1(F.layer_norm(y, (c,), norm.weight, norm.bias, norm.eps))
    return act2(y)


def predict_masks(decoder: MaskDecoder, image_embeddings: Tensor, image_pe: Tensor,
                  sparse_prompt_embeddings: Tensor, dense_prompt_embeddings: Tensor,
                  mask_slice: slice = slice(None), side: Optional[ImageSide] = None,
                  fold_attention: bool = True,
                  high_res_features: Optional[Sequence[Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """``decoder.predict_masks(...)``: ``B x M x 4h x 4w`` logits and ``B x M`` IoU predictions.

    ``side``: the first layer's image side of ``image_embeddings + dense_prompt_embeddings``
    (batch 1), when the caller kept it; ``fold_attention=False`` keeps the plain attention order.
    """
    B = sparse_prompt_embeddings.shape[0]
    image_embeddings, detail = unpack_detail(image_embeddings, decoder.transformer_dim)
    if image_embeddings.shape[0] not in (1, B):
        raise ValueError(f"image_embeddings has batch {image_embeddings.shape[0]}; "
                         f"expected 1 or {B} (one per prompt)")
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight])  # 5 x C
    output_tokens = output_tokens.unsqueeze(0).expand(B, -1, -1)
    tokens = torch.cat([output_tokens, sparse_prompt_embeddings.to(output_tokens.dtype)], dim=1)

    dense = dense_prompt_embeddings
    h, w = image_embeddings.shape[-2:]
    src = None
    if side is None:
        if image_embeddings.shape[0] == 1 and (dense.shape[0] == 1 or dense.stride(0) == 0):
            src = image_embeddings + dense[:1]      # 1 x C x h x w, shared by the B prompts
        else:
            src = image_embeddings + dense          # B x C x h x w
    hs, src = two_way_transformer(decoder.transformer, src, image_pe, tokens, side, fold_attention)
    iou_token_out = hs[:, 0, :]
    mask_tokens_out = hs[:, 1:1 + decoder.num_mask_tokens, :]

    idx = range(decoder.num_mask_tokens)[mask_slice]
    hyper = torch.stack([decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                         for i in idx], dim=1)                                 # B x M x C/8
    iou_pred = decoder.iou_prediction_head(iou_token_out)[:, mask_slice]
    if decoder.detail_chans > 0:  # the detail path's 3x3 convolutions need the plain pixel order
        if detail is None:
            raise ValueError("this decoder expects image embeddings with a packed detail map")
        up = decoder.output_upscaling(src.transpose(1, 2).reshape(B, -1, h, w))  # B x C/8 x 4h x 4w
        up = up + decoder.detail_proj(detail)
        up = up + decoder.detail_refine(up)
        masks = (hyper @ up.flatten(2)).reshape(B, len(idx), 4 * h, 4 * w)
        if decoder.coarse_readout:
            masks = masks + decoder.coarse_masks(mask_tokens_out, src.transpose(1, 2).reshape(B, -1, h, w), idx)
        return masks, iou_pred
    features = upscale(decoder, src, h, w, high_res_features)                  # B x 16hw x C/8
    masks = features @ hyper.transpose(1, 2)                                   # B x 16hw x M
    # blocked order (i, j, di1, dj1, di2, dj2) -> row 4i + 2 di1 + di2, column 4j + 2 dj1 + dj2
    masks = masks.reshape(B, h, w, 2, 2, 2, 2, len(idx)).permute(0, 7, 1, 3, 5, 2, 4, 6)
    masks = masks.reshape(B, len(idx), 4 * h, 4 * w)
    if decoder.coarse_readout:
        masks = masks + decoder.coarse_masks(mask_tokens_out, src.transpose(1, 2).reshape(src.shape[0], -1, h, w),
                                             idx)
    return masks, iou_pred
