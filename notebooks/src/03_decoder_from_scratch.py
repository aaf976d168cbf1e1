# %% [markdown]
# # 03 · Training the mask decoder from scratch
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/samkit-course/samkit/blob/main/notebooks/03_decoder_from_scratch.ipynb)
#
# The course's first experiment. We keep SAM's image encoder frozen, **throw away the mask decoder** (re-initialise
# it at random) and train it again on **10 images with 10 masks each**, with the paper's recipe (appendix A):
#
# * each mask gets a first prompt, a point inside it or its box jittered by noise;
# * then, over 11 rounds, new points are sampled from the **error region** of the previous prediction
#   (positive where the model missed, negative where it spilled over), the previous low-res logits are fed back
#   as a mask prompt, and two rounds add no point so that the model learns to refine its own mask;
# * the loss is 20 x focal + 1 x dice on the masks, plus the mean squared error of the IoU head; with one prompt,
#   only the best of the three masks is supervised.
#
# The image embeddings are computed once and cached, so each training step only runs the small decoder: this is
# why the experiment fits a laptop. We use SA-1B if `data_root` points to a folder of it, otherwise generated
# look-alikes in SA-1B's exact format (SA-1B may not be redistributed).
#
# *The outputs stored in this notebook come from its small configuration (`small=True`).*

# %% tags=["parameters"]
model = "tiny"          # "tiny" (embedded), "vit_b", "vit_l", "vit_h", "vit_t": its encoder is kept, its decoder reset
checkpoint = None       # a state-dict file for `model`, None means the official (or embedded) weights
data_root = None        # a folder of SA-1B (sa_*.jpg + sa_*.json), None means generated look-alikes
device = "auto"
seed = 0
n_images = 10           # training images
n_masks = 10            # masks per image
n_val = 4               # held-out images for the mIoU before and after
epochs = 3              # the course: 3 epochs, batch 1, lr 8e-4 x 0.6 per epoch, wd 0.1
lr = 8e-4
n_rounds = 11           # rounds of the interactive simulation (paper: 11)
scene_size = 512        # side of the generated images
out_dir = "runs/latest/03_decoder_from_scratch"
small = False           # True: the quick configuration of the tests and CI

# %%
# Colab only: install samkit (Colab's torch is kept as it is) and enable the widget manager.
import sys
if "google.colab" in sys.modules:
    %pip install -q "samkit @ git+https://github.com/samkit-course/samkit"
    from google.colab import output
    output.enable_custom_widget_manager()

# %%
if small:
    n_images, n_masks, n_val, epochs, n_rounds, scene_size = 2, 4, 2, 2, 3, 256

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import samkit
from samkit import viz
from samkit.data import SA1B, generate_scenes, select_images
from samkit.notebook_utils import data_note, miou_at_center, predict_at_center, setup
from samkit.train import TrainConfig, build_training_model, train

S = setup(model=model, checkpoint=checkpoint, device=device, seed=seed, out_dir=out_dir)

# %% [markdown]
# ## 1. The data: 10 images, 10 masks each
#
# SA-1B gives, per image, a JPEG and a JSON file whose masks are COCO RLEs. `select_images` visits the images in
# a seeded random order and keeps those with at least `n_masks` masks between 0.1% and 90% of the image (the
# paper drops masks above 90%), choosing `n_masks` of them.

# %%
real = data_root is not None and any(Path(data_root).glob("sa_*.json"))
if real:
    sa1b_dir = Path(data_root)
else:
    sa1b_dir = S.path("generated_sa1b")
    generate_scenes(sa1b_dir, 3 * (n_images + n_val), size=scene_size, seed=seed, progress=False)  # spare scenes: not all have n_masks masks
data_note(real, "SA-1B", "Point data_root at an SA-1B folder (sa_*.jpg + sa_*.json) to train on the real thing.")
dataset = SA1B(sa1b_dir)
chosen = select_images(dataset, n_images=n_images + n_val, n_masks=n_masks, seed=seed)
print(f"{len(dataset)} images in the folder; {len(chosen)} chosen ({n_images} to train, {n_val} held out), "
      f"{n_masks} masks each")
fig, axes = plt.subplots(1, min(4, len(chosen)), figsize=(4 * min(4, len(chosen)), 4), squeeze=False)
for ax, item in zip(axes[0], chosen):
    viz.show_sample(item, ax=ax, title=f"image {item['index']}: {len(item['masks'])} masks")
S.save(fig, "training_images")

# %% [markdown]
# ## 2. The course's settings beside the paper's
#
# The recipe is the paper's; the scale is not. Only the decoder (about 4 M parameters for the official models)
# learns, from 100 masks instead of 1.1 billion, on a CPU or one GPU instead of 256 A100s for 3 to 5 days.

