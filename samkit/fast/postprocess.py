"""Post-processing of low-res logits as two small matrices.

:meth:`Sam.postprocess_masks <samkit.model.sam.Sam.postprocess_masks>` upsamples the ``256 x 256``
logits to the padded ``1024 x 1024`` input, crops the padding and resizes to the image. All three
steps are linear and act on rows and columns separately, so they compose into one ``H x 256`` row
matrix ``R`` and one ``W x 256`` column matrix ``C``: ``R @ logits @ C^T`` gives the same logits (to
float rounding) without the ``1024 x 1024`` intermediate. Each output pixel mixes at most 3 low-res
pixels per axis, so for a few masks on the CPU the matrices are applied in compressed sparse rows.
"""
from __future__ import annotations

import functools
import warnings
from typing import Tuple

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=32)
def resize_matrix(n_low: int, n_padded: int, n_input: int, n_out: int) -> torch.Tensor:
    """``n_out x n_low`` matrix of one axis: bilinear resize (``align_corners=False``, as
    ``F.interpolate``) from ``n_low`` to ``n_padded``, keep the first ``n_input``, bilinear resize
    to ``n_out``. Built by pushing an identity through the same calls."""
    def along_rows(x: torch.Tensor, n: int) -> torch.Tensor:  # resize the first axis of a matrix
        size = (n, x.shape[1])
        return F.interpolate(x[None, None], size, mode="bilinear", align_corners=False)[0, 0]

    eye = torch.eye(n_low, dtype=torch.float64)
    return along_rows(along_rows(eye, n_padded)[:n_input], n_out).float()


@functools.lru_cache(maxsize=32)
def sparse_resize_matrix(n_low: int, n_padded: int, n_input: int, n_out: int) -> torch.Tensor:
    """:func:`resize_matrix` in compressed sparse rows."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta": only CSR @ dense is used
        warnings.simplefilter("ignore", UserWarning)
        return resize_matrix(n_low, n_padded, n_input, n_out).to_sparse_csr()


def postprocess_masks(masks: torch.Tensor, img_size: int, input_size: Tuple[int, ...],
                      original_size: Tuple[int, ...], sparse: bool = True) -> torch.Tensor:
    """``B x M x 256 x 256`` low-res logits -> ``B x M x H x W`` logits in the original frame, as
    ``Sam.postprocess_masks`` (``img_size``: the padded input side). ``sparse``: use the sparse
    matrices for up to 32 planes of float32 on the CPU (a click's masks), 2-3x faster there."""
    shape = (masks.shape[-2], img_size, int(input_size[0]), int(original_size[0])), \
        (masks.shape[-1], img_size, int(input_size[1]), int(original_size[1]))
    planes = masks.shape[0] * masks.shape[1]
    if sparse and masks.device.type == "cpu" and masks.dtype == torch.float32 and planes <= 32:
        rows, cols = sparse_resize_matrix(*shape[0]), sparse_resize_matrix(*shape[1])
        y = torch.cat([rows @ plane for plane in masks.reshape(planes, *masks.shape[-2:])])
        return (cols @ y.T).T.reshape(*masks.shape[:2], rows.shape[0], cols.shape[0])
    rows, cols = resize_matrix(*shape[0]), resize_matrix(*shape[1])
    rows, cols = rows.to(masks.device, masks.dtype), cols.to(masks.device, masks.dtype)
    if rows.shape[0] <= cols.shape[0]:
        return (rows @ masks) @ cols.T
    return rows @ (masks @ cols.T)
