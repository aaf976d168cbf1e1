# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Zero-shot transfer: points, boxes, everything, the data engine, edges
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/samkit-course/samkit/blob/main/notebooks/05_zero_shot.ipynb)
#
# Section 7 of the SAM paper tests the model on tasks and images it was not trained for, by **prompting** it:
#
# 1. **single and multiple points** (§7.1): mIoU as clicks are added (1, 2, 3, 5, 9), with the paper's click
#    simulation (first click at the centre of the object, then at the centre of the largest error), and the
#    paper's comparison with RITM on 23 data sets;
# 2. **boxes**: a box removes most of the ambiguity of one point;
# 3. **everything mode** (the automatic mask generator of the data engine): a grid of points, filtered by
#    predicted IoU and stability, de-duplicated by non-maximum suppression;
# 4. **the data engine** (§4): its three stages simulated on generated scenes;
# 5. **edge detection** (§7.2): edges of automatic masks, scored like a dedicated edge detector, beside the
#    paper's Table 3;
# 6. the paper's **limitations** (§8), beside what this course measured.
#
# We evaluate on **real photos held out from training** (scikit-image's `coins`, and photos with hand-drawn
# masks; crops of two of them, `camera` and `rocket`, were textures in the earliest training phases' scenes, as the
# model card says) and on held-out generated scenes.
#
# **The embedded model and `refine`.** Offline, this notebook runs samkit's embedded `tiny` model, trained on
# generated scenes only. Its masks follow its 64 x 64 token grid and spill into background of a similar shade,
# because it has never seen a real photo's objects outlined (photos reach its training scenes only as textures).
# With `refine` on (the default for the embedded model), each mask is also cut along the photo's edges: OpenCV's
# GrabCut fits a colour model of the object and of its surroundings *for this one image*, seeded by the model's own
# mask and the prompts (`Predictor.predict(..., refine=True)`). This is not part of SAM; we show both, side by
# side, so that the figures of the model itself stay visible. Meta's weights (`model = "vit_b"`) do not need it:
# `refine` is off for them unless you set it.
#
# *The stored outputs come from the full course configuration (`make course`); every sentence about a result
# below is written by the code from the numbers of that run.*

# %% tags=["parameters"]
model = "tiny"          # "tiny" (embedded), "vit_b", "vit_l", "vit_h", "vit_t"
checkpoint = None       # a state-dict file for `model`, None means the official (or embedded) weights
data_root = None        # a BSDS500 folder for the edge benchmark, None means generated scenes as edge ground truth
device = "auto"
seed = 0
n_scenes = 8            # held-out generated scenes for the point and box evaluation
masks_per_image = 10
points_per_side = 32    # everything mode: the grid (paper: 32 x 32)
edge_points_per_side = 16  # edge detection: the grid (paper: 16 x 16)
n_edge_images = 10      # images of the edge benchmark
edge_size = 384         # side of the generated edge-benchmark scenes
engine_scenes = 4       # generated scenes of the data-engine simulation
engine_points_per_side = 16
max_objects = 60        # objects per evaluation set for the point and box prompts
refine = None           # also cut masks along the photo's edges (GrabCut); None: on for the embedded model only
out_dir = "runs/latest/05_zero_shot"
small = False           # True: the quick configuration of the tests and CI

# %%
# Colab only: install samkit (Colab's torch is kept as it is) and enable the widget manager.
import sys
if "google.colab" in sys.modules:
    # %pip install -q "samkit @ git+https://github.com/samkit-course/samkit"
    from google.colab import output
    output.enable_custom_widget_manager()

# %%
if small:
    n_scenes, masks_per_image, points_per_side, edge_points_per_side = 2, 3, 8, 8
    n_edge_images, edge_size, engine_scenes, engine_points_per_side, max_objects = 2, 192, 1, 8, 4

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import samkit
from samkit import evaluate, narrate, paper, viz
from samkit.course import amg_candidates, scene_edge_items, simulate_data_engine
from samkit.data.bsds import BSDS500
from samkit.data.photos import DEMO_PROMPTS, coins_dataset, photo, real_photo_dataset
from samkit.data.synthetic import SceneGenerator
from samkit.notebook_utils import data_note, setup, time_call

