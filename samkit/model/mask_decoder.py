"""The mask decoder (paper §3): output tokens + prompt tokens through the two-way transformer, then
the image embedding is upscaled 4x and each mask token, through its own 3-layer MLP (a
hypernetwork), becomes the weights of a dot product with every upscaled pixel.

There are 4 mask tokens: token 0 is used when one mask is wanted (several prompts remove the
ambiguity), tokens 1-3 give the three ambiguity-aware masks (whole, part, subpart). An extra IoU token
predicts each mask's IoU with the object.
"""
from __future__ import annotations

from typing import Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

from .common import FAST_PATHS, MLP, LayerNorm2d
from .transformer import ImageSide


class MaskDecoder(nn.Module):
    def __init__(self, *, transformer_dim: int, transformer: nn.Module, num_multimask_outputs: int = 3,
                 activation: Type[nn.Module] = nn.GELU, iou_head_depth: int = 3,
                 iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
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
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)
        self._kept: Optional[dict] = None  # see _kept_image_side (not part of the state dict)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                multimask_output: bool) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict masks for ``B`` prompts.

        Args:
            image_embeddings: ``1 x C x 64 x 64`` (shared by all prompts) or ``B x C x 64 x 64``.
            image_pe: ``1 x C x 64 x 64``.
            sparse_prompt_embeddings: ``B x K x C``; dense_prompt_embeddings: ``B x C x 64 x 64``.
        Returns:
            ``B x 3 x 256 x 256`` logits and ``B x 3`` IoU predictions when ``multimask_output``,
            else ``B x 1 x 256 x 256`` and ``B x 1`` (token 0).
        """
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return self.predict_masks(image_embeddings, image_pe, sparse_prompt_embeddings,
                                  dense_prompt_embeddings, mask_slice=sl)

    def predict_masks(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                      sparse_prompt_embeddings: torch.Tensor, dense_prompt_embeddings: torch.Tensor,
                      mask_slice: slice = slice(None)) -> Tuple[torch.Tensor, torch.Tensor]:
        """All 4 masks (or those of ``mask_slice``): ``B x 4 x 256 x 256`` logits and ``B x 4`` IoU predictions.

        When every prompt shares one image embedding and one dense embedding (no mask input: the
        ``no_mask_embed`` broadcast), the image side enters the transformer once (batch 1) and only turns
        into one copy per prompt after the first image-to-token attention: the same numbers as the
        official code, which repeats the image for each prompt, at a fraction of the cost for batched prompts.
        """
        B = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)  # 5 x C
        output_tokens = output_tokens.unsqueeze(0).expand(B, -1, -1)
        tokens = torch.cat([output_tokens, sparse_prompt_embeddings.to(output_tokens.dtype)], dim=1)

        if image_embeddings.shape[0] not in (1, B):
            raise ValueError(f"image_embeddings has batch {image_embeddings.shape[0]}; expected 1 or {B} "
                             "(one per prompt)")
        dense = dense_prompt_embeddings
        h, w = image_embeddings.shape[-2:]
        side = src = None
        if image_embeddings.shape[0] == 1 and (dense.shape[0] == 1 or dense.stride(0) == 0):
            side = self._kept_image_side(image_embeddings, image_pe, dense)
            if side is None:
                src = image_embeddings + dense[:1]      # 1 x C x h x w, shared by the B prompts
        else:
            src = image_embeddings + dense              # B x C x h x w

        hs, src = self.transformer(src, image_pe, tokens, image_side=side)          # src: B x hw x C
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1:1 + self.num_mask_tokens, :]

        features = self.upscale(src, h, w)                                          # B x 16hw x C/8
        idx = range(self.num_mask_tokens)[mask_slice]
        hyper = torch.stack([self.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in idx],
                            dim=1)                                                  # B x M x C/8
        masks = features @ hyper.transpose(1, 2)                                    # B x 16hw x M
        # blocked pixel order (i, j, di1, dj1, di2, dj2) -> rows 4i + 2 di1 + di2, columns 4j + 2 dj1 + dj2
        masks = masks.reshape(B, h, w, 2, 2, 2, 2, len(idx)).permute(0, 7, 1, 3, 5, 2, 4, 6)
        masks = masks.reshape(B, len(idx), 4 * h, 4 * w)
        iou_pred = self.iou_prediction_head(iou_token_out)[:, mask_slice]
        return masks, iou_pred

    def _kept_image_side(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor,
                         dense: torch.Tensor) -> Optional[ImageSide]:
        """The transformer's first-layer image side, kept between inference calls on one image.

        Clicks on an image without a mask input see the same image embedding, positional encoding and
        dense prompt (``no_mask_embed``: one vector broadcast over the grid), so the first layer's image-side
        projections are the same every time. The second such call builds them, later ones reuse them; a
        new image, a mask input, autograd, autocast, or any change to those weights or tensors (checked by identity,
        version counter and value) goes back to the full computation.
        """
        device = image_embeddings.device.type
        if not FAST_PATHS["keep_image_side"] or torch.is_grad_enabled() or dense.stride(-1) != 0 or \
                dense.stride(-2) != 0 or image_embeddings.is_inference() or _autocast_on(device) or \
                torch.jit.is_tracing() or torch.compiler.is_compiling():
            return None
        layer = self.transformer.layers[0]
        weights = tuple(p for m in (layer.cross_attn_token_to_image.k_proj, layer.cross_attn_token_to_image.v_proj,
                                    layer.cross_attn_image_to_token.q_proj) for p in (m.weight, m.bias))
        key = (_version(image_embeddings), _version(image_pe), tuple(p._version for p in weights))
        vector = dense[0, :, 0, 0]
        kept = self._kept
        if kept is not None and kept["embedding"] is image_embeddings and kept["pe"] is image_pe \
                and all(a is b for a, b in zip(kept["weights"], weights)) \
                and kept["key"] == key and torch.equal(kept["vector"], vector):
            if kept["side"] is None:
                kept["side"] = self.transformer.image_side(image_embeddings + dense[:1], image_pe)
            return kept["side"]
        self._kept = {"embedding": image_embeddings, "pe": image_pe, "weights": weights, "key": key,
                      "vector": vector.clone(), "side": None}
        return None

    def upscale(self, src: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """``output_upscaling`` on image tokens: ``B x hw x C`` -> ``B x 16hw x C/8`` per-pixel features.

        A transposed convolution with kernel 2 and stride 2 maps each input pixel to a 2 x 2 block through
        one ``C -> 4 C'`` linear map, so both are done as matrix products on the token layout the
        transformer leaves (no transposes), with the norm and activations per pixel in between. Pixels
        come out in blocked order ``(i, j, di1, dj1, di2, dj2)``; :meth:`predict_masks` puts the (few) mask
        planes back in raster order.
        """
        up1, norm, act1, up2, act2 = self.output_upscaling
        B = src.shape[0]
        c1, c2 = up1.weight.shape[1], up2.weight.shape[1]
        # C x C' x 2 x 2 -> (2 2 C') x C, the bias repeated for each of the 4 outputs of a pixel
        w1 = up1.weight.permute(2, 3, 1, 0).reshape(4 * c1, -1)
        y = F.linear(src, w1, up1.bias.repeat(4)).reshape(B, h * w * 4, c1)             # B x 4hw x C'
        y = act1(F.layer_norm(y, (c1,), norm.weight, norm.bias, norm.eps))
        w2 = up2.weight.permute(2, 3, 1, 0).reshape(4 * c2, -1)
        return act2(F.linear(y, w2, up2.bias.repeat(4)).reshape(B, h * w * 16, c2))     # B x 16hw x C''


def _autocast_on(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (a side built under it has another dtype)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


def _version(t: torch.Tensor) -> Optional[int]:
    """A tensor's in-place version counter (None for inference-mode tensors, which have none)."""
    return None if t.is_inference() else t._version
