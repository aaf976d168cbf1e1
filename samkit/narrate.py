"""The sentences the course notebooks say about their results, written from the numbers of the run.

Every function takes plain numbers (what a notebook measured, and the paper's values from
:mod:`samkit.paper`) and returns Markdown. Which sentence is said is chosen by the numbers: a flat curve, an
empty result or a baseline above the model is named as such, with the reason the numbers show. Notebooks
call them through ``Session.say(narrate.<function>, **numbers)``, which stores the numbers next to the text;
``tests/notebooks`` re-renders every stored sentence from its stored numbers.

Conventions: IoU and mIoU as fractions in [0, 1] unless the name says ``_pct``; ``None`` for "not measured".
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import paper


def pct(x: float, digits: int = 0) -> str:
    """``0.943 -> '94%'``."""
    return f"{100 * x:.{digits}f}%"


def num(x: Optional[float], digits: int = 3) -> str:
    """A number with ``digits`` decimals, ``'–'`` for None or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def seconds(s: float) -> str:
    """``0.0123 -> '12 ms'``, ``75 -> '75 s'``, ``500 -> '8.3 min'``."""
    if s < 1:
        return f"{s * 1e3:.0f} ms"
    if s < 120:
        return f"{s:.0f} s" if s >= 10 else f"{s:.1f} s"
    return f"{s / 60:.1f} min"


def _model(model: str, weights: str) -> str:
    return {"embedded": f"the embedded `{model}` teaching model", "official": f"Meta's `{model}`",
            "checkpoint": f"`{model}` with the given checkpoint", "random": f"`{model}` with random weights"
            }.get(weights, f"`{model}`")


# ================================================================================================ 01 · IoU
def iou_area(n_masks: int, n_scenes: int, share_all: float, share_small: Optional[float],
             share_large: Optional[float], n_small: int, n_large: int) -> str:
    """The share of masks that keep IoU > 0.9 when grown by one pixel, overall and by object size."""
    text = (f"Over **{n_masks} masks** from {n_scenes} generated scenes, growing a mask by one pixel keeps its "
            f"IoU above 0.9 for **{pct(share_all)}** of them.")
    if n_small == 0 or n_large == 0:
        missing = "under 32² px" if n_small == 0 else "of at least 96² px"
        return text + (f" None of these masks is {missing}, so this run cannot compare small and large objects; "
                       "the scatter plot still shows the trend with area.")
    if share_small < share_large:
        return text + (f" For the {n_small} objects under 32² px the share is {pct(share_small)}, for the "
                       f"{n_large} of at least 96² px it is {pct(share_large)}: the same one-pixel error costs a "
                       "small object much more IoU.")
    return text + (f" Here the {n_small} small objects (under 32² px) keep {pct(share_small)} and the {n_large} "
                   f"large ones {pct(share_large)}: the scenes' smallest masks are not small enough for the "
                   "one-pixel penalty to show.")


def stability_synthetic(steep: float, shallow: float, threshold: float = paper.AMG.value["stability_thresh"],
                        offset: float = paper.AMG.value["stability_offset"]) -> str:
    """The synthetic example: the same disk with steep and with shallow logits."""
    keeps = [name for name, s in (("steep", steep), ("shallow", shallow)) if s >= threshold]
    verdict = ("both pass" if len(keeps) == 2 else "neither passes" if not keeps
               else f"only the {keeps[0]} one passes")
    return (f"The same disk, once with **steep** logits (they rise fast away from the boundary) and once with "
            f"**shallow** ones: stability {num(steep)} and {num(shallow)} at offset ±{offset:g}. Against the "
            f"data engine's threshold of {threshold:g}, {verdict}. Stability measures how far the logits are "
            "from the threshold near the boundary, not whether the mask is right.")


def stability(model: str, weights: str, predicted_iou: float, score: float, max_logit: float,
              area_minus: int, area_zero: int, area_plus: int, iou_thresh: float = paper.AMG.value["pred_iou_thresh"],
              stability_thresh: float = paper.AMG.value["stability_thresh"]) -> str:
    """The stability score of one mask the model predicted, with the reason when it is degenerate."""
    who = _model(model, weights)
    head = f"With {who}, one click gives a mask of predicted IoU **{num(predicted_iou)}**. "
    if area_zero == 0:
        return head + (f"The mask is empty: no logit is above 0 (the largest is {max_logit:.2f}), so the stability "
                       f"score ({num(score)}) measures nothing. The automatic mask generator would drop it.")
    sizes = f"Thresholded at −1, 0 and +1 it covers {area_minus:,}, {area_zero:,} and {area_plus:,} pixels"
    if area_plus == 0:
        return head + (f"{sizes}: at +1 it is **empty**, because the largest logit is {max_logit:.2f}, below +1. "
                       f"The intersection of the two masks is empty, so the stability score is **{num(score)}**. "
                       "This model's logits barely cross the threshold: its masks are soft at every pixel, and "
                       f"a filter at {stability_thresh:g} rejects them (in notebook 05 everything mode keeps no "
                       "mask for the same reason). The synthetic example above shows what confident logits give.")
    keep_s = score >= stability_thresh
    keep_i = predicted_iou > iou_thresh
    verdict = ("the data engine would keep this mask" if keep_s and keep_i else
               "the data engine would drop it: " + " and ".join(
                   ([f"stability below {stability_thresh:g}"] if not keep_s else []) +
                   ([f"predicted IoU not above {iou_thresh:g}"] if not keep_i else [])))
    return head + (f"{sizes}; the stability score is {area_plus:,} / {area_minus:,} = **{num(score)}**, so "
                   f"{verdict}.")


def sa1b_scale(our_masks_per_image: float, our_min: int, our_max: int, n_scenes: int, scene_size: int,
               our_median_relative_size: float, regions_min: float, regions_max: float) -> str:
    """Our generated scenes beside SA-1B's counts (Table 1 and §5)."""
    s = paper.SA1B.value
    lo, hi = paper.MASKS_PER_IMAGE_REGION.value
    agree = ("as the paper states" if (round(regions_min), round(regions_max)) == (lo, hi) else
             f"from the table's rounded counts; the paper states {lo}-{hi}")
    return (f"SA-1B holds {s['masks'] / 1e9:.1f}B masks on {s['images'] / 1e6:.0f}M images, about "
            f"{s['masks_per_image']} masks per image (§1, §5); the region counts of Table 1 give "
            f"{regions_min:.0f}-{regions_max:.0f} masks per image, {agree}. "
            f"{pct(s['automatic_share'], 1)} of the masks were made fully automatically. Our {n_scenes} generated "
            f"scenes of {scene_size} px carry {our_masks_per_image:.1f} masks per image ({our_min}-{our_max}); "
            f"the median mask's side is {pct(our_median_relative_size)} of the image side.")


def pair_agreement(n_pairs: int, share90: float, share75: float, share90_small: Optional[float],
                   share90_large: Optional[float], n_small: int, n_large: int) -> str:
    """Simulated corrections beside the paper's 94% / 97% (§5)."""
    q = paper.MASK_QUALITY.value
    text = (f"Of our **{n_pairs} simulated pairs**, {pct(share90)} have IoU above 0.90 and {pct(share75)} above "
            f"0.75. The paper measured {pct(q['iou_above_0.90'])} and {pct(q['iou_above_0.75'])} "
            f"({paper.MASK_QUALITY.cite()}).")
    if n_small and n_large and share90_small is not None and share90_large is not None:
        if share90_large > share90_small:
            text += (f" Size decides: {pct(share90_large)} of the large objects but {pct(share90_small)} of the "
                     "small ones pass 0.90 with the same kind of correction, so a figure like "
                     + pct(q["iou_above_0.90"]) + " says the "
                     "masks are mostly large in pixels and differ by a thin band along the boundary.")
        else:
            text += (f" Here small ({pct(share90_small)}) and large objects ({pct(share90_large)}) pass 0.90 "
                     "about equally: the simulated corrections are too coarse for size to matter.")
    return text


def geography() -> str:
    """Table 1 read out: where SA-1B's images come from, beside COCO and Open Images."""
    rows = {r["region"]: r for r in paper.GEOGRAPHY.value}
    regions = [r for r in paper.GEOGRAPHY.value if "income" not in r["region"]]
    top = sorted(regions, key=lambda r: -r["share_sa1b"])[:2]
    per_image = [r["masks"] / r["images"] for r in regions]
    africa, na = rows["Africa"], rows["North America"]
    low = rows["low income countries"]
    return (f"{top[0]['region']} and {top[1]['region']} hold {pct(top[0]['share_sa1b'] + top[1]['share_sa1b'])} of "
            f"SA-1B's located images, while North America holds {pct(na['share_coco'])} of COCO's and "
            f"{pct(na['share_open_images'])} of Open Images'. Africa ({pct(africa['share_sa1b'], 1)}) and low "
            f"income countries ({pct(low['share_sa1b'], 1)}) are under-represented in all three, yet every region "
            f"has at least {min(r['masks'] for r in regions) / 1e6:.0f}M masks in SA-1B. Masks per image vary "
            f"little by region ({min(per_image):.0f}-{max(per_image):.0f}), from the table's own counts.")


def _overlap(a, b) -> bool:
    return a[0] - a[1] <= b[0] + b[1] and b[0] - b[1] <= a[0] + a[1]


def fairness() -> str:
    """Table 2 read out: spreads between groups and which 95% intervals overlap, computed from the table."""
    out = []
    groups: Dict[str, List[dict]] = {}
    for r in paper.FAIRNESS_PEOPLE.value:
        groups.setdefault(r["group"], []).append(r)
    disjoint = []
    for group, rows in groups.items():
        ones = [r["miou_1"][0] for r in rows]
        threes = [r["miou_3"][0] for r in rows]
        out.append(f"{group}: {min(ones):.1f}-{max(ones):.1f} at 1 point, {min(threes):.1f}-{max(threes):.1f} at 3")
        for k in ("miou_1", "miou_3"):
            for i in range(len(rows)):
                for j in range(i + 1, len(rows)):
                    if not _overlap(rows[i][k], rows[j][k]):
                        disjoint.append((f"{rows[i]['value']} vs {rows[j]['value']}", k[-1]))
    pairs = {}
    for pair, points in disjoint:
        pairs.setdefault(pair, []).append(points)
    which = ("every pair of 95% intervals overlaps" if not pairs else
             "the 95% intervals overlap for every pair but " + ", ".join(
                 f"{pair} (at {' and '.join(p)} point{'s' if p != ['1'] else ''})" for pair, p in pairs.items()))
    gains = [r["miou_3"][0] - r["miou_1"][0] for r in paper.FAIRNESS_PEOPLE.value]
    return (f"mIoU of SAM by group ({paper.FAIRNESS_PEOPLE.cite()}): " + "; ".join(out) + f". Within each grouping "
            f"{which}. From 1 to 3 points every group gains {min(gains):.1f}-{max(gains):.1f} points: the group "
            "matters far less than the number of clicks.")


# ================================================================================================ 02 · architecture
def zero_shot_overview() -> str:
    """The paper's zero-shot experiments read from its tables: where SAM stands against trained baselines."""
    wins, total = paper.point_wins()
    edges = {r["method"]: r for r in paper.EDGES.value}
    props = {r["method"]: r for r in paper.PROPOSALS.value}
    inst = {r["method"]: r for r in paper.INSTANCES.value}
    above_props = [k for k in ("small", "med.", "large", "freq.", "com.", "rare")
                   if props["SAM"][k] > props["ViTDet-H"][k]]
    return (f"Zero-shot, SAM is above the interactive baseline RITM on {wins} of {total} data sets with one point "
            f"(Fig. 9a); on BSDS500 edges its ODS {edges['SAM']['ODS']:.3f} is "
            f"{edges['HED']['ODS'] - edges['SAM']['ODS']:.3f} "
            f"below HED, which was trained on BSDS500, and {edges['SAM']['ODS'] - edges['Canny']['ODS']:.3f} above "
            f"Canny (Table 3); as object proposals its AR@1000 is {props['SAM']['all']} against "
            f"{props['ViTDet-H']['all']} for ViTDet-H trained on LVIS, but higher on {', '.join(above_props)} "
            f"objects (Table 4); as the mask head of a detector its COCO mask AP is {inst['SAM']['COCO AP']} against "
            f"ViTDet's {inst['ViTDet-H']['COCO AP']} (Table 5). Close to, and sometimes above, models trained for "
            "each task: that is what the paper means by zero-shot transfer.")


def encoder_shapes(model: str, img_size: int, patch: int, grid: int, width: int, depth: int, window: int,
                   padded_grid: int, n_windows: int, global_blocks: List[int], out_chans: int,
                   seconds_one_image: float, device: str) -> str:
    """What the encoder did to one image in this run, from its configuration."""
    glob = ", ".join(str(b) for b in global_blocks)
    return (f"`{model}`: the {img_size} x {img_size} input becomes a **{grid} x {grid} grid** of {width}-channel "
            f"tokens ({patch} x {patch} patches). Of its {depth} blocks, block{'s' if len(global_blocks) > 1 else ''} "
            f"{glob} attend{'s' if len(global_blocks) == 1 else ''} globally ({grid * grid:,} tokens see each other); "
            f"the others attend inside {window} x {window} windows (the grid is padded to {padded_grid} x "
            f"{padded_grid}: {n_windows} windows). The neck returns a **{out_chans} x {grid} x {grid}** embedding. "
            f"This pass took {seconds(seconds_one_image)} on {device}, once per image.")


def ambiguity(model: str, weights: str, pairwise_iou: List[float], scores: List[float], areas: List[int],
              containment: List[float], outlined: Sequence[Tuple[str, List[float]]] = ()) -> str:
    """Are the three masks of one click different answers, or one answer three times?

    ``pairwise_iou`` and ``containment`` (intersection / smaller area) for the pairs (1, 2), (1, 3), (2, 3).
    ``outlined``: the hand-drawn objects under the click, largest first, each with the three masks' IoU with it
    (``samkit.data.photos.objects_at``); with them the text says which objects the masks found, not only their shapes.
    """
    who = _model(model, weights)
    lo, hi = min(pairwise_iou), max(pairwise_iou)
    sizes = ", ".join(f"{a:,}" for a in areas)
    text = (f"With {who}, the three masks cover {sizes} pixels, with predicted IoU "
            f"{', '.join(num(s, 2) for s in scores)}; their pairwise IoU is {num(lo, 2)}-{num(hi, 2)}. ")
    if outlined:
        found = "; ".join(f"the {name}: best IoU {num(max(ious), 2)} (mask {list(ious).index(max(ious)) + 1})"
                          for name, ious in outlined)
        text += f"Against the hand-drawn outline{'s' if len(outlined) > 1 else ''} under the click, {found}. "
        whole, whole_ious = outlined[0]
        if max(whole_ious) < 0.6 and lo <= 0.7:
            return text + (f"The masks differ from each other, but none of them is the whole {whole} (IoU 0.6 or "
                           f"more): they stop at pieces of the {whole}, so of the design's three answers (subpart, "
                           "part and whole) the whole is missing. The paper's Fig. 3 shows SAM's three nested answers.")
    if lo > 0.7:
        return text + (f"They are **{'' if lo > 0.9 else 'nearly '}the same mask three times** (one answer, with "
                       "different edges and stray pieces): this model has not learned to split an ambiguous click "
                       "into subpart, part and whole, so its three tokens answer alike. The paper's Fig. 3 shows what "
                       "the ambiguity-aware outputs of SAM look like (three nested, different masks).")
    if hi > 0.75:
        return text + (f"Two of them are {'nearly the same mask' if hi > 0.9 else 'much alike'} (IoU {num(hi, 2)}); "
                       f"the third is a different answer (IoU {num(lo, 2)} with one of them).")
    if min(containment) > 0.8:
        return text + (f"They are **three different, nested answers** (each smaller mask lies at least "
                       f"{pct(min(containment))} inside the larger ones), the shape the ambiguity-aware design "
                       "intends: subpart inside part inside whole (the paper's Fig. 3).")
    return text + (f"They are three different masks, but not nested the way the design intends (subpart inside part "
                   f"inside whole): as little as {pct(min(containment))} of a smaller mask lies inside a larger one. "
                   "The paper's Fig. 3 shows SAM's nested answers.")


def parameter_split(rows: List[Dict[str, Any]]) -> str:
    """Where the parameters are, from the table of every configuration."""
    official = [r for r in rows if r["model"] in ("vit_b", "vit_l", "vit_h")]
    light = [r["prompt encoder (M)"] + r["mask decoder (M)"] for r in official]
    shares = [r["image encoder (M)"] / r["total (M)"] for r in official]
    light_text = (f"{min(light):.1f}" if f"{min(light):.1f}" == f"{max(light):.1f}" else
                  f"{min(light):.1f}-{max(light):.1f}")
    return (f"In Meta's three models (ViT-B, ViT-L, ViT-H) the prompt encoder and mask decoder together hold "
            f"{light_text} M parameters whatever the encoder; the image encoder is {pct(min(shares), 1)}-"
            f"{pct(max(shares), 1)} of the total.")


def timing(model: str, device: str, encoder_s: float, decoder_s: float, predict_s: float,
           big_model: Optional[str] = None, big_encoder_s: Optional[float] = None) -> str:
    """Time per component on this machine, beside the paper's ~50 ms per prompt in a browser."""
    ms = paper.EFFICIENCY.value["prompt_decoder_ms_browser_cpu"]
    text = (f"Here, with `{model}` on {device}, the image encoder takes {seconds(encoder_s)} once per image and a "
            f"click costs {seconds(predict_s)} (prompt encoder + decoder {seconds(decoder_s)}), "
            f"{encoder_s / max(predict_s, 1e-9):.0f}x less than the encoder. ")
    text += (f"A click {'is within' if predict_s * 1e3 <= ms else 'is slower than'} the paper's ~{ms} ms per prompt "
             "in a web browser on a CPU (§3). ")
    if predict_s < decoder_s:
        text += (f"The full `predict()` ({seconds(predict_s)}) beats the plain prompt encoder + decoder "
                 f"({seconds(decoder_s)}) although it also upsamples the masks: the predictor runs the model "
                 "through `samkit.fast`, which keeps what depends only on the image between clicks (section 7). ")
    if big_model and big_encoder_s:
        text += (f"The `{big_model}` encoder took {seconds(big_encoder_s)} for one image on this machine: with a "
                 "heavy encoder the whole model is not real-time, only each click is (the paper's §8 says so "
                 "too).")
    return text


# ================================================================================================ 03 · training
def loss_example(rows: List[Dict[str, Any]]) -> str:
    """The worked example of the two mask losses: ``rows`` of ``{case, focal, dice}`` (per mask)."""
    w = paper.LOSS.value["focal"]
    ranked_f = sorted(rows, key=lambda r: -r["focal"])
    ranked_d = sorted(rows, key=lambda r: -r["dice"])
    text = (f"Focal loss is an average over **pixels**: it is largest for '{ranked_f[0]['case']}' "
            f"({num(ranked_f[0]['focal'], 4)}) and ranks the cases {', '.join(repr(r['case']) for r in ranked_f)}. "
            f"Dice is a ratio of **areas**: it is largest for '{ranked_d[0]['case']}' ({num(ranked_d[0]['dice'])}) "
            f"and ranks them {', '.join(repr(r['case']) for r in ranked_d)}. ")
    small = next((r for r in rows if r["case"].startswith("small object missed")), None)
    large = next((r for r in rows if r["case"].startswith("large object missed")), None)
    if small and large:
        text += (f"Missing a small object costs {num(small['focal'] / max(large['focal'], 1e-12), 2)}x the focal loss "
                 f"of missing a large one but {num(small['dice'] / max(large['dice'], 1e-12), 2)}x the dice loss: dice "
                 "does not care how big the object is, focal does. ")
    ratios = {r["case"]: w * r["focal"] / r["dice"] for r in rows if r["dice"] > 1e-3 and r["focal"] > 1e-3}
    if ratios:
        lo, hi = min(ratios, key=ratios.get), max(ratios, key=ratios.get)
        text += (f"With the paper's weights ({w} x focal + 1 x dice) the focal term is {ratios[lo]:.2f}x the dice "
                 f"term for '{lo}' and {ratios[hi]:.0f}x for '{hi}': focal dominates when many pixels are wrong, "
                 "dice when a small object is.")
    return text


def training_settings(model: str, steps: int, n_images: int, epochs: int, masks_per_image: int, rounds: int) -> str:
    """How far this run is from the paper's scale, counted."""
    h = paper.TRAIN_VIT_H.value
    b = paper.TRAIN_VIT_B.value
    ours = steps * masks_per_image * rounds
    theirs_b = b["iterations"] * b["batch_images"]
    return (f"This run takes {steps} optimiser steps of one image ({n_images} images x {epochs} epochs) with "
            f"{masks_per_image} masks and {rounds} rounds each: {ours:,} mask predictions. The paper trains ViT-B for "
            f"{b['iterations']:,} iterations of {b['batch_images']} images ({theirs_b / 1e6:.0f}M image visits, up to "
            f"{h['masks_per_gpu']} masks each), {theirs_b // max(steps, 1):,}x more image visits, with layer-wise lr "
            f"decay {b['layer_decay']} and drop path {b['drop_path']} because it trains the encoder too; here the "
            f"`{model}` encoder is frozen, so neither applies (App. A).")


