"""Does the model segment better when the photo is cropped around the prompt before it is encoded?

A crop makes its object fill more of the model's 512 px input (more embedding cells across it), at the price of a
second encoder pass and of the context outside the crop. For each object of the real-photo set
(``samkit.data.photos.real_photo_dataset``), printed as mIoU by object size:

* box: the tight box on the whole photo (the model card's figure), then the same box on a square crop centred on
  it, ``factor`` times the box's longer side (at least 64 px, clipped to the photo), the mask pasted back;
* click: the interior centre click (:func:`samkit.data.prompts.center_point`) on the whole photo, most confident of
  three, then the same click on a crop around that first mask's box (a second pass that zooms on what the first
  one found).

    OMP_NUM_THREADS=2 python benchmarks/box_zoom.py                    # the embedded tiny, factors 1.25 1.5 2 3
    OMP_NUM_THREADS=2 python benchmarks/box_zoom.py --factors 1.5 --checkpoint runs/tiny_ctx/model.pth

About a minute on 2 cores. Not a test.
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Sequence, Tuple

import numpy as np

SIZES = (("all", 0.0, 1.01), ("under 5%", 0.0, 0.05), ("5-15%", 0.05, 0.15), ("over 15%", 0.15, 1.01))


def crop_window(box: Sequence[float], shape: Tuple[int, ...], factor: float, min_side: int = 64
                ) -> Tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``, end-exclusive: a square ``factor`` times the box's longer side, centred on the box,
    clipped to an image of ``shape``."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(factor * max(x1 - x0 + 1, y1 - y0 + 1), min_side)
    h, w = shape[:2]
    return (int(max(0, np.floor(cx - side / 2))), int(max(0, np.floor(cy - side / 2))),
            int(min(w, np.ceil(cx + side / 2))), int(min(h, np.ceil(cy + side / 2))))


def score(predictor, factors: Sequence[float]) -> List[Dict[str, float]]:
    """One row per object: its area share, and the IoU of each way of prompting."""
    from samkit.data.photos import real_photo_dataset, tight_boxes
    from samkit.data.prompts import center_point
    from samkit.evaluate import mask_iou

    rows = []
    for item in real_photo_dataset():
        image = item["image"]
        h, w = image.shape[:2]
        predictor.set_image(image)
        first = []
        for gt, box in zip(item["masks"], item["boxes"]):
            masks, _, _ = predictor.predict(box=box, multimask_output=False)
            click = np.array([center_point(gt)], dtype=float)
            clicked, scores, _ = predictor.predict(point_coords=click, point_labels=np.array([1]))
            best = clicked[int(np.argmax(scores))]
            first.append(({"area": float(gt.mean()), "box": mask_iou(masks[0], gt), "click": mask_iou(best, gt)},
                          click, best))
        for (gt, box), (row, click, best) in zip(zip(item["masks"], item["boxes"]), first):
            for f in factors:
                a, b, e, d = crop_window(box, image.shape, f)
                predictor.set_image(np.ascontiguousarray(image[b:d, a:e]))
                masks, _, _ = predictor.predict(box=np.asarray(box, dtype=float) - [a, b, a, b],
                                                multimask_output=False)
                full = np.zeros((h, w), dtype=bool)
                full[b:d, a:e] = masks[0]
                row[f"box, crop {f:g}x"] = mask_iou(full, gt)
                if not best.any():  # nothing to zoom on: the first answer stands
                    row[f"click, crop {f:g}x"] = row["click"]
                    continue
                a, b, e, d = crop_window(tight_boxes(best[None])[0], image.shape, f)
                predictor.set_image(np.ascontiguousarray(image[b:d, a:e]))
                clicked, scores, _ = predictor.predict(point_coords=click - [a, b], point_labels=np.array([1]))
                full = np.zeros((h, w), dtype=bool)
                full[b:d, a:e] = clicked[int(np.argmax(scores))]
                row[f"click, crop {f:g}x"] = mask_iou(full, gt)
            rows.append(row)
    return rows


def main(argv=None) -> None:
    import samkit

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="tiny weights (default: the embedded model)")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.25, 1.5, 2.0, 3.0])
    args = ap.parse_args(argv)
    model = samkit.load_model("tiny", checkpoint=args.checkpoint)
    rows = score(samkit.Predictor(model), args.factors)
    keys = ["box"] + [f"box, crop {f:g}x" for f in args.factors] + ["click"] + [f"click, crop {f:g}x"
                                                                              for f in args.factors]
    print("| objects | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, lo, hi in SIZES:
        sel = [r for r in rows if lo <= r["area"] < hi]
        if sel:
            print(f"| {name} ({len(sel)}) | " + " | ".join(f"{np.mean([r[k] for r in sel]):.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
