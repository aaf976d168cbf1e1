"""The decoder's attention in the order with the fewest multiply-adds (inference).

In the mask decoder one side of every image attention is a handful of tokens (N ~ 7) and the other
the 4096 image tokens. The plain :class:`~samkit.model.transformer.Attention` projects the image
side (``4096 x C -> 4096 x C/2``), which is most of the work. The same function can be evaluated
with those projections folded into the few tokens instead:

* few queries, many keys (tokens -> image), :func:`few_queries`: per head,
  ``(q W_q^T) (k W_k^T + b_k)^T = ((q W_q^T) W_k) k^T + const``, and the constant of each query
  row drops out of the softmax; since every softmax row sums to 1,
  ``softmax(.) (v W_v^T + b_v) = (softmax(.) v) W_v^T + b_v``.
* many queries, few keys (image -> tokens), :func:`few_keys`:
  ``(q W_q^T + b_q) k_h^T = q (W_q^T k_h^T) + b_q k_h^T``, and
  ``out_proj(concat_h(a_h v_h)) = sum_h a_h (v_h W_o,h^T) + b_o``.

:func:`attention` picks the cheapest order for the shapes at hand (with 32 prompts sharing an
image, projecting the image once stays cheaper). Either side may have batch 1 (an image embedding
shared by B prompts): it is then projected once and broadcast. Every function takes the plain
module and reads its weights; nothing is stored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..model.transformer import Attention


def split_heads(attn: Attention, x: Tensor) -> Tensor:
    """``B x N x C'`` -> ``B x heads x N x C'/heads``."""
    b, n, c = x.shape
    return x.reshape(b, n, attn.num_heads, c // attn.num_heads).transpose(1, 2)


def projected(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The plain order (project, attend, project back); a batch-1 side is broadcast."""
    q = split_heads(attn, attn.q_proj(q))
    k = split_heads(attn, attn.k_proj(k))
    v = split_heads(attn, attn.v_proj(v))
    b = max(q.shape[0], k.shape[0])
    q, k, v = q.expand(b, -1, -1, -1), k.expand(b, -1, -1, -1), v.expand(b, -1, -1, -1)
    out = F.scaled_dot_product_attention(q, k, v)                      # B x h x Nq x d
    b, h, n, d = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, n, h * d))


def cheapest(attn: Attention, q: Tensor, k: Tensor) -> str:
    """``"projected"``, ``"few_queries"`` or ``"few_keys"``: the order with the fewest
    multiply-adds for these shapes."""
    (bq, nq, c), (bk, nk, _) = q.shape, k.shape
    b, h, i = max(bq, bk), attn.num_heads, attn.internal_dim
    mix = 2 * b * h * nq * nk * c  # scores and weighted sum at full width C: the folded price
    cost = {"projected": c * i * (bq * nq + 2 * bk * nk + b * nq) + 2 * b * nq * nk * i,
            "few_queries": c * i * (2 * bq * nq + 2 * b * nq) + mix,
            "few_keys": 4 * c * i * bk * nk + mix}
    return min(cost, key=cost.get)


def attention(attn: Attention, q: Tensor, k: Tensor, v: Tensor, fold: bool = True) -> Tensor:
    """``attn(q=q, k=k, v=v)``, ``B x Nq x C``: the cheapest order when ``fold``, else projected."""
    order = cheapest(attn, q, k) if fold else "projected"
    if order == "few_queries":
        return few_queries(attn, q, k, v)
    if order == "few_keys":
        return few_keys(attn, q, k, v)
    return projected(attn, q, k, v)


