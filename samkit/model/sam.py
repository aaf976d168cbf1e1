"""SAM: image encoder + prompt encoder + mask decoder, and the image pre/post-processing.

Parameter names follow the official checkpoints (``image_encoder.``, ``prompt_encoder.``,
``mask_decoder.``); the pixel mean/std are buffers that are not saved, exactly as in the official code,
so ``sam_vit_b_01ec64.pth`` and ``mobile_sam.pt`` load with ``strict=True``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .configs import MASK_THRESHOLD, PIXEL_MEAN, PIXEL_STD, ConvEncoderConfig, SamConfig, TinyViTConfig
from .image_encoder import ImageEncoderViT
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer


class Sam(nn.Module):
    mask_threshold: float = MASK_THRESHOLD
    image_format: str = "RGB"

    def __init__(self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 config: SamConfig | None = None) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.config = config
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    @property
    def embedding_channels(self) -> int:
        """Channels of the image encoder's output: the decoder's width, plus ``16 d`` where a ``d``-channel
        detail map is packed in (``tiny_hq``; see ``image_encoder.pack_detail``)."""
        return self.prompt_encoder.embed_dim + 16 * getattr(self.mask_decoder, "detail_chans", 0)

    @property
    def name(self) -> str:
        return self.config.name if self.config is not None else "custom"

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x h x w`` float 0-255 (long side already ``img_size``) -> normalised, zero-padded
        right/bottom to ``B x 3 x img_size x img_size``."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(self, masks: torch.Tensor, input_size: Tuple[int, ...],
                          original_size: Tuple[int, ...]) -> torch.Tensor:
        """``B x C x 256 x 256`` low-res logits -> ``B x C x H x W`` logits in the original frame:
        upsample to the padded ``img_size x img_size`` input, crop the padding (``input_size``, the
        resized image), resize to ``original_size``."""
        size = (self.img_size, self.img_size)
        masks = F.interpolate(masks, size, mode="bilinear", align_corners=False)
        masks = masks[..., : int(input_size[0]), : int(input_size[1])]
        return F.interpolate(masks, (int(original_size[0]), int(original_size[1])), mode="bilinear",
                             align_corners=False)

    def encode_prompts_and_decode(self, image_embeddings: torch.Tensor, point_coords=None, point_labels=None,
                                  boxes=None, mask_input=None, multimask_output: bool = True
                                  ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder in one call (prompts in the input frame).

        Returns ``B x M x 256 x 256`` low-res logits and ``B x M`` IoU predictions (M = 3 or 1; the one
        mask is token 0's, or :meth:`MaskDecoder.single_mask`'s choice where the decoder uses SAM 2's rule).
        """
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.prompt_encoder(points=points, boxes=boxes, masks=mask_input)
        pe, dec = self.prompt_encoder.get_dense_pe(), self.mask_decoder
        if dec.uses_dynamic_single_mask(multimask_output, mask_input is not None):
            return dec.single_mask(*dec.predict_masks(image_embeddings, pe, sparse, dense))
        return dec(image_embeddings=image_embeddings, image_pe=pe, sparse_prompt_embeddings=sparse,
                   dense_prompt_embeddings=dense, multimask_output=multimask_output)

    @torch.no_grad()
    def forward(self, batched_input: List[Dict[str, Any]], multimask_output: bool) -> List[Dict[str, torch.Tensor]]:
        """The official end-to-end call: a list of dicts with ``image`` (3 x h x w, already resized),
        ``original_size`` and optional ``point_coords``/``point_labels``/``boxes``/``mask_inputs``."""
        input_images = torch.stack([self.preprocess(x["image"]) for x in batched_input], dim=0)
        embeddings = self.image_encoder(input_images)
        outputs = []
        for record, emb in zip(batched_input, embeddings):
            low_res, iou = self.encode_prompts_and_decode(
                emb.unsqueeze(0), record.get("point_coords"), record.get("point_labels"),
                record.get("boxes"), record.get("mask_inputs"), multimask_output)
            masks = self.postprocess_masks(low_res, record["image"].shape[-2:], record["original_size"])
            outputs.append({"masks": masks > self.mask_threshold, "iou_predictions": iou,
                            "low_res_logits": low_res})
        return outputs


def build_sam(config: SamConfig, drop_path_rate: float = 0.0) -> Sam:
    """Build a randomly initialised SAM of the given configuration."""
    enc = config.encoder
    if isinstance(enc, TinyViTConfig):
        from .tiny_vit import TinyViT

        image_encoder: nn.Module = TinyViT(
            img_size=enc.img_size, in_chans=3, embed_dims=enc.embed_dims, depths=enc.depths,
            num_heads=enc.num_heads, window_sizes=enc.window_sizes, mlp_ratio=enc.mlp_ratio,
            mbconv_expand_ratio=enc.mbconv_expand_ratio, local_conv_size=enc.local_conv_size,
            out_chans=enc.out_chans, drop_path_rate=drop_path_rate)
    elif isinstance(enc, ConvEncoderConfig):
        from .conv_encoder import ConvEncoder

        image_encoder = ConvEncoder(img_size=enc.img_size, widths=enc.widths, depths=enc.depths,
                                    out_chans=enc.out_chans, drop_path_rate=drop_path_rate,
                                    context_depth=enc.context_depth, context_heads=enc.context_heads)
    else:
        image_encoder = ImageEncoderViT(
            img_size=enc.img_size, patch_size=enc.patch_size, embed_dim=enc.embed_dim, depth=enc.depth,
            num_heads=enc.num_heads, mlp_ratio=enc.mlp_ratio, out_chans=enc.out_chans,
            use_rel_pos=enc.use_rel_pos, window_size=enc.window_size,
            global_attn_indexes=enc.global_attn_indexes, drop_path_rate=drop_path_rate,
            detail_chans=enc.detail_chans)
    dec = config.decoder
    e = config.embedding_size
    prompt_encoder = PromptEncoder(embed_dim=dec.prompt_embed_dim, image_embedding_size=(e, e),
                                   input_image_size=(enc.img_size, enc.img_size), mask_in_chans=dec.mask_in_chans)
    mask_decoder = MaskDecoder(
        transformer_dim=dec.prompt_embed_dim,
        transformer=TwoWayTransformer(depth=dec.transformer_depth, embedding_dim=dec.prompt_embed_dim,
                                      num_heads=dec.transformer_num_heads, mlp_dim=dec.transformer_mlp_dim,
                                      attention_downsample_rate=dec.attention_downsample_rate),
        num_multimask_outputs=dec.num_multimask_outputs, iou_head_depth=dec.iou_head_depth,
        iou_head_hidden_dim=dec.iou_head_hidden_dim, detail_chans=config.detail_chans,
        dynamic_multimask_via_stability=dec.dynamic_multimask_via_stability,
        dynamic_multimask_stab_delta=dec.dynamic_multimask_stab_delta, coarse_readout=dec.coarse_readout,
        dynamic_multimask_stab_thresh=dec.dynamic_multimask_stab_thresh)
    return Sam(image_encoder, prompt_encoder, mask_decoder, config)
