"""MobileSAM's image encoder: TinyViT-5M adapted to a 1024 px input and SAM's 256-channel neck.

MobileSAM (Zhang et al., 2023) replaces SAM's ViT-H encoder (632M parameters) with TinyViT-5M
(about 5.7M parameters), distilled to reproduce ViT-H's image embedding; the prompt encoder and
the mask decoder are SAM's, unchanged. The encoder is a four-stage hierarchy:

=======================  ======================================  ===========================
part                     what it does                            shape for a 1024 px input
=======================  ======================================  ===========================
input                    normalised, padded image                ``B x 3 x 1024 x 1024``
``patch_embed``          two 3x3 stride-2 conv+BN, GELU between  ``B x 64 x 256 x 256``
``layers[0]``            2 MBConv blocks (inverted residuals)    ``B x 64 x 256 x 256``
  ... downsample         patch merging, stride 2                 ``B x 128 x 128 x 128``
``layers[1]``            2 TinyViT blocks, 7x7 windows           ``B x 128 x 128 x 128``
  ... downsample         patch merging, stride 2                 ``B x 160 x 64 x 64``
``layers[2]``            6 TinyViT blocks, 14x14 windows         ``B x 160 x 64 x 64``
  ... downsample         patch merging, **stride 1** (MobileSAM) ``B x 320 x 64 x 64``
``layers[3]``            2 TinyViT blocks, 7x7 windows           ``B x 320 x 64 x 64``
``neck``                 conv1x1, LayerNorm2d, conv3x3, LN2d     ``B x 256 x 64 x 64``
=======================  ======================================  ===========================

MobileSAM's two changes to TinyViT are the stride-1 last patch merging (so the embedding grid is
64x64, like SAM's, instead of 32x32) and the neck copied from SAM's ViT encoder.

A TinyViT block is: windowed multi-head attention (pre-norm, with a learned bias per head and per
relative offset ``(|dy|, |dx|)`` inside the window, as in LeViT) + residual; a depthwise
convolution over the token grid (no residual); an MLP (pre-norm) + residual. Windows that do not
tile the grid are zero-padded at the bottom/right *before* the attention's LayerNorm and the padded
tokens are attended to without a mask, exactly as the official code does (it changes the numbers).

Parameter and buffer names match MobileSAM's ``TinyViT`` (module ``mobile_sam.modeling.tiny_vit_sam``),
so the ``image_encoder.*`` entries of ``mobile_sam.pt`` load with ``strict=True``. That includes the
unused ImageNet classifier (``norm_head``, ``head``) that the checkpoint carries.

One deliberate difference: the official attention caches its bias table (``ab``) when ``.eval()`` is
called, so weights loaded *after* ``.eval()`` run with a stale (all-zero) bias until ``.eval()`` is
called again. Here the bias is gathered from ``attention_biases`` on every forward pass, so it is
always current.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchvision.ops import stochastic_depth

from .common import LayerNorm2d
from .image_encoder import window_partition, window_unpartition


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth on a residual branch: zero whole samples with probability ``rate`` while training."""
    if rate <= 0.0 or not training:
        return x
    return stochastic_depth(x, rate, "row", training)


class Conv2dBN(nn.Sequential):
    """Convolution without bias followed by BatchNorm (``c``, ``bn``): ``B x Cin x H x W -> B x Cout x H/s x W/s``.

    Padding is ``kernel_size // 2`` so a stride-1 convolution keeps the spatial size.
    """

    def __init__(self, in_chans: int, out_chans: int, kernel_size: int = 1, stride: int = 1,
                 groups: int = 1, bn_weight_init: float = 1.0) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, kernel_size, stride, kernel_size // 2,
                           groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.zeros_(self.bn.bias)


