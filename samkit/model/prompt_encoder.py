"""The prompt encoder: points, boxes and masks -> sparse and dense prompt embeddings (paper §3).

Sparse prompts (points, box corners) are encoded by random Fourier features of their position
(Tancik et al.), plus a learned embedding per prompt type (positive point, negative point, box top-left,
box bottom-right, "not a point" padding). A dense prompt (a low-res mask) is downscaled 4x by two
strided convolutions to the image-embedding grid and added to the image embedding; without a mask a
learned "no mask" embedding is added everywhere.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn

from .common import LayerNorm2d


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features: ``(x, y)`` in [0, 1]^2 -> ``[sin(2 pi G p), cos(2 pi G p)]``.

    ``positional_encoding_gaussian_matrix`` (``2 x C/2``, Gaussian) is a saved buffer, so the same
    features are used at training and inference.
    """

    def __init__(self, num_pos_feats: int = 64, scale: Optional[float] = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _pe_encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """``... x 2`` coordinates normalised to [0, 1] -> ``... x C`` features."""
        coords = 2 * coords - 1  # to [-1, 1]
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: Tuple[int, int]) -> torch.Tensor:
        """Features of every cell centre of an ``h x w`` grid: ``C x h x w``."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        y = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        x = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([x[None, :].expand(h, w), y[:, None].expand(h, w)], dim=-1)  # h x w x 2
        return self._pe_encoding(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords_input: torch.Tensor, image_size: Tuple[int, int]) -> torch.Tensor:
        """``B x N x 2`` pixel coordinates (x, y) in an ``image_size = (H, W)`` frame -> ``B x N x C``."""
        coords = coords_input.clone()
        coords[:, :, 0] = coords[:, :, 0] / image_size[1]
        coords[:, :, 1] = coords[:, :, 1] / image_size[0]
        return self._pe_encoding(coords.to(torch.float))


class PromptEncoder(nn.Module):
    """Encodes prompts for the mask decoder.

    Args:
        embed_dim: token width (256 for the official models).
        image_embedding_size: ``(64, 64)``, the image embedding grid.
        input_image_size: ``(1024, 1024)``, the padded input frame in which prompt coordinates live.
        mask_in_chans: hidden channels used to downscale a mask prompt.
    """

    def __init__(self, embed_dim: int, image_embedding_size: Tuple[int, int],
                 input_image_size: Tuple[int, int], mask_in_chans: int,
                 activation: type = nn.GELU) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)

        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)

        # The mask prompt is given at 4x the embedding grid (256 x 256 for the official models).
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            activation(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: ``1 x C x E x E`` (E = 64 for the ViT
        models)."""
        return self.pe_layer(self.image_embedding_size).unsqueeze(0)

    def _embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """``B x N x 2`` points (input frame) and ``B x N`` labels -> ``B x N(+1) x C``."""
        points = points + 0.5  # move to the centre of the pixel
        if pad:  # without a box, a "not a point" token stands in for the box corners
            points = torch.cat([points, torch.zeros_like(points[:, :1])], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        labels = labels[..., None]
        emb = torch.where(labels == -1, torch.zeros_like(emb), emb)
        emb = emb + (labels == -1) * self.not_a_point_embed.weight
        emb = emb + (labels == 0) * self.point_embeddings[0].weight
        emb = emb + (labels == 1) * self.point_embeddings[1].weight
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """``B x 4`` XYXY boxes (input frame) -> ``B x 2 x C`` corner tokens."""
        coords = (boxes + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(coords, self.input_image_size)
        corner_type = torch.stack([self.point_embeddings[2].weight[0], self.point_embeddings[3].weight[0]])
        return emb + corner_type

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """``B x 1 x 256 x 256`` mask logits -> ``B x C x 64 x 64``."""
        return self.mask_downscaling(masks)

    @staticmethod
    def _batch_size(points, boxes, masks) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def forward(self, points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                boxes: Optional[torch.Tensor] = None,
                masks: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns ``sparse`` (``B x K x C``, K = points (+1 pad) + 2 per box) and ``dense`` (``B x C x 64 x 64``)."""
        bs = self._batch_size(points, boxes, masks)
        device = self.point_embeddings[0].weight.device
        sparse = torch.empty((bs, 0, self.embed_dim), device=device)
        if points is not None:
            coords, labels = points
            sparse = torch.cat([sparse, self._embed_points(coords, labels, pad=boxes is None)], dim=1)
        if boxes is not None:
            sparse = torch.cat([sparse, self._embed_boxes(boxes)], dim=1)
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense
