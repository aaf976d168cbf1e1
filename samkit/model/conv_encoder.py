"""A small convolutional image encoder for training on a CPU (the embedded ``tiny`` model).

The official SAM encoder is an MAE-pretrained ViT; trained from scratch on a 2-core CPU a small ViT
learns slowly and sees the image through 16-pixel patches. This encoder follows the hierarchical
designs of the efficient SAMs (EfficientViT-SAM, EdgeSAM's RepViT, MobileSAM's TinyViT): four stages
of residual 3x3 convolutions at strides 4, 8, 16 and 32, merged top-down (a feature pyramid, as in
FPN) into one ``out_chans x S/8 x S/8`` embedding: the official models' 64 x 64 grid at 512 px input,
so that the rest of SAM (prompt encoder, two-way transformer, mask decoder) is unchanged. It trains
under a decoder that already localises clicks (``grow_from``: tiny_v1's weights): from random weights everywhere its
output loses its spatial variation before the decoder learns where the click is (``configs/tiny.yaml``).

Shapes below are for 512 px input and ``tiny``'s widths ``(48, 96, 160, 224)``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import stochastic_depth


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm (8 channels a group): each image is normalised on its own, so the statistics do not
    depend on the batch, and a photo is not judged by the running statistics of generated scenes."""
    return nn.GroupNorm(max(1, channels // 8), channels)


class ConvNormAct(nn.Sequential):
    """``conv k x k (stride s) -> GroupNorm -> GELU`` (``act=False``: no GELU)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1, act: bool = True) -> None:
        layers = [nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, bias=False), norm(c_out)]
        if act:
            layers.append(nn.GELU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """``GELU(x + conv3x3(GELU(conv3x3(x))))`` with GroupNorm (a ResNet basic block); shape preserved."""

    def __init__(self, channels: int, drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels)
        self.conv2 = ConvNormAct(channels, channels, act=False)
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return F.gelu(x + stochastic_depth(y, self.drop_path, "row", self.training))


class ContextBlock(nn.Module):
    """A pre-norm transformer block over the ``h x w`` cells of a feature map: global self-attention, then
    an MLP (4x wide), each added residually; shape preserved (``B x C x h x w``).

    A stack of 3x3 convolutions sees about 600 pixels in theory and far fewer in effect: at 512 px input
    the deepest stage cannot tell that a person's face, shirt and trousers are one object. Attention over
    the 16 x 16 cells of stride 32 (256 tokens, little compute) lets every cell see the whole image, as
    the last stages of TinyViT and EfficientViT do. Both residual branches end in a zero-initialised
    projection, so a model grown from one without the block predicts exactly what that one did."""

    def __init__(self, channels: int, num_heads: int) -> None:
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be a multiple of num_heads ({num_heads})")
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.norm2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, 4 * channels), nn.GELU(), nn.Linear(4 * channels, channels))
        for layer in (self.proj, self.mlp[2]):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)                                 # B x hw x C
        q, k, v = self.qkv(self.norm1(t)).view(b, h * w, 3, self.num_heads, c // self.num_heads).unbind(2)
        a = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        t = t + self.proj(a.transpose(1, 2).reshape(b, h * w, c))        # every cell attends to all
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)


class Stage(nn.Module):
    """A stride-2 convolution (stride 4 for the stem) to ``c_out`` channels, then ``depth`` residual blocks."""

    def __init__(self, c_in: int, c_out: int, depth: int, stem: bool = False) -> None:
        super().__init__()
        if stem:  # B x 3 x S x S -> B x c_out x S/4 x S/4 in two stride-2 convolutions
            self.down = nn.Sequential(ConvNormAct(c_in, c_out // 2, stride=2), ConvNormAct(c_out // 2, c_out, stride=2))
        else:
            self.down = ConvNormAct(c_in, c_out, stride=2)
        self.blocks = nn.ModuleList(ResBlock(c_out) for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.down(x)
        for blk in self.blocks:
            x = blk(x)
        return x


class ConvEncoder(nn.Module):
    """``B x 3 x S x S`` normalised image -> ``B x out_chans x S/8 x S/8`` image embedding.

    For 512 px: stage 1 ``B x 48 x 128 x 128`` (stride 4), stage 2 ``B x 96 x 64 x 64``, stage 3
    ``B x 160 x 32 x 32``, stage 4 ``B x 224 x 16 x 16``; each of stages 2-4 is projected to
    ``out_chans`` (1x1) (stage 4 after ``context_depth`` global-attention blocks, :class:`ContextBlock`),
    the coarser ones upsampled and added to the finer (top-down, as in FPN), and a
    3x3 convolution with a one-group GroupNorm (the neck) gives ``B x out_chans x 64 x 64``.
    """

    def __init__(self, img_size: int = 512, widths: Sequence[int] = (48, 96, 160, 224),
                 depths: Sequence[int] = (1, 2, 3, 2), out_chans: int = 96, drop_path_rate: float = 0.0,
                 context_depth: int = 0, context_heads: int = 7) -> None:
        super().__init__()
        if len(widths) != 4 or len(depths) != 4:
            raise ValueError(f"ConvEncoder needs 4 stage widths and depths, got {widths} and {depths}")
        self.img_size = img_size
        self.out_chans = out_chans
        self.stages = nn.ModuleList()
        c_in = 3
        for i, (w, d) in enumerate(zip(widths, depths)):
            self.stages.append(Stage(c_in, w, d, stem=i == 0))
            c_in = w
        # global attention over the deepest stage's cells (``tiny``; ``tiny_v2`` has none)
        self.context = nn.ModuleList(ContextBlock(widths[-1], context_heads) for _ in range(context_depth))
        # lateral 1x1 projections of stages 2, 3, 4 (strides 8, 16, 32) to the embedding width
        self.lateral = nn.ModuleList(nn.Conv2d(w, out_chans, 1) for w in widths[1:])
        self.neck = nn.Sequential(nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), nn.GroupNorm(1, out_chans))
        self.set_drop_path(drop_path_rate)

    def set_drop_path(self, rate: float) -> None:
        """Stochastic depth increasing linearly from 0 (first block) to ``rate`` (last block)."""
        blocks = [b for s in self.stages for b in s.blocks]
        for i, blk in enumerate(blocks):
            blk.drop_path = rate * i / max(len(blocks) - 1, 1)

    def layer_id(self, param_name: str) -> int:
        """Depth index for layer-wise lr decay: stage i -> i, the context blocks 4, the pyramid and neck
        last (5)."""
        if param_name.startswith("stages."):
            return int(param_name.split(".")[1])
        if param_name.startswith("context."):
            return len(self.stages)
        return len(self.stages) + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x S x S`` -> ``B x out_chans x S/8 x S/8``."""
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)                                  # strides 4, 8, 16, 32
        for blk in self.context:
            feats[3] = blk(feats[3])                         # B x 224 x S/32 x S/32, each cell sees all
        y = self.lateral[2](feats[3])                        # B x C x S/32 x S/32
        for lat, f in ((self.lateral[1], feats[2]), (self.lateral[0], feats[1])):
            y = lat(f) + F.interpolate(y, size=f.shape[-2:], mode="nearest")
        return self.neck(y)                                  # B x C x S/8 x S/8
