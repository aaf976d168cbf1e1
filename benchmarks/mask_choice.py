"""Which of a prompt's masks to return: every mask the decoder draws for a box and for a first click, scored.

For each object, the tight box is decoded with all four mask tokens, and its interior centre click
(:func:`samkit.evaluate.first_click`) with the three multimask tokens. Printed, as mIoU:

* box: mask token 0 (SAM 1's single mask), the multimask output with the highest predicted IoU, SAM 2's
  single-mask rule (:meth:`samkit.model.MaskDecoder.single_mask`: token 0 when stable), and the best of the four;
* first click: the mask chosen by the IoU head (SAM's rule), the most stable, the one that agrees best with its own
  cut along the photo's edges (the IoU between the mask and :func:`samkit.refine.grabcut_refine`'s answer from it:
  evidence from the picture itself rather than from the IoU token), the largest, the middle-sized, the smallest, and
  the best of the three (the oracle).

    OMP_NUM_THREADS=2 python benchmarks/mask_choice.py                 # the embedded tiny (about a minute)
    OMP_NUM_THREADS=2 python benchmarks/mask_choice.py --checkpoint runs/tiny_phase5/model.pth

Then the sizes of a first click's three masks, as a share of the object's area (median): whether the model
proposes the whole object at all. Last, how well each of those signals estimates a mask's true IoU (mean absolute
error and correlation over the three masks of every first click), alone and combined by a linear fit on the
generated scenes: whether everything mode could rank and threshold masks by any of them.

Rows: the real-photo set (``samkit.data.photos.real_photo_dataset``), its objects over 15% of their photo, and
held-out generated scenes (seed 1, the model card's). ``--json PATH`` also writes the per-object IoUs. Not a test.
"""
from __future__ import annotations

import argparse
import json
from typing import Dict, List

import numpy as np
import torch

BOX = ("token 0", "most confident of 1-3", "single-mask rule", "best of 4")
CLICK = ("IoU head", "most stable", "agrees with its cut", "largest", "middle", "smallest", "best of 3")


def score_objects(predictor, data: List[Dict]) -> List[Dict]:
    """One row per object: its area share and the IoU of each choice in ``BOX`` and ``CLICK``."""
    from samkit.amg_utils import stability_score
    from samkit.data.photos import tight_boxes
    from samkit.evaluate import first_click, mask_iou
    from samkit.refine import grabcut_refine

    decoder = predictor.model.mask_decoder
    threshold = float(predictor.model.mask_threshold)
    rows = []
    for item in data:
        predictor.set_image(item["image"])
        for gt in item["masks"]:
            gt = np.asarray(gt, dtype=bool)
            if not gt.any():
                continue
            box = torch.as_tensor(predictor.transform.apply_boxes(tight_boxes(gt[None]).astype(np.float64),
                                                                  gt.shape), device=predictor.device)
            with torch.no_grad():
                sparse, dense = predictor.model.prompt_encoder(points=None, boxes=box.float(), masks=None)
                low, iou = decoder.predict_masks(predictor.features, predictor.model.prompt_encoder.get_dense_pe(),
                                                 sparse, dense)
                ruled = decoder.single_mask(low, iou)[0]
            masks = predictor.upscale_masks(torch.cat([low, ruled], dim=1), return_logits=False)[0].cpu().numpy()
            box_ious = [mask_iou(m, gt) for m in masks]  # tokens 0-3, then the rule's mask
            click = first_click(predictor, gt)
            logits = torch.as_tensor(click["low_res"])
            stable = stability_score(logits, threshold, 1.0).nan_to_num(0.0).numpy()
            areas = click["masks"].reshape(3, -1).sum(1)
            order = np.argsort(areas)
            ci = click["ious"]
            full = predictor.upscale_masks(logits[None], return_logits=True)[0].cpu().numpy()
            point = np.asarray(click["point"], dtype=np.float64).reshape(-1, 2)
            agree = [mask_iou(grabcut_refine(item["image"], lg, points=point, labels=np.ones(len(point))), m)
                     for lg, m in zip(full, click["masks"])]
            rows.append({"area": float(gt.mean()),
                         "box": [box_ious[0], box_ious[1 + int(iou[0, 1:].argmax())], box_ious[4], max(box_ious)],
                         "click": [ci[click["confident"]], ci[int(np.argmax(stable))], ci[int(np.argmax(agree))],
                                   ci[order[2]], ci[order[1]],
                                   ci[order[0]], ci.max()],
                         "click_areas": (np.sort(areas) / max(int(gt.sum()), 1)).tolist(),
                         "estimates": {"true IoU": ci, "IoU head": click["scores"], "stability": stable,
                                       "agreement with its cut": agree}})
    return [{**r, "box": [float(v) for v in r["box"]], "click": [float(v) for v in r["click"]],
             "click_areas": [float(v) for v in r["click_areas"]],
             "estimates": {k: [float(v) for v in np.asarray(e).ravel()] for k, e in r["estimates"].items()}}
            for r in rows]