def decoder_training(before: float, after: float, upper: float, before_confident: float, after_confident: float,
                     upper_confident: float, steps: int, n_masks: int, loss_first: float, loss_last: float,
                     area_before: float, area_after: float, area_objects: float,
                     dice_first: Optional[float] = None, dice_last: Optional[float] = None,
                     train_iou_last: Optional[float] = None) -> str:
    """What the training did: the loss on its own masks (what a few steps can do) and the held-out one-click
    mIoU of the re-initialised, the trained, and the original decoder (what they cannot, or can).

    ``dice_first``/``dice_last`` are the dice term at the start and the end of training and ``train_iou_last`` the
    IoU of the last round's masks with the masks it trains on, at the end: a loss that fell only through its focal
    term, with those masks missed, is a decoder that learned to predict background, not to fit the masks."""
    gap = upper - before
    gained = after - before
    missed = (dice_last is not None and dice_first is not None and dice_last > 0.9 and dice_last >= dice_first - 0.05
              and (train_iou_last is None or train_iou_last < 0.1))
    if loss_last < 0.8 * loss_first and missed:
        text = (f"The training loss fell from {num(loss_first)} to {num(loss_last)} (means of three steps) over "
                f"{steps} steps, but only "
                f"through its focal term: the dice term stayed at {num(dice_last)} (1 is no overlap)"
                + (f" and its last-round masks overlap the masks it trains on with IoU {num(train_iou_last)}"
                   if train_iou_last is not None else "")
                + ". It lowered the loss on the many background pixels, which the focal term counts, without "
                "finding the objects, which the dice term counts (the 'small object missed' case of section 2). ")
    elif loss_last < 0.8 * loss_first:
        text = (f"The training loss fell from {num(loss_first)} to {num(loss_last)} (means of three steps) over "
                f"{steps} steps: the decoder "
                "learns to fit the masks it is trained on. ")
    else:
        text = (f"The training loss barely moved over {steps} steps ({num(loss_first)} → {num(loss_last)}, means of "
                "the first and the last three steps). ")
    text += (f"On {n_masks} held-out masks (one click, best of 3 masks) the re-initialised decoder scores "
             f"**{num(before)}**, the decoder after {steps} steps **{num(after)}**, and the original trained decoder "
             f"(the upper bound this experiment can reach) **{num(upper)}**. ")
    if gap <= 0.02:
        return text + ("The re-initialised decoder is already within 0.02 of the original one on these masks, so "
                       "this evaluation cannot show what training adds.")
    if gained < max(0.02, 0.1 * gap):
        text += (f"The decoder has **not learned** the task in this run: it recovered {pct(max(gained, 0) / gap)} of "
                 f"the {num(gap)} between a random and a trained decoder. In {steps} steps of one image a decoder "
                 "that starts from random weights has seen too few prompts to learn what a mask is")
        if area_after > 3 * area_objects and missed:
            text += (f". On a held-out click it does not mark the object either: the mask it ranks first covers "
                     f"{pct(area_after)} of the image on average (the objects {pct(area_objects, 1)}; before training "
                     f"{pct(area_before)}), a mask that contains the object and everything around it.")
        elif area_after > 3 * area_objects:
            text += (f": its chosen masks cover {pct(area_after)} of the image on average (the objects "
                     f"{pct(area_objects, 1)}; before training {pct(area_before)}), so it marks most of the image "
                     "whatever the click.")
        else:
            text += "."
    elif after >= upper - 0.02:
        text += "It recovered **all** of the gap: on masks like its training masks the task is learned."
    else:
        text += f"It recovered **{pct(gained / gap)}** of the gap between a random and a trained decoder."
    if after - after_confident > 0.05:
        text += (f" Choosing by the IoU head instead of the best of 3 gives {num(after_confident)} (original decoder "
                 f"{num(upper_confident)}): the trained IoU head does not yet rank its masks well.")
    return text


def course_time(what: str, our_seconds: float, our_units: float, unit: str, device: str, course_seconds: float,
                course_units: float, course_gpu: str, encoder: str) -> str:
    """This run's training time beside the course presentation's."""
    return (f"{what}: this run took {seconds(our_seconds)} for {our_units:g} {unit} on {device} with the `{encoder}` "
            f"encoder's cached embeddings ({seconds(our_seconds / max(our_units, 1e-9))} per {unit.rstrip('s')}); the "
            f"course presentation's run took {seconds(course_seconds)} for {course_units:g} {unit} on a {course_gpu} "
            f"({seconds(course_seconds / max(course_units, 1e-9))} per {unit.rstrip('s')}) with ViT-B embeddings.")


# ================================================================================================ 04 · NDISPark
def zero_shot_parking(model: str, weights: str, day: float, night: float, day_confident: float,
                      night_confident: float, cars_day: int, cars_night: int, real: bool) -> str:
    """Zero-shot one-click mIoU on parked cars by day and by night, with the paper's NDISPark result."""
    who = _model(model, weights)
    data = "NDISPark" if real else "generated NDISPark look-alikes"
    delta = paper.POINT_VS_RITM.value["delta_by_dataset"]["NDISPark"]
    text = (f"Zero-shot, with one click per car, {who} scores **{num(day)}** by day ({cars_day} cars) and "
            f"**{num(night)}** by night ({cars_night} cars) on {data} (best of 3 masks; {num(day_confident)} and "
            f"{num(night_confident)} with the IoU head's choice). ")
    if night < day - 0.02:
        text += "The night images are harder for it. "
    elif night > day + 0.02:
        text += "It does better at night than by day here. "
    else:
        text += "Day and night are about equal for it. "
    text += (f"The paper reports NDISPark only relative to RITM: SAM's one-point mIoU is {delta:+.1f} above RITM's "
             f"(Fig. 9a; {paper.POINT_VS_RITM.n.split('; ')[-1]}).")
    return text


def finetune(zero_day: float, tuned_day: float, zero_night: float, tuned_night: float, steps: int,
             n_train: int) -> str:
    """What fine-tuning the decoder on day images did, by day and at night."""
    d_day, d_night = tuned_day - zero_day, tuned_night - zero_night

    def change(d: float) -> str:
        if abs(d) < 0.01:
            return f"unchanged ({d:+.3f})"
        return f"{'up' if d > 0 else 'down'} {abs(d):.3f}"

    text = (f"After {steps} steps on {n_train} day images, held-out day mIoU went from {num(zero_day)} to "
            f"**{num(tuned_day)}** ({change(d_day)}) and night mIoU from {num(zero_night)} to **{num(tuned_night)}** "
            f"({change(d_night)}). ")
    if d_day >= 0.01 and d_night >= 0.01:
        text += (f"The gain carried over to the night images it never saw ({pct(d_night / d_day)} of the day gain): "
                 "adapting to parking lots helped in both conditions.")
    elif d_day >= 0.01:
        text += ("The gain stayed with the daytime images: fine-tuning on one condition adapted the decoder to it "
                 "without helping, or at the cost of, the other. A domain-specific model wins in its own domain, "
                 "as the paper's §8 expects.")
    elif d_day <= -0.01:
        text += ("Fine-tuning made the decoder **worse** on held-out day images: with these settings it fitted "
                 "its few training images rather than the domain.")
    else:
        text += "Fine-tuning did not move the day score: the decoder's errors here are not ones a few steps fix."
    return text