S = setup(model=model, checkpoint=checkpoint, device=device, seed=seed, out_dir=out_dir)
refine = S.weights == "embedded" if refine is None else bool(refine)
print("masks cut along the photo's edges (refine):", refine)

# %% [markdown]
# ## 1. Real photos held out from training
#
# One click (green star) and one box per object, on three photos; the model's most confident mask is shown. With
# `refine` on, a second figure shows the same prompts with the masks cut along the photo's edges.

# %% tags=["nbval-ignore-output"]
predictor = S.predictor()
names = ["astronaut", "coffee", "chelsea"]
for cut in (False, True) if refine else (False,):
    fig, axes = plt.subplots(2, len(names), figsize=(14, 9.6), layout="constrained")
    for col, name in enumerate(names):
        image = photo(name)
        predictor.set_image(image)
        for row, kind in enumerate(("point", "box")):
            ax = axes[row, col]
            ax.imshow(image)
            for k, (obj, prompt) in enumerate(DEMO_PROMPTS[name].items()):
                colour = viz.distinct_colors(len(DEMO_PROMPTS[name]))[k]
                if kind == "point":
                    masks, scores, _ = predictor.predict(point_coords=np.array([prompt["point"]]),
                                                         point_labels=np.array([1]), refine=cut)
                    viz.show_points(np.array([prompt["point"]]), np.array([1]), ax, marker_size=120)
                else:
                    masks, scores, _ = predictor.predict(box=np.array(prompt["box"]), multimask_output=False, refine=cut)
                    viz.show_box(prompt["box"], ax)
                viz.show_mask(masks[int(np.argmax(scores))], ax, color=colour)
            ax.set_title(f"{name}: one {kind} per object" + (", cut along the edges" if cut else ""))
            ax.axis("off")
    fig.suptitle("masks cut along the photo's edges (refine=True)" if cut else f"the model's masks ({S.model_name})")
    S.save(fig, "real_photos_cut" if cut else "real_photos")

# %% [markdown]
# ## 2. Points: mIoU vs number of clicks
#
# The paper's protocol (§7.1, appendix D): the first click at the point of the object farthest from its
# boundary; each next click at the point farthest from the boundary of the largest error region (positive on a
# missed part, negative on a spill), with the previous mask logits fed back. With one click the model returns three
# masks: *oracle* scores the best of them, *confident* the one the IoU head ranks first (the paper's default).
# The evaluation sets: `coins` (ground truth derived from the photo), real photos with hand-drawn masks
# (`samkit.data.photos.real_photo_dataset`), and held-out generated scenes (index 10,000 and up, never trained on).

# %% tags=["nbval-ignore-output"]
scenes = SceneGenerator(size=256 if small else 512, seed=seed)
scene_items = []
for i in range(n_scenes):
    image, masks = scenes(10_000 + i)
    keep = np.argsort(masks.sum(axis=(1, 2)))[::-1][:masks_per_image]
    scene_items.append({"image": image, "masks": masks[np.sort(keep)], "image_id": f"scene {10_000 + i}"})
photos = real_photo_dataset()
photo_set = "photos, hand-drawn masks (real)"  # people, animals and objects: the set compared with the paper's
eval_sets = {"coins (real)": coins_dataset(), photo_set: photos, "generated scenes": scene_items}
print("data: real photos (coins; scikit-image's and matplotlib's sample photos, masks drawn by hand) and held-out "
      "generated scenes, for sections 1-5")
print({name: f"{len(items)} images, {sum(len(x['masks']) for x in items)} masks" for name, items in eval_sets.items()})
n_clicks = (1, 2, 3, 5, 9)
point_results = {name: evaluate.point_prompts(S.model, items, n_points=n_clicks, max_objects=max_objects, progress=False)
                 for name, items in eval_sets.items()}
rows = [{"data": name, "mask": mode, **{f"{n} click{'s' if n > 1 else ''}": res.value(selection=mode, n_points=n)
                                        for n in n_clicks}, "objects": res.rows[0]["objects"]}
        for name, res in point_results.items() for mode in ("oracle", "confident")]
real_sets = [name for name in eval_sets if "(real)" in name]
refined_results = {name: evaluate.point_prompts(S.model, eval_sets[name], n_points=n_clicks, max_objects=max_objects,
                                                progress=False, refine=True) for name in (real_sets if refine else [])}
