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
# # 01 · Intersection over Union, explained
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/samkit-course/samkit/blob/main/notebooks/01_iou_explained.ipynb)
#
# Segment Anything measures almost everything with one number, the **intersection over union** (IoU) of two
# masks:
#
# * the paper's main metric is the **mean IoU** (mIoU) between predicted and ground-truth masks;
# * the mask decoder has an **IoU head** that *predicts* the IoU of each of its masks, and the model ranks its
#   three ambiguity-aware masks by that prediction;
# * the data engine keeps an automatic mask only when its predicted IoU is high and when it is **stable** (the
#   stability score is itself an IoU);
# * the quality of SA-1B is summarised by the share of automatic masks whose IoU with a professionally corrected
#   version is above 0.90.
#
# This notebook builds IoU from nothing, compares it with the Dice coefficient of SAM's loss, stores masks the
# way SA-1B does (COCO run-length encoding), computes stability scores, puts SA-1B's published statistics
# beside generated scenes, and reads the paper's responsible-AI tables.
#
# *The stored outputs come from the full course configuration (`make course`); every sentence about a result
# below is written by the code from the numbers of that run.*

# %% tags=["parameters"]
model = "tiny"        # model for the stability-score section: "tiny" (embedded), "vit_b", "vit_l", "vit_h", "vit_t"
checkpoint = None     # a state-dict file for `model`; None means the official (or embedded) weights
device = "auto"       # "auto" (GPU when present), "cpu", "cuda"
seed = 0
scene_size = 512      # side of the generated scenes, in pixels
n_scenes = 20         # generated scenes that supply the masks of sections 2, 6 and 7
out_dir = "runs/latest/01_iou_explained"   # figures (PNG), tables (HTML, CSV) and claims of this run
small = False         # True: the quick configuration of the tests and CI (fewer, smaller scenes)

# %%
# Colab only: install samkit (Colab's torch is kept as it is) and enable the widget manager.
import sys
if "google.colab" in sys.modules:
    # %pip install -q "samkit @ git+https://github.com/samkit-course/samkit"
    from google.colab import output
    output.enable_custom_widget_manager()

# %%
if small:
    n_scenes, scene_size = min(n_scenes, 4), min(scene_size, 256)

import matplotlib.pyplot as plt
import numpy as np
import torch
from pycocotools import mask as mask_utils
from scipy import ndimage

from samkit import narrate, paper, viz
from samkit.amg_utils import stability_score
from samkit.data.prompts import center_point
from samkit.data.synthetic import SceneGenerator
from samkit.notebook_utils import setup, simulate_correction

S = setup(model=model, checkpoint=checkpoint, device=device, seed=seed, out_dir=out_dir)

# %% [markdown]
# ## 1. IoU from scratch
#
# A mask is a boolean image: `True` where the object is. For two masks $A$ and $B$,
#
# $$\mathrm{IoU}(A, B) = \frac{|A \cap B|}{|A \cup B|},$$
#
# the number of pixels in both, divided by the number of pixels in either. It is 1 for identical masks, 0 for
# disjoint ones, and it is symmetric. With NumPy, `&` is the intersection, `|` the union and `.sum()` counts
# pixels. Two small rectangles:

# %%
A = np.zeros((6, 8), dtype=bool)
A[1:4, 1:5] = True
B = np.zeros((6, 8), dtype=bool)
B[2:5, 3:7] = True
print("A =\n", A.astype(int))
print("B =\n", B.astype(int))
inter, union = (A & B).sum(), (A | B).sum()
print(f"|A ∩ B| = {inter}, |A ∪ B| = {union}, IoU = {inter}/{union} = {inter / union:.3f}")

# %%
fig, axes = plt.subplots(1, 4, figsize=(11, 2.9), layout="constrained")
for ax, (title, m) in zip(axes, [("A", A), ("B", B), ("A ∩ B", A & B), ("A ∪ B", A | B)]):
    ax.imshow(m, cmap="Blues", vmin=0, vmax=1.3)
    ax.set_title(f"{title}: {m.sum()} px")
    ax.set_xticks(np.arange(-0.5, 8, 1), [])
    ax.set_yticks(np.arange(-0.5, 6, 1), [])
    ax.grid(color="0.7", lw=0.5)
fig.suptitle(f"IoU(A, B) = {inter}/{union} = {inter / union:.3f}")
S.save(fig, "iou_toy")

# %% [markdown]
# ## 2. IoU of object masks
#
# The same two lines work on real masks. Below, one object of a generated scene (the kit's SA-1B look-alikes: a
# picture and the exact mask of every visible object) is compared with a copy shifted by 5 pixels.
#
# A fixed boundary error costs a small object a much larger part of its IoU than a large one, which is why
# IoU-based benchmarks are hard on small objects. The scatter plot grows every mask of the generated scenes by
# one pixel and plots the IoU against the object's area.

# %% tags=["nbval-ignore-output"]
scenes = SceneGenerator(size=scene_size, seed=seed)
image, masks = scenes(0)
areas = masks.sum(axis=(1, 2))
obj = masks[int(np.argsort(areas)[len(areas) // 2])]        # a medium-sized object
shifted = np.roll(obj, 5, axis=1)
iou_shift = (obj & shifted).sum() / (obj | shifted).sum()
print(f"scene 0: {len(masks)} object masks; the chosen object has {obj.sum()} px; "
      f"shifted by 5 px its IoU is {iou_shift:.3f}")

fig, axes = plt.subplots(1, 2, figsize=(11, 5.6), layout="constrained")
axes[0].imshow(image)
viz.show_mask(obj, axes[0])
axes[0].set_title("a generated scene and one object")
axes[1].imshow(image)
viz.show_mask(obj, axes[1], color=(0.1, 0.4, 1.0, 0.5))
viz.show_mask(shifted, axes[1], color=(1.0, 0.3, 0.1, 0.5))
axes[1].set_title(f"the object (blue) and a copy shifted by 5 px (red): IoU {iou_shift:.3f}")
for ax in axes:
    ax.axis("off")
S.save(fig, "iou_shifted_object")

# %% tags=["nbval-ignore-output"]
disk = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
scene_masks = [scenes(i)[1] for i in range(n_scenes)]
all_masks = np.concatenate(scene_masks)
grown = np.stack([ndimage.binary_dilation(m, structure=disk) for m in all_masks])
iou_grown = (all_masks & grown).sum(axis=(1, 2)) / (all_masks | grown).sum(axis=(1, 2))
area = all_masks.sum(axis=(1, 2))
small_obj, large_obj = area < 32 ** 2, area >= 96 ** 2
fig, ax = plt.subplots(figsize=(10, 4.6), layout="constrained")
ax.scatter(area, iou_grown, s=10, alpha=0.6)
ax.set_xscale("log")
ax.axhline(0.9, color="crimson", lw=1, ls="--", label="IoU = 0.9")
for side, name in ((32, "32² px"), (96, "96² px")):
    ax.axvline(side ** 2, color="0.5", lw=1, ls=":")
    ax.text(side ** 2 * 1.05, ax.get_ylim()[0] + 0.02, name, color="0.4")
ax.set_xlabel("object area (pixels, log scale)")
ax.set_ylabel("IoU(mask, mask grown by 1 px)")
ax.set_title(f"one pixel of error on {len(all_masks)} masks of {n_scenes} generated scenes")
ax.legend(loc="lower right")
S.save(fig, "iou_vs_area_1px")
S.say(narrate.iou_area, n_masks=len(all_masks), n_scenes=n_scenes, share_all=(iou_grown > 0.9).mean(),
      share_small=(iou_grown[small_obj] > 0.9).mean() if small_obj.any() else None,
      share_large=(iou_grown[large_obj] > 0.9).mean() if large_obj.any() else None,
      n_small=small_obj.sum(), n_large=large_obj.sum())

# %% [markdown]
# ## 3. IoU and the Dice coefficient
#
# The Dice coefficient (the F1 score of the pixels) counts the intersection twice over the sum of both areas:
#
# $$\mathrm{Dice}(A, B) = \frac{2|A \cap B|}{|A| + |B|} = \frac{2\,\mathrm{IoU}}{1 + \mathrm{IoU}}.$$
#
# The two rank pairs of masks identically (one is a monotone function of the other), but Dice is never below
# IoU: IoU 0.5 is Dice 0.67. SAM *trains* with a soft, differentiable Dice loss (beside a focal loss, weighted
# 1 : 20; notebook 03 works through both) and *reports* IoU.

# %%
dice = 2 * inter / (A.sum() + B.sum())
print(f"toy masks: IoU = {inter / union:.3f}, Dice = {dice:.3f}, "
      f"2·IoU/(1+IoU) = {2 * (inter / union) / (1 + inter / union):.3f}")
t = np.linspace(0, 1, 101)
fig, ax = plt.subplots(figsize=(9.5, 4.2), layout="constrained")
ax.plot(t, 2 * t / (1 + t), label="Dice = 2·IoU / (1 + IoU)")
ax.plot(t, t, ls=":", color="0.5", label="Dice = IoU")
ax.set_xlabel("IoU")
ax.set_ylabel("Dice")
ax.set_title("Dice is never below IoU")
ax.legend()
S.save(fig, "iou_vs_dice")

# %% [markdown]
# ## 4. Storing masks: COCO run-length encoding
#
# SA-1B ships 1.1 billion masks. Raw booleans would take one byte per pixel; SA-1B stores each mask as a
# **COCO RLE**: the image is read column by column (Fortran order) and only the lengths of the alternating runs
# of 0s and 1s are kept, compressed into a short ASCII string. `pycocotools` encodes and decodes RLEs and
# computes areas, boxes and IoUs directly on them, without decoding.

# %% tags=["nbval-ignore-output"]
rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
print("one RLE:", {"size": rles[0]["size"], "counts": rles[0]["counts"][:60].decode() + "..."})
shift = 4  # each mask is compared with a copy of itself moved 4 px to the right: an IoU between 0 and 1
rows = []
for i in range(min(5, len(masks))):
    m, moved = masks[i], np.roll(masks[i], shift, axis=1)
    rle_moved = mask_utils.encode(np.asfortranarray(moved.astype(np.uint8)))
    iou_rle = mask_utils.iou([rles[i]], [rle_moved], [0])[0, 0]
    iou_np = (m & moved).sum() / max((m | moved).sum(), 1)
    rows.append({"mask": i, "pixels": int(m.sum()), "raw bytes": m.size, "RLE bytes": len(rles[i]["counts"]),
                 "area (RLE)": int(mask_utils.area(rles[i])),
                 "box XYWH (RLE)": [int(v) for v in mask_utils.toBbox(rles[i])],
                 f"IoU, moved {shift} px (RLE)": float(iou_rle), f"IoU, moved {shift} px (NumPy)": float(iou_np)})
assert all(r["area (RLE)"] == r["pixels"] for r in rows)
assert all(abs(r[f"IoU, moved {shift} px (RLE)"] - r[f"IoU, moved {shift} px (NumPy)"]) < 1e-9 for r in rows)
assert np.array_equal(mask_utils.decode(rles)[..., 0].astype(bool), masks[0])
S.table(rows, "rle_table", title=f"pycocotools on the masks of scene 0 (each against itself moved {shift} px): "
        "areas and IoUs agree with NumPy")

# %% [markdown]
# ## 5. The stability score
#
# The mask decoder outputs **logits**: a mask is the set of pixels whose logit is above 0. If the model is sure,
# moving the threshold a little barely changes the mask. SAM's automatic mask generator measures that: the
# **stability score** is the IoU between the mask thresholded at $+1$ and the mask thresholded at $-1$ (the first
# lies inside the second, so it is the ratio of their areas). The data engine kept a mask only when this IoU was
# at least 0.95 and its predicted IoU above 0.88 (paper appendix B).
#
# First a worked example that does not depend on any model: one disk, with logits that grow with the distance
# from its boundary, steeply or shallowly.

# %%
yy, xx = np.mgrid[:128, :128]
signed_distance = 40.0 - np.hypot(yy - 64, xx - 64)           # > 0 inside a disk of radius 40 px
synthetic = {"steep": torch.tensor(8.0 * signed_distance)[None], "shallow": torch.tensor(0.12 * signed_distance)[None]}
synthetic_scores = {k: float(stability_score(v, 0.0, 1.0)[0]) for k, v in synthetic.items()}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), layout="constrained")
for ax, (name, logits) in zip(axes[:2], synthetic.items()):
    ax.plot(logits[0, 64].numpy(), label="logit along the middle row")
    for thr, ls in ((-1, ":"), (0, "-"), (1, "--")):
        ax.axhline(thr, color="crimson", ls=ls, lw=1)
    ax.set_ylim(-6, 6)
    ax.set_title(f"{name}: stability {synthetic_scores[name]:.3f}")
    ax.set_xlabel("column (px)")
axes[0].set_ylabel("logit (thresholds −1, 0, +1 in red)")
offsets = np.linspace(0.0, 4.0, 17)
for name, logits in synthetic.items():
    axes[2].plot(offsets, [float(stability_score(logits, 0.0, o)[0]) for o in offsets], marker="o", label=name)
axes[2].axvline(1.0, color="crimson", ls="--", lw=1)
axes[2].axhline(0.95, color="0.5", ls=":", lw=1)
axes[2].set_xlabel("offset")
axes[2].set_ylabel("stability score")
axes[2].legend()
S.save(fig, "stability_synthetic")
S.say(narrate.stability_synthetic, steep=synthetic_scores["steep"], shallow=synthetic_scores["shallow"])

# %% [markdown]
# Now a mask the model predicts: one click at the centre of the largest object of scene 0, the logits of the
# most confident of the three masks thresholded at −1, 0 and +1, and the histogram of its logits near the
# object.

# %% tags=["nbval-ignore-output"]
gt = masks[int(np.argmax(areas))]
x, y = center_point(gt)
predictor = S.predictor()
predictor.set_image(image)
mask_pred, iou_pred, _ = predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]),
                                           multimask_output=True, return_logits=True)
best = int(np.argmax(iou_pred))
logits = torch.as_tensor(mask_pred[best:best + 1]).float()   # 1 x H x W logits
score = float(stability_score(logits, 0.0, 1.0)[0])
areas_at = {thr: int((logits[0] > thr).sum()) for thr in (-1.0, 0.0, 1.0)}

fig, axes = plt.subplots(1, 4, figsize=(14, 3.9), layout="constrained")
for ax, thr in zip(axes[:3], (-1.0, 0.0, 1.0)):
    ax.imshow(image)
    viz.show_mask(logits[0].numpy() > thr, ax, color=(1.0, 0.85, 0.0), alpha=0.6)  # yellow: stands out on any scene
    viz.show_points(np.array([[x, y]]), np.array([1]), ax)
    ax.set_title(f"logits > {thr:+.0f}: {areas_at[thr]:,} px")
    ax.axis("off")
near = ndimage.binary_dilation(gt, iterations=10)
axes[3].hist(logits[0].numpy()[near], bins=60, color="tab:blue")
for thr, ls in ((-1, ":"), (0, "-"), (1, "--")):
    axes[3].axvline(thr, color="crimson", ls=ls, lw=1)
axes[3].set_xlabel("logit (pixels near the object)")
axes[3].set_ylabel("pixels")
S.save(fig, "stability_score")
S.say(narrate.stability, model=S.model_name, weights=S.weights, predicted_iou=float(iou_pred[best]), score=score,
      max_logit=float(logits.max()), area_minus=areas_at[-1.0], area_zero=areas_at[0.0], area_plus=areas_at[1.0])

# %% [markdown]
# ## 6. SA-1B in numbers, beside our generated scenes
#
# SA-1B's statistics as the paper publishes them (§1, §5, Table 1, appendix F), and the same counts measured on
# the generated scenes this course trains and evaluates on. The "relative mask size" is the paper's: the square
# root of the mask's area divided by the image's area.

# %% tags=["nbval-ignore-output"]
s1 = paper.SA1B.value
regions = [r for r in paper.GEOGRAPHY.value if "income" not in r["region"]]
per_region = [r["masks"] / r["images"] for r in regions]
counts = np.array([len(m) for m in scene_masks])
relative = np.sqrt(area / float(scene_size * scene_size))
S.table([
    {"statistic": "images", "SA-1B (paper)": f"{s1['images'] / 1e6:.0f}M", "source": "§5",
     "our generated scenes": n_scenes},
    {"statistic": "masks", "SA-1B (paper)": f"{s1['masks'] / 1e9:.1f}B", "source": "§5",
     "our generated scenes": int(counts.sum())},
    {"statistic": "masks per image", "SA-1B (paper)": f"~{s1['masks_per_image']}", "source": "§1, App. F.1",
     "our generated scenes": f"{counts.mean():.1f} ({counts.min()}-{counts.max()})"},
    {"statistic": "masks per image, by region (Table 1 counts)", "SA-1B (paper)":
     f"{min(per_region):.0f}-{max(per_region):.0f}", "source": "Table 1", "our generated scenes": "-"},
    {"statistic": "made fully automatically", "SA-1B (paper)": f"{100 * s1['automatic_share']:.1f}%",
     "source": "§5", "our generated scenes": "all (drawn by the generator)"},
    {"statistic": "image size", "SA-1B (paper)": f"short side {s1['released_short_side']} px "
     f"(originals {s1['mean_original_resolution'][0]}x{s1['mean_original_resolution'][1]})", "source": "§5",
     "our generated scenes": f"{scene_size}x{scene_size}"},
    {"statistic": "automatic vs corrected: IoU > 0.90", "SA-1B (paper)": f"{100 * paper.MASK_QUALITY.value['iou_above_0.90']:.0f}%",
     "source": "§5 (500 images, ~50k masks)", "our generated scenes": "section 7"},
], "sa1b_numbers", title="SA-1B (as published) and the generated scenes of this run")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
axes[0].hist(counts, bins=np.arange(counts.min(), counts.max() + 2) - 0.5, color="tab:blue")
axes[0].axvline(s1["masks_per_image"], color="crimson", ls="--")
axes[0].text(s1["masks_per_image"], axes[0].get_ylim()[1] * 0.9, " SA-1B ~100 (§1)", color="crimson",
             ha="right" if counts.max() < s1["masks_per_image"] else "left")
axes[0].set_xlim(0, max(counts.max(), s1["masks_per_image"]) + 5)
axes[0].set_xlabel("masks per image")
axes[0].set_ylabel("generated scenes")
axes[1].hist(relative, bins=np.linspace(0, 1, 41), color="tab:green")
axes[1].set_xlabel("relative mask size √(mask area / image area)")
axes[1].set_ylabel("masks")
fig.suptitle(f"{n_scenes} generated scenes of {scene_size} px")
S.save(fig, "generated_scene_statistics")
S.say(narrate.sa1b_scale, our_masks_per_image=counts.mean(), our_min=counts.min(), our_max=counts.max(),
      n_scenes=n_scenes, scene_size=scene_size, our_median_relative_size=np.median(relative),
      regions_min=min(per_region), regions_max=max(per_region))

# %% [markdown]
# ## 7. What "94% of pairs have IoU > 90%" means
#
# To judge SA-1B's quality, the authors sampled 500 images (about 50k masks), had professional annotators
# improve every automatic mask, and computed the IoU of each automatic/corrected pair (§5).
#
# We cannot repeat their study, but we can see what such numbers look like. Each generated ground-truth mask
# plays the corrected mask, and a simulated "automatic" mask differs from it by a slightly grown or shrunk
# boundary and sometimes a wrong bump (`samkit.notebook_utils.simulate_correction`). Then we count, as the paper
# did, the share of pairs above 0.90 and 0.75 IoU, by object size, and look at pairs close to 0.90.

# %% tags=["nbval-ignore-output"]
rng = np.random.default_rng(seed)
automatic = np.stack([simulate_correction(m, rng) for m in all_masks])
pair_iou = (automatic & all_masks).sum(axis=(1, 2)) / (automatic | all_masks).sum(axis=(1, 2))
mid = (area >= 32 ** 2) & (area < 96 ** 2)
rows = []
for label, keep in [("small (< 32² px)", small_obj), ("medium", mid), ("large (≥ 96² px)", large_obj),
                    ("all", area > 0)]:
    rows.append({"objects": label, "pairs": int(keep.sum()),
                 "IoU > 0.90": f"{(pair_iou[keep] > 0.9).mean():.0%}" if keep.any() else "-",
                 "IoU > 0.75": f"{(pair_iou[keep] > 0.75).mean():.0%}" if keep.any() else "-"})
q = paper.MASK_QUALITY.value
rows.append({"objects": "SA-1B, automatic vs corrected (paper §5)", "pairs": "~50k (500 images)",
             "IoU > 0.90": f"{q['iou_above_0.90']:.0%}", "IoU > 0.75": f"{q['iou_above_0.75']:.0%}"})
S.table(rows, "pairs_above_threshold", title=f"simulated corrections on {scene_size}-px scenes, and the paper's")

fig, ax = plt.subplots(figsize=(10, 4.2), layout="constrained")
ax.hist(pair_iou, bins=np.linspace(0, 1, 51), color="tab:blue", alpha=0.85)
ax.axvline(0.9, color="crimson", ls="--", label="0.90")
ax.axvline(0.75, color="orange", ls="--", label="0.75")
ax.set_xlabel("IoU(automatic, corrected)")
ax.set_ylabel("pairs")
ax.set_title(f"{len(pair_iou)} simulated pairs")
ax.legend(loc="upper left")
S.save(fig, "pair_iou_histogram")
S.say(narrate.pair_agreement, n_pairs=len(pair_iou), share90=(pair_iou > 0.9).mean(), share75=(pair_iou > 0.75).mean(),
      share90_small=(pair_iou[small_obj] > 0.9).mean() if small_obj.any() else None,
      share90_large=(pair_iou[large_obj] > 0.9).mean() if large_obj.any() else None,
      n_small=small_obj.sum(), n_large=large_obj.sum())

# %% tags=["nbval-ignore-output"]
order = np.argsort(np.abs(pair_iou - 0.9))[:4]
fig, axes = plt.subplots(1, 4, figsize=(13, 3.8), layout="constrained")
for ax, i in zip(axes, order):
    ys, xs = np.nonzero(all_masks[i] | automatic[i])
    pad = 6
    crop = np.s_[max(ys.min() - pad, 0): ys.max() + pad, max(xs.min() - pad, 0): xs.max() + pad]
    ax.imshow(np.zeros_like(all_masks[i][crop]), cmap="gray", vmin=0, vmax=1)
    viz.show_mask(all_masks[i][crop], ax, color=(0.1, 0.8, 0.2, 0.55))
    viz.show_mask(automatic[i][crop], ax, color=(1.0, 0.2, 0.6, 0.45))
    ax.set_title(f"IoU {pair_iou[i]:.3f}, {all_masks[i].sum():,} px")
    ax.axis("off")
fig.suptitle("pairs near IoU 0.90 (green: corrected, pink: automatic)")
S.save(fig, "pairs_near_090")

# %% [markdown]
# ## 8. Responsible AI: who is in the data, and is everyone segmented equally well?
#
# Section 6 of the paper asks two questions of SA-1B and SAM. Where were the images taken (Table 1: countries
# inferred from the photos' captions, with COCO and Open Images for comparison)? And does SAM segment people
# equally well across perceived gender presentation, age and skin tone (Table 2: mIoU with 1 and 3 points)?
# Both tables are drawn below from the paper's numbers (`samkit.paper`).

# %%
geo = paper.GEOGRAPHY.value
fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), layout="constrained")
ypos = np.arange(len(geo))
for k, (key, label) in enumerate([("share_sa1b", "SA-1B"), ("share_coco", "COCO"),
                                  ("share_open_images", "Open Images")]):
    axes[0].barh(ypos + (k - 1) * 0.27, [100 * r[key] for r in geo], height=0.27, label=label)
axes[0].set_yticks(ypos, [r["region"] for r in geo])
axes[0].invert_yaxis()
axes[0].set_xlabel("% of located images")
axes[0].set_title(f"where the images come from ({paper.GEOGRAPHY.source})")
axes[0].legend(loc="lower right")
fair = paper.FAIRNESS_PEOPLE.value
labels = [f"{r['group'].replace('perceived ', '')}: {r['value']}" for r in fair]
ypos = np.arange(len(fair))
for k, (key, label, colour) in enumerate([("miou_1", "1 point", "tab:orange"), ("miou_3", "3 points", "tab:blue")]):
    axes[1].errorbar([r[key][0] for r in fair], ypos, xerr=[r[key][1] for r in fair], fmt="o", color=colour,
                     capsize=3, label=label)
axes[1].set_yticks(ypos, labels)
axes[1].invert_yaxis()
axes[1].set_xlabel("mIoU (%), 95% confidence interval")
axes[1].set_title(f"segmenting people ({paper.FAIRNESS_PEOPLE.source})")
axes[1].legend(loc="center")
S.save(fig, "responsible_ai")
S.say(narrate.geography)
S.say(narrate.fairness)

# %% [markdown]
# ## 9. Try it: slide one mask over another
#
# Move the slider to shift the red copy of the object; the curve below is the same experiment for every shift
# (the slider needs a live kernel).

# %% tags=["nbval-ignore-output"]
width = np.ptp(np.nonzero(obj)[1]) + 1
fifth = max(width // 5, 1)
reach = max(30, 2 * fifth)  # the curve spans the marked shift
shifts = np.arange(-reach, reach + 1)
curve = [(obj & np.roll(obj, s, axis=1)).sum() / (obj | np.roll(obj, s, axis=1)).sum() for s in shifts]
iou_fifth = (obj & np.roll(obj, fifth, axis=1)).sum() / (obj | np.roll(obj, fifth, axis=1)).sum()
fig, ax = plt.subplots(figsize=(10, 3.8), layout="constrained")
ax.plot(shifts, curve)
ax.plot([fifth], [iou_fifth], "o", color="tab:red")
ax.set_xlabel("horizontal shift (pixels)")
ax.set_ylabel("IoU with the original")
ax.set_title(f"an object {width} px wide: a shift of {fifth} px (a fifth of it) leaves IoU {iou_fifth:.2f}")
S.save(fig, "iou_vs_shift")

# %% tags=["nbval-ignore-output"]
try:
    import ipywidgets as widgets
except ImportError:  # the static curve above shows the same thing
    widgets = None


def shift_picture(dx=0):
    moved = np.roll(obj, dx, axis=1)
    fig, ax = plt.subplots(figsize=(4, 4))
    viz.show_mask(obj, ax, color=(0.1, 0.4, 1.0, 0.5))
    viz.show_mask(moved, ax, color=(1.0, 0.2, 0.1, 0.5))
    ax.set_title(f"shift {dx:+d} px: IoU = {(obj & moved).sum() / (obj | moved).sum():.3f}")
    ax.set_xlim(0, obj.shape[1])
    ax.set_ylim(obj.shape[0], 0)
    return viz.figure_png(fig)


if widgets is not None:  # a slider and a picture redrawn when it moves
    slider = widgets.IntSlider(value=0, min=-40, max=40, description="shift (px)")
    picture = widgets.Image(value=shift_picture(0), format="png")
    slider.observe(lambda change: setattr(picture, "value", shift_picture(change["new"])), names="value")
    display(widgets.VBox([slider, picture]))

# %% [markdown]
# ## Summary
#
# * IoU = intersection / union; Dice = 2·IoU / (1 + IoU) ranks the same way but reads higher.
# * A fixed boundary error costs small objects more IoU than large ones (section 2 measures how much here).
# * SA-1B stores masks as COCO RLE; pycocotools computes areas, boxes and IoU on the RLE directly.
# * The stability score is an IoU too, between the masks at logit thresholds +1 and −1: it rewards confident
#   logits, not correct masks (section 5 shows what this run's model gives).
# * SA-1B's quality check (94% of pairs above 0.90 IoU on 500 images) and its geography and fairness tables come
#   from the paper; section 7 shows how mask size moves such a percentage.
#
# Next: [02 · the architecture](02_architecture.ipynb).
