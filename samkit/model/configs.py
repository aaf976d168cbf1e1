"""Every constant the SAM paper and the official code fix, in one place.

Each model name maps to a :class:`SamConfig`. The official configurations (``vit_b``, ``vit_l``,
``vit_h``) and MobileSAM's ``vit_t`` match the official repositories parameter for parameter, so
their checkpoints load with ``strict=True``. ``tiny`` is samkit's own small model for CPU
teaching: SAM's prompt encoder and mask decoder, a fraction of the width, on a small convolutional image
encoder; ``tiny_v1`` (a small ViT) and ``tiny_v2`` (``tiny`` without its attention blocks) are the models it
grew from, ``tiny_wide`` and ``tiny_hq`` experiments on the way.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Tuple

# Pixel statistics (ImageNet, on 0-255 RGB input). They are buffers of the model, not saved in checkpoints.
PIXEL_MEAN: Tuple[float, float, float] = (123.675, 116.28, 103.53)
PIXEL_STD: Tuple[float, float, float] = (58.395, 57.12, 57.375)

# Logits above this threshold are foreground.
MASK_THRESHOLD: float = 0.0


@dataclass(frozen=True)
class ViTConfig:
    """The ViT image encoder (paper §3, appendix A: an MAE-pretrained ViT with windowed attention)."""

    img_size: int = 1024           # input side after resize + pad
    patch_size: int = 16           # 1024 / 16 = 64x64 tokens
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    window_size: int = 14          # windowed blocks attend within 14x14 windows
    global_attn_indexes: Tuple[int, ...] = (2, 5, 8, 11)  # these blocks attend globally
    out_chans: int = 256           # the neck projects to the decoder's width
    use_rel_pos: bool = True       # decomposed relative position bias (MViTv2)
    detail_chans: int = 0          # >0: a convolutional stem gives a stride-4 detail map (HQ-SAM's idea);
                                   # 0 for the official models


@dataclass(frozen=True)
class TinyViTConfig:
    """MobileSAM's TinyViT-5M image encoder (vit_t)."""

    img_size: int = 1024
    embed_dims: Tuple[int, ...] = (64, 128, 160, 320)
    depths: Tuple[int, ...] = (2, 2, 6, 2)
    num_heads: Tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: Tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256


@dataclass(frozen=True)
class ConvEncoderConfig:
    """samkit's convolutional encoder (``conv_encoder.ConvEncoder``): four residual stages at strides 4-32
    merged top-down into an ``S/8`` embedding (64 x 64 at 512 px, the official models' grid)."""

    img_size: int = 512
    widths: Tuple[int, ...] = (48, 96, 160, 224)
    depths: Tuple[int, ...] = (1, 2, 3, 2)
    out_chans: int = 96
    context_depth: int = 0         # global-attention blocks over the deepest stage (conv_encoder.ContextBlock)
    context_heads: int = 7


@dataclass(frozen=True)
class DecoderConfig:
    """Prompt encoder + two-way transformer + mask decoder."""

    prompt_embed_dim: int = 256    # width of every token and of the image embedding
    transformer_depth: int = 2
    transformer_mlp_dim: int = 2048
    transformer_num_heads: int = 8
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3  # plus one single-mask token
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    mask_in_chans: int = 16
    # SAM 2's single-mask rule (off in SAM 1): when one mask is asked for and no mask input is given, token
    # 0's mask is kept only if it is stable (IoU of its masks at logit > +delta and > -delta >= thresh);
    # otherwise the multimask output with the highest predicted IoU is returned.
    dynamic_multimask_via_stability: bool = False
    dynamic_multimask_stab_delta: float = 0.05
    dynamic_multimask_stab_thresh: float = 0.98
    # a second read-out of the full-width image side (``MaskDecoder.coarse_masks``; the ``tiny_cr`` experiment)
    coarse_readout: bool = False