rows += [{"data": name, "mask": f"{mode}, cut along edges",
          **{f"{n} click{'s' if n > 1 else ''}": res.value(selection=mode, n_points=n) for n in n_clicks},
          "objects": res.rows[0]["objects"]} for name, res in refined_results.items() for mode in ("oracle", "confident")]
S.table(rows, "miou_vs_clicks", title=f"mIoU vs number of clicks, {S.model_name}")
for name, res in point_results.items():
    S.say(narrate.clicks, name=name, n_points=list(n_clicks),
          oracle=[res.value(selection="oracle", n_points=n) for n in n_clicks],
          confident=[res.value(selection="confident", n_points=n) for n in n_clicks], objects=res.rows[0]["objects"])

# %% [markdown]
# The paper's numbers for the same protocol: Fig. 9a compares SAM with RITM, the strongest interactive
# segmenter it tested, data set by data set at one centre point (the values are printed on the bars), and Table 2
# gives SAM's mIoU on people at 1 and 3 points (first point random). Our curves, left; the paper's comparison,
# right.

# %% tags=["nbval-ignore-output"]
deltas = paper.POINT_VS_RITM.value["delta_by_dataset"]
fig, axes = plt.subplots(1, 2, figsize=(15, 6.2), layout="constrained", gridspec_kw={"width_ratios": [1.1, 1]})
for k, (name, res) in enumerate(point_results.items()):
    for mode, style in (("confident", "-"), ("oracle", "--")):
        axes[0].plot(n_clicks, [res.value(selection=mode, n_points=n) for n in n_clicks], style, marker="o",
                     color=f"C{k}", label=f"{name}, {mode}")
for k, (name, res) in enumerate(refined_results.items()):
    axes[0].plot(n_clicks, [res.value(selection="confident", n_points=n) for n in n_clicks], ":", marker="^",
                 color=f"C{list(point_results).index(name)}", label=f"{name}, confident, cut along edges")
axes[0].set_xticks(n_clicks)
axes[0].set_xlabel("number of clicks")
axes[0].set_ylabel("mIoU")
axes[0].grid(alpha=0.3)
people = paper.FAIRNESS_PEOPLE.value
for k, key in ((1, "miou_1"), (3, "miou_3")):
    vals = [r[key][0] / 100 for r in people]
    axes[0].errorbar([k], [np.mean(vals)], yerr=[[np.mean(vals) - min(vals)], [max(vals) - np.mean(vals)]],
                     fmt="s", color="black", capsize=4, label="paper SAM on people, 1 and 3 points (Table 2)" if k == 1 else None)
axes[0].set_ylim(0, 1)
axes[0].legend(fontsize=8, loc="lower right")
axes[0].set_title(f"this run ({S.model_name}): mIoU vs clicks")
order = sorted(deltas, key=deltas.get)
axes[1].barh(order, [deltas[d] for d in order], color=["tab:green" if deltas[d] > 0 else "tab:red" for d in order])
axes[1].axvline(0, color="0.3", lw=1)
axes[1].set_xlabel("SAM − RITM, mIoU at 1 centre point")
wins, total = paper.point_wins()
axes[1].set_title(f"paper, Fig. 9a: SAM above RITM on {wins} of {total} data sets")
axes[1].tick_params(axis="y", labelsize=8)
S.save(fig, "miou_vs_clicks")
S.say(narrate.vs_ritm)
res = point_results[photo_set]
S.say(narrate.people_clicks, name=photo_set, gain_1_to_3=res.value(selection="confident", n_points=3) -
      res.value(selection="confident", n_points=1))

# %% [markdown]
# ## 3. Boxes
#
# A tight box around the object (as a detector would give): one prompt, usually unambiguous, answered with one
# mask (`multimask_output=False`). The embedded `tiny` gives that mask by SAM 2's rule (notebook 02, section 4):
# mask token 0 when its mask is stable, otherwise the best of its three multimask outputs.
# With `refine` on, the real-photo sets are also scored with every mask cut along the photo's edges.

