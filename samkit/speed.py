"""The decoder's speed ladder on the machine at hand: each exact shortcut switched on in turn, timed, and
checked against the plain computation (the official code's order of operations).

    from samkit.speed import decoder_ladder, fast_paths
    rows = decoder_ladder(predictor, point_coords=np.array([[500, 375]]), point_labels=np.array([1]))
    with fast_paths(fold_attention=False):     # any shortcut off, for a comparison of your own
        predictor.predict(...)

The side-by-side with Meta's ``segment-anything`` package (encoder, bf16, batched prompts, automatic masks,
ONNX) is ``benchmarks/bench_speed.py`` (``make bench``); :func:`load_bench` reads the JSON it writes.
"""
from __future__ import annotations

import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Union

import numpy as np

from .model.common import FAST_PATHS

#: rung name -> the shortcuts switched on at that rung (each rung adds one to the previous).
RUNGS = (
    ("plain (the official order of operations)", ()),
    ("+ attention folded into the few tokens", ("fold_attention",)),
    ("+ first layer's image side kept between clicks", ("fold_attention", "keep_image_side")),
    ("+ post-processing with sparse resize matrices", ("fold_attention", "keep_image_side", "sparse_postprocess")),
)


@contextlib.contextmanager
def fast_paths(**switches: bool) -> Iterator[Dict[str, bool]]:
    """Switch the decoder's shortcuts (:data:`samkit.model.common.FAST_PATHS`) for the ``with`` block."""
    unknown = set(switches) - set(FAST_PATHS)
    if unknown:
        raise ValueError(f"unknown fast path(s) {sorted(unknown)}; choose from {sorted(FAST_PATHS)}")
    saved = dict(FAST_PATHS)
    FAST_PATHS.update({k: bool(v) for k, v in switches.items()})
    try:
        yield dict(FAST_PATHS)
    finally:
        FAST_PATHS.clear()
        FAST_PATHS.update(saved)


def _time_predict(predictor, kwargs: Dict, repeat: int, warmup: int) -> float:
    for _ in range(warmup):
        predictor.predict(**kwargs)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        predictor.predict(**kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def decoder_ladder(predictor, point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                   box: Optional[np.ndarray] = None, repeat: int = 10, warmup: int = 2) -> List[Dict]:
    """Time ``predictor.predict`` (image already set, three masks at the image's size) at each rung of
    :data:`RUNGS`; each rung's logits are compared with the plain rung's.

    Returns one dict per rung: ``rung``, ``ms`` (median), ``speedup`` (plain / this), ``max_abs_logit_diff``
    and ``masks_equal`` (fraction of mask pixels identical to the plain rung's).
    """
    kwargs = dict(point_coords=point_coords, point_labels=point_labels, box=box, multimask_output=True)
    rows: List[Dict] = []
    reference = None
    for name, on in RUNGS:
        with fast_paths(**{k: k in on for k in FAST_PATHS}):
            predictor.model.mask_decoder._kept = None  # each rung starts from a fresh image
            seconds = _time_predict(predictor, kwargs, repeat, warmup)
            logits, _, _ = predictor.predict(return_logits=True, **kwargs)
        logits = np.asarray(logits, dtype=np.float32)
        if reference is None:
            reference = logits
        thr = predictor.model.mask_threshold
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