@dataclass(frozen=True)
class SamConfig:
    name: str
    encoder: object  # ViTConfig or TinyViTConfig
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    @property
    def img_size(self) -> int:
        return self.encoder.img_size

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for the official models)."""
        if isinstance(self.encoder, ViTConfig):
            return self.encoder.img_size // self.encoder.patch_size
        if isinstance(self.encoder, ConvEncoderConfig):
            return self.encoder.img_size // 8
        return self.encoder.img_size // 16  # TinyViT downsamples 4x, then 2x three times but the last stage

    @property
    def detail_chans(self) -> int:
        """Channels of the stride-4 detail map (0: the official design, no detail path)."""
        return getattr(self.encoder, "detail_chans", 0)

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-res mask logits (256 for the official models)."""
        return 4 * self.embedding_size

    def at_resolution(self, img_size: int) -> "SamConfig":
        """The same model at another input side (the position tables are resized when weights are loaded:
        :func:`samkit.checkpoints.resize_positions`)."""
        if isinstance(self.encoder, ConvEncoderConfig) and img_size % 32:
            raise ValueError(f"img_size must be a multiple of 32 for {self.name} (its deepest stage has "
                             f"stride 32), got {img_size}")
        if img_size % 16:
            raise ValueError(f"img_size must be a multiple of 16, got {img_size}")
        return replace(self, encoder=replace(self.encoder, img_size=int(img_size)))