# %% tags=["nbval-ignore-output"]
box_rows = []
for name, items in eval_sets.items():
    res = evaluate.box_prompts(S.model, items, max_objects=max_objects, progress=False)
    cut = (evaluate.box_prompts(S.model, items, max_objects=max_objects, progress=False, refine=True)
           .value(prompt="box") if name in refined_results else float("nan"))
    box_rows.append({"data": name, "mIoU (box)": res.value(prompt="box"), "mIoU (box, cut along edges)": cut,
                     **{f"mIoU ({n} click{'s' if n > 1 else ''}, confident)":
                        point_results[name].value(selection="confident", n_points=n) for n in n_clicks},
                     "objects": res.rows[0]["objects"]})
S.table(box_rows, "miou_boxes", title="box prompts vs clicks" + (" (cut along edges: real photos only)" if refined_results else ""))
for r in box_rows:
    S.say(narrate.box_vs_clicks, name=r["data"], box=r["mIoU (box)"], n_points=list(n_clicks),
          confident=[point_results[r["data"]].value(selection="confident", n_points=n) for n in n_clicks])
for r in box_rows:
    if r["data"] in refined_results:
        cut_res = refined_results[r["data"]]
        S.say(narrate.refined, name=r["data"], n_points=list(n_clicks),
              plain=[point_results[r["data"]].value(selection="confident", n_points=n) for n in n_clicks],
              cut=[cut_res.value(selection="confident", n_points=n) for n in n_clicks],
              box=r["mIoU (box)"], box_cut=r["mIoU (box, cut along edges)"])

# %% [markdown]
# ## 4. Everything mode
#
# The automatic mask generator prompts the model with a regular grid of `points_per_side`² points, keeps masks
# with predicted IoU above 0.88 and stability at least 0.95, and removes duplicates by box NMS (IoU 0.7). This is
# how the last stage of the data engine produced 99.1% of SA-1B's masks (§5). The histograms show every candidate
# mask (three per grid point) against the two thresholds; the bottom row runs the same grid with both filters
# off.

# %% tags=["nbval-ignore-output"]
amg = samkit.AutomaticMaskGenerator(S.model, points_per_side=points_per_side, progress=False)
relaxed_amg = samkit.AutomaticMaskGenerator(S.model, points_per_side=points_per_side, pred_iou_thresh=0.0,
                                            stability_score_thresh=0.0, progress=False)
photo_names = ["coins", "astronaut", "coffee"]
counts, stats = [], {"kept": [], "candidates": [], "max_iou": [], "max_stability": [], "passing_iou": [],
                     "passing_stability": [], "passing_both": [], "relaxed": []}
fig, axes = plt.subplots(3, 3, figsize=(15, 13), layout="constrained")
for col, name in enumerate(photo_names):
    image = photo(name)
    anns = amg.generate(image)
    relaxed = relaxed_amg.generate(image)
    cand = amg_candidates(S.model, image, points_per_side=points_per_side)
    stats["kept"].append(len(anns))
    stats["relaxed"].append(len(relaxed))
    stats["candidates"].append(len(cand["predicted_iou"]))
    stats["max_iou"].append(float(cand["predicted_iou"].max()))
    stats["max_stability"].append(float(cand["stability"].max()))
    passes_iou = cand["predicted_iou"] > amg.pred_iou_thresh
    passes_stability = cand["stability"] >= amg.stability_score_thresh
    stats["passing_iou"].append(int(passes_iou.sum()))
    stats["passing_stability"].append(int(passes_stability.sum()))
    stats["passing_both"].append(int((passes_iou & passes_stability).sum()))
    counts.append({"photo": name, "masks kept": len(anns), "candidates": len(cand["predicted_iou"]),
                   f"pred. IoU > {amg.pred_iou_thresh}": f"{int(passes_iou.sum())} ({passes_iou.mean():.2%})",
                   f"stability ≥ {amg.stability_score_thresh}":
                       f"{int(passes_stability.sum())} ({passes_stability.mean():.2%})",
                   "both": stats["passing_both"][-1], "masks with filters off": len(relaxed)})
    axes[0, col].imshow(image)
    viz.show_anns(anns, axes[0, col])
    axes[0, col].set_title(f"{name}: {len(anns)} masks (default filters)")
    axes[0, col].axis("off")
    axes[1, col].hist(cand["predicted_iou"], bins=40, alpha=0.7, label="predicted IoU")
    axes[1, col].hist(cand["stability"], bins=40, alpha=0.7, label="stability")
    axes[1, col].axvline(amg.pred_iou_thresh, color="tab:blue", ls="--")
    axes[1, col].axvline(amg.stability_score_thresh, color="tab:orange", ls="--")
    axes[1, col].set_xlabel("score of each candidate (dashed: the thresholds)")
    axes[1, col].legend(fontsize=8)
    axes[2, col].imshow(image)
    viz.show_anns(relaxed, axes[2, col])
    axes[2, col].set_title(f"{name}: {len(relaxed)} masks (filters off, NMS only)")
    axes[2, col].axis("off")
