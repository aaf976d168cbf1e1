"""The image encoder: an MAE-style ViT with windowed attention and decomposed relative positions.

Paper §3 and appendix A: a ViT-B/L/H (patch 16, 1024 px input, so a 64x64 token grid), where most
blocks attend inside 14x14 windows and four equally spaced blocks attend globally, each attention
carrying a decomposed relative position bias (MViTv2). A "neck" of two convolutions then maps the
``64 x 64 x D`` tokens to the ``256 x 64 x 64`` image embedding that the mask decoder reads.

Shapes below are for vit_b (D = 768); ``tiny_v1`` runs the same code at 512 px (32 x 32 tokens, D = 192).
Attention is ``torch.nn.functional.scaled_dot_product_attention`` with the relative position bias
as an additive mask: the paper's ``softmax(q k^T / sqrt(d) + bias) v`` in one fused call.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth

from .common import LayerNorm2d, MLPBlock


class PatchEmbed(nn.Module):
    """``B x 3 x 1024 x 1024`` image -> ``B x 64 x 64 x D`` patch tokens (a strided convolution)."""

    def __init__(self, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # B x C x H x W -> B x H x W x C


def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """A relative position table ``L x C`` resized linearly to ``length x C`` (returned as is when it fits)."""
    if rel_pos.shape[0] == length:
        return rel_pos
    return F.interpolate(rel_pos.t()[None], size=length, mode="linear", align_corners=False)[0].t()


def get_rel_pos(q_size: int, k_size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """Relative position embeddings for every (query, key) pair along one axis.

    Args:
        rel_pos: ``(2 * max(q_size, k_size) - 1) x C`` table (interpolated if its length differs).
    Returns:
        ``q_size x k_size x C``.
    """
    rel_pos = resize_rel_pos(rel_pos, int(2 * max(q_size, k_size) - 1))
    # Scale the coordinates of the shorter side when q and k differ in length.
    q_coords = torch.arange(q_size, device=rel_pos.device)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, device=rel_pos.device)[None, :] * max(q_size / k_size, 1.0)
    relative_coords = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return rel_pos[relative_coords.long()]


def rel_pos_terms(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                  q_size: Tuple[int, int], k_size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two factors of the decomposed relative position bias.

    Args:
        q: ``B x (qh*qw) x C`` queries (unscaled).
    Returns:
        ``rel_h``: ``B x (qh*qw) x kh`` with ``rel_h[b, q, kh] = q . R_h[qh, kh]``, and
        ``rel_w``: ``B x (qh*qw) x kw`` with ``rel_w[b, q, kw] = q . R_w[qw, kw]``.
    """
    q_h, q_w = q_size
    k_h, k_w = k_size
    Rh = get_rel_pos(q_h, k_h, rel_pos_h)  # qh x kh x C
    Rw = get_rel_pos(q_w, k_w, rel_pos_w)  # qw x kw x C
    B, _, dim = q.shape
    r_q = q.reshape(B, q_h, q_w, dim)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)  # B x qh x qw x kh
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)  # B x qh x qw x kw
    return rel_h.reshape(B, q_h * q_w, k_h), rel_w.reshape(B, q_h * q_w, k_w)


def decomposed_rel_pos_bias(q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor,
                            q_size: Tuple[int, int], k_size: Tuple[int, int]) -> torch.Tensor:
    """The additive attention bias of MViTv2: ``bias[q, k] = q . R_h[qh, kh] + q . R_w[qw, kw]``.

    Args:
        q: ``B x (qh*qw) x C`` queries (unscaled).
    Returns:
        ``B x (qh*qw) x (kh*kw)`` bias to add to the attention logits.
    """
    rel_h, rel_w = rel_pos_terms(q, rel_pos_h, rel_pos_w, q_size, k_size)
    B, L, k_h = rel_h.shape
    return (rel_h[:, :, :, None] + rel_w[:, :, None, :]).reshape(B, L, k_h * rel_w.shape[-1])


class Attention(nn.Module):
    """Multi-head self-attention over a ``B x H x W x C`` grid, with the relative position bias."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = True, use_rel_pos: bool = False,
                 input_size: Optional[Tuple[int, int]] = None) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            assert input_size is not None, "relative positions need the input size"
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x H x W x dim`` -> ``B x H x W x dim``."""
        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                  # B x heads x HW x d each
        bias = None
        if self.use_rel_pos:
            bias = decomposed_rel_pos_bias(q.flatten(0, 1), self.rel_pos_h, self.rel_pos_w,
                                           (H, W), (H, W))
            bias = bias.view(B, self.num_heads, H * W, H * W).to(q.dtype)
        # softmax(q k^T / sqrt(d) + bias) v, per head
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(B, H, W, -1))


def window_partition(x: torch.Tensor, window_size: int) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """``B x H x W x C`` -> ``(B * nWindows) x ws x ws x C``, zero-padding H and W up to multiples of ws."""
    B, H, W, C = x.shape
    pad_h = (window_size - H % window_size) % window_size
    pad_w = (window_size - W % window_size) % window_size
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    Hp, Wp = H + pad_h, W + pad_w
    x = x.view(B, Hp // window_size, window_size, Wp // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, C)
    return windows, (Hp, Wp)


def window_unpartition(windows: torch.Tensor, window_size: int, pad_hw: Tuple[int, int],
                       hw: Tuple[int, int]) -> torch.Tensor:
    """Inverse of :func:`window_partition`: back to ``B x H x W x C``, padding removed."""
    Hp, Wp = pad_hw
    H, W = hw
    B = windows.shape[0] // (Hp * Wp // window_size // window_size)
    x = windows.view(B, Hp // window_size, Wp // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, -1)
    return x[:, :H, :W, :].contiguous() if (Hp > H or Wp > W) else x


class Block(nn.Module):
    """Pre-norm transformer block; ``window_size > 0`` makes it a windowed block, 0 a global one."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 use_rel_pos: bool = False, window_size: int = 0,
                 input_size: Optional[Tuple[int, int]] = None, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, use_rel_pos=use_rel_pos,
                              input_size=input_size if window_size == 0 else (window_size, window_size))
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), act=nn.GELU)
        self.window_size = window_size
        self.drop_path = drop_path  # stochastic depth rate (training only)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        return stochastic_depth(x, self.drop_path, "row", self.training) if self.drop_path > 0 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B x H x W x C
        shortcut = x
        x = self.norm1(x)
        if self.window_size > 0:  # attention inside ws x ws windows, the grid zero-padded to fit
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)    # (B * nW) x ws x ws x C
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))  # B x H x W x C
        x = shortcut + self._residual(x)
        return x + self._residual(self.mlp(self.norm2(x)))


class DetailStem(nn.Module):
    """The high-resolution path: ``B x 3 x S x S`` normalised image -> ``B x d x S/4 x S/4`` detail map.

    Three 3x3 convolutions (stride 2, 2, 1) with LayerNorm2d and GELU: edges, colours and textures at 4
    input pixels per cell, the resolution of the decoder's low-res masks, where the ViT sees 16.
    """

    def __init__(self, out_chans: int, width: int = 32, in_chans: int = 3) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_chans, width, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(width),
            nn.GELU(),
            nn.Conv2d(width, width, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(width),
            nn.GELU(),
            nn.Conv2d(width, out_chans, kernel_size=3, padding=1),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


def pack_detail(embedding: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """``B x C x e x e`` embedding + ``B x d x 4e x 4e`` detail map -> one ``B x (C + 16 d) x e x e``
    tensor (the detail map folded 4x4 into channels), so that everything that stores or passes image
    embeddings around (the predictor, the embedding cache, training's frozen-encoder cache) carries the
    detail map without knowing about it. :func:`unpack_detail` undoes it."""
    return torch.cat([embedding, F.pixel_unshuffle(detail, 4)], dim=1)


def unpack_detail(packed: torch.Tensor, embed_dim: int) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Inverse of :func:`pack_detail`: ``(B x C x e x e, B x d x 4e x 4e)``, or ``(packed, None)`` when the
    tensor has only the ``embed_dim`` embedding channels."""
    if packed.shape[1] == embed_dim:
        return packed, None
    return packed[:, :embed_dim], F.pixel_shuffle(packed[:, embed_dim:], 4)


class ImageEncoderViT(nn.Module):
    """``B x 3 x img_size x img_size`` normalised image -> ``B x out_chans x (img/patch) x (img/patch)``.

    For vit_b: ``B x 3 x 1024 x 1024`` -> patch embed ``B x 64 x 64 x 768`` (+ absolute position
    embedding) -> 12 blocks (global at 2, 5, 8, 11; the rest in 14x14 windows) -> neck ->
    ``B x 256 x 64 x 64``.
    """

    def __init__(self, img_size: int = 1024, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 out_chans: int = 256, qkv_bias: bool = True, use_abs_pos: bool = True,
                 use_rel_pos: bool = True, window_size: int = 14,
                 global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11),
                 drop_path_rate: float = 0.0, detail_chans: int = 0) -> None:
        super().__init__()
        self.img_size = img_size
        self.out_chans = out_chans
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        grid = img_size // patch_size
        self.pos_embed: Optional[nn.Parameter] = None
        if use_abs_pos:
            self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, use_rel_pos,
                  window_size=0 if i in global_attn_indexes else window_size,
                  input_size=(grid, grid), drop_path=drop_path_rate * i / max(depth - 1, 1))
            for i in range(depth))
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        # optional high-resolution path (``tiny_hq``); the official models have none
        self.detail = DetailStem(detail_chans) if detail_chans > 0 else None

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth increasing linearly from 0 (first block) to ``rate`` (last block)."""
        n = len(self.blocks)
        for i, blk in enumerate(self.blocks):
            blk.drop_path = rate * i / max(n - 1, 1)

    def layer_id(self, param_name: str) -> int:
        """Depth index of a parameter for layer-wise lr decay: embeddings 0, block i -> i + 1, neck last."""
        if param_name.startswith(("patch_embed", "pos_embed", "detail")):
            return 0
        if param_name.startswith("blocks."):
            return int(param_name.split(".")[1]) + 1
        return len(self.blocks) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x S x S`` -> ``B x out_chans x S/16 x S/16`` (with a detail path:
        ``B x (out_chans + 16 d) x S/16 x S/16``, see :func:`pack_detail`)."""
        image = x
        x = self.patch_embed(x)                       # B x 64 x 64 x D
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.neck(x.permute(0, 3, 1, 2))          # B x 256 x 64 x 64
        if self.detail is not None:
            x = pack_detail(x, self.detail(image))    # + the B x d x S/4 x S/4 detail map
        return x