class PatchEmbed(nn.Module):
    """The convolutional stem: ``B x 3 x S x S -> B x D x S/4 x S/4`` (two 3x3 stride-2 conv+BN, GELU between)."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, kernel_size=3, stride=2),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim, kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual block (MobileNetV2): ``B x C x H x W -> B x C x H x W``.

    1x1 expand (C -> C * expand_ratio), GELU, 3x3 depthwise, GELU, 1x1 project back to C, add the
    input, GELU. The projection's BatchNorm starts at zero, so a fresh block is the identity + GELU.
    """

    def __init__(self, dim: int, expand_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * expand_ratio)
        self.conv1 = Conv2dBN(dim, hidden, kernel_size=1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, kernel_size=3, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, dim, kernel_size=1, bn_weight_init=0.0)
        self.act3 = nn.GELU()
        self.drop_path = drop_path  # stochastic depth rate (training only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.conv1(x))
        y = self.act2(self.conv2(y))
        y = self.conv3(y)
        return self.act3(x + drop_path(y, self.drop_path, self.training))


class PatchMerging(nn.Module):
    """Downsampling between stages: ``B x C x H x W -> B x C' x H/s x W/s``.

    1x1 conv to C', GELU, 3x3 depthwise conv with stride ``s``, GELU, 1x1 conv (each conv + BN).
    """

    def __init__(self, dim: int, out_dim: int, stride: int = 2) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim, kernel_size=1)
        self.conv2 = Conv2dBN(out_dim, out_dim, kernel_size=3, stride=stride, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.conv3(x)


def relative_offset_index(window_size: int) -> torch.Tensor:
    """Index of the bias shared by each query/key pair of a ``ws x ws`` window: ``N x N`` long, N = ws * ws.

    Tokens are numbered row-major inside the window. Pairs with the same absolute offset
    ``(|dy|, |dx|)`` share one bias, stored at index ``|dy| * ws + |dx|`` (the order in which the
    official code first meets each offset), so there are ``ws * ws`` distinct biases per head.
    """
    rows = torch.arange(window_size).repeat_interleave(window_size)  # N: y of each token
    cols = torch.arange(window_size).repeat(window_size)             # N: x of each token
    dy = (rows[:, None] - rows[None, :]).abs()
    dx = (cols[:, None] - cols[None, :]).abs()
    return dy * window_size + dx


class Attention(nn.Module):
    """Multi-head self-attention inside one window, with a learned bias per head and relative offset.

    ``(B * windows) x N x C -> (B * windows) x N x C`` with ``N = window_size ** 2``. Pre-norm
    (``norm`` is part of the attention). The fused ``qkv`` projection is laid out per head as
    ``[q_h, k_h, v_h]`` (the official layout), each of ``C / num_heads`` channels.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window_size * window_size))
        # Rebuilt from window_size, so not part of the checkpoint (as in the official code).
        self.register_buffer("attention_bias_idxs", relative_offset_index(window_size), persistent=False)

    def attention_bias(self) -> torch.Tensor:
        """The additive attention bias, ``num_heads x N x N``."""
        return self.attention_biases[:, self.attention_bias_idxs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(self.norm(x)).view(B, N, self.num_heads, 3 * self.head_dim)
        q, k, v = qkv.permute(0, 2, 1, 3).split(self.head_dim, dim=-1)  # each B x heads x N x hd
        bias = self.attention_bias().to(q.dtype)
        # softmax(q k^T / sqrt(head_dim) + bias) v, fused
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    """Pre-norm feed-forward: LayerNorm, Linear(C -> hidden), GELU, Linear(hidden -> C). ``... x C -> ... x C``."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Windowed attention + depthwise conv + MLP: ``B x H x W x C -> B x H x W x C``."""

    def __init__(self, dim: int, num_heads: int, window_size: int, mlp_ratio: float = 4.0,
                 local_conv_size: int = 3, drop_path: float = 0.0) -> None:
        super().__init__()
        self.window_size = window_size
        self.attn = Attention(dim, num_heads, window_size)
        self.local_conv = Conv2dBN(dim, dim, kernel_size=local_conv_size, groups=dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path  # stochastic depth rate (training only)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        ws = self.window_size
        windows, padded_hw = window_partition(x, ws)                # (B * nW) x ws x ws x C, zero-padded
        y = self.attn(windows.reshape(-1, ws * ws, C))              # (B * nW) x ws^2 x C
        y = window_unpartition(y.view(-1, ws, ws, C), ws, padded_hw, (H, W))  # B x H x W x C
        x = x + drop_path(y, self.drop_path, self.training)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)  # depthwise conv, no residual
        return x + drop_path(self.mlp(x), self.drop_path, self.training)


class ConvLayer(nn.Module):
    """Stage 0: MBConv blocks then patch merging. ``B x C x H x W -> B x C' x H/2 x W/2``."""

    def __init__(self, dim: int, out_dim: int, depth: int, expand_ratio: float,
                 drop_paths: Sequence[float], downsample_stride: int = 2) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio, drop_paths[i]) for i in range(depth))
        self.downsample = PatchMerging(dim, out_dim, downsample_stride)

    def forward(self, x: torch.Tensor, use_checkpoint: bool = False) -> torch.Tensor:
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        return self.downsample(x)