S.save(fig, "everything_mode")
S.table(counts, "everything_counts", title=f"everything mode, {points_per_side}x{points_per_side} points")
S.say(narrate.everything, model=S.model_name, weights=S.weights, photos=photo_names, **stats)

# %% [markdown]
# ## 5. The data engine, simulated
#
# SA-1B was made in three stages (§4), each giving the model a larger part of the work:
#
# 1. **assisted-manual**: annotators click foreground and background points in a SAM-powered tool and refine
#    with brush and eraser; the model is retrained on the new masks (6 times);
# 2. **semi-automatic**: confident masks are pre-filled automatically and annotators add the objects that were
#    missed (5 retrainings);
# 3. **fully automatic**: a 32 x 32 point grid, confident and stable masks kept, NMS (section 4 above).
#
# We run the three stages on held-out generated scenes with a simulated annotator (`samkit.course
# .simulate_data_engine`): the scene's exact masks play the objects the annotator would outline, clicks follow
# the evaluation protocol until the model's mask reaches IoU 0.9 (or 9 clicks, after which the annotator finishes
# by hand), and an automatic mask counts as correct when it matches an object at IoU 0.9. Time cannot be
# simulated; clicks per mask stand in for it.

# %% tags=["nbval-ignore-output"]
engine_items = [{"image": im, "masks": m} for im, m in (scenes(30_000 + i) for i in range(engine_scenes))]
engine = simulate_data_engine(S.model, engine_items, points_per_side=engine_points_per_side)
stages = {r["stage"]: r for r in paper.DATA_ENGINE.value}
am, sa, fa = engine["assisted_manual"], engine["semi_automatic"], engine["fully_automatic"]
S.table([
    {"stage": "assisted-manual", "paper: images": f"{stages['assisted-manual']['images'] / 1e3:.0f}k",
     "paper: masks": f"{stages['assisted-manual']['masks'] / 1e6:.1f}M",
     "paper: masks per image": "{} → {}".format(*stages["assisted-manual"]["masks_per_image"]),
     "paper: s per mask": "{} → {}".format(*stages["assisted-manual"]["seconds_per_mask"]),
     "here: masks per image": f"{am['masks_per_image']:.1f}", "here: clicks per mask": f"{am['clicks_per_mask']:.1f}",
     "here: automatic masks per image": "-"},
    {"stage": "semi-automatic", "paper: images": f"{stages['semi-automatic']['images'] / 1e3:.0f}k",
     "paper: masks": f"{stages['semi-automatic']['masks'] / 1e6:.1f}M (+ pre-filled)",
     "paper: masks per image": "{} → {}".format(*stages["semi-automatic"]["masks_per_image"]),
     "paper: s per mask": "{} (added masks)".format(stages["semi-automatic"]["seconds_per_mask"][1]),
     "here: masks per image": f"{sa['masks_per_image']:.1f}",
     "here: clicks per mask": f"{sa['clicks_per_added_mask']:.1f} (added masks)",
     "here: automatic masks per image": f"{sa['prefilled_per_image']:.1f}"},
    {"stage": "fully automatic", "paper: images": f"{stages['fully automatic']['images'] / 1e6:.0f}M",
     "paper: masks": f"{stages['fully automatic']['masks'] / 1e9:.1f}B",
     "paper: masks per image": f"~{stages['fully automatic']['masks_per_image'][0]}", "paper: s per mask": "0",
     "here: masks per image": f"{fa['masks_per_image']:.1f}", "here: clicks per mask": "0",
     "here: automatic masks per image": f"{fa['masks_per_image']:.1f} ({fa['precision']:.0%} correct)"},
], "data_engine", title=f"the data engine: the paper's counts (§4) and a simulation on {engine['scenes']} "
                        f"generated scenes ({engine['objects']} objects)")
