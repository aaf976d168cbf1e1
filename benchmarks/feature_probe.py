"""Where a model loses an object: in its image embedding or in its mask decoder?

For every object, a linear readout of the image embedding (``C x 64 x 64``) is fitted to that object's own mask
(pooled to the embedding grid; logistic regression on the standardised features, then the best threshold): how
much of the object a per-cell linear decoder *that knows the answer* could draw from these features. It is an
upper bound fitted in-sample, not a prediction. Beside it, the model's own mask from the object's tight box. When
the readout recovers an object that the box prompt misses, the features hold it and the decoder's reading of the
prompt is what fails; when neither does, the encoder never separated it.

    OMP_NUM_THREADS=2 python benchmarks/feature_probe.py                 # the embedded tiny
    OMP_NUM_THREADS=2 python benchmarks/feature_probe.py --checkpoint runs/tiny_detail/model.pth

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


def readout_iou(features: torch.Tensor, target: np.ndarray, steps: int = 200) -> float:
    """IoU on the grid (cells over half covered) of the best-thresholded linear readout of ``features``
    (``C x g x g``) fitted to ``target`` (``g x g``)."""
    c = features.shape[0]
    x = features.reshape(c, -1).T.float()
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.from_numpy((target.ravel() > 0.5).astype(np.float32))
    if y.sum() == 0:
        return 0.0
    lin = torch.nn.Linear(c, 1)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(lin(x)[:, 0], y) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        z = lin(x)[:, 0].numpy()
    truth = y.numpy() > 0.5
    best = 0.0
    for t in np.quantile(z, np.linspace(0.02, 0.98, 49)):
        pred = z >= t
        best = max(best, float((pred & truth).sum() / max((pred | truth).sum(), 1)))
    return best


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="tiny weights to probe (default: the embedded ones)")
    ap.add_argument("--scenes", type=int, default=12, help="held-out generated scenes (seed 1, 512 px)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()

    import samkit
    from samkit.data.photos import real_photo_dataset
    from samkit.model_card import TRAINING_MIX, held_out_scenes, load_candidate

    predictor = samkit.Predictor(load_candidate(args.checkpoint or "shipped"))
    scenes = held_out_scenes(args.scenes, min_fraction=0.05, **TRAINING_MIX)
    out = {"real photos": probe(predictor, real_photo_dataset()), "generated scenes": probe(predictor, scenes)}
    print(f"threads: {torch.get_num_threads()}; weights: {args.checkpoint or 'embedded tiny'}")
    print("| data | object size | objects | linear readout fitted to the answer | the model's box |")
    print("|---|---|---|---|---|")
    for name, rows in out.items():
        for label, lo, hi in (("5-15%", 0.05, 0.15), ("15-100%", 0.15, 1.01)):
            sel = [r for r in rows if lo <= r["area"] < hi]
            if sel:
                print(f"| {name} | {label} | {len(sel)} | {np.mean([r['readout'] for r in sel]):.3f} | "
                      f"{np.mean([r['box'] for r in sel]):.3f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
