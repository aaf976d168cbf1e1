"""The ViT image encoder's inference path: :class:`~samkit.model.image_encoder.ImageEncoderViT`'s
computation (same weights, same numbers to float rounding) with less work and memory.

* **Windowed blocks run ``qkv`` on the real tokens only.** The plain block pads the 64 x 64 grid to
  70 x 70 after ``norm1``, so a padding token's q/k/v is exactly the ``qkv`` bias: here the padding
  is filled with that bias and ``proj`` runs after cropping, which saves the 16% of the
  ``qkv``/``proj`` work spent on padding.
* **The relative-position bias is written into a preallocated contiguous buffer**, and in the
  global blocks built and consumed a chunk of queries at a time (at most
  :data:`MAX_BIAS_ELEMENTS`), so vit_b's ``12 x 4096 x 4096`` bias (805 MB in float32) never
  exists at once.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.image_encoder import (
    Attention,
    Block,
    ImageEncoderViT,
    pack_detail,
    rel_pos_terms,
    window_partition,
    window_unpartition,
)

#: Largest attention bias (in elements) materialised at once; beyond it the queries are processed
#: in chunks (vit_b's global blocks: 12 x 4096 x 4096 = 201M elements).
MAX_BIAS_ELEMENTS = 1 << 26


def expand_rel_pos_bias(rel_h: Tensor, rel_w: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """``bias[..., q, kh * kw_size + kw] = rel_h[..., q, kh] + rel_w[..., q, kw]``, as a
    ``... x Q x (kh*kw)`` tensor.

    Written into ``out``, a contiguous ``... x Q x kh x kw`` buffer (allocated when not given):
    the broadcasting add of einsum's (possibly permuted) outputs would otherwise need one more full
    copy of the bias.
    """
    k_h, k_w = rel_h.shape[-1], rel_w.shape[-1]
    if out is None:
        dtype = torch.result_type(rel_h, rel_w)
        out = torch.empty(*rel_h.shape, k_w, dtype=dtype, device=rel_h.device)
    torch.add(rel_h[..., :, None], rel_w[..., None, :], out=out)
    return out.view(*rel_h.shape[:-1], k_h * k_w)


def rel_pos_attention(q: Tensor, k: Tensor, v: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor,
                      size: Tuple[int, int]) -> Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` for ``q, k, v: B x heads x (H*W) x d`` on an
    ``H x W`` grid, the bias built and used at most :data:`MAX_BIAS_ELEMENTS` at a time:
    ``B x heads x (H*W) x d``."""
    B, nh, L, d = q.shape
    rel_h, rel_w = rel_pos_terms(q.reshape(B * nh, L, d), rel_pos_h, rel_pos_w, size, size)
    rel_h = rel_h.view(B, nh, L, -1).to(q.dtype)
    rel_w = rel_w.view(B, nh, L, -1).to(q.dtype)
    if B * nh * L * L <= MAX_BIAS_ELEMENTS:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=expand_rel_pos_bias(rel_h, rel_w))
    chunk = max(1, MAX_BIAS_ELEMENTS // (B * nh * L))
    out = q.new_empty(B, L, nh, v.shape[-1]).transpose(1, 2)          # B x heads x L x d
    buf = q.new_empty(B, nh, chunk, rel_h.shape[-1], rel_w.shape[-1])
    for s in range(0, L, chunk):
        e = min(s + chunk, L)
        bias = expand_rel_pos_bias(rel_h[:, :, s:e], rel_w[:, :, s:e], out=buf[:, :, : e - s])
        out[:, :, s:e] = F.scaled_dot_product_attention(q[:, :, s:e], k, v, attn_mask=bias)
    return out


def attend(attn: Attention, qkv: Tensor, size: Tuple[int, int]) -> Tensor:
    """Attention from projected ``qkv: B x (H*W) x 3 dim`` -> ``B x (H*W) x dim`` (no ``proj``)."""
    B, L, _ = qkv.shape
    qkv = qkv.view(B, L, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)                                       # B x heads x L x d each
    if attn.use_rel_pos:
        x = rel_pos_attention(q, k, v, attn.rel_pos_h, attn.rel_pos_w, size)
    else:
        x = F.scaled_dot_product_attention(q, k, v)
    return x.transpose(1, 2).reshape(B, L, -1)


def windowed_attention(block: Block, x: Tensor) -> Tensor:
    """``block``'s attention inside ``ws x ws`` windows of the normalised ``B x H x W x C`` tokens,
    ``qkv`` on the real tokens and the padding filled with the ``qkv`` bias: ``B x H x W x C``."""
    B, H, W, C = x.shape
    ws = block.window_size
    qkv = block.attn.qkv(x)                                       # B x H x W x 3C
    pad_h, pad_w = (ws - H % ws) % ws, (ws - W % ws) % ws
    if pad_h or pad_w:
        bias = block.attn.qkv.bias
        fill = bias.to(qkv.dtype) if bias is not None else qkv.new_zeros(qkv.shape[-1])
        fill = fill.view(1, 1, 1, -1)
        qkv = torch.cat([qkv, fill.expand(B, H, pad_w, -1)], dim=2)
        qkv = torch.cat([qkv, fill.expand(B, pad_h, W + pad_w, -1)], dim=1)
    windows, pad_hw = window_partition(qkv, ws)                   # (B * nW) x ws x ws x 3C
    out = attend(block.attn, windows.view(windows.shape[0], ws * ws, -1), (ws, ws))
    out = window_unpartition(out.view(-1, ws, ws, C), ws, pad_hw, (H, W))  # B x H x W x C
    return block.attn.proj(out)


def block_forward(block: Block, x: Tensor) -> Tensor:
    """``block(x)`` at inference (no stochastic depth): ``B x H x W x C`` -> ``B x H x W x C``."""
    shortcut = x
    x = block.norm1(x)
    if block.window_size > 0:
        x = windowed_attention(block, x)
    else:
        B, H, W, _ = x.shape
        qkv = block.attn.qkv(x).reshape(B, H * W, -1)
        x = block.attn.proj(attend(block.attn, qkv, (H, W)).view(B, H, W, -1))
    x = shortcut + x
    return x + block.mlp(block.norm2(x))


def encode(encoder: ImageEncoderViT, x: Tensor) -> Tensor:
    """``encoder(x)`` at inference: ``B x 3 x S x S`` -> ``B x 256 x S/16 x S/16`` (with a detail
    path, the detail map packed into extra channels: ``image_encoder.pack_detail``)."""
    image = x
    x = encoder.patch_embed(x)                       # B x 64 x 64 x D
    if encoder.pos_embed is not None:
        x = x + encoder.pos_embed
    for block in encoder.blocks:
        x = block_forward(block, x)
    x = encoder.neck(x.permute(0, 3, 1, 2))          # B x 256 x 64 x 64
    if encoder.detail is not None:
        x = pack_detail(x, encoder.detail(image))
    return x