fig, axes = plt.subplots(1, 2, figsize=(13, 4.4), layout="constrained")
names_s = ["assisted-manual", "semi-automatic", "fully automatic"]
paper_mpi = [stages[s]["masks_per_image"][1] for s in names_s]
ours_mpi = [am["masks_per_image"], sa["masks_per_image"], fa["masks_per_image"]]
xpos = np.arange(3)
axes[0].bar(xpos - 0.2, paper_mpi, width=0.4, label="paper (end of stage, §4)")
axes[0].bar(xpos + 0.2, ours_mpi, width=0.4, label="simulated here")
axes[0].set_xticks(xpos, names_s)
axes[0].set_ylabel("masks per image")
axes[0].legend()
clicks_all = [c for s in engine["per_scene"] for c in s["clicks_all"]]
axes[1].hist(clicks_all, bins=np.arange(1, 12) - 0.5, color="tab:purple")
axes[1].set_xlabel("clicks the simulated annotator spent per mask (9 = finished by hand)")
axes[1].set_ylabel("masks")
S.save(fig, "data_engine")
S.say(narrate.data_engine, scenes=engine["scenes"], objects=engine["objects"], manual_masks=am["masks_per_image"],
      manual_clicks=am["clicks_per_mask"], reached=am["reached_share"], prefilled=sa["prefilled_per_image"],
      added=sa["added_per_image"], semi_masks=sa["masks_per_image"], clicks_saved=sa["clicks_saved_share"],
      auto_masks=fa["masks_per_image"], precision=fa["precision"], recall=fa["recall"])

# %% [markdown]
# ## 6. Edge detection
#
# The paper's recipe (§7.2, appendix D.2): everything mode with a 16 x 16 grid and no filtering, Sobel filtering
# of each mask's unthresholded probabilities, keeping only the outer boundary, the maximum over masks,
# normalisation and edge thinning (NMS). The edge map is scored against human boundaries with the BSDS500
# benchmark: **ODS** (best F-measure with one threshold for the data set), **OIS** (best threshold per image),
# **AP** (area under the precision-recall curve) and **R50** (recall at 50% precision).
#
# Beside SAM we measure three classic zero-shot baselines, as the paper lists them: a Sobel filter, Canny, and
# Felzenszwalb-Huttenlocher's graph segmentation (its region boundaries). Canny and Felzenszwalb give binary maps;
# here each is swept (Canny over its hysteresis threshold, Felzenszwalb over its scale) so that the benchmark has
# a graded map to threshold. Without BSDS500 (`data_root`) the ground truth is the object boundaries of generated
# scenes, drawn by two "annotators" (every object, and only the larger ones).

# %% tags=["nbval-ignore-output"]
real_bsds = data_root is not None and (Path(data_root) / "images" / "test").is_dir()
data_note(real_bsds, "BSDS500 (test split) for section 6's edges", "samkit.data.bsds.download_bsds500(root) fetches it; then set data_root.")
if real_bsds:
    bsds = BSDS500(Path(data_root), "test")
    items = [bsds[i] for i in range(min(n_edge_images, len(bsds)))]
else:
    items = scene_edge_items(n_edge_images, size=edge_size, seed=seed)
methods = {"Sobel": evaluate.sobel_edges, "Canny": lambda im: evaluate.canny_edges(im, levels=8),
           "Felz-Hutt": evaluate.felzenszwalb_edges,
           f"SAM ({S.model_name})": lambda im: evaluate.edge_map(S.model, im, points_per_side=edge_points_per_side)}
edge_maps = {name: [fn(item["image"]) for item in items] for name, fn in methods.items()}
measured = {name: evaluate.edge_metrics(maps, [item["boundaries"] for item in items], progress=False)
            for name, maps in edge_maps.items()}
paper_rows = [{"method": r["method"], "ODS": r["ODS"], "OIS": r["OIS"], "AP": r["AP"], "R50": r["R50"],
               "trained on BSDS500": "yes" if r["trained on BSDS"] else "no"} for r in paper.edge_rows()]
S.table([{k: (float("nan") if v is None else v) for k, v in r.items()} for r in paper_rows], "edge_detection_paper",
        title=f"the paper's Table 3: {paper.EDGES.n} (– : not reported)")
