"""How well the IoU head predicts the IoU of the masks it scores, by prompt, and how much a refit of the head could fix.

For every object, three prompts are decoded with all four mask tokens, no mask input: the click at its interior centre
(the evaluation's first click, :func:`samkit.data.prompts.center_point`), a click at a random pixel of the object (as
training samples first clicks) and the tight box. For each, the IoU head's prediction is set against the true IoU of
each of the three multimask outputs (tokens 1-3): mean absolute error and correlation. ``click pick`` is the mean IoU
of the first click's mask that the head ranks first (the card's "most confident"); ``best of 3`` the oracle.

With ``--refit N``, the IoU token's output (what the head reads) is also recorded on ``N`` generated scenes of another
seed (``--refit-seed``, training's scene mix), and a copy of the head is fitted to those scenes' true IoUs by mean
squared error, the masks untouched. Its rows show what the head alone can learn from generated scenes; the last row
(``leave one photo out``) fits it to six of the photos and scores the seventh, a diagnostic of how much the token
holds about photo masks at all, never a way to choose weights.

    OMP_NUM_THREADS=2 python benchmarks/iou_calibration.py              # the embedded tiny (about 4 minutes)
    OMP_NUM_THREADS=2 python benchmarks/iou_calibration.py --refit 150  # plus the refit (15 minutes in all)
    OMP_NUM_THREADS=2 python benchmarks/iou_calibration.py --checkpoint runs/tiny_iou_head/model.pth

Rows: the real-photo set (``samkit.data.photos.real_photo_dataset``) and held-out generated scenes (seed 1, the model
card's). Not a test.
"""
from __future__ import annotations

import argparse
import copy
from typing import Dict, List

import numpy as np
import torch

KINDS = ("centre click", "random click", "box")


def collect(predictor, data: List[Dict], seed: int = 0) -> Dict[str, np.ndarray]:
    """Per object and prompt kind: the IoU token's output (``feat``, what the head reads), the head's four
    predictions (``pred``) and the four masks' true IoUs (``iou``), the prompt ``kind`` and the image index."""
    from samkit.data.photos import tight_boxes
    from samkit.data.prompts import center_point
    from samkit.evaluate import mask_iou

    rng = np.random.default_rng(seed)
    decoder, pe = predictor.model.mask_decoder, predictor.model.prompt_encoder
    seen: Dict[str, torch.Tensor] = {}
    hook = decoder.iou_prediction_head.register_forward_hook(lambda m, i, o: seen.__setitem__("x", i[0].detach()))
    rows: Dict[str, list] = {k: [] for k in ("feat", "pred", "iou", "kind", "image")}
    try:
        for index, item in enumerate(data):
            predictor.set_image(item["image"])
            for gt in item["masks"]:
                gt = np.asarray(gt, dtype=bool)
                if not gt.any():
                    continue
                ys, xs = np.nonzero(gt)
                k = rng.integers(len(ys))
                clicks = {"centre click": np.array([center_point(gt)]), "random click": np.array([[xs[k], ys[k]]])}
                for kind in KINDS:
                    with torch.no_grad():
                        if kind == "box":
                            box = predictor.transform.apply_boxes(tight_boxes(gt[None]).astype(np.float64), gt.shape)
                            sparse, dense = pe(points=None, boxes=torch.as_tensor(box, dtype=torch.float32),
                                               masks=None)
                        else:
                            xy = predictor.transform.apply_coords(clicks[kind].astype(np.float64), gt.shape)
                            sparse, dense = pe(points=(torch.as_tensor(xy, dtype=torch.float32)[None],
                                                       torch.ones(1, 1, dtype=torch.int)), boxes=None, masks=None)
                        low, iou = decoder.predict_masks(predictor.features, pe.get_dense_pe(), sparse, dense)
                        masks = predictor.upscale_masks(low, return_logits=False)[0].cpu().numpy()
                    rows["feat"].append(seen["x"][0].float().cpu().numpy())
                    rows["pred"].append(iou[0].float().cpu().numpy())
                    rows["iou"].append([mask_iou(m, gt) for m in masks])
                    rows["kind"].append(kind)
                    rows["image"].append(index)
    finally:
        hook.remove()
    return {k: np.array(v) for k, v in rows.items()}


