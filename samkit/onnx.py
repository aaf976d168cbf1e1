"""Export SAM to ONNX and run it with onnxruntime.

Two graphs, as a browser or an edge deployment uses them:

* the **decoder** (:func:`export_decoder`): prompt encoder + mask decoder (+ optionally the upsampling
  of the masks to the original image size), with the inputs and outputs of the official
  ``SamOnnxModel`` graph. Inside, the mask decoder is traced on the fast path
  (:func:`samkit.fast.decoder.predict_masks`: the image-token attentions in the folded order, the
  same function for any number of points, and the upscaling as matrix products); the prompt
  encoding and the final upsampling are written out here, as the official graph does::

      image_embeddings  1 x C x E x E        float32  (the encoder's output)
      point_coords      1 x N x 2            float32  (x, y) in the model input frame (long side = img_size)
      point_labels      1 x N                float32  1 fg, 0 bg, 2/3 box corners, -1 padding
      mask_input        1 x 1 x 4E x 4E      float32  low-res logits of a previous prediction (or zeros)
      has_mask_input    1                    float32  1 when mask_input is used, else 0
      orig_im_size      2                    float32  (H, W) of the original image
      ->
      masks             1 x M x H x W        float32  logits in original pixels (threshold at 0)
      iou_predictions   1 x M                float32
      low_res_masks     1 x M x 4E x 4E      float32  logits in the padded input frame

  With ``return_single_mask=True`` (the default, like the official demo) M = 1: the best of the three
  multimask outputs for a single click, the single-mask output once there are more prompts (for a model that
  uses SAM 2's single-mask rule, as the embedded ``tiny`` does, unless that output is unstable and no mask input
  is given: then the best multimask output, as :class:`~samkit.Predictor` answers); otherwise
  M = 4 (token 0 = single-mask output, tokens 1-3 = the multimask outputs). With ``postprocess=False``
  the ``masks`` output and the ``orig_im_size`` input are left out.
  Unlike :class:`~samkit.Predictor`, the caller adds the padding point (label -1) when there is no box
  and gives a box as two points labelled 2 and 3 (see :class:`OnnxPredictor`).

* the **encoder** (:func:`export_encoder`, not exported by the official kit):
  ``input_image`` ``1 x 3 x S x S`` (normalised, zero-padded) -> ``image_embeddings``
  ``1 x C x E x E``, traced from the plain :mod:`samkit.model` encoder.

:class:`OnnxPredictor` runs both with onnxruntime behind the :class:`~samkit.Predictor` interface.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .fast.decoder import predict_masks
from .model.configs import MASK_THRESHOLD, PIXEL_MEAN, PIXEL_STD
from .model.sam import Sam
from .predictor import as_rgb_uint8
from .transforms import ResizeLongestSide

DECODER_INPUTS = ["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input",
                  "orig_im_size"]
DECODER_OUTPUTS = ["masks", "iou_predictions", "low_res_masks"]
ENCODER_INPUTS = ["input_image"]
ENCODER_OUTPUTS = ["image_embeddings"]


class SamDecoderOnnx(nn.Module):
    """Prompt encoder + mask decoder (+ postprocessing) written without data-dependent control flow.

    Args:
        model: a samkit :class:`~samkit.model.Sam`.
        return_single_mask: pick one mask per prompt set (see the module docstring) instead of all 4.
        postprocess: also upsample the masks to ``orig_im_size``.
    """

    def __init__(self, model: Sam, return_single_mask: bool = True, postprocess: bool = True) -> None:
        super().__init__()
        self.model = model
        self.img_size = model.img_size
        self.return_single_mask = return_single_mask
        self.postprocess = postprocess

    def embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """``1 x N x 2`` points (input frame) and ``1 x N`` labels -> ``1 x N x C`` sparse embeddings."""
        pe = self.model.prompt_encoder
        h, w = pe.input_image_size
        coords = point_coords + 0.5  # pixel centres
        coords = torch.stack([coords[..., 0] / w, coords[..., 1] / h], dim=-1)
        emb = pe.pe_layer._pe_encoding(coords)
        labels = point_labels.unsqueeze(-1)
        emb = emb * (labels != -1).to(emb.dtype) + pe.not_a_point_embed.weight * (labels == -1).to(emb.dtype)
        for i, point_embedding in enumerate(pe.point_embeddings):  # 0 bg, 1 fg, 2/3 box corners
            emb = emb + point_embedding.weight * (labels == i).to(emb.dtype)
        return emb

    def embed_mask(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        """``1 x 1 x 4E x 4E`` logits -> ``1 x C x E x E`` dense embedding (``no_mask_embed`` when unused)."""
        pe = self.model.prompt_encoder
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return has_mask_input * pe.mask_downscaling(mask_input) + (1 - has_mask_input) * no_mask

    def upsample(self, masks: torch.Tensor, orig_im_size: torch.Tensor) -> torch.Tensor:
        """``1 x M x 4E x 4E`` -> ``1 x M x H x W``: to the padded input frame, crop the padding, resize."""
        masks = F.interpolate(masks, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        size = orig_im_size.to(torch.float32)
        input_size = torch.floor(size * (self.img_size / torch.max(size)) + 0.5).to(torch.int64)
        masks = masks[..., : input_size[0], : input_size[1]]
        orig = orig_im_size.to(torch.int64)
        return F.interpolate(masks, size=(orig[0], orig[1]), mode="bilinear", align_corners=False)

    def select_single(self, masks: torch.Tensor, iou: torch.Tensor, num_points: int,
                      has_mask_input: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """One mask per prompt set: the best multimask output for an ambiguous prompt (a click plus its
        padding point, N <= 2), the single-mask token 0 otherwise (written without branches). A model that uses
        SAM 2's single-mask rule (:meth:`~samkit.model.mask_decoder.MaskDecoder.single_mask`) also takes the best
        multimask output when token 0's mask is unstable and no mask input is given, as its predictor does."""
        penalty = torch.zeros_like(iou)
        penalty[:, 0] = 1000.0 * (num_points - 2.5)
        dec = self.model.mask_decoder
        if dec.dynamic_multimask_via_stability and has_mask_input is not None:
            unstable = ~dec.token0_is_stable(masks) & (has_mask_input.reshape(-1) <= 0)
            penalty[:, 0] = torch.where(unstable, torch.full_like(penalty[:, 0], -1000.0), penalty[:, 0])
        best = torch.argmax(iou + penalty, dim=1)
        rows = torch.arange(masks.shape[0])
        return masks[rows, best].unsqueeze(1), iou[rows, best].unsqueeze(1)

    @torch.no_grad()
    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor,
                mask_input: torch.Tensor, has_mask_input: torch.Tensor,
                orig_im_size: Optional[torch.Tensor] = None):
        sparse = self.embed_points(point_coords, point_labels)
        dense = self.embed_mask(mask_input, has_mask_input)
        low_res, iou = predict_masks(self.model.mask_decoder, image_embeddings,
                                     self.model.prompt_encoder.get_dense_pe(), sparse, dense)
        if self.return_single_mask:
            low_res, iou = self.select_single(low_res, iou, point_coords.shape[1], has_mask_input)
        if not self.postprocess:
            return iou, low_res
        return self.upsample(low_res, orig_im_size), iou, low_res


