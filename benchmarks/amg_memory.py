"""Peak memory and time of everything mode on a large photo (default 4000 x 3000, 12 megapixels).

The photo is scikit-image's ``coffee`` resized to the requested size; the model is the embedded ``tiny``
(no download). Peak resident memory is the process's maximum RSS (``getrusage``), so run one
configuration per process:

    OMP_NUM_THREADS=1 python benchmarks/amg_memory.py                         # memory_budget 1 GiB (default)
    OMP_NUM_THREADS=1 python benchmarks/amg_memory.py --output-mode coco_rle
    OMP_NUM_THREADS=1 python benchmarks/amg_memory.py --size 1200x900 --memory-budget none
    OMP_NUM_THREADS=1 python benchmarks/amg_memory.py --pred-iou-thresh 0 --stability-score-thresh 0  # keep all

Prints one JSON line (``--json`` also writes it to a file). Not a test.
"""
from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
from PIL import Image


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="4000x3000", help="WIDTHxHEIGHT of the photo")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--memory-budget", default="1073741824", help="bytes, or 'none' for no cap")
    parser.add_argument("--output-mode", default="binary_mask")
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-score-thresh", type=float, default=0.95)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import samkit
    from samkit.data.photos import photo

    width, height = (int(v) for v in args.size.lower().split("x"))
    image = np.asarray(Image.fromarray(photo("coffee")).resize((width, height), Image.BICUBIC))
    budget = None if args.memory_budget.lower() == "none" else int(args.memory_budget)
    model = samkit.load_model(args.model)
    before = peak_rss_bytes()
    gen = samkit.AutomaticMaskGenerator(model, points_per_side=args.points_per_side, memory_budget=budget,
                                        output_mode=args.output_mode, pred_iou_thresh=args.pred_iou_thresh,
                                        stability_score_thresh=args.stability_score_thresh, progress=False)
    start = time.perf_counter()
    records = gen.generate(image)
    seconds = time.perf_counter() - start
    result = {
        "size": [height, width], "megapixels": round(height * width / 1e6, 1), "model": args.model,
        "points_per_side": args.points_per_side, "memory_budget": budget, "output_mode": args.output_mode,
        "pred_iou_thresh": args.pred_iou_thresh, "stability_score_thresh": args.stability_score_thresh,
        "batch_size": gen._batch_size([0, 0, width, height], (height, width)),
        "masks": len(records), "seconds": round(seconds, 1),
        "peak_rss_gib_before_generate": round(before / 2**30, 2),
        "peak_rss_gib": round(peak_rss_bytes() / 2**30, 2),
    }
    print(json.dumps(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
