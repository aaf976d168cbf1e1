"""The two-way transformer of the mask decoder (paper §3, appendix A, figure 14).

Each of the two layers does four things: (1) self-attention on the tokens, (2) cross-attention from
tokens to the image embedding, (3) an MLP on each token, (4) cross-attention from the image embedding
back to the tokens. Positional encodings are re-added to the image keys and the prompt tokens at every
attention. A final token-to-image attention follows the last layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

from .common import FAST_PATHS, MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose q/k/v projections may shrink the width by ``downsample_rate``.

    ``q: B x Nq x C``, ``k, v: B x Nk x C`` -> ``B x Nq x C``; either side may have batch 1 (an image
    embedding shared by B prompts): it is projected once and broadcast.

    In the decoder one side is a handful of tokens (N ~ 7) and the other the 4096 image tokens. Projecting
    the image side (``4096 x C -> 4096 x C/2``) is then most of the work, and it can be folded into the few
    tokens instead (:meth:`_few_queries`, :meth:`_few_keys`): the same function, evaluated in another order,
    which ``forward`` picks at inference when it needs fewer multiply-adds.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        assert self.internal_dim % num_heads == 0, "num_heads must divide embedding_dim / downsample_rate"
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # B x N x C -> B x heads x N x C/heads
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # training keeps the projected order: the folded ones leave k_proj.bias out of the graph (its
        # gradient is zero anyway: a shift of every key score cancels in the softmax), which DDP rejects
        path = "projected" if torch.is_grad_enabled() or not FAST_PATHS["fold_attention"] else self._cheapest(q, k)
        if path == "few_queries":
            return self._few_queries(q, k, v)
        if path == "few_keys":
            return self._few_keys(q, k, v)
        q, k, v = self._split(self.q_proj(q)), self._split(self.k_proj(k)), self._split(self.v_proj(v))
        b = max(q.shape[0], k.shape[0])  # an image side shared by B prompts arrives with batch 1
        q, k, v = q.expand(b, -1, -1, -1), k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))

    def attend_projected_image(self, q: torch.Tensor, kh: torch.Tensor, vh: torch.Tensor) -> torch.Tensor:
        """Tokens attend to an image whose keys and values are already projected and split
        (``kh, vh: 1 x heads x hw x d``, see :class:`ImageSide`): ``q: B x N x C -> B x N x C``."""
        qh = self._split(self.q_proj(q))
        b = qh.shape[0]
        out = F.scaled_dot_product_attention(qh, kh.expand(b, -1, -1, -1), vh.expand(b, -1, -1, -1))
        return self.out_proj(out.transpose(1, 2).reshape(b, q.shape[1], self.internal_dim))

    def image_attends_projected(self, qh: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """An image whose queries are already projected and split (``qh: 1 x heads x hw x d``) attends to
        tokens ``k, v: B x N x C``: ``-> B x hw x C``, the output projection folded into the values."""
        h, d = self.num_heads, self.internal_dim // self.num_heads
        b, nk, _ = k.shape
        kh = self._split(self.k_proj(k)) * d ** -0.5                       # B x h x Nk x d
        scores = kh @ qh.transpose(2, 3)                                   # B x h x Nk x hw
        attn = scores.softmax(dim=2).reshape(b, h * nk, -1)                # over the keys, along long rows
        return self._mix_projected_values(attn, v)

    def _cheapest(self, q: torch.Tensor, k: torch.Tensor) -> str:
        """The evaluation order with the fewest multiply-adds for these shapes."""
        (bq, nq, c), (bk, nk, _) = q.shape, k.shape
        b, h, i = max(bq, bk), self.num_heads, self.internal_dim
        mix = 2 * b * h * nq * nk * c  # scores and weighted sum at full width C, the folded paths' price
        cost = {"projected": c * i * (bq * nq + 2 * bk * nk + b * nq) + 2 * b * nq * nk * i,
                "few_queries": c * i * (2 * bq * nq + 2 * b * nq) + mix,
                "few_keys": 4 * c * i * bk * nk + mix}
        return min(cost, key=cost.get)

    def _few_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Few queries (tokens), many keys (image): the key and value projections move to the query side.

        Per head, ``(q W_q^T) (k W_k^T + b_k)^T = ((q W_q^T) W_k) k^T + const``: the constant of each query
        row drops out of the softmax. And since every softmax row sums to 1,
        ``softmax(.) (v W_v^T + b_v) = (softmax(.) v) W_v^T + b_v``.
        """
        h, d = self.num_heads, self.internal_dim // self.num_heads
        bq, nq, c = q.shape
        qh = self._split(self.q_proj(q))                                   # Bq x h x Nq x d
        wk = self.k_proj.weight.reshape(h, d, c)                           # h x d x C
        qk = (qh @ wk).reshape(bq, h * nq, c)                              # Bq x (h Nq) x C
        scores = qk @ k.transpose(1, 2) * d ** -0.5                        # B x (h Nq) x Nk
        attn = scores.softmax(dim=-1)
        mixed = (attn @ v).reshape(-1, h, nq, c)                           # B x h x Nq x C
        wv = self.v_proj.weight.reshape(h, d, c)
        out = mixed @ wv.transpose(1, 2) + self.v_proj.bias.reshape(h, 1, d)  # B x h x Nq x d
        return self.out_proj(out.transpose(1, 2).reshape(-1, nq, h * d))

    def _few_keys(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Many queries (image), few keys and values (tokens): the query and output projections move to
        the key side. Per head, ``(q W_q^T + b_q) k_h^T = q (W_q^T k_h^T) + b_q k_h^T`` and
        ``out_proj(concat_h(a_h v_h)) = sum_h a_h (v_h W_o,h^T) + b_o``.
        """
        h, d = self.num_heads, self.internal_dim // self.num_heads
        bk, nk, c = k.shape
        kh = self._split(self.k_proj(k)) * d ** -0.5                       # Bk x h x Nk x d
        wq = self.q_proj.weight.reshape(h, d, c)                           # h x d x C
        kq = (kh @ wq).reshape(bk, h * nk, c)                              # Bk x (h Nk) x C
        bias = (kh @ self.q_proj.bias.reshape(h, d, 1)).reshape(bk, h * nk, 1)
        # scores with the many queries last, so that the softmax over the few keys runs along long rows
        scores = torch.baddbmm(bias, kq, q.transpose(1, 2)) if q.shape[0] == bk \
            else kq @ q.transpose(1, 2) + bias                             # B x (h Nk) x Nq
        b, nq = scores.shape[0], q.shape[1]
        attn = scores.reshape(b, h, nk, nq).softmax(dim=2).reshape(b, h * nk, nq)
        return self._mix_projected_values(attn, v)

    def _mix_projected_values(self, attn: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``out_proj(concat_h(a_h v_h))`` with the output projection folded into the few values:
        ``sum_h a_h (v_h W_o,h^T) + b_o``. ``attn: B x (h Nk) x Nq`` (softmax over each head's Nk keys),
        ``v: Bk x Nk x C`` with Bk = B or 1 -> ``B x Nq x C``."""
        h, d = self.num_heads, self.internal_dim // self.num_heads
        bk, nk, c = v.shape
        vh = self._split(self.v_proj(v))                                   # Bk x h x Nk x d
        wo = self.out_proj.weight.reshape(c, h, d).transpose(0, 1)         # h x C x d
        vo = (vh @ wo.transpose(1, 2)).reshape(bk, h * nk, c)              # Bk x (h Nk) x C
        b = attn.shape[0]
        return torch.baddbmm(self.out_proj.bias.expand(b, 1, c), attn.transpose(1, 2), vo) if bk == b \
            else attn.transpose(1, 2) @ vo + self.out_proj.bias


@dataclass
class ImageSide:
    """What the first layer computes from the image alone (no prompt): with no mask input the image side
    is the same for every click on an image, so :class:`~samkit.model.mask_decoder.MaskDecoder` keeps it
    between calls. Shapes for vit_b (hw = 4096, C = 256, 8 heads of d = 16)."""

    keys: torch.Tensor   # 1 x hw x C          image embedding + dense prompt, token layout
    pe: torch.Tensor     # 1 x hw x C          positional encoding, token layout
    t2i_k: torch.Tensor  # 1 x heads x hw x d  token-to-image keys, k_proj(keys + pe)
    t2i_v: torch.Tensor  # 1 x heads x hw x d  token-to-image values, v_proj(keys)
    i2t_q: torch.Tensor  # 1 x heads x hw x d  image-to-token queries, q_proj(keys + pe)


class TwoWayAttentionBlock(nn.Module):
    """One layer: token self-attn, token->image attn, token MLP, image->token attn."""

    def __init__(self, embedding_dim: int, num_heads: int, mlp_dim: int = 2048,
                 activation: Type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2,
                 skip_first_layer_pe: bool = False) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor, image_side: Optional[ImageSide] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``image_side`` (first layer only): the image's projections, computed before (same numbers)."""
        # (1) tokens attend to themselves (the first layer's tokens *are* the PE, so it is not re-added)
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)
        # (2) tokens attend to the image
        if image_side is not None:
            attn = self.cross_attn_token_to_image.attend_projected_image(
                queries + query_pe, image_side.t2i_k, image_side.t2i_v)
        else:
            k = keys + key_pe  # the image side with its PE, unchanged until (4)
            attn = self.cross_attn_token_to_image(q=queries + query_pe, k=k, v=keys)
        queries = self.norm2(queries + attn)
        # (3) MLP on each token
        queries = self.norm3(queries + self.mlp(queries))
        # (4) the image attends to the tokens (a shared batch-1 image becomes one per prompt here)
        q = queries + query_pe
        if image_side is not None:
            attn = self.cross_attn_image_to_token.image_attends_projected(image_side.i2t_q, k=q, v=queries)
        else:
            attn = self.cross_attn_image_to_token(q=k, k=q, v=queries)
        keys = self.norm4(keys + attn)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``image_embedding B x C x h x w`` (or ``1 x C x h x w`` shared by the B prompts), ``image_pe
    1 x C x h x w``, ``point_embedding B x N x C`` -> (``tokens B x N x C``, ``image B x hw x C``)."""

    def __init__(self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int,
                 activation: Type[nn.Module] = nn.ReLU, attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, activation, attention_downsample_rate,
                                 skip_first_layer_pe=(i == 0))
            for i in range(depth))
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def image_side(self, image_embedding: torch.Tensor, image_pe: torch.Tensor) -> ImageSide:
        """The first layer's image-side projections of a ``1 x C x h x w`` image (see :class:`ImageSide`)."""
        layer = self.layers[0]
        t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        k = keys + pe
        return ImageSide(keys, pe, t2i._split(t2i.k_proj(k)), t2i._split(t2i.v_proj(keys)),
                         i2t._split(i2t.q_proj(k)))

    def forward(self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor,
                image_side: Optional[ImageSide] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``image_side``: :meth:`image_side` of this image, when the caller kept it (then
        ``image_embedding`` and ``image_pe`` are not read)."""
        if image_side is not None:
            image_embedding, image_pe = image_side.keys, image_side.pe
        else:  # B x hw x C, contiguous: every later add, norm and projection then runs on dense rows
            image_embedding = image_embedding.flatten(2).transpose(1, 2).contiguous()
            image_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        queries, keys = point_embedding, image_embedding
        for i, layer in enumerate(self.layers):
            queries, keys = layer(queries, keys, query_pe=point_embedding, key_pe=image_pe,
                                  image_side=image_side if i == 0 else None)
        q, k = queries + point_embedding, keys + image_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys
