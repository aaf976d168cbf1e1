"""Does the model segment better when the photo is cropped around the prompt before it is encoded?

A crop makes its object fill more of the model's 512 px input (more embedding cells across it), at the price of a
second encoder pass and of the context outside the crop. For each object of the real-photo set
(``samkit.data.photos.real_photo_dataset``; with ``--scenes N``, of N held-out generated scenes instead, objects
over 0.5% of the image), printed as mIoU by object size:

* box: the tight box on the whole photo (the model card's figure), then the same box on a square crop centred on
  it, ``factor`` times the box's longer side (at least 64 px, clipped to the photo), the mask pasted back. With
  ``--pad`` the square is not clipped: where it reaches past the photo it is filled with the photo's mean colour,
  so that a large object is zoomed out (shown smaller than on the whole photo) instead of left as it is;
* click: the interior centre click (:func:`samkit.data.prompts.center_point`) on the whole photo, most confident of
  three, then the same click on a crop around that first mask's box (a second pass that zooms on what the first
  one found). With ``--half``, three more click columns: the best of three on the whole photo, then with the
  largest of the three replaced by the largest mask of the same click on the photo at half its size (in the top left
  of a canvas of the photo's size, the rest its mean colour): the best of those three, and the most confident.

    OMP_NUM_THREADS=2 python benchmarks/box_zoom.py                    # the embedded tiny, factors 1.25 1.5 2 3
    OMP_NUM_THREADS=2 python benchmarks/box_zoom.py --factors 1.5 --checkpoint runs/tiny_ctx/model.pth
    OMP_NUM_THREADS=2 python benchmarks/box_zoom.py --pad --factors 1.5 2 2.5   # zoom out on large objects
    OMP_NUM_THREADS=2 python benchmarks/box_zoom.py --factors 1.5 --half
    OMP_NUM_THREADS=2 python benchmarks/box_zoom.py --factors 1.5 --half --scenes 12   # held-out generated scenes

About a minute on 2 cores. Not a test.
"""
from __future__ import annotations

import argparse
from typing import Dict, List, Sequence, Tuple

import numpy as np

SIZES = (("all", 0.0, 1.01), ("under 5%", 0.0, 0.05), ("5-15%", 0.05, 0.15), ("over 15%", 0.15, 1.01))


def crop_window(box: Sequence[float], shape: Tuple[int, ...], factor: float, min_side: int = 64,
                clip: bool = True) -> Tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``, end-exclusive: a square ``factor`` times the box's longer side, centred on the box,
    clipped to an image of ``shape`` (``clip=False``: it may reach past the image)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    side = max(factor * max(x1 - x0 + 1, y1 - y0 + 1), min_side)
    a, b, e, d = (int(np.floor(cx - side / 2)), int(np.floor(cy - side / 2)),
                  int(np.ceil(cx + side / 2)), int(np.ceil(cy + side / 2)))
    if not clip:
        return a, b, e, d
    h, w = shape[:2]
    return max(0, a), max(0, b), min(w, e), min(h, d)


def crop(image: np.ndarray, window: Tuple[int, int, int, int]) -> np.ndarray:
    """The ``window`` of ``image``; where it reaches past the image, the image's mean colour."""
    a, b, e, d = window
    h, w = image.shape[:2]
    out = np.empty((d - b, e - a, 3), dtype=image.dtype)
    out[:] = image.reshape(-1, 3).mean(0).round().astype(image.dtype)
    ya, yb, xa, xb = max(b, 0), min(d, h), max(a, 0), min(e, w)
    out[ya - b:yb - b, xa - a:xb - a] = image[ya:yb, xa:xb]
    return out


def paste(mask: np.ndarray, window: Tuple[int, int, int, int], shape: Tuple[int, ...]) -> np.ndarray:
    """``mask``, predicted on ``crop(image, window)``, back on an image of ``shape``."""
    a, b, e, d = window
    h, w = shape[:2]
    full = np.zeros((h, w), dtype=bool)
    ya, yb, xa, xb = max(b, 0), min(d, h), max(a, 0), min(e, w)
    full[ya:yb, xa:xb] = mask[ya - b:yb - b, xa - a:xb - a]
    return full


def half_size(image: np.ndarray) -> np.ndarray:
    """``image`` at half its size in the top left of a canvas of its size, the rest its mean colour (:func:`crop`
    past the shrunk image's edges)."""
    from PIL import Image

    h, w = image.shape[:2]
    small = np.asarray(Image.fromarray(image).resize(((w + 1) // 2, (h + 1) // 2), Image.BOX))
    return crop(small, (0, 0, w, h))


def whole_at_half_size(predictor, image: np.ndarray, clicks: List[np.ndarray]) -> List[Tuple[np.ndarray, float]]:
    """For each click (1 x 2, photo pixels): the largest of its three masks on :func:`half_size`'s canvas, scaled
    back to the photo, and its predicted IoU."""
    from PIL import Image

    h, w = image.shape[:2]
    predictor.set_image(half_size(image))
    out = []
    for click in clicks:
        masks, scores, _ = predictor.predict(point_coords=click / 2, point_labels=np.array([1]))
        k = int(np.argmax(masks.reshape(3, -1).sum(1)))
        small = Image.fromarray(masks[k, :(h + 1) // 2, :(w + 1) // 2].astype(np.uint8) * 255)
        out.append((np.asarray(small.resize((w, h), Image.NEAREST)) > 127, float(scores[k])))
    return out


def score(predictor, data: List[Dict], factors: Sequence[float], pad: bool = False, half: bool = False
          ) -> List[Dict[str, float]]:
    """One row per object of ``data`` (items with ``image`` and ``masks``): its area share, and the IoU of each
    way of prompting."""
    from samkit.data.photos import tight_boxes
    from samkit.data.prompts import center_point
    from samkit.evaluate import mask_iou

    rows = []
    for item in data:
        image, gts = item["image"], np.asarray(item["masks"], dtype=bool)
        boxes = item["boxes"] if "boxes" in item else tight_boxes(gts).astype(np.float64)
        predictor.set_image(image)
        first, three = [], []
        for gt, box in zip(gts, boxes):
            masks, _, _ = predictor.predict(box=box, multimask_output=False)
            click = np.array([center_point(gt)], dtype=float)
            clicked, scores, _ = predictor.predict(point_coords=click, point_labels=np.array([1]))
            best = clicked[int(np.argmax(scores))]
            row = {"area": float(gt.mean()), "box": mask_iou(masks[0], gt), "click": mask_iou(best, gt)}
            if half:
                ious = [mask_iou(m, gt) for m in clicked]
                row["click best of 3"] = max(ious)
                three.append((ious, list(scores), clicked.reshape(3, -1).sum(1)))
            first.append((row, click, best))
        if half:  # the largest mask swapped for the largest one at half size
            wholes = whole_at_half_size(predictor, image, [c for _, c, _ in first])
            for gt, (row, _, _), (ious, scores, sizes), (whole, whole_score) in zip(gts, first, three, wholes):
                k = int(np.argmax(sizes))
                ious[k], scores[k] = mask_iou(whole, gt), whole_score
                row["click best of 3, whole at half size"] = max(ious)
                row["click most confident, whole at half size"] = ious[int(np.argmax(scores))]
        for gt, box, (row, click, best) in zip(gts, boxes, first):
            for f in factors:
                window = crop_window(box, image.shape, f, clip=not pad)
                a, b = window[:2]
                predictor.set_image(crop(image, window))
                masks, _, _ = predictor.predict(box=np.asarray(box, dtype=float) - [a, b, a, b],
                                                multimask_output=False)
                row[f"box, crop {f:g}x"] = mask_iou(paste(masks[0], window, image.shape), gt)
                if not best.any():  # nothing to zoom on: the first answer stands
                    row[f"click, crop {f:g}x"] = row["click"]
                    continue
                window = crop_window(tight_boxes(best[None])[0], image.shape, f, clip=not pad)
                a, b = window[:2]
                predictor.set_image(crop(image, window))
                clicked, scores, _ = predictor.predict(point_coords=click - [a, b], point_labels=np.array([1]))
                row[f"click, crop {f:g}x"] = mask_iou(paste(clicked[int(np.argmax(scores))], window, image.shape), gt)
            rows.append(row)
    return rows


def main(argv=None) -> None:
    import samkit

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="tiny weights (default: the embedded model)")
    ap.add_argument("--factors", type=float, nargs="+", default=[1.25, 1.5, 2.0, 3.0])
    ap.add_argument("--half", action="store_true", help="also a click's whole from the photo at half its size")
    ap.add_argument("--pad", action="store_true",
                    help="let the square reach past the photo, filled with its mean colour (zooms out)")
    ap.add_argument("--scenes", type=int, default=0,
                    help="score this many held-out generated scenes (seed 1, the model card's) instead of the photos")
    args = ap.parse_args(argv)
    model = samkit.load_model("tiny", checkpoint=args.checkpoint)
    if args.scenes:
        from samkit.model_card import TRAINING_MIX, held_out_scenes

        data = held_out_scenes(args.scenes, min_fraction=0.005, **TRAINING_MIX)
    else:
        from samkit.data.photos import real_photo_dataset

        data = real_photo_dataset()
    rows = score(samkit.Predictor(model), data, args.factors, pad=args.pad, half=args.half)
    keys = ["box"] + [f"box, crop {f:g}x" for f in args.factors] + ["click"] + [f"click, crop {f:g}x"
                                                                              for f in args.factors]
    if args.half:
        keys += ["click best of 3", "click best of 3, whole at half size", "click most confident, whole at half size"]
    print("| objects | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, lo, hi in SIZES:
        sel = [r for r in rows if lo <= r["area"] < hi]
        if sel:
            print(f"| {name} ({len(sel)}) | " + " | ".join(f"{np.mean([r[k] for r in sel]):.3f}" for k in keys) + " |")


if __name__ == "__main__":
    main()
