"""Seconds per AutomaticMaskGenerator.generate(): the official generator vs samkit's, same weights, same image.

Random vit_b weights (no download), CPU by default. Each generator gets its own fresh predictor, so both
timings include the image encoder (one pass per crop) and the decoder over all point batches.

    python benchmarks/bench_amg.py                       # 32 x 32 points, as the defaults
    python benchmarks/bench_amg.py --points-per-side 8 --repeats 1 --json runs/bench_amg.json

Prints a table and writes JSON (``--json``). Not a test.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from samkit.testing import parity_image as test_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--points-per-batch", type=int, default=64)
    parser.add_argument("--crop-n-layers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

    import samkit

    torch.manual_seed(0)
    official = sam_model_registry[args.model]().eval().to(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.model}_random.pth"
        torch.save(official.state_dict(), path)
        ours = samkit.load_model(args.model, checkpoint=path, device=args.device)
    image = test_image()
    # Everything kept, so both do the full post-processing work for every candidate.
    kw = dict(points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
              crop_n_layers=args.crop_n_layers, pred_iou_thresh=0.0, stability_score_thresh=0.0)

    def run(make):
        times, n = [], 0
        for _ in range(args.repeats):
            gen = make()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            n = len(gen.generate(image))
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return min(times), n

    results = {}
    results["official"] = run(lambda: SamAutomaticMaskGenerator(official, **kw))
    results["samkit"] = run(lambda: samkit.AutomaticMaskGenerator(ours, progress=False, **kw))

    rows = [dict(implementation=k, seconds=round(v[0], 2), masks=v[1]) for k, v in results.items()]
    print(f"AMG generate(), {args.model} random weights, {image.shape[1]}x{image.shape[0]} image, "
          f"{args.points_per_side}x{args.points_per_side} points, crop layers {args.crop_n_layers}, "
          f"device {args.device}, best of {args.repeats}")
    print(f"{'implementation':>15}  {'seconds':>8}  {'masks':>6}")
    for r in rows:
        print(f"{r['implementation']:>15}  {r['seconds']:>8.2f}  {r['masks']:>6}")
    record = dict(benchmark="amg_generate", model=args.model, device=args.device, image=list(image.shape),
                  points_per_side=args.points_per_side, points_per_batch=args.points_per_batch,
                  crop_n_layers=args.crop_n_layers, repeats=args.repeats, torch=torch.__version__,
                  threads=torch.get_num_threads(), machine=platform.machine(), processor=platform.processor(),
                  rows=rows)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
