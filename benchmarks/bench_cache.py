"""Decoder-only training step: cached image embeddings vs re-encoding the image every step.

With a frozen encoder, samkit's training loop encodes each image once and reads the float16 embedding back
every epoch. This measures what that saves: the time of one optimiser step of the interactive simulation
(``--rounds`` decoder passes, ``--masks`` prompts, 1 image) when the embedding comes from the cache and when
the image goes through the encoder first (no gradients, as a frozen encoder would).

    python benchmarks/bench_cache.py                       # tiny and vit_b, CPU or the first GPU
    python benchmarks/bench_cache.py --models tiny --steps 5 --out runs/bench/bench_cache.json

Prints a table and writes JSON (random weights: the timing does not depend on them).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Dict, List

import torch

import samkit
from samkit.train import (
    InteractiveLoss,
    TrainConfig,
    param_groups,
    prepare_image,
    prompt_image,
    round_plan,
    set_trainable,
)
from samkit.train.data import _generator


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_model(name: str, steps: int, rounds: int, masks: int, device: torch.device) -> Dict[str, float]:
    from samkit.data.synthetic import SceneGenerator

    model = samkit.build_model(name).to(device)
    set_trainable(model, "decoder")
    model.image_encoder.eval()
    cfg = TrainConfig(model=name, masks_per_image=masks, n_rounds=rounds, no_point_rounds=min(2, rounds - 1))
    image, gt = SceneGenerator(size=512, seed=0)(0)
    record = prepare_image(image, gt, model.img_size)
    trainer = InteractiveLoss(model, cfg)
    groups = param_groups(model, cfg.lr, cfg.weight_decay)
    optimizer = torch.optim.AdamW([{k: v for k, v in g.items() if k != "names"} for g in groups], lr=cfg.lr)
    plan = round_plan(rounds, cfg.no_point_rounds, "middle")

    @torch.no_grad()
    def encode() -> torch.Tensor:
        x = model.preprocess(record.image.to(device).float()[None])
        return model.image_encoder(x)

    cached = encode().half().float()  # what the cache returns (float16 on disk)

    def step(reencode: bool) -> float:
        _sync(device)
        t0 = time.perf_counter()
        p = prompt_image(record, cfg, model.img_size, _generator(0, 0, 0), device)
        p.embedding = encode() if reencode else cached.to(device)
        out = trainer([p], plan)
        optimizer.zero_grad(set_to_none=True)
        (out["loss_sum"] / (len(plan) * max(float(out["count"]), 1.0))).backward()
        optimizer.step()
        _sync(device)
        return time.perf_counter() - t0

    result: Dict[str, float] = {}
    step(False)  # warm-up
    step(True)
    times: Dict[bool, List[float]] = {False: [], True: []}
    for _ in range(steps):  # alternate the two modes so that a busy machine slows both alike
        for reencode in (False, True):
            times[reencode].append(step(reencode))
    for mode, reencode in (("cached", False), ("reencode", True)):
        result[f"{mode}_ms"] = 1000 * statistics.median(times[reencode])
    t0 = time.perf_counter()
    encode()
    _sync(device)
    result["encode_ms"] = 1000 * (time.perf_counter() - t0)
    result["speedup"] = result["reencode_ms"] / result["cached_ms"]
    return result


def main(argv: List[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "vit_b"])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode (median; after a warm-up)")
    parser.add_argument("--rounds", type=int, default=11, help="interactive rounds per step")
    parser.add_argument("--masks", type=int, default=8, help="prompts per image")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/results/bench_cache.json")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    rows = {}
    for name in args.models:
        rows[name] = bench_model(name, args.steps, args.rounds, args.masks, device)
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
    print(f"decoder-only training step, 1 image, {args.masks} prompts, {args.rounds} rounds, {dev_name}")
    print(f"{'model':8s} {'cached ms':>10s} {'re-encode ms':>13s} {'encoder ms':>11s} {'speed-up':>9s}")
    for name, r in rows.items():
        print(f"{name:8s} {r['cached_ms']:10.1f} {r['reencode_ms']:13.1f} {r['encode_ms']:11.1f} {r['speedup']:8.1f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"device": dev_name, "torch": torch.__version__, "masks": args.masks,
                               "rounds": args.rounds, "steps": args.steps, "results": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