# ================================================================================================ 05 · zero-shot
def clicks(name: str, n_points: List[int], oracle: List[float], confident: List[float], objects: int) -> str:
    """mIoU against the number of clicks on one evaluation set: rising, flat or falling, said as measured."""
    first, last = confident[0], confident[-1]
    steps = [b - a for a, b in zip(confident, confident[1:])]
    text = (f"**{name}** ({objects} objects): with the IoU head's choice, mIoU is {num(first)} at {n_points[0]} click "
            f"and {num(last)} at {n_points[-1]} clicks (best of 3 at one click: {num(oracle[0])}). ")
    if last - first > 0.02 and min(steps) > -0.01:
        text += "More clicks raise it, as they should: each click lands on the largest remaining error."
    elif last - first < -0.02:
        text += (f"More clicks **lower** it: the model gets worse as corrective clicks and its own previous mask are "
                 f"fed back (its largest drop is {num(-min(steps))} in one step). It was not trained well enough on "
                 "multi-click refinement to use them.")
    elif abs(last - first) <= 0.02 and max(first, oracle[0]) >= 0.9:
        text += (f"More clicks leave it about where it was: one click already reaches {num(first)}, so the "
                 "corrective clicks have little left to fix.")
    elif abs(last - first) <= 0.02:
        text += "More clicks leave it about where it was: this model does not use the extra clicks."
    else:
        text += (f"It rises overall but not at every step (a drop of {num(-min(steps))} on the way): the model "
                 "uses some corrective clicks and is thrown off by others.")
    return text


def vs_ritm() -> str:
    """The paper's SAM-vs-RITM comparison at one point (Fig. 9a), counted from its bar labels."""
    deltas = paper.POINT_VS_RITM.value["delta_by_dataset"]
    wins, total = paper.point_wins()
    worst = min(deltas, key=deltas.get)
    best = max(deltas, key=deltas.get)
    mean = sum(deltas.values()) / len(deltas)
    return (f"The paper's SAM (ViT-H) is above RITM on **{wins} of {total}** data sets at one centre point (Fig. 9a), "
            f"by {deltas[best]:+.1f} mIoU on {best} and down to {deltas[worst]:+.1f} on {worst}; the mean difference "
            f"over the 23 is {mean:+.1f}. With the best of its three masks (the oracle) it is above RITM on all "
            f"{paper.POINT_VS_RITM.value['oracle_higher']} (§7.1). Its curves over 1-9 points (Fig. 9c) are "
            "printed without values; the text says SAM is far ahead at one point and the gap closes with more points.")


def people_clicks(name: str, gain_1_to_3: float) -> str:
    """Our gain from 1 to 3 clicks beside the paper's on people (Table 2, first point random)."""
    gains = [r["miou_3"][0] - r["miou_1"][0] for r in paper.FAIRNESS_PEOPLE.value]
    return (f"From 1 to 3 clicks the mIoU on {name} changes by {gain_1_to_3 * 100:+.1f} points here; the paper's SAM "
            f"gains {min(gains):.1f}-{max(gains):.1f} points on people ({paper.FAIRNESS_PEOPLE.cite().split(';')[0]}, "
            "first point random, ~3.9k masks).")


def box_vs_clicks(name: str, box: float, n_points: List[int], confident: List[float]) -> str:
    """What a box is worth in clicks, on one evaluation set."""
    text = f"**{name}**: a tight box gives **{num(box)}**, one click {num(confident[0])}. "
    if box < confident[0] - 0.01:
        return text + "Here a box is worth **less than one click**: the model turns boxes into masks worse than points."
    # as printed (three decimals): a click count whose mIoU reads the same as the box's has reached it
    reached = [n for n, m in zip(n_points, confident) if round(m, 3) >= round(box, 3)]
    if not reached and max(confident) <= confident[0] + 0.005:
        return text + (f"Further clicks do not raise the mIoU here ({num(confident[0])} at one click, "
                       f"{num(confident[-1])} at {n_points[-1]}), so no number of clicks reaches the box: for these "
                       "objects the box is simply the better prompt.")
    if not reached:
        return text + (f"No number of clicks up to {n_points[-1]} reaches the box: a box is worth more than "
                       f"{n_points[-1]} clicks for this model.")
    n = reached[0]
    if n == n_points[0]:
        return text + "One click already matches the box here."
    return text + f"The clicks catch up with the box at **{n} clicks**: a box is worth about {n} clicks here."


def refined(name: str, n_points: List[int], plain: List[float], cut: List[float], box: float, box_cut: float) -> str:
    """What cutting the masks along the photo's edges (``refine=True``) changed on one evaluation set."""
    def change(before: float, after: float) -> str:
        return f"{num(before)} → **{num(after)}**"

    text = (f"**{name}, cut along the photo's edges** (GrabCut seeded by the model's mask): one click "
            f"{change(plain[0], cut[0])}, {n_points[-1]} clicks {change(plain[-1], cut[-1])}, a box "
            f"{change(box, box_cut)} (most confident mask). ")
    gains = [box_cut - box, cut[0] - plain[0], cut[-1] - plain[-1]]
    if min(gains) > 0.01:
        text += ("The cut helps with every prompt: the model finds roughly where the object is, and the photo's own "
                 "colours and edges put its boundary in the right place.")
    elif max(gains) < -0.01:
        text += ("Here the cut makes things worse with every prompt: where object and background share colours, "
                 "GrabCut's colour models cannot tell them apart and it drifts from the model's mask.")
    else:
        best = ["the box", "one click", f"{n_points[-1]} clicks"][max(range(3), key=gains.__getitem__)]
        text += (f"The cut helps most with {best} and not with every prompt: it can only move a boundary to an edge "
                 "the photo shows, and only a short way past the model's mask, so a part of the object far from "
                 "that mask stays missed.")
    return text


