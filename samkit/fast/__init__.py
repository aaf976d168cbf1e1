"""Inference speed-ups for samkit's SAM, kept beside the plain model and applied explicitly.

:mod:`samkit.model` computes SAM as the paper and the official code write it. This package computes
the same function (the same weights, the same numbers to float rounding, checked against the
official code by ``tests/parity``) with fewer operations. It reads the plain modules' weights and
never changes the model; what is worth keeping between prompts on one image lives in an
:class:`ImageSession`, which the predictor holds.

    import samkit
    predictor = samkit.Predictor(model)                  # fast=True: a FastSam(model) inside
    predictor = samkit.Predictor(model, fast=False)      # the plain model, call for call
    predictor = samkit.Predictor(model, fast=samkit.fast.FastSam(model, fold_attention=False))

    fast = samkit.fast.FastSam(model)                    # the same calls as Sam
    embedding = fast.encode_image(model.preprocess(x))   # = model.image_encoder(...)
    session = samkit.fast.ImageSession(model, embedding, fast)
    low_res, iou = session.decode(point_coords, point_labels)   # = model.encode_prompts_and_decode
    masks = session.postprocess_masks(low_res, input_size, original_size)

    samkit.fast.keep_freed_memory()   # opt-in, process-wide: glibc keeps freed memory (CPU clicks)

What is faster, and where (``benchmarks/README.md`` has the figures):

* :mod:`.encoder`: the ViT's windowed blocks project only the real tokens; the relative-position
  bias is built in a contiguous buffer, a chunk of queries at a time in the global blocks.
* :mod:`.attention`: the decoder's image attentions in the order with the fewest multiply-adds.
* :mod:`.decoder`: one image pass for many prompts; the first layer's image side computed once per
  image; the upscaling as matrix products on the token layout (with room for SAM 2-style
  high-resolution features added after each step).
* :mod:`.postprocess`: the two resizes and the crop as two small (sparse) matrices.
* :mod:`.memory`: the glibc ``malloc`` setting, for a process that serves clicks.
"""
from .decoder import ImageSide
from .memory import keep_freed_memory
from .postprocess import resize_matrix, sparse_resize_matrix
from .sam import FastSam
from .session import ImageSession

__all__ = ["FastSam", "ImageSession", "ImageSide", "keep_freed_memory", "resize_matrix",
           "sparse_resize_matrix"]