class BasicLayer(nn.Module):
    """Stages 1-3: TinyViT blocks, then patch merging unless it is the last stage.

    ``B x C x H x W -> B x C' x H/s x W/s`` (the blocks themselves run channels-last).
    """

    def __init__(self, dim: int, out_dim: int, depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, local_conv_size: int, drop_paths: Sequence[float],
                 downsample_stride: int = 0) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size, drop_paths[i])
            for i in range(depth))
        self.downsample = PatchMerging(dim, out_dim, downsample_stride) if downsample_stride > 0 else None

    def forward(self, x: torch.Tensor, use_checkpoint: bool = False) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # B x H x W x C
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        x = x.permute(0, 3, 1, 2)  # B x C x H x W
        return self.downsample(x) if self.downsample is not None else x


class TinyViT(nn.Module):
    """MobileSAM's TinyViT image encoder: ``B x 3 x S x S`` normalised image -> ``B x out_chans x S/16 x S/16``.

    With the defaults (vit_t): ``B x 3 x 1024 x 1024 -> B x 256 x 64 x 64``.

    Args:
        img_size: side of the (square, padded) input image.
        in_chans: input channels.
        embed_dims: channels of the four stages.
        depths: blocks per stage (stage 0 is MBConv, the others TinyViT blocks).
        num_heads: attention heads per stage (the entry for stage 0 is unused).
        window_sizes: attention window side per stage (the entry for stage 0 is unused).
        mlp_ratio: MLP hidden width / channels in the TinyViT blocks.
        mbconv_expand_ratio: hidden width / channels in the MBConv blocks.
        local_conv_size: kernel of the depthwise conv between attention and MLP.
        out_chans: channels of the image embedding (the neck's output).
        drop_path_rate: stochastic depth of the last block; it rises linearly from 0 over all blocks.
        num_classes: width of the ImageNet classifier ``head``. ``forward`` never uses it; it exists so
            that MobileSAM checkpoints (which carry it) load with ``strict=True``. 0 drops it.
        use_checkpoint: recompute block activations in the backward pass (saves memory when training).
    """

    def __init__(self, img_size: int = 1024, in_chans: int = 3,
                 embed_dims: Sequence[int] = (64, 128, 160, 320), depths: Sequence[int] = (2, 2, 6, 2),
                 num_heads: Sequence[int] = (2, 4, 5, 10), window_sizes: Sequence[int] = (7, 7, 14, 7),
                 mlp_ratio: float = 4.0, mbconv_expand_ratio: float = 4.0, local_conv_size: int = 3,
                 out_chans: int = 256, drop_path_rate: float = 0.0, num_classes: int = 1000,
                 use_checkpoint: bool = False) -> None:
        super().__init__()
        num_stages = len(depths)
        for name, value in (("embed_dims", embed_dims), ("num_heads", num_heads),
                            ("window_sizes", window_sizes)):
            if len(value) != num_stages:
                raise ValueError(f"{name} has {len(value)} entries but depths has {num_stages}")
        if num_stages < 2:
            raise ValueError(f"TinyViT needs at least 2 stages, got depths={tuple(depths)}")
        # Stem /4, then /2 per merging except the last one (stride 1): output grid = S / 4 / 2^(n-2).
        self.downsample_factor = 4 * 2 ** (num_stages - 2)
        if img_size % self.downsample_factor != 0:
            raise ValueError(f"img_size {img_size} must be a multiple of {self.downsample_factor}")
        self.img_size = img_size
        self.in_chans = in_chans
        self.depths = tuple(depths)
        self.embedding_size = img_size // self.downsample_factor
        self.use_checkpoint = use_checkpoint

        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        rates = self._drop_path_rates(drop_path_rate)
        self.layers = nn.ModuleList()
        for i in range(num_stages):
            stage_rates = rates[sum(depths[:i]):sum(depths[:i + 1])]
            out_dim = embed_dims[min(i + 1, num_stages - 1)]
            # MobileSAM: the last merging keeps the resolution, so the embedding stays at S / 16.
            stride = 0 if i == num_stages - 1 else (1 if i == num_stages - 2 else 2)
            if i == 0:
                layer: nn.Module = ConvLayer(embed_dims[0], out_dim, depths[0], mbconv_expand_ratio,
                                             stage_rates, stride)
            else:
                layer = BasicLayer(embed_dims[i], out_dim, depths[i], num_heads[i], window_sizes[i],
                                   mlp_ratio, local_conv_size, stage_rates, stride)
            self.layers.append(layer)

        # TinyViT's ImageNet classifier: unused by SAM, present in MobileSAM's checkpoint.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.apply(self._init_weights)

        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def num_blocks(self) -> int:
        """Number of blocks over all stages (12 for vit_t)."""
        return sum(self.depths)

    def _drop_path_rates(self, rate: float) -> List[float]:
        n = self.num_blocks
        return [rate * i / max(n - 1, 1) for i in range(n)]

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth rising linearly from 0 (first block) to ``rate`` (last block)."""
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"drop path rate must be in [0, 1), got {rate}")
        blocks = [block for layer in self.layers for block in layer.blocks]
        for block, block_rate in zip(blocks, self._drop_path_rates(rate)):
            block.drop_path = block_rate

    def layer_id(self, param_name: str) -> int:
        """Depth index of a parameter for layer-wise learning-rate decay.

        ``patch_embed`` -> 0; the i-th block over all stages (0-based) -> i + 1; a stage's patch
        merging -> the index of that stage's last block (TinyViT's convention); ``neck``,
        ``norm_head`` and ``head`` -> ``num_blocks + 1``. Names are relative to the encoder; a
        leading ``image_encoder.`` is ignored.
        """
        name = param_name[len("image_encoder."):] if param_name.startswith("image_encoder.") else param_name
        parts = name.split(".")
        if parts[0] == "patch_embed":
            return 0
        if parts[0] in ("neck", "norm_head", "head"):
            return self.num_blocks + 1
        if parts[0] == "layers" and len(parts) > 2 and parts[1].isdigit():
            stage = int(parts[1])
            if stage < len(self.depths):
                first = sum(self.depths[:stage]) + 1
                if parts[2] == "blocks" and len(parts) > 3 and parts[3].isdigit():
                    return first + int(parts[3])
                if parts[2] == "downsample":
                    return first + self.depths[stage] - 1
        raise ValueError(f"{param_name!r} is not a parameter name of TinyViT")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x in_chans x img_size x img_size`` -> ``B x out_chans x img_size/16 x img_size/16``."""
        if x.ndim != 4 or x.shape[1] != self.in_chans or x.shape[2:] != (self.img_size, self.img_size):
            raise ValueError(f"TinyViT expects a B x {self.in_chans} x {self.img_size} x {self.img_size} "
                             f"tensor, got {tuple(x.shape)}")
        x = self.patch_embed(x)             # B x 64 x 256 x 256
        for layer in self.layers:           # -> 128x128x128 -> 160x64x64 -> 320x64x64 -> 320x64x64
            x = layer(x, self.use_checkpoint and self.training)
        return self.neck(x)                 # B x 256 x 64 x 64


def tiny_vit_layer_ids(model: TinyViT) -> Dict[str, int]:
    """``{parameter name: depth index}`` for every parameter of ``model`` (see :meth:`TinyViT.layer_id`)."""
    return {name: model.layer_id(name) for name, _ in model.named_parameters()}
