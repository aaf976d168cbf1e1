"""Click latency of the click-to-segment widget: one click's round trip in the kernel.

A click = record the prompt, prompt encoder + mask decoder on the cached image embedding, upsample the
chosen mask to the image, paint the RGBA overlay, encode it (PNG) and send the canvas commands. The browser's
own drawing is not included (no browser here). Prints a table and optionally writes JSON.

    python benchmarks/bench_click.py                      # tiny and vit_b (random weights), 30 clicks each
    python benchmarks/bench_click.py --models tiny --clicks 50 --json runs/bench_click.json
    python benchmarks/bench_click.py --models tiny --refine   # the embedded weights, masks cut along edges

The vit_b image embedding is taken from the embedding cache: by default the cache is filled with a random
embedding of the right shape (1 x 256 x 64 x 64) so that the benchmark does not spend a minute in the ViT-B
encoder on a CPU; the decoder's cost does not depend on the embedding's values. ``--real-embedding`` runs the
encoder instead. ``--refine`` measures the widget with *Cut along edges* on (GrabCut, ``samkit.refine``): it
loads the trained weights (``samkit.load_model``) and runs the encoder, since the cut's cost depends on the
masks.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import samkit  # noqa: E402
from samkit.cache import image_key  # noqa: E402
from samkit.widgets import ClickSegmenter  # noqa: E402


def sample_image() -> np.ndarray:
    """scikit-image's astronaut (512 x 512 RGB)."""
    from skimage import data

    return data.astronaut()


def prefill_cache(predictor: samkit.Predictor, image: np.ndarray) -> None:
    """Put a random embedding for ``image`` into the predictor's cache (as if it had been computed before)."""
    model = predictor.model
    t = torch.as_tensor(predictor.transform.apply_image(image)).permute(2, 0, 1).contiguous()[None]
    cfg = model.config
    channels = model.prompt_encoder.embed_dim
    embedding = torch.randn(1, channels, cfg.embedding_size, cfg.embedding_size)
    predictor.cache.put(image_key(model, t), embedding)


def bench(name: str, clicks: int, real_embedding: bool, seed: int = 0, refine: bool = False) -> dict:
    torch.manual_seed(seed)
    model = samkit.load_model(name) if refine else samkit.build_model(name).eval()
    predictor = samkit.Predictor(model)
    image = sample_image()
    if not (real_embedding or refine):
        prefill_cache(predictor, image)
    seg = ClickSegmenter(predictor, image, threaded=False, refine=refine)
    rng = np.random.default_rng(seed)
    for _ in range(3):  # warm-up
        seg.handle_click(*rng.uniform(0, [seg.display_width, seg.display_height]))
    seg.clear()
    wall, cpu, decoder, drawing, cut = [], [], [], [], []
    for i in range(clicks):
        if i % 6 == 0:
            seg.clear()           # mix first clicks (3 masks) and refining clicks (mask_input, 1 mask)
        x, y = rng.uniform(0, [seg.display_width, seg.display_height])
        button = 0 if i % 3 else 2
        t0, c0 = time.perf_counter(), time.thread_time()
        seg.handle_click(x, y, button=button)
        wall.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
        decoder.append(seg.timings["decoder_ms"])
        drawing.append(seg.timings["render_ms"])
        cut.append(seg.timings.get("refine_ms", 0.0))
    seg.close()
    return {
        "model": name + ("+cut" if refine else ""), "clicks": clicks, "image": list(image.shape[:2]),
        "display": [seg.display_height, seg.display_width],
        "embedding": ("computed, trained weights" if refine else "computed") if (real_embedding or refine)
        else "cached (random values)",
        "embedding_s": round(seg.timings.get("embedding_s", float("nan")), 3),
        "click_ms_median": round(statistics.median(wall), 1),
        "click_ms_p90": round(float(np.percentile(wall, 90)), 1),
        "click_cpu_ms_median": round(statistics.median(cpu), 1),
        "decoder_ms_median": round(statistics.median(decoder), 1),
        "drawing_ms_median": round(statistics.median(drawing), 1),
        "cut_ms_median": round(statistics.median(cut), 1), "cut_ms_p90": round(float(np.percentile(cut, 90)), 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,vit_b", help="comma-separated model names (random weights)")
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--real-embedding", action="store_true", help="run the image encoder instead of "
                        "filling the cache with a random embedding")
    parser.add_argument("--refine", action="store_true", help="trained weights, masks cut along the image's edges "
                        "(ClickSegmenter(refine=True))")
    parser.add_argument("--json", default=None, help="write the results to this file")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc settings alone (by default "
                             "samkit.fast.keep_freed_memory() is called at start, as an "
                             "interactive session would)")
    args = parser.parse_args(argv)
    malloc_tuned = False if args.default_malloc else samkit.fast.keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
          f"{torch.get_num_threads()}, load average {load:.1f} (a busy machine inflates wall times; "
          f"the CPU-time column is less sensitive), malloc keeps freed memory: {malloc_tuned}")
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    rows = [bench(name, args.clicks, args.real_embedding, refine=args.refine) for name in names]
    head = (f"{'model':8} {'embedding':24} {'click median':>13} {'p90':>8} {'CPU time':>9} {'decoder':>8} "
            f"{'edge cut':>8} {'drawing':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['model']:8} {r['embedding']:24} {r['click_ms_median']:>10.1f} ms {r['click_ms_p90']:>5.1f} ms "
              f"{r['click_cpu_ms_median']:>6.1f} ms {r['decoder_ms_median']:>5.1f} ms "
              f"{r['cut_ms_median']:>5.1f} ms {r['drawing_ms_median']:>5.1f} ms")
    for r in rows:
        met = r["click_ms_median"] < 50
        print(f"target {r['model']}: median click round trip under 50 ms -> {'met' if met else 'NOT met here'}")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"load_average": load, "torch_threads": torch.get_num_threads(),
                                   "keep_freed_memory": malloc_tuned, "results": rows}, indent=1))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