def summary(pred: np.ndarray, rows: Dict[str, np.ndarray]) -> List[str]:
    """MAE / correlation per prompt kind (tokens 1-3), then the head's pick and the best of the first click's three."""
    cells = []
    for kind in KINDS:
        m = rows["kind"] == kind
        p, t = pred[m][:, 1:], rows["iou"][m][:, 1:]
        cells.append(f"{np.abs(p - t).mean():.3f} / {np.corrcoef(p.ravel(), t.ravel())[0, 1]:+.2f}")
    m = rows["kind"] == "centre click"
    t = rows["iou"][m][:, 1:]
    cells += [f"{t[np.arange(len(t)), pred[m][:, 1:].argmax(1)].mean():.3f}", f"{t.max(1).mean():.3f}"]
    return cells


def refit(head: torch.nn.Module, feat: np.ndarray, iou: np.ndarray, epochs: int = 50, lr: float = 3e-4,
          seed: int = 0) -> torch.nn.Module:
    """A copy of ``head`` fitted to predict ``iou`` (``N x 4``) from ``feat`` (``N x C``): AdamW, batches of 256."""
    torch.manual_seed(seed)
    head = copy.deepcopy(head).train()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.0)
    x, y = torch.as_tensor(feat), torch.as_tensor(iou, dtype=torch.float32)
    for _ in range(epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x), 256):
            b = order[i:i + 256]
            loss = ((head(x[b]) - y[b]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


def predict(head: torch.nn.Module, feat: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.as_tensor(feat)).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="tiny weights (default: the embedded ones)")
    ap.add_argument("--scenes", type=int, default=60, help="held-out generated scenes (seed 1, 512 px)")
    ap.add_argument("--refit", type=int, default=0, help="also refit the head on this many scenes of --refit-seed")
    ap.add_argument("--refit-seed", type=int, default=41)
    args = ap.parse_args()

    import samkit
    from samkit.data.photos import real_photo_dataset
    from samkit.model_card import TRAINING_MIX, held_out_scenes, load_candidate

    predictor = samkit.Predictor(load_candidate(args.checkpoint or "shipped"))
    head = predictor.model.mask_decoder.iou_prediction_head
    sets = {"real photos": collect(predictor, real_photo_dataset()),
            "generated scenes (seed 1)": collect(predictor, held_out_scenes(args.scenes, min_fraction=0.002,
                                                                            **TRAINING_MIX))}
    print(f"threads: {torch.get_num_threads()}; weights: {args.checkpoint or 'embedded tiny'}\n")
    print("| head | data | prompts | " + " | ".join(f"{k}: MAE / corr" for k in KINDS) + " | click pick | best of 3 |")
    print("|---|---|---|" + "---|" * (len(KINDS) + 2))
    for name, rows in sets.items():
        print(f"| as trained | {name} | {len(rows['kind'])} | " + " | ".join(summary(rows["pred"], rows)) + " |")
    if args.refit:
        fit = collect(predictor, held_out_scenes(args.refit, seed=args.refit_seed, min_fraction=0.002, **TRAINING_MIX))
        fitted = refit(head, fit["feat"], fit["iou"])
        for name, rows in sets.items():
            print(f"| refit on {args.refit} scenes (seed {args.refit_seed}) | {name} | {len(rows['kind'])} | "
                  + " | ".join(summary(predict(fitted, rows["feat"]), rows)) + " |")
        photos = sets["real photos"]
        out = np.zeros_like(photos["pred"])
        for i in np.unique(photos["image"]):
            m = photos["image"] == i
            out[m] = predict(refit(head, photos["feat"][~m], photos["iou"][~m]), photos["feat"][m])
        print(f"| leave one photo out (diagnostic) | real photos | {len(photos['kind'])} | "
              + " | ".join(summary(out, photos)) + " |")


if __name__ == "__main__":
    main()