class SamEncoderOnnx(nn.Module):
    """The image encoder alone: ``1 x 3 x S x S`` normalised image -> ``1 x C x E x E``."""

    def __init__(self, model: Sam) -> None:
        super().__init__()
        self.image_encoder = model.image_encoder

    @torch.no_grad()
    def forward(self, input_image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(input_image)


def _metadata(model: Sam, **extra) -> dict:
    cfg = model.config
    e = model.prompt_encoder.image_embedding_size[0]
    return {"samkit_model": model.name, "img_size": model.img_size, "embedding_size": e,
            "embedding_dim": model.embedding_channels,
            "mask_input_size": list(model.prompt_encoder.mask_input_size),
            "config": repr(cfg), **extra}


def _write_metadata(path: Path, meta: dict) -> None:
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "samkit", json.dumps(meta)
    onnx.save(proto, str(path))


def _export(module: nn.Module, args: tuple, path: Path, input_names: List[str], output_names: List[str],
            dynamic_axes: dict, opset: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True,
                          dynamo=False)


def export_decoder(model: Sam, path: Union[str, Path], opset: int = 17, return_single_mask: bool = True,
                   postprocess: bool = True) -> Path:
    """Export prompt encoder + mask decoder (+ postprocessing) to ``path`` (see the module docstring).

    The number of points N is a dynamic axis; the image embedding, mask input and model input sizes
    are fixed by ``model``. Returns the path written.
    """
    if not isinstance(model, Sam):
        raise TypeError(f"export_decoder needs a samkit Sam model, got {type(model).__name__}")
    path = Path(path)
    model = model.eval().cpu()
    wrapper = SamDecoderOnnx(model, return_single_mask=return_single_mask, postprocess=postprocess)
    c, e = model.embedding_channels, model.prompt_encoder.image_embedding_size[0]
    m = model.prompt_encoder.mask_input_size[0]
    args = (torch.randn(1, c, e, e), torch.randint(0, model.img_size, (1, 5, 2)).float(),
            torch.randint(-1, 4, (1, 5)).float(), torch.randn(1, 1, m, m), torch.tensor([1.0]),
            torch.tensor([480.0, 640.0]))
    inputs, outputs = list(DECODER_INPUTS), list(DECODER_OUTPUTS)
    if not postprocess:
        args, inputs, outputs = args[:5], inputs[:5], outputs[1:]
    _export(wrapper, args, path, inputs, outputs,
            {"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}}, opset)
    _write_metadata(path, _metadata(model, graph="decoder", return_single_mask=return_single_mask,
                                    postprocess=postprocess))
    return path


def export_encoder(model: Sam, path: Union[str, Path], opset: int = 17) -> Path:
    """Export the image encoder: ``input_image`` ``1 x 3 x S x S`` (normalised with the pixel mean/std and
    zero-padded right/bottom, as :meth:`Sam.preprocess` does) -> ``image_embeddings`` ``1 x C x E x E``.

    Weights larger than 2 GB (vit_h) go to an external data file next to ``path``. Returns the path.
    """
    if not isinstance(model, Sam):
        raise TypeError(f"export_encoder needs a samkit Sam model, got {type(model).__name__}")
    path = Path(path)
    model = model.eval().cpu()
    x = torch.randn(1, 3, model.img_size, model.img_size)
    _export(SamEncoderOnnx(model), (x,), path, ENCODER_INPUTS, ENCODER_OUTPUTS, {}, opset)
    _write_metadata(path, _metadata(model, graph="encoder"))
    return path


def read_metadata(path: Union[str, Path]) -> dict:
    """The samkit metadata stored in an exported graph (model name, sizes, export options)."""
    import onnx

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == "samkit":
            return json.loads(entry.value)
    raise ValueError(f"{path} has no samkit metadata (was it written by samkit.onnx.export_decoder/encoder?)")


def _session(path: Union[str, Path], providers: Optional[Sequence[str]] = None, threads: Optional[int] = None):
    import onnxruntime as ort

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))


class OnnxPredictor:
    """:class:`~samkit.Predictor`-like prompting with the exported graphs on onnxruntime (no torch model).

    Args:
        decoder_path: a graph written by :func:`export_decoder` (with ``postprocess=True``).
        encoder_path: a graph written by :func:`export_encoder`; needed by :meth:`set_image` only
            (:meth:`set_embedding` takes an embedding computed elsewhere).
        providers: onnxruntime execution providers (default CPU).
        threads: intra-op threads (default: onnxruntime's choice).
    """

    def __init__(self, decoder_path: Union[str, Path], encoder_path: Union[str, Path, None] = None,
                 providers: Optional[Sequence[str]] = None, threads: Optional[int] = None) -> None:
        self.meta = read_metadata(decoder_path)
        if not self.meta.get("postprocess", True):
            raise ValueError(f"{decoder_path} was exported with postprocess=False; "
                             "OnnxPredictor needs the masks output")
        self.decoder = _session(decoder_path, providers, threads)
        self.encoder = _session(encoder_path, providers, threads) if encoder_path is not None else None
        self.img_size = int(self.meta["img_size"])
        self.mask_input_size = tuple(self.meta["mask_input_size"])
        self.transform = ResizeLongestSide(self.img_size)
        self.features: Optional[np.ndarray] = None
        self.original_size: Optional[Tuple[int, int]] = None
        self.input_size: Optional[Tuple[int, int]] = None

    @property
    def is_image_set(self) -> bool:
        return self.features is not None

    def preprocess(self, image: np.ndarray) -> np.ndarray:
        """``H x W x 3`` uint8 RGB -> ``1 x 3 x S x S`` float32: resized (long side S), normalised, padded."""
        image = as_rgb_uint8(image)
        resized = self.transform.apply_image(image).astype(np.float32)
        x = (resized - np.asarray(PIXEL_MEAN, np.float32)) / np.asarray(PIXEL_STD, np.float32)
        h, w = x.shape[:2]
        out = np.zeros((1, 3, self.img_size, self.img_size), np.float32)
        out[0, :, :h, :w] = x.transpose(2, 0, 1)
        return out

    def set_image(self, image: np.ndarray) -> None:
        """Run the encoder graph on an ``H x W x 3`` uint8 RGB image."""
        if self.encoder is None:
            raise RuntimeError("OnnxPredictor was built without encoder_path: use set_embedding() or pass one")
        x = self.preprocess(image)
        (emb,) = self.encoder.run(None, {"input_image": x})
        self.set_embedding(emb, image.shape[:2])

    def set_embedding(self, embedding: Union[np.ndarray, torch.Tensor], original_size: Tuple[int, int]) -> None:
        """Use a precomputed ``1 x C x E x E`` embedding of an image of ``original_size = (H, W)``."""
        if isinstance(embedding, torch.Tensor):
            embedding = embedding.detach().cpu().numpy()
        embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        e, c = int(self.meta["embedding_size"]), int(self.meta["embedding_dim"])
        if embedding.shape != (1, c, e, e):
            raise ValueError(f"embedding must be 1 x {c} x {e} x {e}, got {embedding.shape}")
        self.features = embedding
        self.original_size = (int(original_size[0]), int(original_size[1]))
        self.input_size = ResizeLongestSide.get_preprocess_shape(*self.original_size, self.img_size)

    def prompt_inputs(self, point_coords=None, point_labels=None, box=None, mask_input=None) -> dict:
        """The decoder's feed for prompts in original pixels (adds the padding point when there is no box)."""
        if not self.is_image_set:
            raise RuntimeError("no image is set: call set_image(image) or set_embedding(...) first")
        coords, labels = [], []
        if point_coords is not None:
            if point_labels is None:
                raise ValueError("point_coords and point_labels must be given together")
            coords.append(np.asarray(point_coords, dtype=np.float64).reshape(-1, 2))
            labels.append(np.asarray(point_labels, dtype=np.float32).reshape(-1))
        if box is not None:
            coords.append(np.asarray(box, dtype=np.float64).reshape(2, 2))
            labels.append(np.array([2, 3], np.float32))
        else:
            coords.append(np.zeros((1, 2)))
            labels.append(np.array([-1], np.float32))
        pc = self.transform.apply_coords(np.concatenate(coords), self.original_size).astype(np.float32)
        if mask_input is None:
            mask = np.zeros((1, 1, *self.mask_input_size), np.float32)
            has_mask = np.zeros(1, np.float32)
        else:
            mask = np.asarray(mask_input, np.float32).reshape(1, 1, *self.mask_input_size)
            has_mask = np.ones(1, np.float32)
        return {"image_embeddings": self.features, "point_coords": pc[None],
                "point_labels": np.concatenate(labels)[None], "mask_input": mask, "has_mask_input": has_mask,
                "orig_im_size": np.asarray(self.original_size, np.float32)}

    def predict(self, point_coords=None, point_labels=None, box=None, mask_input=None,
                return_logits: bool = False) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts in original pixels: ``M x H x W`` (bool, or logits with ``return_logits``),
        ``M`` IoU predictions and ``M x 4E x 4E`` low-res logits (M = 1 with ``return_single_mask``)."""
        masks, iou, low_res = self.decoder.run(None, self.prompt_inputs(point_coords, point_labels, box, mask_input))
        if not return_logits:
            masks = masks > MASK_THRESHOLD
        return masks[0], iou[0], low_res[0]
