"""The decoder's speed ladder on the machine at hand: the plain model, then
:class:`samkit.fast.FastSam` with its speed-ups turned on one at a time, each rung timed and checked
against the plain computation.

    from samkit.speed import decoder_ladder
    rows = decoder_ladder(predictor, point_coords=np.array([[500, 375]]),
                          point_labels=np.array([1]))

    from samkit.fast import FastSam           # any combination, for a comparison of your own
    plain_order = samkit.Predictor(model, fast=FastSam(model, fold_attention=False))

The side-by-side with Meta's ``segment-anything`` package (encoder, bf16, batched prompts,
automatic masks, ONNX) is ``benchmarks/bench_speed.py`` (``make bench``); :func:`load_bench` reads
the JSON it writes.
"""
from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from .fast import FastSam
from .predictor import Predictor

_ALL_OFF = dict(fold_attention=False, keep_image_side=False, sparse_postprocess=False)

#: rung name -> the FastSam switches at that rung (None: the plain model); each adds one speed-up.
RUNGS = (
    ("plain model (the official computation)", None),
    ("fast path: one image pass, upscaling and post-processing as matrix products", _ALL_OFF),
    ("+ attention folded into the few tokens", {**_ALL_OFF, "fold_attention": True}),
    ("+ first layer's image side kept between clicks", {**_ALL_OFF, "fold_attention": True,
                                                        "keep_image_side": True}),
    ("+ post-processing with sparse resize matrices", {}),
)


def _time_predict(predictor: Predictor, kwargs: Dict, repeat: int, warmup: int) -> float:
    for _ in range(warmup):
        predictor.predict(**kwargs)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        predictor.predict(**kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decoder_ladder(predictor: Predictor, point_coords: Optional[np.ndarray] = None,
                   point_labels: Optional[np.ndarray] = None, box: Optional[np.ndarray] = None,
                   repeat: int = 10, warmup: int = 2) -> List[Dict]:
    """Time ``predict`` on ``predictor``'s image (already set; three masks at the image's size) at
    each rung of :data:`RUNGS`, with a predictor of its own per rung; each rung's logits are
    compared with the plain rung's.

    Returns one dict per rung: ``rung``, ``ms`` (median), ``speedup`` (plain / this),
    ``max_abs_logit_diff`` and ``masks_equal`` (fraction of mask pixels equal to the plain rung's).
    """
    if not predictor.is_image_set:
        raise RuntimeError("no image is set: call predictor.set_image(image) before decoder_ladder")
    model = predictor.model
    kwargs = dict(point_coords=point_coords, point_labels=point_labels, box=box,
                  multimask_output=True)
    rows: List[Dict] = []
    reference = None
    for name, switches in RUNGS:
        fast = False if switches is None else FastSam(model, **switches)
        rung = Predictor(model, cache=False, fast=fast)
        rung.set_embedding(predictor.features, predictor.original_size)  # same image, fresh session
        seconds = _time_predict(rung, kwargs, repeat, warmup)
        logits, _, _ = rung.predict(return_logits=True, **kwargs)
        logits = np.asarray(logits, dtype=np.float32)
        if reference is None:
            reference = logits
        thr = model.mask_threshold
        rows.append({"rung": name, "ms": round(seconds * 1e3, 2),
                     "speedup": round(rows[0]["ms"] / (seconds * 1e3), 2) if rows else 1.0,
                     "max_abs_logit_diff": float(np.abs(logits - reference).max()),
                     "masks_equal": float(((logits > thr) == (reference > thr)).mean())})
    return rows


def load_bench(path: Union[str, Path] = "runs/bench/speed.json") -> Optional[Dict]:
    """The results ``benchmarks/bench_speed.py --json PATH`` wrote, or None when there are none."""
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text())
