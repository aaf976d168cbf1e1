"""Evaluate a trained ``tiny`` checkpoint, install it as the embedded model, and write its model card.

    python -m samkit.model_card runs/tiny/checkpoint.pt --install

Figures are measured here, every time: 1-click (oracle of 3 and most confident) and box mIoU on
held-out generated scenes (a different generator seed from training), the same on the real ``coins``
photo (ground truth derived from the photo), and pictures of clicks and boxes on real photos the model
never saw (astronaut, coffee, chelsea, coins). The card is written next to the weights.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

import numpy as np
import torch

from .model.configs import UNSHIPPED

if TYPE_CHECKING:
    from .model.configs import SamConfig

ASSETS = Path(__file__).parent / "assets"
HELD_OUT_SEED = 1  # training scenes use seeds 0, 7, 11, 13, 17, 19, 20-24 and 777 (configs/tiny*.yaml)


SIZE_BANDS = ((0.0, 0.05), (0.05, 0.15), (0.15, 1.01))  # object area as a fraction of its photo
TRAIN_MIN_AREA = 512  # configs/tiny*.yaml: min_mask_area 128 at 256 px, 0.2% of the image (512 px at 512 px)


def held_out_scenes(n: int, size: int = 512, seed: int = HELD_OUT_SEED, min_area: int = 0,
                    min_fraction: float = 0.0, **generator) -> List[Dict]:
    """``n`` generated scenes the model was not trained on (another generator seed); ``min_area`` drops
    masks with fewer pixels, ``min_fraction`` masks under that share of the image (the generator itself keeps
    masks down to 0.05% of the image). ``generator``: further :class:`SceneGenerator` options (the training
    configs' mix: ``composite_prob``, ``object_scale``, ``hero_prob``...). With ``min_fraction``, scenes left
    without a mask are dropped."""
    from .data.synthetic import SceneGenerator

    gen = SceneGenerator(size=size, seed=seed, **generator)
    items = []
    for i in range(n):
        image, masks = gen(i)
        flat = masks.reshape(len(masks), -1)
        keep = (flat.mean(1) <= 0.9) & (flat.sum(1) >= min_area) & (flat.mean(1) >= min_fraction)
        if min_fraction > 0 and not keep.any():
            continue
        items.append({"image": image, "masks": masks[keep], "image_id": i, "file": f"scene-{seed}-{i}"})
    return items


# the training configs' scene mix (configs/tiny_phase*.yaml), for the benchmarks' held-out scenes
TRAINING_MIX = {"composite_prob": 0.8, "object_scale": (0.02, 0.45), "hero_prob": 0.7}


def evaluate_model(model, n_scenes: int = 40, max_objects: int = 400, progress: bool = True) -> Dict:
    """The model card's figures: per dataset a dict of ResultTables (as dicts) and headline numbers, plus
    the model's ``img_size`` and token ``grid``."""
    from . import Predictor
    from .data.photos import coins_dataset
    from .evaluate import box_prompts, point_prompts

    predictor = Predictor(model)
    grid = model.prompt_encoder.image_embedding_size[0]  # the embedding grid (64 x 64 at 512 px for tiny)
    scenes = held_out_scenes(n_scenes, size=model.img_size)
    large = held_out_scenes(n_scenes, size=model.img_size, min_area=TRAIN_MIN_AREA)
    coins = coins_dataset()
    out: Dict = {"img_size": model.img_size, "grid": grid}
    for name, data, mo in (("scenes", scenes, max_objects), ("scenes_large", large, max_objects),
                           ("coins", coins, None)):
        pts = point_prompts(predictor, data, n_points=(1, 3, 5), max_objects=mo, progress=progress)
        box = box_prompts(predictor, data, max_objects=mo, progress=progress)
        out[name] = {
            "points": pts.to_dict(), "box": box.to_dict(),
            "1pt_oracle": pts.value(selection="oracle", n_points=1),
            "1pt_confident": pts.value(selection="confident", n_points=1),
            "3pt": pts.value(selection="oracle", n_points=3),
            "5pt": pts.value(selection="oracle", n_points=5),
            "box_mIoU": float(box.rows[0]["mIoU"]),
            "objects": int(pts.rows[0]["objects"]),
            "box_fill_mIoU": box_fill_miou(data, mo),
            "grid_ceiling_mIoU": grid_ceiling_miou(data, grid, mo),
        }
    return out


def real_photo_figures(model, progress: bool = False, max_photos: Optional[int] = None,
                       refine: bool = False) -> Dict:
    """The real-photo set (:func:`samkit.data.photos.real_photo_dataset`, never trained on): 1, 3 and 5
    clicks (oracle of 3 and most confident), the tight box, the box filled in as the mask (no model), and
    how well the IoU head predicts the first click's true IoUs (all three masks): mean absolute error,
    correlation, and the pairs themselves (``iou_pairs``: predicted, true) for the calibration plot.
    ``refine``: every mask cut along the image's edges (``Predictor.predict(refine=True)``) before it is
    scored."""
    from . import Predictor
    from .data.photos import real_photo_dataset
    from .evaluate import box_prompts, point_prompts

    data = real_photo_dataset()[:max_photos]
    predictor = Predictor(model)
    pts = point_prompts(predictor, data, n_points=(1, 3, 5), progress=progress, refine=refine)
    box = box_prompts(predictor, data, progress=progress, refine=refine)
    from .data.photos import tight_boxes

    # the first click's three masks of each object (predicted and true IoUs) and the box IoUs, as the two
    # evaluations recorded them, in the order of the objects below
    box_ious, firsts = iter(box.per_object["box"]), iter(pts.first_clicks)
    pairs, per_object = [], []  # per object: area fraction, click (oracle of 3), box, box filled in
    for item in data:
        for gt in item["masks"]:
            if not gt.any():  # both evaluations skip empty masks too
                continue
            first = next(firsts)
            pairs += list(zip(first["scores"].tolist(), first["ious"].tolist()))
            x0, y0, x1, y1 = tight_boxes(gt[None])[0]
            per_object.append((gt.mean(), first["ious"].max(), next(box_ious),
                               gt.sum() / ((x1 - x0 + 1) * (y1 - y0 + 1))))
    pred, true = np.array(pairs).T
    per_object = np.array(per_object, dtype=float)
    token0 = {}
    decoder = model.mask_decoder
    if decoder.dynamic_multimask_via_stability and not refine:
        # the same boxes answered by mask token 0 alone (SAM 1's single mask), beside SAM 2's rule
        decoder.dynamic_multimask_via_stability = False
        try:
            ious = np.array(box_prompts(predictor, data, progress=False).per_object["box"])  # cached embeddings
        finally:
            decoder.dynamic_multimask_via_stability = True
        large = per_object[:, 0] >= SIZE_BANDS[-1][0]
        token0 = {"box_token0_mIoU": float(ious.mean()), "large_from": SIZE_BANDS[-1][0],
                  "box_token0_large_mIoU": float(ious[large].mean()) if large.any() else None,
                  "box_large_mIoU": float(per_object[large, 2].mean()) if large.any() else None}
    by_size = []
    for lo, hi in SIZE_BANDS:
        rows = per_object[(per_object[:, 0] >= lo) & (per_object[:, 0] < hi)]
        if len(rows):
            by_size.append({"low": lo, "high": hi, "objects": len(rows), "1pt_oracle": float(rows[:, 1].mean()),
                            "box_mIoU": float(rows[:, 2].mean()), "box_fill_mIoU": float(rows[:, 3].mean())})
    return {
        "objects": int(pts.rows[0]["objects"]), "images": len(data),
        "1pt_oracle": pts.value(selection="oracle", n_points=1),
        "1pt_confident": pts.value(selection="confident", n_points=1),
        "3pt": pts.value(selection="oracle", n_points=3), "5pt": pts.value(selection="oracle", n_points=5),
        "box_mIoU": float(box.rows[0]["mIoU"]), "box_fill_mIoU": box_fill_miou(data),
        "iou_mae": float(np.abs(pred - true).mean()), "iou_corr": float(np.corrcoef(pred, true)[0, 1]),
        "iou_pairs": [list(map(float, pq)) for pq in pairs], "by_size": by_size, **token0,
    }


def nested_pairs(masks: np.ndarray, max_part_fraction: float = 0.9) -> List[tuple]:
    """``(part, whole)`` index pairs of a scene's masks: ``whole`` is a mask inside no other, ``part`` a mask
    wholly inside it and at most ``max_part_fraction`` of its area (the nesting of objects made of parts)."""
    flat = masks.reshape(len(masks), -1)
    area = flat.sum(1)
    inside = (flat[:, None, :] & ~flat[None, :, :]).sum(2) == 0  # inside[i, j]: mask i lies within mask j
    np.fill_diagonal(inside, False)
    wholes = [j for j in range(len(masks)) if not inside[j].any()]
    return [(i, j) for j in wholes for i in range(len(masks))
            if inside[i, j] and area[i] <= max_part_fraction * area[j]]


def ambiguity_rate(model, n_scenes: int = 24, size: Optional[int] = None, threshold: float = 0.6,
                   seed: int = HELD_OUT_SEED, coherent_parts: float = 0.0, clipart_prob: float = 0.0) -> Dict:
    """The paper's ambiguity on held-out objects made of parts: a click at the centre of a part; a success
    when one of the three masks matches the part and another one the whole object (IoU >= ``threshold``
    each). Returns ``rate``, ``cases`` and the share of cases where some mask matches the part / the whole.
    ``coherent_parts``: the share of those objects drawn as one object under one light, parts of related dyes
    (:class:`~samkit.data.synthetic.SceneGenerator`'s option; 0, the card's figure, draws them as in training).
    ``clipart_prob``: the share of them that are Noto's emoji split into their drawn parts (the generator's
    option; fetched by :func:`samkit.data.clipart.fetch_clipart` when missing)."""
    from . import Predictor
    from .data.prompts import center_point
    from .data.synthetic import SceneGenerator
    from .evaluate import mask_iou

    clipart_dir = None
    if clipart_prob:
        from .data.clipart import fetch_clipart

        clipart_dir = fetch_clipart()
    gen = SceneGenerator(size=size or model.img_size, seed=seed, composite_prob=1.0,
                         min_area=TRAIN_MIN_AREA, coherent_parts=coherent_parts, clipart_dir=clipart_dir,
                         clipart_prob=clipart_prob)
    predictor = Predictor(model)
    hits = part_hits = whole_hits = cases = 0
    for i in range(n_scenes):
        image, masks = gen(i)
        pairs = nested_pairs(masks)
        if not pairs:
            continue
        predictor.set_image(image)
        for part, whole in pairs:
            point = np.array([center_point(masks[part])], dtype=np.float64)
            out, _, _ = predictor.predict(point_coords=point, point_labels=np.array([1]), multimask_output=True)
            ip = np.array([mask_iou(m, masks[part]) for m in out])
            iw = np.array([mask_iou(m, masks[whole]) for m in out])
            both = any(ip[a] >= threshold and iw[b] >= threshold for a in range(3) for b in range(3) if a != b)
            hits += both
            part_hits += ip.max() >= threshold
            whole_hits += iw.max() >= threshold
            cases += 1
    if not cases:
        return {"rate": float("nan"), "cases": 0, "part": float("nan"), "whole": float("nan")}
    return {"rate": hits / cases, "cases": cases, "part": part_hits / cases, "whole": whole_hits / cases}


def everything_figures(model, iou_threshold: float = 0.5, max_photos: Optional[int] = None) -> Dict:
    """Everything mode with the official default thresholds on the real photos: masks kept per photo and
    the share of annotated objects that some kept mask matches with IoU >= ``iou_threshold``."""
    from . import AutomaticMaskGenerator
    from .data.photos import real_photo_dataset
    from .evaluate import mask_iou

    generator = AutomaticMaskGenerator(model, progress=False)
    kept, found, objects = [], 0, 0
    for item in real_photo_dataset()[:max_photos]:
        records = generator.generate(item["image"])
        kept.append(len(records))
        for gt in item["masks"]:
            objects += 1
            found += any(mask_iou(r["segmentation"], gt) >= iou_threshold for r in records)
    return {"masks_per_photo": float(np.mean(kept)), "photos_with_masks": int(sum(k > 0 for k in kept)),
            "photos": len(kept), "recall": found / max(objects, 1), "objects": objects}


def calibration_figure(pairs: List[List[float]], out_path: Path) -> Path:
    """Predicted against true IoU of the first click's three masks on the real photos (the IoU head's
    calibration: on the diagonal when the head is right)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .viz import save_figure

    pred, true = np.array(pairs).T
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    ax.scatter(true, pred, s=12, alpha=0.6)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.axhline(0.88, color="tab:red", lw=1, ls=":", label="everything mode keeps above 0.88")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="true IoU with the object", ylabel="predicted IoU",
           title=f"IoU head on real photos: MAE {np.abs(pred - true).mean():.2f}, "
                 f"corr {np.corrcoef(pred, true)[0, 1]:+.2f}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path = save_figure(fig, out_path, dpi=120)
    plt.close(fig)
    return path


def shipped_state_dict(model) -> Dict[str, torch.Tensor]:
    """The weights as the package ships them: floating-point tensors stored as float16 (half the file; the
    model's weights all lie well inside float16's range), everything else unchanged. ``samkit.load_model``
    copies them into a float32 model, so inference runs in float32 as before."""
    return {k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach()).clone().contiguous()
            for k, v in model.state_dict().items()}


def install(model, path: Path) -> None:
    """Write ``model``'s weights as the package ships them (:func:`shipped_state_dict`) to ``path``, through a
    temporary file so that an interrupted install leaves the old weights whole, and load the float16-rounded
    weights back into ``model``, as ``samkit.load_model`` does: the card then measures the weights that ship."""
    shipped = shipped_state_dict(model)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(shipped, tmp)
    tmp.replace(path)
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in shipped.items()})


EXPERIMENTS = ("tiny", *UNSHIPPED)  # the embedded model and its trials


def load_candidate(checkpoint: str):
    """A model to score: ``"shipped"`` (the embedded tiny) or a weights / training-checkpoint file of
    ``tiny``, ``tiny_v2``, ``tiny_wide``, ``tiny_v1`` or ``tiny_hq`` (told apart by their encoders' parameters),
    in eval mode on the CPU."""
    from . import load_model
    from .checkpoints import guess_model_name, load_state_dict

    if checkpoint == "shipped":
        return load_model("tiny", device="cpu").eval()
    name, evidence = guess_model_name(load_state_dict(checkpoint))
    if name not in EXPERIMENTS:
        raise ValueError(f"{checkpoint}: not {', '.join(EXPERIMENTS[:-1])} or {EXPERIMENTS[-1]} weights ({evidence})")
    return load_model(name, checkpoint=checkpoint, device="cpu").eval()


def scene_figures(model, n_scenes: int = 16, max_objects: int = 150, seed: int = HELD_OUT_SEED) -> Dict:
    """1 click (oracle) and box mIoU on held-out generated scenes, objects of at least ``TRAIN_MIN_AREA``
    pixels: the model's skill where it was trained, to read beside the real photos (does a candidate learn,
    or does it only drift away from the photos?). ``seed`` picks the scenes (plain ones: no composite objects,
    no subject in front); a training run's own seed measures how well it fits what it saw."""
    from .evaluate import box_prompts, point_prompts

    data = held_out_scenes(n_scenes, size=model.img_size, seed=seed, min_area=TRAIN_MIN_AREA)
    pts = point_prompts(model, data, n_points=(1,), selection="oracle", max_objects=max_objects, progress=False)
    box = box_prompts(model, data, max_objects=max_objects, progress=False)
    return {"1pt_oracle": pts.value(selection="oracle", n_points=1), "box_mIoU": float(box.rows[0]["mIoU"]),
            "objects": int(pts.rows[0]["objects"])}


def quick_table(checkpoints: List[str], everything: bool = True, max_photos: Optional[int] = None,
                ambiguity_scenes: int = 24, scenes: int = 16, scenes_seed: int = HELD_OUT_SEED,
                refine: bool = False, ambiguity_coherent: float = 0.0, ambiguity_clipart: float = 0.0
                ) -> List[Dict]:
    """Score each checkpoint on the real photos (and ambiguity, everything mode): the numbers that choose
    the weights to ship. ``scenes`` held-out generated scenes add the same click and box figures where the
    model was trained (0: skip them). ``refine``: the real-photo masks refined with GrabCut.
    ``ambiguity_coherent`` > 0 adds the ambiguity on the same scenes with that share of their objects made of
    parts drawn as one object (:func:`ambiguity_rate`'s ``coherent_parts``), ``ambiguity_clipart`` > 0 with that
    share of them Noto's emoji (its ``clipart_prob``). Prints one row per checkpoint."""
    rows = []
    print("| weights | 1 click oracle | 1 click confident | 3 clicks | box | box filled | IoU MAE | IoU corr | "
          "ambiguity | everything: masks/photo, recall | scenes: 1 click oracle, box |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for ck in checkpoints:
        model = load_candidate(ck)
        r = real_photo_figures(model, max_photos=max_photos, refine=refine)
        r["scenes"] = scene_figures(model, n_scenes=scenes, seed=scenes_seed) if scenes else {}
        sc = r["scenes"]
        r["ambiguity"] = ambiguity_rate(model, n_scenes=ambiguity_scenes)
        if ambiguity_coherent:
            r["ambiguity_coherent"] = ambiguity_rate(model, n_scenes=ambiguity_scenes,
                                                     coherent_parts=ambiguity_coherent)
        if ambiguity_clipart:
            r["ambiguity_clipart"] = ambiguity_rate(model, n_scenes=ambiguity_scenes, clipart_prob=ambiguity_clipart)
        r["everything"] = everything_figures(model, max_photos=max_photos) if everything else {}
        e = r["everything"]
        print(f"| {ck} | {r['1pt_oracle']:.3f} | {r['1pt_confident']:.3f} | {r['3pt']:.3f} | {r['box_mIoU']:.3f} | "
              f"{r['box_fill_mIoU']:.3f} | {r['iou_mae']:.3f} | {r['iou_corr']:+.3f} | "
              f"{r['ambiguity']['rate']:.2f} (part {r['ambiguity']['part']:.2f}, whole "
              f"{r['ambiguity']['whole']:.2f}; {r['ambiguity']['cases']}) | "
              + (f"{e['masks_per_photo']:.1f}, {e['recall']:.2f} |" if e else "- |")
              + (f" {sc['1pt_oracle']:.3f}, {sc['box_mIoU']:.3f} |" if sc else " - |"), flush=True)
        print("  by object size (click, box, box filled): " + "; ".join(
            f"{100 * b['low']:.0f}-{min(100, 100 * b['high']):.0f}% ({b['objects']}) {b['1pt_oracle']:.2f}, "
            f"{b['box_mIoU']:.2f}, {b['box_fill_mIoU']:.2f}" for b in r["by_size"]), flush=True)
        if ambiguity_coherent:
            c = r["ambiguity_coherent"]
            print(f"  ambiguity, objects made of parts drawn as one object ({ambiguity_coherent:g}): {c['rate']:.2f} "
                  f"(part {c['part']:.2f}, whole {c['whole']:.2f}; {c['cases']})", flush=True)
        if ambiguity_clipart:
            c = r["ambiguity_clipart"]
            print(f"  ambiguity, objects made of parts that are emoji ({ambiguity_clipart:g}): {c['rate']:.2f} "
                  f"(part {c['part']:.2f}, whole {c['whole']:.2f}; {c['cases']})", flush=True)
        rows.append({"checkpoint": ck, **{k: v for k, v in r.items() if k != "iou_pairs"}})
    return rows


def grid_pool(mask: np.ndarray, grid: int) -> torch.Tensor:
    """``1 x 1 x grid x grid``: the mask's share of each cell of the embedding grid (the image padded
    square, as the model sees it)."""
    import torch.nn.functional as F

    h, w = mask.shape
    side = max(h, w)
    t = torch.zeros(1, 1, side, side)
    t[0, 0, :h, :w] = torch.from_numpy(np.asarray(mask)).float()
    return F.adaptive_avg_pool2d(t, grid)


def grid_ceiling_miou(data: List[Dict], grid: int, max_objects: Optional[int] = None) -> float:
    """How much of each mask survives the embedding's token grid: the mIoU of every mask average-pooled to
    ``grid x grid`` (:func:`grid_pool`) and upsampled back bilinearly."""
    import torch.nn.functional as F

    from .evaluate import mask_iou

    ious: List[float] = []
    for item in data:
        for m in item["masks"]:
            if max_objects is not None and len(ious) >= max_objects:
                return float(np.mean(ious))
            h, w = m.shape
            side = max(h, w)
            low = grid_pool(m, grid)
            back = (F.interpolate(low, (side, side), mode="bilinear", align_corners=False)[0, 0, :h, :w] > 0.5).numpy()
            ious.append(mask_iou(back, m))
    return float(np.mean(ious)) if ious else float("nan")


def box_fill_miou(data: List[Dict], max_objects: Optional[int] = None) -> float:
    """A baseline with no model: the mIoU of each object's bounding box, filled, as its mask."""
    ious = []
    for item in data:
        for m in item["masks"]:
            if max_objects is not None and len(ious) >= max_objects:
                return float(np.mean(ious))
            if m.any():
                x0, y0, x1, y1 = _box(m)
                ious.append(m.sum() / ((x1 - x0 + 1) * (y1 - y0 + 1)))
    return float(np.mean(ious)) if ious else float("nan")


def demo_figures(model, out_dir: Path) -> List[Path]:
    """Click and box results on the held-out real photos, one PNG per photo."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from . import Predictor
    from .data.photos import DEMO_PROMPTS, coins_instances, photo
    from .viz import contrasting_color, save_figure, show_box, show_mask, show_points

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in [*DEMO_PROMPTS, "coins"]:  # pictures of an earlier card, stored as PNG
        (out_dir / f"{name}.png").unlink(missing_ok=True)
    predictor = Predictor(model)
    paths = []
    for name, objects in DEMO_PROMPTS.items():
        image = photo(name)
        predictor.set_image(image)
        panel = 4.6  # inches per column; rows as tall as the photo's aspect, plus a title line
        height = panel * image.shape[0] / image.shape[1] + 0.35
        fig, axes = plt.subplots(3, len(objects), figsize=(panel * len(objects), 3 * height), squeeze=False)
        for j, (obj, pr) in enumerate(objects.items()):
            pt = np.array([pr["point"]], dtype=float)
            masks, scores, _ = predictor.predict(point_coords=pt, point_labels=np.array([1]))
            k = int(np.argmax(scores))
            ax = axes[0, j]
            ax.imshow(image)
            show_mask(masks[k], ax, color=contrasting_color(image, masks[k]))
            show_points(pt, np.array([1]), ax, marker_size=120)
            ax.set_title(f"{obj}: 1 click (IoU pred {scores[k]:.2f})", fontsize=10)
            box = np.array(pr["box"], dtype=float)
            masks, scores, _ = predictor.predict(box=box, multimask_output=False)
            ax = axes[1, j]
            ax.imshow(image)
            show_mask(masks[0], ax, color=contrasting_color(image, masks[0]))
            show_box(box, ax)
            ax.set_title(f"{obj}: box", fontsize=10)
            masks, _, _ = predictor.predict(box=box, multimask_output=False, refine=True)
            ax = axes[2, j]
            ax.imshow(image)
            show_mask(masks[0], ax, color=contrasting_color(image, masks[0]))
            show_box(box, ax)
            ax.set_title(f"{obj}: box, cut along edges", fontsize=10)
        for ax in axes.flat:
            ax.axis("off")
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / f"{name}.jpg", dpi=100))
        plt.close(fig)
    # coins: one click at each coin's centre
    from .data.prompts import center_point

    image, gt = coins_instances()
    predictor.set_image(image)
    fig, axes = plt.subplots(1, 2, figsize=(10, 5 * image.shape[0] / image.shape[1] + 0.4))
    for ax in axes:
        ax.imshow(image)
        ax.axis("off")
    for m in gt:
        x, y = center_point(m)
        masks, scores, _ = predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]))
        show_mask(masks[int(np.argmax(scores))], axes[0])
        masks, _, _ = predictor.predict(box=_box(m), multimask_output=False)
        show_mask(masks[0], axes[1])
    axes[0].set_title("coins: one click per coin (most confident of 3)", fontsize=10)
    axes[1].set_title("coins: one box per coin", fontsize=10)
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / "coins.jpg", dpi=100))
    plt.close(fig)
    return paths


def _box(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=float)


def training_summary(run_dir: Path) -> Dict:
    """Steps, images, wall time and final loss from a training run's metrics log and config."""
    import yaml

    info: Dict = {}
    if not (run_dir / "metrics.jsonl").exists():
        # a phase trained elsewhere: what the installed card recorded, and its config
        recorded = ASSETS / "card" / "figures.json"
        if recorded.exists():
            for ph in json.loads(recorded.read_text()).get("training", []):
                if ph.get("name") == run_dir.name:
                    info.update({k: v for k, v in ph.items() if k != "name"})
        config = Path(__file__).parents[1] / "configs" / f"{run_dir.name}.yaml"
        if config.exists():
            info["config"] = yaml.safe_load(config.read_text())
        return info
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        train = [r for r in rows if r.get("kind") == "train"]
        if train:
            info["steps"] = train[-1]["step"]
            info["seconds"] = train[-1].get("time")
            k = max(1, len(train) // 20)
            info["loss_start"] = float(np.mean([r["loss"] for r in train[:k]]))
            info["loss_end"] = float(np.mean([r["loss"] for r in train[-k:]]))
    cfg = run_dir / "config.yaml"
    if cfg.exists():
        info["config"] = yaml.safe_load(cfg.read_text())
    return info


def hours_text(seconds: float) -> str:
    """``"4 h 50 min"``, ``"45 min"``."""
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min"


def what_it_is(size: int, grid: int, n_params: int, first_model: Optional[str] = None,
               config: Optional[SamConfig] = None) -> str:
    """The card's first paragraph: the design of the carded model (``config``, by default the embedded
    ``tiny``'s) and where it grew from."""
    from .model.configs import ConvEncoderConfig, get_config

    config = config if config is not None else get_config("tiny")
    enc = config.encoder
    if isinstance(enc, ConvEncoderConfig):
        context = (f", with {enc.context_depth} global-attention blocks over the deepest stage's cells so that "
                   "every cell sees the whole image" if enc.context_depth else "")
        design = (f"a {size} px convolutional image encoder (residual stages {', '.join(map(str, enc.widths))} wide "
                  f"at strides 4, 8, 16 and 32{context}, merged top-down into a {grid} x {grid} embedding: 8 input "
                  "pixels per cell, the official models' grid)")
    else:
        design = (f"a {size} px ViT image encoder, {enc.patch_size} px patches ({grid} x {grid} tokens), "
                  f"{enc.embed_dim} wide, {enc.depth} blocks")
    grown = (" Its first phases train `tiny_v1`, samkit's first embedded model (a 6-block ViT with a 32 x 32 "
             "token grid), whose prompt encoder and decoder the convolutional model then grows from"
             + ("; the phases before the last train it without the attention blocks (`tiny_v2`), which the "
                "last phase adds." if getattr(enc, "context_depth", 0) else ".")
             if first_model == "tiny_v1" else "")
    return (f"**What it is.** A small Segment Anything model (samkit's `{config.name}` configuration: {design}, with "
            f"SAM's prompt encoder and a 96-wide mask decoder ({4 * grid} x {4 * grid} low-res logits); "
            f"{n_params / 1e6:.1f} M parameters) trained **from scratch** by samkit on **generated scenes only** "
            "(dead-leaves shapes and objects made of parts, textured with crops of scikit-image's sample "
            "pictures). It is shipped so that the kit runs offline on a CPU. It is *not* Meta's SAM and is far "
            "less accurate; for real work load the official weights: `samkit.load_model(\"vit_b\")`." + grown)


def write_card(path: Path, figures: Dict, phases: List[Dict], pictures: List[Path], n_params: int,
               checkpoint: str = "runs/tiny/model.pth", textures_seen: Sequence[str] = (),
               config: Optional[SamConfig] = None) -> None:
    s, c, g = figures["scenes"], figures["coins"], figures["scenes_large"]
    size, grid = figures["img_size"], figures["grid"]
    lines = [
        "# Model card: samkit's embedded `tiny` SAM",
        "",
        what_it_is(size, grid, n_params, phases[0].get("config", {}).get("model") if phases else None, config),
        "",
        "**How it was made.** `make train-tiny`: " + ", then ".join(
            f"`samkit train configs/{ph.get('name', '?')}.yaml`" for ph in phases)
        + " (each phase continues from the previous phase's weights with a fresh schedule on fresh scenes; "
        "a phase whose input side differs from the weights' resizes the position tables when it loads them"
        + ("; the first convolutional phase (`configs/tiny.yaml`) grows from `tiny_v1`'s weights: the prompt encoder "
           "and mask decoder carry over, the convolutional encoder starts from random weights"
           if any(ph.get("config", {}).get("model") == "tiny_v1" for ph in phases) else "")
        + ("; the last phase adds the encoder's attention blocks, whose output projections start at zero, so that "
           "its first step predicts what the phase before left"
           if len(phases) > 1 and phases[-1].get("config", {}).get("model") == "tiny"
           and phases[-2].get("config", {}).get("model") == "tiny_v2" else "")
        + "), on a 2-core CPU, then `python -m samkit.model_card " + checkpoint + " --install "
        + (f"--textures-seen {' '.join(textures_seen)} " if textures_seen else "") + "--runs "
        + " ".join(f"runs/{ph.get('name', '?')}" for ph in phases) + "`, which measured every figure below.",
        "",
        "| phase | config | input | data | steps | lr (peak, schedule) | time | loss start -> end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, ph in enumerate(phases, 1):
        cfg = ph.get("config", {})
        d = cfg.get("data", {})
        secs = ph.get("seconds")
        lines.append(
            f"| {i} | `{ph.get('name', '?')}` | {cfg.get('img_size') or size} px | {d.get('n_images', '?')} generated "
            f"scenes at {d.get('image_size', '?')} px (seed {d.get('seed', '?')}) | {ph.get('steps', '?')} x "
            f"{cfg.get('batch_size', '?')} images x {cfg.get('masks_per_image', '?')} masks, "
            f"{cfg.get('n_rounds', '?')} rounds | {cfg.get('lr', '?')}, {cfg.get('schedule', '?')} | "
            + (f"{secs / 60:.0f} min |" if secs else "? |"))
        lines[-1] += f" {ph.get('loss_start', float('nan')):.3f} -> {ph.get('loss_end', float('nan')):.3f} |"
    lines += [
        "",
        "Loss: the paper's 20 x focal + dice + IoU MSE. Hardware: this project's 2-core CPU (no GPU).",
        "",
        "## Figures (measured by `python -m samkit.model_card`)",
        "",
        "| data | objects | 1 click, oracle of 3 | 1 click, most confident | 3 clicks | 5 clicks | box | "
        f"box filled (no model) | masks through a {grid} x {grid} grid |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, f in ((f"held-out generated scenes at {size} px (seed {HELD_OUT_SEED}), all objects "
                      f"(the first {s['objects']} in scene order)", s),
                     (f"the same scenes, objects of at least {TRAIN_MIN_AREA} px (those it trains on; the first "
                      f"{g['objects']} of those)", g),
                     ("real photo `coins` (never seen; ground truth derived from the photo)", c)):
        lines.append(f"| {label} | {f['objects']} | {f['1pt_oracle']:.3f} | {f['1pt_confident']:.3f} | "
                     f"{f['3pt']:.3f} | {f['5pt']:.3f} | {f['box_mIoU']:.3f} | {f['box_fill_mIoU']:.3f} | "
                     f"{f.get('grid_ceiling_mIoU', float('nan')):.3f} |")
    r = figures.get("real_photos")
    if r:
        a, e = figures.get("ambiguity", {}), figures.get("everything", {})
        lines += [
            "",
            f"**Real photos it never saw** ({r['objects']} objects outlined by hand in {r['images']} photos that ship "
            "with scikit-image and matplotlib: people, a cat, a cup, a motorcycle and its parts, "
            "`samkit.data.photos.real_photo_dataset`; the weights to ship are chosen on these):",
            "",
            "| masks | 1 click, oracle of 3 | 1 click, most confident | 3 clicks | 5 clicks | box | "
            "box filled (no model) | IoU head: mean abs. error, correlation |",
            "|---|---|---|---|---|---|---|---|",
        ]
        rr = figures.get("real_photos_refined")
        for label, f in (("the model's", r), ("cut along the photo's edges (`refine=True`)", rr)):
            if f:
                lines.append(f"| {label} | {f['1pt_oracle']:.3f} | {f['1pt_confident']:.3f} | {f['3pt']:.3f} | "
                             f"{f['5pt']:.3f} | {f['box_mIoU']:.3f} | {f['box_fill_mIoU']:.3f} | "
                             f"{f['iou_mae']:.3f}, {f['iou_corr']:+.2f} |")
        lines.append("")
        if "box_token0_mIoU" in r:
            lines += [
                "A box asks for one mask. This model answers it by SAM 2's single-mask rule (its configuration's "
                "`dynamic_multimask_via_stability`): mask token 0 when that mask is stable, otherwise the best of "
                f"its three multimask outputs. Mask token 0 alone, as SAM 1 answers, scores {r['box_token0_mIoU']:.3f} "
                "on these boxes"
                + (f" ({r['box_token0_large_mIoU']:.3f} on the objects over {100 * r['large_from']:.0f}% of their "
                   f"photo, against {r['box_large_mIoU']:.3f} by the rule)." if r["box_large_mIoU"] is not None
                   else "."),
                "",
            ]
        if rr:
            lines += [
                "The second row cuts every mask along the photo's edges (`Predictor.predict(..., refine=True)`, "
                "`samkit.refine`): OpenCV's GrabCut fits colour models of the object and its surroundings for that "
                "one photo, seeded by the model's mask and the prompts. It is not part of SAM, and it is off unless "
                "asked for; notebooks 05 and 06 turn it on for this model (06 ticks the click widget's *Cut along "
                "edges* box). Its IoU column compares the model's predictions with the cut masks.",
                "",
            ]
        if r.get("by_size"):
            cut = {b["low"]: b for b in rr["by_size"]} if rr else {}
            lines += ["By object size (area as a share of its photo; 1 click oracle of 3, box, and the box filled in"
                      + ("; then the same cut along the photo's edges" if cut else "") + "):", "",
                      "| object size | objects | 1 click | box | box filled (no model) |"
                      + (" 1 click, cut | box, cut |" if cut else ""),
                      "|---|---|---|---|---|" + ("---|---|" if cut else "")]
            for b in r["by_size"]:
                c = cut.get(b["low"])
                lines.append(f"| {100 * b['low']:.0f}-{min(100, 100 * b['high']):.0f}% | {b['objects']} | "
                             f"{b['1pt_oracle']:.3f} | {b['box_mIoU']:.3f} | {b['box_fill_mIoU']:.3f} |"
                             + (f" {c['1pt_oracle']:.3f} | {c['box_mIoU']:.3f} |" if c else ""))
            lines.append("")
        rounds = phases[-1].get("config", {}).get("n_rounds") if phases else None
        if r["5pt"] < r["3pt"] or r["3pt"] < r["1pt_oracle"]:
            lines += [
                f"More clicks do not help on these photos: {r['1pt_oracle']:.3f} after one (oracle of 3), "
                f"{r['3pt']:.3f} after three, {r['5pt']:.3f} after five. "
                + (f"Its last phase simulates {rounds} rounds of the paper's interactive training (a first prompt "
                   f"and {rounds - 1} correcting click{'s' if rounds > 2 else ''}), so it has hardly learned to "
                   "use a longer chain of clicks and fed-back masks." if rounds else ""),
                "",
            ]
        else:
            lines += [
                f"More clicks help: {r['1pt_oracle']:.3f} after one (oracle of 3), {r['3pt']:.3f} after three, "
                f"{r['5pt']:.3f} after five."
                + (f" Its last phase simulates {rounds} rounds of the paper's interactive training." if rounds else ""),
                "",
            ]
        lines += [
            "![IoU head calibration](card/calibration.png)",
            "",
        ]
        if a:
            lines.append(
                f"**Ambiguity** (held-out generated objects made of parts, a click at the centre of a part, "
                f"{a['cases']} cases): one mask matches the part and another the whole object (IoU >= 0.6 each) in "
                f"{100 * a['rate']:.0f}% of the cases; some mask matches the part in {100 * a['part']:.0f}%, the "
                f"whole in {100 * a['whole']:.0f}%.")
        if e:
            lines.append(
                f"**Everything mode** with the official thresholds (predicted IoU > 0.88, stability >= 0.95) on the "
                f"{e['photos']} photos: {e['masks_per_photo']:.1f} masks per photo; {100 * e['recall']:.0f}% of the "
                f"{e['objects']} outlined objects are matched by a kept mask with IoU >= 0.5.")
    lines += [
        "",
        "The scenes are hard on purpose (clutter, heavy occlusion, photo textures inside objects); the generator "
        f"keeps objects down to 0.05% of the image, and training skips masks under {TRAIN_MIN_AREA} px (0.2%), so the "
        "second row shows the objects of that size. \"Box filled\" is the mIoU of the object's box itself used as "
        "its mask: the bar that a box prompt must beat to be useful. The last column is a ceiling that no model "
        f"of this shape can pass by much: each true mask average-pooled to the {grid} x {grid} embedding grid and "
        "upsampled back (the decoder sees the image only through that grid; its upscaling can sharpen edges, "
        "not recover objects smaller than a cell).",
        "",
        "Clicks follow the paper's protocol (§7.1): the first at the centre of the object (maximum of the "
        "distance transform), the next ones in the largest error region, with the previous mask fed back.",
        "",
        "## Pictures on real photos it never saw",
        "",
        ("Every evaluation photo is excluded from the texture pool of the training scenes "
         "(`samkit.data.synthetic.DEFAULT_EXCLUDE`). " if not textures_seen else
         "The texture pool of the training scenes now excludes every evaluation photo "
         "(`samkit.data.synthetic.DEFAULT_EXCLUDE`), but "
         + ("the first phases of these weights (`tiny_v1`'s) were" if any(
             ph.get("config", {}).get("model") == "tiny_v1" for ph in phases) else "these weights were")
         + " trained before "
         + " and ".join(f"`{t}`" for t in textures_seen) + " joined that list: crops of "
         + ("that photo" if len(textures_seen) == 1 else "those photos")
         + " appeared as textures in their training scenes, which may flatter the figures of their objects. ")
        + "In each photo's picture, top row: one click (green star) and the most confident of its three masks; "
          "middle row: a box; bottom row: the same box with the mask cut along the photo's edges (`refine=True`). "
          "`coins`: one click per coin (left) and one box per coin (right).",
        "",
    ]
    lines += [f"![{p.stem}](card/{p.name})" for p in pictures]
    lines += ["", "## Limitations", "",
              f"Trained for about {hours_text(sum(ph.get('seconds') or 0 for ph in phases))} on a 2-core CPU, "
              "on synthetic data only: it roughly follows colour "
              "and texture boundaries, but has no notion of object categories, misses thin structures, and its "
              f"masks are coarse ({4 * grid} x {4 * grid} low-res logits for a {size} px input, from a {grid} x "
              f"{grid} embedding grid). Use it to learn the kit, not to measure SAM."]
    path.write_text("\n".join(lines) + "\n")


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m samkit.model_card", description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint", nargs="+",
                    help="a trained tiny, tiny_v2, tiny_wide, tiny_v1 or tiny_hq checkpoint (training checkpoint or "
                         "state dict); with --quick, several ('shipped' names the installed weights)")
    ap.add_argument("--quick", action="store_true",
                    help="only print the real-photo, ambiguity and everything-mode figures of each checkpoint")
    ap.add_argument("--no-everything", action="store_true", help="with --quick: skip everything mode")
    ap.add_argument("--refine", action="store_true",
                    help="with --quick: real-photo masks refined with GrabCut (Predictor.predict(refine=True))")
    ap.add_argument("--photos", type=int, default=None, help="use only the first N real photos (a quick check)")
    ap.add_argument("--ambiguity-scenes", type=int, default=24, help="held-out scenes of objects made of parts")
    ap.add_argument("--ambiguity-coherent", type=float, default=0.0, metavar="SHARE",
                    help="with --quick: also the ambiguity on those scenes with this share of their objects made of "
                         "parts drawn as one object (data.coherent_parts)")
    ap.add_argument("--ambiguity-clipart", type=float, default=0.0, metavar="SHARE",
                    help="with --quick: also the ambiguity on those scenes with this share of their objects made of "
                         "parts drawn from Noto's emoji (data.clipart_prob; python -m samkit.data.clipart)")
    ap.add_argument("--scenes", type=int, default=16,
                    help="with --quick: held-out generated scenes for the in-domain click and box figures (0: skip)")
    ap.add_argument("--scenes-seed", type=int, default=HELD_OUT_SEED,
                    help="with --quick: the generator seed of those scenes (a run's own data.seed: how well it fits "
                         "its training scenes)")
    ap.add_argument("--textures-seen", nargs="*", default=[],
                    help="evaluation photos whose crops were textures when these weights were trained (the card "
                         "says so)")
    ap.add_argument("--install", action="store_true", help="copy the weights to samkit/assets/sam_tiny.pt")
    ap.add_argument("--n-scenes", type=int, default=40)
    ap.add_argument("--max-objects", type=int, default=400)
    ap.add_argument("--out", default=str(ASSETS))
    ap.add_argument("--runs", nargs="*", help="training run folders to summarise (default: the checkpoint's)")
    args = ap.parse_args(argv)
    if args.quick:
        quick_table(args.checkpoint, everything=not args.no_everything, max_photos=args.photos,
                    ambiguity_scenes=args.ambiguity_scenes, scenes=args.scenes,
                    scenes_seed=args.scenes_seed, refine=args.refine, ambiguity_coherent=args.ambiguity_coherent,
                    ambiguity_clipart=args.ambiguity_clipart)
        return
    if len(args.checkpoint) != 1:
        ap.error("give one checkpoint (several only with --quick)")
    args.checkpoint = args.checkpoint[0]

    torch.manual_seed(0)
    model = load_candidate(args.checkpoint)
    if args.install and model.name != "tiny":
        ap.error(f"{args.checkpoint} holds {model.name} weights; only tiny weights install as the embedded model")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.install:
        install(model, out / "sam_tiny.pt")
    t0 = time.time()
    figures = evaluate_model(model, args.n_scenes, args.max_objects)
    figures["real_photos"] = real_photo_figures(model, progress=True, max_photos=args.photos)
    figures["real_photos_refined"] = real_photo_figures(model, progress=True, max_photos=args.photos, refine=True)
    figures["ambiguity"] = ambiguity_rate(model, n_scenes=args.ambiguity_scenes)
    figures["everything"] = everything_figures(model, max_photos=args.photos)
    pictures = demo_figures(model, out / "card")
    calibration_figure(figures["real_photos"]["iou_pairs"], out / "card" / "calibration.png")
    run_dirs = [Path(d) for d in args.runs] if args.runs else [Path(args.checkpoint).resolve().parent]
    phases = []
    for d in run_dirs:
        info = training_summary(d)
        info["name"] = d.name
        phases.append(info)
    n_params = sum(p.numel() for p in model.parameters())
    write_card(out / "MODEL_CARD.md", figures, phases, pictures, n_params,
               checkpoint=Path(args.checkpoint).as_posix(), textures_seen=args.textures_seen, config=model.config)
    (out / "card" / "figures.json").write_text(json.dumps(
        {"scenes": {k: v for k, v in figures["scenes"].items() if not isinstance(v, dict)},
         "scenes_large": {k: v for k, v in figures["scenes_large"].items() if not isinstance(v, dict)},
         "coins": {k: v for k, v in figures["coins"].items() if not isinstance(v, dict)},
         "real_photos": {k: v for k, v in figures["real_photos"].items() if k != "iou_pairs"},
         "real_photos_refined": {k: v for k, v in figures["real_photos_refined"].items() if k != "iou_pairs"},
         "ambiguity": figures["ambiguity"], "everything": figures["everything"],
         "training": [{k: v for k, v in ph.items() if k != "config"} for ph in phases]}, indent=2))
    print((out / "MODEL_CARD.md").read_text())
    print(f"evaluated in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
