"""Where a model loses an object: in its image embedding or in its mask decoder?

For every object, a linear readout of the image embedding (``C x 64 x 64``) is fitted to that object's own mask
(pooled to the embedding grid; logistic regression on the standardised features, then the best threshold): how
much of the object a per-cell linear decoder *that knows the answer* could draw from these features. It is an
upper bound fitted in-sample, not a prediction. Beside it, the model's own mask from the object's tight box. When
the readout recovers an object that the box prompt misses, the features hold it and the decoder's reading of the
prompt is what fails; when neither does, the encoder never separated it.

    OMP_NUM_THREADS=2 python benchmarks/feature_probe.py                 # the embedded tiny
    OMP_NUM_THREADS=2 python benchmarks/feature_probe.py --checkpoint runs/tiny_detail/model.pth
    OMP_NUM_THREADS=2 python benchmarks/feature_probe.py --click         # and along the decoder, for a click

``--click`` follows one centre click through the decoder (about 5 minutes more). For each object the readout is
fitted to three stages in turn: the image embedding, the decoder's image side after the two-way transformer (the
same grid and width, now conditioned on the click) and the ``C/8`` channels the upscaling leaves at 4x the grid,
which the mask tokens' dot products read; beside them the model's best of its three masks for that click. These
readouts are fitted on a random half of the cells and scored on the other half, so a readout cannot merely memorise
the answer cell by cell. With ``--clipart N`` the click falls on a part of an object made of parts in N held-out
scenes whose such objects are Noto emoji (the model card's ``--ambiguity-clipart``), and the target is the whole
object: where along the decoder the whole is lost.

Rows: the real-photo set (``samkit.data.photos.real_photo_dataset``) and held-out generated scenes (seed 1, the
model card's), by object size (share of the image). Prints a table; ``--json PATH`` also writes it. Not a test.
"""
from __future__ import annotations

import argparse
import json
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F


def readout_iou(features: torch.Tensor, target: np.ndarray, steps: int = 200, held_out: bool = False) -> float:
    """IoU on the grid (cells over half covered) of the best-thresholded linear readout of ``features``
    (``C x g x g``) fitted to ``target`` (``g x g``). ``held_out``: fitted (readout and threshold) on a random
    half of the cells, scored on the other half."""
    c = features.shape[0]
    x = features.reshape(c, -1).T.float()
    y = torch.from_numpy((target.ravel() > 0.5).astype(np.float32))
    fit = (torch.rand(len(y), generator=torch.Generator().manual_seed(0)) < 0.5 if held_out
           else torch.ones(len(y), dtype=torch.bool))
    score = ~fit if held_out else fit
    if y[fit].sum() == 0 or y[score].sum() == 0:
        return 0.0
    x = (x - x[fit].mean(0)) / (x[fit].std(0) + 1e-6)
    lin = torch.nn.Linear(c, 1)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(lin(x[fit])[:, 0], y[fit]) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        z = lin(x)[:, 0].numpy()
    truth = y.numpy() > 0.5
    fit, score = fit.numpy(), score.numpy()

    def iou(pred: np.ndarray, where: np.ndarray) -> float:
        return float((pred & truth & where).sum() / max(((pred | truth) & where).sum(), 1))

    best_t = max(np.quantile(z[fit], np.linspace(0.02, 0.98, 49)), key=lambda t: iou(z >= t, fit))
    return iou(z >= best_t, score)


def probe(predictor, data: List[Dict]) -> List[Dict]:
    """One row per object: its area share, the readout's IoU and the model's box IoU."""
    from samkit.evaluate import box_prompts
    from samkit.model_card import grid_pool

    box = box_prompts(predictor, data, progress=False).per_object["box"]
    rows = []
    for item in data:
        predictor.set_image(item["image"])
        features = predictor.features[0]
        for mask in item["masks"]:
            rows.append({"area": float(mask.mean()),
                         "readout": readout_iou(features, grid_pool(mask, features.shape[-1])[0, 0].numpy())})
    assert len(box) == len(rows), "an empty mask in the data"
    for row, b in zip(rows, box):
        row["box"] = float(b)
    return rows