what = f"{len(items)} BSDS500 test images" if real_bsds else f"{len(items)} generated scenes of {edge_size} px"
S.table([{"method": name, "ODS": r["ODS"], "OIS": r["OIS"], "AP": r["AP"], "R50": r["R50"]}
         for name, r in measured.items()], "edge_detection", title=f"measured here: {what}")
S.say(narrate.edges, methods=list(measured), ods=[r["ODS"] for r in measured.values()],
      ois=[r["OIS"] for r in measured.values()], ap=[r["AP"] for r in measured.values()],
      r50=[r["R50"] for r in measured.values()],
      levels=[int(max(len(np.unique(m)) for m in maps)) for maps in edge_maps.values()], n_images=len(items),
      real=real_bsds, model=S.model_name,
      recall_from=[float(r["recall"][r["recall"] > 0].min()) if (r["recall"] > 0).any() else 0.0
                   for r in measured.values()])

# %% tags=["nbval-ignore-output"]
item = items[0]
fig, axes = plt.subplots(2, 3, figsize=(14, 9.4), layout="constrained")
axes[0, 0].imshow(item["image"])
axes[0, 0].set_title("image")
axes[0, 1].imshow(np.mean(item["boundaries"], axis=0), cmap="gray_r")
axes[0, 1].set_title("human / ground-truth boundaries")
for ax, (name, maps) in zip(list(axes[0, 2:]) + list(axes[1]), edge_maps.items()):
    ax.imshow(maps[0], cmap="gray_r")
    ax.set_title(f"{name}: ODS {measured[name]['ODS']:.3f}")
for ax in axes.flat:
    ax.axis("off")
S.save(fig, "edge_maps")

fig, ax = plt.subplots(figsize=(9.5, 6), layout="constrained")
for name, r in measured.items():
    ax.plot(r["recall"], r["precision"], label=f"{name} (here)")
ax.scatter([paper.EDGES.value[-1]["R50"]], [0.5], marker="*", s=200, color="black",
           label="paper SAM: R50 (recall at 50% precision, Table 3)")
ax.axhline(0.5, color="0.6", ls=":")
ax.set_xlabel("recall")
ax.set_ylabel("precision")
ax.set_xlim(0, 1)
ax.set_ylim(0, 1)
ax.set_title(f"precision-recall, {what}")
ax.legend(loc="lower left", fontsize=9)
S.save(fig, "edge_pr_curves")

# %% [markdown]
# ## 7. Limitations, measured
#
# The paper's §8 lists SAM's limitations; beside each, what this course measured or what the paper's own tables
# show.

# %% tags=["nbval-ignore-output"]
image = photo("astronaut")
predictor.set_image(image)
x_in = S.model.preprocess(torch.as_tensor(predictor.transform.apply_image(image), device=S.device)
                          .permute(2, 0, 1)[None].float())
with torch.no_grad(), S.autocast():
    t_encode = time_call(lambda: S.model.image_encoder(x_in), repeat=3, device=S.device)
t_click = time_call(lambda: predictor.predict(point_coords=np.array([[260.0, 130.0]]), point_labels=np.array([1])),
                    repeat=10, device=S.device)
S.table([{"limitation (§8)": text} for text in paper.LIMITATIONS.value], "limitations",
        title=f"the paper's limitations ({paper.LIMITATIONS.cite()})")
S.say(narrate.limitations, model=S.model_name, device=str(S.device), encoder_s=t_encode, click_s=t_click,
      max_clicks=n_clicks[-1], click_gains={name: res.value(selection="confident", n_points=n_clicks[-1]) -
                                            res.value(selection="confident", n_points=1)
                                            for name, res in point_results.items()})

# %% [markdown]
# ## Summary
#
# * One click is ambiguous; the oracle–confident gap (section 2) shows how often the IoU head picks the wrong one
#   of the three masks, and the curves show whether more clicks help this run's model.
# * Section 3 says what a box is worth in clicks here; section 4 whether everything mode keeps masks, and why not
#   when it keeps none.
# * The data engine (section 5) works only once the model can be trusted: its stages hand more and more of the
#   work to the model.
# * Edges fall out of the masks: measured with the same ODS/OIS/AP/R50 as the paper, on the images said above.
# * With `refine` on, sections 1-3 show beside the model's masks what cutting them along the photo's edges
#   changes; the sentences under section 3 say by how much, in this run.
#
# Next: [06 · click to segment](06_click_to_segment.ipynb), the interactive widget.