def few_queries(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Few queries (tokens), many keys (image): the key and value projections move to the
    query side."""
    h, d = attn.num_heads, attn.internal_dim // attn.num_heads
    bq, nq, c = q.shape
    qh = split_heads(attn, attn.q_proj(q))                             # Bq x h x Nq x d
    wk = attn.k_proj.weight.reshape(h, d, c)                           # h x d x C
    qk = (qh @ wk).reshape(bq, h * nq, c)                              # Bq x (h Nq) x C
    scores = qk @ k.transpose(1, 2) * d ** -0.5                        # B x (h Nq) x Nk
    mixed = (scores.softmax(dim=-1) @ v).reshape(-1, h, nq, c)         # B x h x Nq x C
    wv = attn.v_proj.weight.reshape(h, d, c)
    out = mixed @ wv.transpose(1, 2) + attn.v_proj.bias.reshape(h, 1, d)  # B x h x Nq x d
    return attn.out_proj(out.transpose(1, 2).reshape(-1, nq, h * d))


def few_keys(attn: Attention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Many queries (image), few keys and values (tokens): the query and output projections move
    to the key side."""
    h, d = attn.num_heads, attn.internal_dim // attn.num_heads
    bk, nk, c = k.shape
    kh = split_heads(attn, attn.k_proj(k)) * d ** -0.5                 # Bk x h x Nk x d
    wq = attn.q_proj.weight.reshape(h, d, c)                           # h x d x C
    kq = (kh @ wq).reshape(bk, h * nk, c)                              # Bk x (h Nk) x C
    bias = (kh @ attn.q_proj.bias.reshape(h, d, 1)).reshape(bk, h * nk, 1)
    # scores with the many queries last, so that the softmax over the few keys runs along long rows
    if q.shape[0] == bk:
        scores = torch.baddbmm(bias, kq, q.transpose(1, 2))           # B x (h Nk) x Nq
    else:
        scores = kq @ q.transpose(1, 2) + bias
    b, nq = scores.shape[0], q.shape[1]
    weights = scores.reshape(b, h, nk, nq).softmax(dim=2).reshape(b, h * nk, nq)
    return mix_projected_values(attn, weights, v)


def mix_projected_values(attn: Attention, weights: Tensor, v: Tensor) -> Tensor:
    """``out_proj(concat_h(a_h v_h))`` with the output projection folded into the few values:
    ``sum_h a_h (v_h W_o,h^T) + b_o``.

    Args:
        weights: ``B x (h Nk) x Nq``, a softmax over each head's Nk keys.
        v: ``Bk x Nk x C`` with Bk = B or 1.
    Returns:
        ``B x Nq x C``.
    """
    h, d = attn.num_heads, attn.internal_dim // attn.num_heads
    bk, nk, c = v.shape
    vh = split_heads(attn, attn.v_proj(v))                             # Bk x h x Nk x d
    wo = attn.out_proj.weight.reshape(c, h, d).transpose(0, 1)         # h x C x d
    vo = (vh @ wo.transpose(1, 2)).reshape(bk, h * nk, c)              # Bk x (h Nk) x C
    b = weights.shape[0]
    if bk == b:
        return torch.baddbmm(attn.out_proj.bias.expand(b, 1, c), weights.transpose(1, 2), vo)
    return weights.transpose(1, 2) @ vo + attn.out_proj.bias


def attend_projected_image(attn: Attention, q: Tensor, kh: Tensor, vh: Tensor) -> Tensor:
    """Tokens ``q: B x N x C`` attend to an image whose keys and values are already projected and
    split (``kh, vh: 1 x heads x hw x d``): ``-> B x N x C``."""
    qh = split_heads(attn, attn.q_proj(q))
    b = qh.shape[0]
    out = F.scaled_dot_product_attention(qh, kh.expand(b, -1, -1, -1), vh.expand(b, -1, -1, -1))
    return attn.out_proj(out.transpose(1, 2).reshape(b, q.shape[1], attn.internal_dim))


def image_attends_projected(attn: Attention, qh: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """An image whose queries are already projected and split (``qh: 1 x heads x hw x d``) attends
    to tokens ``k, v: B x N x C``: ``-> B x hw x C``, the output projection folded into the
    values."""
    h, d = attn.num_heads, attn.internal_dim // attn.num_heads
    b, nk, _ = k.shape
    kh = split_heads(attn, attn.k_proj(k)) * d ** -0.5                 # B x h x Nk x d
    scores = kh @ qh.transpose(2, 3)                                   # B x h x Nk x hw
    weights = scores.softmax(dim=2).reshape(b, h * nk, -1)             # over the keys, long rows
    return mix_projected_values(attn, weights, v)