def click_ladder(model, items: List[tuple]) -> List[Dict]:
    """One row per ``(click_mask, target)`` of each ``(image, pairs)`` in ``items``: a click at the centre of
    ``click_mask``; the held-out readout IoU of ``target`` at the embedding, the decoder's image side after the
    two-way transformer and its upscaled ``C/8`` channels (before a ``tiny_hq`` detail path adds to them), and
    the model's best of 3 (full resolution)."""
    import samkit
    from samkit.data.prompts import center_point
    from samkit.evaluate import mask_iou
    from samkit.model_card import grid_pool

    def pooled(mask: np.ndarray, side: int) -> np.ndarray:  # the mask's share of each cell, padded square
        return grid_pool(mask, side)[0, 0].numpy()

    predictor = samkit.Predictor(model, fast=False)  # the plain modules, so that the hooks see each stage
    seen: Dict[str, torch.Tensor] = {}
    dec = model.mask_decoder
    hooks = [dec.transformer.register_forward_hook(lambda m, i, o: seen.__setitem__("side", o[1].detach())),
             dec.output_upscaling.register_forward_hook(lambda m, i, o: seen.__setitem__("up", o.detach()))]
    rows = []
    try:
        for image, pairs in items:
            predictor.set_image(image)
            emb = predictor.features[0]
            g = emb.shape[-1]
            for click_mask, target in pairs:
                point = np.array([center_point(click_mask)], dtype=np.float64)
                masks, _, _ = predictor.predict(point_coords=point, point_labels=np.array([1]))
                side = seen["side"][0].T.reshape(-1, g, g)  # hw x C -> C x g x g
                up = seen["up"][0]
                rows.append({
                    "area": float(target.mean()),
                    "embedding": readout_iou(emb, pooled(target, g), held_out=True),
                    "decoder side": readout_iou(side, pooled(target, g), held_out=True),
                    "upscaled": readout_iou(up, pooled(target, up.shape[-1]), held_out=True),
                    "model": max(mask_iou(m, target) for m in masks),
                })
    finally:
        for h in hooks:
            h.remove()
    return rows


def clipart_pairs(n_scenes: int) -> List[tuple]:
    """``(image, [(part, whole), ...])`` of ``n_scenes`` held-out scenes (seed 1) whose objects made of parts are
    Noto emoji, as the model card's ``--ambiguity-clipart 1`` draws them (every third pair, to keep it short)."""
    from samkit.data.clipart import fetch_clipart
    from samkit.data.synthetic import SceneGenerator
    from samkit.model_card import HELD_OUT_SEED, TRAIN_MIN_AREA, nested_pairs

    gen = SceneGenerator(size=512, seed=HELD_OUT_SEED, composite_prob=1.0, min_area=TRAIN_MIN_AREA,
                         clipart_dir=fetch_clipart(), clipart_prob=1.0)
    items = []
    for i in range(n_scenes):
        image, masks = gen(i)
        items.append((image, [(masks[p], masks[w]) for p, w in nested_pairs(masks)][::3]))
    return items


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="tiny weights to probe (default: the embedded ones)")
    ap.add_argument("--scenes", type=int, default=12, help="held-out generated scenes (seed 1, 512 px)")
    ap.add_argument("--click", action="store_true", help="also follow a centre click through the decoder")
    ap.add_argument("--clipart", type=int, default=0,
                    help="with --click: N held-out scenes of emoji, a click on a part, the whole as target")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()

    import samkit
    from samkit.data.photos import real_photo_dataset
    from samkit.model_card import TRAINING_MIX, held_out_scenes, load_candidate

    model = load_candidate(args.checkpoint or "shipped")
    predictor = samkit.Predictor(model)
    photos = real_photo_dataset()
    scenes = held_out_scenes(args.scenes, min_fraction=0.05, **TRAINING_MIX)
    out = {"real photos": probe(predictor, photos), "generated scenes": probe(predictor, scenes)}
    print(f"threads: {torch.get_num_threads()}; weights: {args.checkpoint or 'embedded tiny'}")
    print("| data | object size | objects | linear readout fitted to the answer | the model's box |")
    print("|---|---|---|---|---|")
    for name, rows in out.items():
        for label, lo, hi in (("5-15%", 0.05, 0.15), ("15-100%", 0.15, 1.01)):
            sel = [r for r in rows if lo <= r["area"] < hi]
            if sel:
                print(f"| {name} | {label} | {len(sel)} | {np.mean([r['readout'] for r in sel]):.3f} | "
                      f"{np.mean([r['box'] for r in sel]):.3f} |")
    if args.click:
        ladders = {"real photos": click_ladder(model, [(d["image"], [(m, m) for m in d["masks"] if m.mean() >= 0.05])
                                                        for d in photos]),
                   "generated scenes": click_ladder(model, [(d["image"], [(m, m) for m in d["masks"]])
                                                            for d in scenes])}
        if args.clipart:
            ladders["emoji wholes, click on a part"] = click_ladder(model, clipart_pairs(args.clipart))
        out["click"] = ladders
        print("\nA centre click, followed through the decoder: the linear readout fitted to half the cells, scored "
              "on the other half, at each stage; then the model's best of 3")
        print("| data | objects | embedding | decoder side (after the transformer) | upscaled C/8 channels | "
              "the model |")
        print("|---|---|---|---|---|---|")
        for name, rows in ladders.items():
            if rows:
                cells = " | ".join(f"{np.mean([r[k] for r in rows]):.3f}"
                                   for k in ("embedding", "decoder side", "upscaled", "model"))
                print(f"| {name} | {len(rows)} | {cells} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