def estimate_table(out: Dict[str, List[Dict]], fit_on: str) -> List[str]:
    """Each quality estimate of a first click's three masks against their true IoU: mean absolute error and
    correlation, over every mask. ``linear fit`` combines the three estimates by least squares fitted on the
    ``fit_on`` rows (generated scenes) and applied unchanged to the others: the best a recalibration from
    these signals could do without fitting to the photos."""
    names = [k for k in out[fit_on][0]["estimates"] if k != "true IoU"]

    def columns(rows: List[Dict]):
        true = np.concatenate([r["estimates"]["true IoU"] for r in rows])
        est = np.stack([np.concatenate([r["estimates"][k] for r in rows]) for k in names], 1)
        return true, est

    def design(est: np.ndarray) -> np.ndarray:
        return np.concatenate([np.ones((len(est), 1)), est], 1)

    true_fit, est_fit = columns(out[fit_on])
    weights = np.linalg.lstsq(design(est_fit), true_fit, rcond=None)[0]
    lines = ["| data | masks | true IoU: mean, sd | " + " | ".join(names) + " | linear fit |",
             "|---|---|---|" + "---|" * (len(names) + 1)]
    for name, rows in out.items():
        true, est = columns(rows)
        cells = []
        for e in [*est.T, np.clip(design(est) @ weights, 0.0, 1.0)]:
            corr = np.corrcoef(e, true)[0, 1] if e.std() > 0 and true.std() > 0 else float("nan")
            cells.append(f"{np.abs(e - true).mean():.3f} / {corr:+.2f}")
        lines.append(f"| {name} | {len(true)} | {true.mean():.3f}, {true.std():.3f} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="tiny weights (default: the embedded ones)")
    ap.add_argument("--scenes", type=int, default=12, help="held-out generated scenes (seed 1, 512 px)")
    ap.add_argument("--json", default=None, help="also write the per-object rows here")
    args = ap.parse_args()

    import samkit
    from samkit.data.photos import real_photo_dataset
    from samkit.model_card import TRAINING_MIX, held_out_scenes, load_candidate

    predictor = samkit.Predictor(load_candidate(args.checkpoint or "shipped"))
    scenes = held_out_scenes(args.scenes, min_fraction=0.005, **TRAINING_MIX)
    photos = score_objects(predictor, real_photo_dataset())
    out = {"real photos": photos, "real photos, objects over 15%": [r for r in photos if r["area"] >= 0.15],
           "generated scenes (seed 1)": score_objects(predictor, scenes)}
    print(f"threads: {torch.get_num_threads()}; weights: {args.checkpoint or 'embedded tiny'}")
    for kind, labels in (("box", BOX), ("click", CLICK)):
        print(f"\n{'a box' if kind == 'box' else 'a first click'}: mIoU of each choice\n")
        print("| data | objects | " + " | ".join(labels) + " |")
        print("|---|---|" + "---|" * len(labels))
        for name, rows in out.items():
            means = np.array([r[kind] for r in rows]).mean(0)
            print(f"| {name} | {len(rows)} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
    print("\na first click's three masks, smallest to largest: median area as a share of the object's\n")
    print("| data | objects | smallest | middle | largest |")
    print("|---|---|---|---|---|")
    for name, rows in out.items():
        med = np.median(np.array([r["click_areas"] for r in rows]), axis=0)
        print(f"| {name} | {len(rows)} | " + " | ".join(f"{v:.2f}" for v in med) + " |")
    print("\na first click's three masks: each quality estimate against the true IoU, mean absolute error /"
          " correlation\n(the linear fit is fitted on the generated scenes)\n")
    print("\n".join(estimate_table(out, fit_on="generated scenes (seed 1)")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