CONFIGS = {
    "vit_b": SamConfig("vit_b", ViTConfig(embed_dim=768, depth=12, num_heads=12,
                                          global_attn_indexes=(2, 5, 8, 11))),
    "vit_l": SamConfig("vit_l", ViTConfig(embed_dim=1024, depth=24, num_heads=16,
                                          global_attn_indexes=(5, 11, 17, 23))),
    "vit_h": SamConfig("vit_h", ViTConfig(embed_dim=1280, depth=32, num_heads=16,
                                          global_attn_indexes=(7, 15, 23, 31))),
    "vit_t": SamConfig("vit_t", TinyViTConfig()),
    # samkit's embedded CPU model, the one ``load_model("tiny")`` gives: ``tiny_v1``'s prompt encoder and
    # 96-wide decoder on a convolutional encoder (``conv_encoder.ConvEncoder``; 5.85 M parameters in all):
    # residual stages at strides 4, 8, 16, 32 merged into a 64 x 64 embedding at 512 px (the official models'
    # grid, 8 input pixels per cell where ``tiny_v1`` has 16), an encoder that trains on a CPU faster than a
    # ViT and sees finer detail; and two global-attention blocks over the deepest stage's 16 x 16 cells
    # (``conv_encoder.ContextBlock``), because a stack of 3x3 convolutions sees a few hundred pixels and cannot
    # join the parts of a large object. It is trained as ``tiny_v2`` (below, the same model without the
    # context blocks) and then grown: ``configs/tiny_ctx.yaml`` (the blocks' output projections start at zero,
    # so its step 0 predicts what ``tiny_v2`` does). Its single-mask token draws a box worse than its best
    # multimask output, so it uses SAM 2's single-mask rule (above).
    "tiny": SamConfig(
        "tiny",
        ConvEncoderConfig(img_size=512, widths=(48, 96, 160, 224), depths=(1, 2, 3, 2), out_chans=96,
                          context_depth=2, context_heads=7),
        DecoderConfig(prompt_embed_dim=96, transformer_mlp_dim=384, transformer_num_heads=4,
                      iou_head_hidden_dim=96, dynamic_multimask_via_stability=True),
    ),
    # ``tiny`` with the decoder's coarse read-out (``MaskDecoder.coarse_masks``: each mask token also reads the
    # transformer's full-width 96 x 64 x 64 image side, not only the 12 channels the upscaling leaves); grown
    # from ``tiny``'s weights, its new path starting at zero (``configs/tiny_cr.yaml``). An experiment, not
    # shipped: 200 steps drew no more of large photo objects or of wholes (figures in that config).
    "tiny_cr": SamConfig(
        "tiny_cr",
        ConvEncoderConfig(img_size=512, widths=(48, 96, 160, 224), depths=(1, 2, 3, 2), out_chans=96,
                          context_depth=2, context_heads=7),
        DecoderConfig(prompt_embed_dim=96, transformer_mlp_dim=384, transformer_num_heads=4,
                      iou_head_hidden_dim=96, dynamic_multimask_via_stability=True, coarse_readout=True),
    ),
    # ``tiny`` without the context blocks (4.2 M encoder parameters, 4.6 M in all), the embedded model before
    # them and the stage ``tiny`` grows from. It grows from tiny_v1's prompt encoder and decoder
    # (``configs/tiny.yaml``, then ``configs/tiny_phase2.yaml`` to ``configs/tiny_phase5.yaml`` at 256 px,
    # ``configs/tiny_phase6_512.yaml`` at its own 512 px, then ``configs/tiny_min3.yaml`` with the paper's
    # min-over-three ambiguity loss).
    "tiny_v2": SamConfig(
        "tiny_v2",
        ConvEncoderConfig(img_size=512, widths=(48, 96, 160, 224), depths=(1, 2, 3, 2), out_chans=96),
        DecoderConfig(prompt_embed_dim=96, transformer_mlp_dim=384, transformer_num_heads=4,
                      iou_head_hidden_dim=96, dynamic_multimask_via_stability=True),
    ),
    # ``tiny_v2`` with wider deep stages (stride 16: 224 channels, stride 32: 320; 8.2 M parameters in all):
    # more capacity where the encoder sees whole objects, for little more compute (those stages see 1/16
    # and 1/64 of the pixels). It grows from tiny_v2's weights (``checkpoints.widen_state``: the new channels
    # start with zero outgoing weights, so step 0 predicts what tiny_v2 does): ``samkit train configs/tiny_wide.yaml``.
    # An experiment, not shipped: 567 steps scored no better on the real photos (figures in that config).
    "tiny_wide": SamConfig(
        "tiny_wide",
        ConvEncoderConfig(img_size=512, widths=(48, 96, 224, 320), depths=(1, 2, 3, 2), out_chans=96),
        DecoderConfig(prompt_embed_dim=96, transformer_mlp_dim=384, transformer_num_heads=4,
                      iou_head_hidden_dim=96),
    ),
    # samkit's first embedded model (shipped until the convolutional ``tiny`` replaced it; its weights are
    # made by ``configs/tiny_v1*.yaml``): 512 px input, 16 px patches (a 32x32 embedding grid, 128x128 low-res
    # masks: the official models' 4 input pixels per low-res cell), a 192-wide 6-block ViT (2.7 M
    # parameters) and a 96-wide decoder. Sized so that training it from scratch on a 2-core CPU is
    # practical: it is first trained at 256 px (16x16 tokens, ~4 GFLOP per image for the encoder's forward
    # + backward), then at 512 px, where its token grid can represent objects 4x smaller.
    "tiny_v1": SamConfig(
        "tiny_v1",
        ViTConfig(img_size=512, patch_size=16, embed_dim=192, depth=6, num_heads=6, window_size=8,
                  global_attn_indexes=(2, 5), out_chans=96),
        DecoderConfig(prompt_embed_dim=96, transformer_mlp_dim=384, transformer_num_heads=4,
                      iou_head_hidden_dim=96),
    ),
    # ``tiny_v1`` plus a high-resolution path (HQ-SAM's idea, for boundaries that follow the image rather
    # than the 16-pixel token grid): a 3-convolution stem turns the image into a 16-channel stride-4
    # detail map (128 x 128 at 512 px) that the mask decoder adds to its upscaled embedding and refines
    # with each prompt. It grows from ``tiny_v1``'s weights: the new parts start at zero, so before training
    # it predicts exactly what ``tiny_v1`` does (``samkit train configs/tiny_hq.yaml``).
    "tiny_hq": SamConfig(
        "tiny_hq",
        ViTConfig(img_size=512, patch_size=16, embed_dim=192, depth=6, num_heads=6, window_size=8,
                  global_attn_indexes=(2, 5), out_chans=96, detail_chans=16),
        DecoderConfig(prompt_embed_dim=96, transformer_mlp_dim=384, transformer_num_heads=4,
                      iou_head_hidden_dim=96),
    ),
}

MODEL_NAMES = tuple(CONFIGS)
# samkit's own models that ship no weights (the embedded tiny's predecessors and trials), each with the
# config (configs/<name>.yaml) whose run ends with its weights
UNSHIPPED = {"tiny_v2": "tiny_min3", "tiny_wide": "tiny_wide", "tiny_v1": "tiny_v1_phase4", "tiny_hq": "tiny_hq",
             "tiny_cr": "tiny_cr"}


def get_config(name: str) -> SamConfig:
    try:
        return CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}") from None