def everything(model: str, weights: str, photos: List[str], kept: List[int], candidates: List[int],
               max_iou: List[float], max_stability: List[float], passing_iou: List[int], passing_stability: List[int],
               relaxed: List[int], iou_thresh: float = paper.AMG.value["pred_iou_thresh"],
               stability_thresh: float = paper.AMG.value["stability_thresh"],
               passing_both: Optional[List[int]] = None) -> str:
    """How many masks everything mode keeps, and, when it keeps none, which filter drops them.

    ``passing_iou``, ``passing_stability`` and ``passing_both`` count, per photo, the candidates that pass the
    predicted-IoU filter, the stability filter and both."""
    who = _model(model, weights)
    counts = ", ".join(f"{p}: {k}" for p, k in zip(photos, kept))
    text = f"With {who}, everything mode keeps {counts} masks. "
    if sum(kept) == 0:
        n_iou, n_stability = sum(passing_iou), sum(passing_stability)
        text += (f"**No mask passes.** Of the {sum(candidates):,} candidates ({candidates[0]:,} per photo: three per "
                 f"grid point), {n_iou:,} have a predicted IoU above {iou_thresh} (the highest is {num(max(max_iou))}) "
                 f"and {n_stability:,} a stability of at least {stability_thresh} (the highest is "
                 f"{num(max(max_stability))}). ")
        if max(max_stability) < stability_thresh and max(max_iou) <= iou_thresh:
            text += "Both filters reject everything: this model is neither confident nor stable enough. "
        elif max(max_stability) < stability_thresh:
            text += "The stability filter alone rejects everything: the logits never rise far enough above 0. "
        elif max(max_iou) <= iou_thresh:
            text += "The predicted-IoU filter alone rejects everything: the IoU head never claims a good mask. "
        elif passing_both is not None and sum(passing_both) > 0:
            text += (f"{sum(passing_both)} candidates pass both filters, and the steps after them (the masks' size, "
                     "the crop's edge, NMS) drop those too. ")
        else:
            text += ("Each filter passes a few candidates, but no candidate passes both: the masks the IoU head "
                     "trusts are not stable, and the stable ones it does not trust. ")
        text += (f"The histograms show the candidates against the two thresholds. With both filters off (NMS only, "
                 f"as in the paper's edge detection) the same grid yields {', '.join(str(r) for r in relaxed)} masks.")
    else:
        text += (f"The filters keep {pct(sum(kept) / max(sum(candidates), 1), 1)} of the {sum(candidates):,} "
                 f"candidates before NMS removes duplicates; with both filters off the grid yields "
                 f"{', '.join(str(r) for r in relaxed)} masks.")
    return text


def data_engine(scenes: int, objects: int, manual_masks: float, manual_clicks: float, reached: float,
                prefilled: float, added: float, semi_masks: float, clicks_saved: float, auto_masks: float,
                precision: float, recall: float, target_iou: float = 0.9) -> str:
    """The simulated data engine's three stages beside the paper's counts (§4)."""
    stages = {r["stage"]: r for r in paper.DATA_ENGINE.value}
    am, sa, fa = stages["assisted-manual"], stages["semi-automatic"], stages["fully automatic"]
    text = (f"On {scenes} generated scenes ({objects} objects): in the **assisted-manual** stage the simulated "
            f"annotator needs {manual_clicks:.1f} clicks per mask, and the model alone reaches IoU {target_iou} on "
            f"{pct(reached)} of the objects (the rest are finished by hand). The paper's annotators went from "
            f"{am['seconds_per_mask'][0]} to {am['seconds_per_mask'][1]} s per mask and from "
            f"{am['masks_per_image'][0]} to {am['masks_per_image'][1]} masks per image as the model improved. ")
    if auto_masks == 0:
        text += ("The automatic stages produce **nothing** with this model: no mask passes the confidence and "
                 "stability filters (section 4), so the semi-automatic stage pre-fills no mask and the annotator "
                 "clicks every object, as in stage one; the fully automatic stage yields 0 masks per image against "
                 f"SA-1B's ~{fa['masks_per_image'][0]}. The data engine needs a model good enough to be trusted alone.")
        return text
    text += (f"In the **semi-automatic** stage {prefilled:.1f} correct masks per image are pre-filled and the "
             f"annotator adds {added:.1f}, saving {pct(clicks_saved)} of the clicks (the paper: "
             f"{sa['masks_per_image'][0]} to {sa['masks_per_image'][1]} masks per image). The **fully automatic** "
             f"stage yields {auto_masks:.1f} masks per image, {pct(precision)} of them matching an object at IoU "
             f"{target_iou}, and finds {pct(recall)} of the objects "
             f"(SA-1B: ~{fa['masks_per_image'][0]} masks per image, "
             f"{pct(paper.MASK_QUALITY.value['iou_above_0.90'])} of them within IoU 0.9 of a corrected version, §5).")
    return text