# %%
weights = {"official": "default", "embedded": "default", "checkpoint": str(checkpoint), "random": None}[S.weights]
cfg = TrainConfig(
    model=S.model_name, checkpoint=weights, train_parts="decoder_scratch",
    data={"kind": "sa1b", "root": str(sa1b_dir), "n_images": n_images, "n_val": n_val,
          "masks_per_image": n_masks, "seed": seed},
    epochs=epochs, batch_size=1, masks_per_image=n_masks, lr=lr, weight_decay=0.1,
    warmup_steps=0, schedule="exp_epoch", gamma=0.6, n_rounds=n_rounds,
    no_point_rounds=2 if n_rounds >= 5 else 1, eval_every=max(1, n_images * epochs // 8),
    eval_masks_per_image=n_masks, out_dir=str(S.path("train")), cache_dir=str(S.path("embeddings")),
    device=str(S.device), seed=seed, amp="bf16" if S.amp is not None and str(S.amp) == "torch.bfloat16" else
    ("fp16" if S.amp is not None else "none"), log_every=1)
paper = {"images": "11 M (SA-1B)", "masks per image": "at most 64 per GPU", "what trains": "everything (encoder from MAE)",
         "steps x batch": "90k x 256 images", "optimiser": "AdamW (0.9, 0.999), lr 8e-4, wd 0.1",
         "schedule": "warm-up 250, lr ÷10 at 60k and 86,666", "rounds": "11 (8 error points, 2 without)",
         "loss": "20·focal + dice + IoU MSE", "hardware": "256 A100 GPUs, 3-5 days"}
course = {"images": f"{n_images} ({'SA-1B' if real else 'generated'})", "masks per image": str(n_masks),
          "what trains": f"mask decoder only, re-initialised ({S.model_name} encoder frozen)",
          "steps x batch": f"{n_images * epochs} x 1 image", "optimiser": f"AdamW (0.9, 0.999), lr {lr:g}, wd 0.1",
          "schedule": f"lr x {cfg.gamma:g} after each epoch (no warm-up)", "rounds": f"{n_rounds} ({max(n_rounds - 1 - cfg.no_point_rounds, 0)} error points, {cfg.no_point_rounds} without)",
          "loss": f"{cfg.focal_weight:g}·focal + {cfg.dice_weight:g}·dice + {cfg.iou_weight:g}·IoU MSE",
          "hardware": f"{S.device}"}
S.table([{"setting": k, "paper (SAM, appendix A)": paper[k], "this run": course[k]} for k in paper],
        "settings", title="training settings")

# %% [markdown]
# ## 3. Before training
#
# The re-initialised decoder knows nothing: its masks for a point prompt are noise. We score it on the held-out
# images with one click at the centre of each mask (the paper's first evaluation click).

# %% tags=["nbval-ignore-output"]
before = build_training_model(cfg).to(S.device).eval()
train_items, held_out = chosen[:n_images], chosen[n_images:]
miou_before = miou_at_center(before, held_out)
demo_before = [predict_at_center(samkit.Predictor(before), item["image"], item["masks"][0]) for item in held_out[:3]]
print(f"held-out one-click mIoU before training: {miou_before['miou_oracle']:.3f} (oracle), "
      f"{miou_before['miou_confident']:.3f} (confident), {miou_before['n_masks']} masks")

# %% [markdown]
# ## 4. Training
#
# `samkit.train.train(config)` runs the loop: it encodes each image once into the embedding cache (a progress
# bar), then trains, writing `metrics.jsonl`, `checkpoint.pt` and `model.pth` into `out_dir/train`. The held-out
# images are scored every few steps: mIoU of one point at the centre of each mask, for the best of the three
# masks (*oracle*), the one the IoU head ranks first (*confident*), and for a box prompt.

# %% tags=["nbval-ignore-output"]
result = train(cfg)
print(f"{result.steps} steps; final loss {result.final_loss:.3f}")

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
viz.plot_curves(result.history, keys=["loss", "focal", "dice", "iou_mse"], ax=axes[0], logy=True,
                title="training loss (per step)")
viz.plot_curves(result.evals, keys=["miou_point_oracle", "miou_point_confident", "miou_box"], ax=axes[1],
                title="held-out mIoU")
S.save(fig, "loss_curves")

# %% [markdown]
# ## 5. After training
#
# The same held-out images and prompts, before (top) and after (bottom) training the decoder. On generated
# data with the embedded model, a few hundred steps recover most of what the decoder had; the paper's decoder
# saw a billion masks and generalises to images it never saw.

# %% tags=["nbval-ignore-output"]
after = result.model.to(S.device).eval()
miou_after = miou_at_center(after, held_out)
demo_after = [predict_at_center(samkit.Predictor(after), item["image"], item["masks"][0]) for item in held_out[:3]]
S.table([{"decoder": "re-initialised (before)", "mIoU oracle": miou_before["miou_oracle"],
          "mIoU confident": miou_before["miou_confident"]},
         {"decoder": f"trained ({result.steps} steps)", "mIoU oracle": miou_after["miou_oracle"],
          "mIoU confident": miou_after["miou_confident"]}],
        "miou_before_after", title=f"held-out one-click mIoU ({miou_after['n_masks']} masks)")

fig, axes = plt.subplots(2, len(demo_before), figsize=(4.2 * len(demo_before), 8.4), squeeze=False)
for row, (title, demos) in enumerate([("before", demo_before), ("after", demo_after)]):
    for col, (item, d) in enumerate(zip(held_out, demos)):
        ax = axes[row, col]
        ax.imshow(item["image"])
        viz.show_mask(d["masks"][d["confident"]], ax)
        viz.show_points(d["point"], np.array([1]), ax)
        ax.set_title(f"{title}: IoU {d['ious'][d['confident']]:.2f}")
        ax.axis("off")
S.save(fig, "predictions_before_after")

# %% [markdown]
# ## Summary
#
# * With the encoder frozen, training the decoder only needs each image's embedding once: steps are cheap.
# * The interactive simulation (first prompt, error points, mask feedback) is what teaches the decoder to use
#   several clicks and its own previous mask.
# * A decoder trained on 100 masks learns the task on images like its training images; the next notebook asks how
#   well a model transfers to a new domain (parked cars, day and night) and what fine-tuning buys.
#
# Next: [04 · fine-tuning on NDISPark](04_finetune_ndispark.ipynb).
