"""The mask decoder (paper §3): output tokens + prompt tokens through the two-way transformer, then
the image embedding is upscaled 4x and each mask token, through its own 3-layer MLP (a
hypernetwork), becomes the weights of a dot product with every upscaled pixel.

There are 4 mask tokens: token 0 is used when one mask is wanted (several prompts remove the
ambiguity), tokens 1-3 give the three ambiguity-aware masks (whole, part, subpart). An extra IoU
token predicts each mask's IoU with the object. With ``dynamic_multimask_via_stability`` (SAM 2's rule,
off for SAM 1's models) a single-mask request falls back to the best multimask output when token 0's
mask is unstable: :meth:`MaskDecoder.single_mask`.
"""
from __future__ import annotations

from typing import Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

from .common import MLP, LayerNorm2d
from .image_encoder import unpack_detail


class MaskDecoder(nn.Module):
    def __init__(self, *, transformer_dim: int, transformer: nn.Module,
                 num_multimask_outputs: int = 3, activation: Type[nn.Module] = nn.GELU,
                 iou_head_depth: int = 3, iou_head_hidden_dim: int = 256, detail_chans: int = 0,
                 dynamic_multimask_via_stability: bool = False, dynamic_multimask_stab_delta: float = 0.05,
                 dynamic_multimask_stab_thresh: float = 0.98, coarse_readout: bool = False) -> None:
        super().__init__()
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stab_delta = dynamic_multimask_stab_delta
        self.dynamic_multimask_stab_thresh = dynamic_multimask_stab_thresh
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        # 64x64 x C -> 256x256 x C/8 (two transposed convolutions, each 2x)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            activation(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens,
                                       iou_head_depth)
        # optional high-resolution path (``tiny_hq``): the encoder's stride-4 detail map is projected
        # onto the upscaled embedding, then a residual 3x3 conv pair mixes the two for each prompt, so
        # the hypernetwork's dot product sees edges at 4 input pixels per cell. Both end in a
        # zero-initialised conv: untrained, the path changes nothing.
        self.detail_chans = detail_chans
        if detail_chans > 0:
            c = transformer_dim // 8
            self.detail_proj = nn.Conv2d(detail_chans, c, kernel_size=1)
            self.detail_refine = nn.Sequential(
                nn.Conv2d(c, c, kernel_size=3, padding=1), activation(),
                nn.Conv2d(c, c, kernel_size=3, padding=1))
            for conv in (self.detail_proj, self.detail_refine[-1]):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
        # optional coarse read-out (``tiny_cr``, an experiment on samkit's embedded model): a second
        # hypernetwork per mask token whose C weights take a dot product with the transformer's full-width
        # C x 64 x 64 image side, before the upscaling narrows it to C/8 channels; its logits, upsampled 4x,
        # are added to the fine ones. Why: for a click on a large photo object, a linear readout of the full
        # width separates the object better than one of the C/8 channels (0.88 against 0.69 IoU,
        # ``benchmarks/feature_probe.py --click``). Trained, it did not draw more of such objects
        # (``configs/tiny_cr.yaml``). Its last layer starts at zero: untrained, the path changes nothing.
        self.coarse_readout = coarse_readout
        if coarse_readout:
            self.coarse_hypernetworks_mlps = nn.ModuleList(
                MLP(transformer_dim, transformer_dim, transformer_dim, 3) for _ in range(self.num_mask_tokens))
            for mlp in self.coarse_hypernetworks_mlps:
                nn.init.zeros_(mlp.layers[-1].weight)
                nn.init.zeros_(mlp.layers[-1].bias)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict masks for ``B`` prompts.

        Args:
            image_embeddings: ``1 x C x 64 x 64`` (shared by all prompts) or ``B x C x 64 x 64``
                (with a detail path, ``C + 16 d`` channels: see ``image_encoder.pack_detail``).
            image_pe: ``1 x C x 64 x 64``.
            sparse_prompt_embeddings: ``B x K x C``; dense_prompt_embeddings: ``B x C x 64 x 64``.
        Returns:
            ``B x 3 x 256 x 256`` logits and ``B x 3`` IoU predictions when ``multimask_output``,
            else ``B x 1 x 256 x 256`` and ``B x 1`` (token 0).
        """
        mask_slice = slice(1, None) if multimask_output else slice(0, 1)
        return self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                  dense_prompt_embeddings, mask_slice=mask_slice)

    def uses_dynamic_single_mask(self, multimask_output: bool, has_mask_input: bool) -> bool:
        """Whether a request is answered by :meth:`single_mask` instead of token 0: one mask asked for,
        no mask input (a refinement round keeps token 0, which training supervised there), at inference."""
        return (self.dynamic_multimask_via_stability and not multimask_output and not has_mask_input
                and not self.training)

    def single_mask(self, masks: torch.Tensor, iou_pred: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """SAM 2's dynamic single mask: ``B x 4 x h x w`` logits and ``B x 4`` IoU predictions of all tokens ->
        ``B x 1 x h x w`` and ``B x 1``: token 0 where its mask is stable (IoU of the masks at logit
        > +delta and > -delta at least ``dynamic_multimask_stab_thresh``), else the multimask output
        (tokens 1-3) with the highest predicted IoU."""
        best = iou_pred[:, 1:].argmax(dim=1) + 1
        pick = torch.where(self.token0_is_stable(masks), torch.zeros_like(best), best)
        rows = torch.arange(masks.shape[0], device=masks.device)
        return masks[rows, pick].unsqueeze(1), iou_pred[rows, pick].unsqueeze(1)

    def coarse_masks(self, mask_tokens_out: torch.Tensor, src: torch.Tensor, idx: range) -> torch.Tensor:
        """The coarse read-out: mask tokens ``B x 4 x C`` and the transformer's image side ``B x C x h x w``
        -> ``B x M x 4h x 4w`` logits (the ``M`` tokens of ``idx``; a dot product per 64 x 64 cell, upsampled
        bilinearly 4x)."""
        hyper = torch.stack([self.coarse_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in idx], dim=1)
        b, c, h, w = src.shape
        coarse = (hyper @ src.reshape(b, c, h * w)).reshape(b, -1, h, w)            # B x M x h x w
        return F.interpolate(coarse, scale_factor=4, mode="bilinear", align_corners=False)

    def token0_is_stable(self, masks: torch.Tensor) -> torch.Tensor:
        """``B x 4 x h x w`` logits -> ``B`` bools: token 0's stability score (the automatic mask generator's,
        at offset ``dynamic_multimask_stab_delta``) reaches ``dynamic_multimask_stab_thresh``; a mask empty even
        at logit > -delta counts as stable, as in SAM 2."""
        from ..amg_utils import stability_score

        score = stability_score(masks[:, 0], 0.0, self.dynamic_multimask_stab_delta)  # NaN when empty
        return ~(score < self.dynamic_multimask_stab_thresh)

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                      mask_slice: slice = slice(None)) -> Tuple[torch.Tensor, torch.Tensor]:
        """All 4 masks (or those of ``mask_slice``): ``B x 4 x 256 x 256`` logits and ``B x 4`` IoU
        predictions."""
        B = sparse_prompt_embeddings.shape[0]
        image_embeddings, detail = unpack_detail(image_embeddings, self.transformer_dim)
        if image_embeddings.shape[0] not in (1, B):
            raise ValueError(f"image_embeddings has batch {image_embeddings.shape[0]}; "
                             f"expected 1 or {B} (one per prompt)")
        # tokens: the IoU token, the 4 mask tokens, then the prompt tokens: B x (5 + K) x C
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(B, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings.to(output_tokens.dtype)], dim=1)

        # one copy of the image per prompt, plus the dense prompt (a mask, or "no mask")
        src = image_embeddings.expand(B, -1, -1, -1) + dense_prompt_embeddings  # B x C x h x w
        pos_src = image_pe.expand(B, -1, -1, -1)
        b, c, h, w = src.shape

        hs, src = self.transformer(src, pos_src, tokens)       # B x (5 + K) x C, B x hw x C
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1:1 + self.num_mask_tokens, :]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        upscaled = self.output_upscaling(src)                  # B x C/8 x 4h x 4w
        if self.detail_chans > 0:
            if detail is None:
                raise ValueError(f"this decoder expects image embeddings with a detail map "
                                 f"({self.transformer_dim} + 16 x {self.detail_chans} channels), "
                                 f"got {self.transformer_dim}")
            upscaled = upscaled + self.detail_proj(detail)     # (1 or B) x d x 4h x 4w -> + B x C/8 x 4h x 4w
            upscaled = upscaled + self.detail_refine(upscaled)
        idx = range(self.num_mask_tokens)[mask_slice]
        hyper_in = torch.stack([self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :])
                                for i in idx], dim=1)          # B x M x C/8
        b, c, h4, w4 = upscaled.shape
        masks = (hyper_in @ upscaled.reshape(b, c, h4 * w4)).reshape(b, -1, h4, w4)  # B x M x 4h x 4w
        if self.coarse_readout:
            masks = masks + self.coarse_masks(mask_tokens_out, src, idx)
        iou_pred = self.iou_prediction_head(iou_token_out)[:, mask_slice]
        return masks, iou_pred