def edges(methods: List[str], ods: List[float], ois: List[float], ap: List[float], r50: List[float],
          levels: List[int], n_images: int, real: bool, model: str,
          recall_from: Optional[List[float]] = None) -> str:
    """The measured edge benchmark, with every zero and every surprising order explained.

    ``recall_from`` is the lowest recall on each method's precision-recall curve (its highest threshold): the
    benchmark's AP counts precision as 0 below it."""
    data = f"{n_images} BSDS500 test images" if real else f"{n_images} generated scenes"
    best = max(range(len(methods)), key=lambda i: ods[i])
    text = (f"On {data}, ODS is " + ", ".join(f"{m} {num(o)}" for m, o in zip(methods, ods)) +
            f"; {methods[best]} is best. ")
    sam = next((i for i, m in enumerate(methods) if m.startswith("SAM")), None)
    if sam is not None:
        above = [methods[i] for i in range(len(methods)) if i != sam and ods[i] > ods[sam]]
        if above:
            named = above[0] if len(above) == 1 else ", ".join(above[:-1]) + " and " + above[-1]
            table = {r["method"]: r for r in paper.EDGES.value}
            text += (f"{named} {'score' if len(above) > 1 else 'scores'} above {methods[sam]} here" +
                     ("" if real else ": the generated ground truth outlines every object, and neighbouring objects "
                                      "differ in colour or texture, which gradient filters pick up, while BSDS500's "
                                      "annotators draw fewer, semantic boundaries") +
                     f". In the paper ({paper.EDGES.source.split(' (')[0]}, {paper.EDGES.n.split(',')[0]}) SAM's ODS "
                     f"{num(table['SAM']['ODS'])} is above Sobel's {num(table['Sobel filter']['ODS'])}, Canny's "
                     f"{num(table['Canny']['ODS'])} and Felz-Hutt's {num(table['Felz-Hutt']['ODS'])}; this run is not "
                     f"comparable with it (other images, and `{model}` instead of ViT-H). ")
        else:
            text += (f"{methods[sam]} is above every baseline here, as SAM is above the zero-shot baselines (Sobel, "
                     "Canny, Felz-Hutt) in the paper's Table 3. ")
    for i, m in enumerate(methods):
        zeros = [k for k, v in (("AP", ap[i]), ("R50", r50[i])) if v == 0]
        if not zeros:
            continue
        why = []
        if "AP" in zeros and levels[i] <= 2:
            why.append("its map is binary, so the precision-recall curve is a single point and the area under it "
                       "is 0")
        elif "AP" in zeros:
            why.append("its precision-recall curve never spans a range of recall")
        if "R50" in zeros:
            why.append("its precision never reaches 50%, so there is no recall at 50% precision")
        text += f"{m}'s {' and '.join(zeros)} {'are' if len(zeros) > 1 else 'is'} 0 because {'; '.join(why)}. "
    short = [i for i in range(len(methods)) if recall_from is not None and ap[i] > 0 and recall_from[i] >= 0.2]
    if short:
        named = "; ".join(f"{methods[i]}'s at {num(recall_from[i], 2)}" for i in short)
        text += (f"Some curves start far from recall 0 ({named}): their maps have few levels, and AP counts precision "
                 "as 0 below a curve's first point, so their AP is the area of a part of the curve and is not "
                 "comparable with the AP of a method whose curve starts near 0. Compare them by ODS, or by the curves "
                 "in the plot. ")
    return text.strip()


def limitations(model: str, device: str, encoder_s: float, click_s: float,
                click_gains: Optional[Dict[str, float]] = None, max_clicks: int = 9) -> str:
    """The paper's limitations (§8), each beside what this course measured or what the paper's tables show.

    ``click_gains`` maps each evaluation set's name to its change in mIoU from 1 to ``max_clicks`` clicks (the
    confident mask).
    """
    e = {r["method"]: r for r in paper.EDGES.value}
    inst = {r["method"]: r for r in paper.INSTANCES.value}
    text = (f"*Not real-time with a heavy encoder*: here `{model}` encodes an image in {seconds(encoder_s)} and "
            f"answers a click in {seconds(click_s)} on {device}; the encoder, not the prompt, sets the pace. "
            f"*Domain tools win in their domain*: HED ({num(e['HED']['ODS'])}) and EDETR ({num(e['EDETR']['ODS'])}), "
            f"trained on BSDS500, are above SAM's {num(e['SAM']['ODS'])} ODS (Table 3), and ViTDet-H's COCO mask AP "
            f"({inst['ViTDet-H']['COCO AP']}) is above SAM's ({inst['SAM']['COCO AP']}, Table 5). ")
    if click_gains:
        ranked = sorted(click_gains.items(), key=lambda item: (-item[1], item[0]))  # largest gain first
        gains = "; ".join(f"{gain * 100:+.1f} points on *{name}*" for name, gain in ranked)
        text += (f"*Many clicks*: from 1 to {max_clicks} clicks the mIoU of this run's model changes by {gains}. "
                 "The paper expects dedicated interactive methods to beat SAM when many points are given.")
    return text


# ================================================================================================ 06 · clicks
def click_summary(model: str, weights: str, refine: bool = False) -> str:
    """The closing remark of the click demo, chosen by which weights ran and whether masks were cut along
    the photo's edges."""
    cut = (" With *Cut along edges* on, GrabCut moves their outlines onto the photo's edges (not part of SAM): it "
           "may grow a mask past its outline, by up to a quarter of the mask's size for clicks, but a part of the "
           "object farther from the model's mask stays missed." if refine else "")
    if weights == "official":
        return (f"These masks come from Meta's `{model}` weights. The interaction is the paper's: the first click is "
                "ambiguous, so the model answers three times, and each further click narrows it down." + cut)
    return (f"These masks come from {_model(model, weights)}, trained on generated scenes and not on SA-1B, so on "
            "real photos they are rough; set `model = \"vit_b\"` in the parameters cell for Meta's weights. The "
            "interaction is the paper's either way: the first click is ambiguous, so the model answers three times, "
            "and each further click narrows it down." + cut)


def render(record: Dict[str, Any]) -> str:
    """The sentence of a stored record, ``{"narrate": name, "data": {...}}`` (what ``Session.say`` keeps beside
    the text in an output's metadata and in ``claims.json``), written again from its numbers by this module's
    function ``name``: how a stored notebook or the slides take up a change of wording without re-running."""
    name = record.get("narrate", "") if isinstance(record, dict) else ""
    fn = globals().get(name)
    if (not callable(fn) or name.startswith("_") or name in _FORMATTERS
            or getattr(fn, "__module__", None) != __name__ or not isinstance(record.get("data"), dict)):
        raise ValueError(f"not a samkit.narrate record: {record!r:.200}")
    return fn(**record["data"])


#: this module's functions that format a number, not a sentence about a result
_FORMATTERS = frozenset({"pct", "num", "seconds", "render"})
