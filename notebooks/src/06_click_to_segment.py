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
# # 06 · Click to segment
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/samkit-course/samkit/blob/main/notebooks/06_click_to_segment.ipynb)
#
# The interactive demo of the paper, inside the notebook. SAM splits the work in two:
#
# * the **image encoder** (a ViT in Meta's models, a small convolutional network in the embedded `tiny`) turns
#   the picture into an embedding **once** — the slow part, which the widget shows as *busy* while it runs;
# * every click then only runs the **prompt encoder and the mask decoder** on that embedding — milliseconds, so
#   the mask follows your clicks.
#
# How to use the widget below:
#
# | action | prompt |
# |---|---|
# | left click | a **positive** point (green star): "the object is here" |
# | right click (or shift + click) | a **negative** point (red star): "not here" |
# | drag | a **box** around the object |
#
# After the first click the model offers **three masks** (its answer to ambiguity: subpart, part, whole) with their
# predicted IoU; pick one with the buttons. Later clicks refine the chosen mask: as in the official demo the
# decoder then gets the previous low-resolution logits as a mask prompt and returns a single mask.
# *Keep & next object* stores the mask in its own colour and starts another object; *Save* writes a PNG overlay
# and the masks as COCO run-length encoding (the SA-1B format).
#
# **Cut along edges.** Offline, the widget runs samkit's embedded `tiny` model, trained on generated scenes only:
# on a photo its mask finds the object but its outline follows the model's coarse grid. With the *Cut along edges*
# box ticked (the default for the embedded model), the shown mask is cut along the photo's edges by GrabCut, seeded
# by the model's mask and your clicks (`samkit.refine`, not part of SAM). Untick it to see the model's own mask.
# The status line tells what each part of a click cost.
#
# *The stored outputs come from the full course configuration (`make course`); the widget itself needs a live
# kernel.*

# %% tags=["parameters"]
model = "tiny"        # "tiny" (embedded), "vit_b", "vit_l", "vit_h", "vit_t" (MobileSAM)
checkpoint = None     # a state-dict file for the model (None: the official or embedded weights)
device = "auto"       # "auto" (GPU when present), "cpu", "cuda"
seed = 0
image = "astronaut"   # a scikit-image sample: "astronaut", "coffee" or "coins"
upload = False        # True: an "upload your own image" button inside the widget (the cell below has one anyway)
display_size = 640    # the canvas fits in display_size x display_size screen pixels
refine = None         # tick "Cut along edges" (GrabCut) at the start; None: on for the embedded model only
out_dir = "runs/latest/06_click_to_segment"   # figures (PNG) and saved masks of this run
small = False         # True: the quick configuration of the tests and CI

# %%
# Colab only: install samkit (Colab's torch is kept as it is) and enable the widget manager,
# which ipycanvas and ipyevents need to draw in Colab.
import sys
if "google.colab" in sys.modules:
    # %pip install -q "samkit @ git+https://github.com/samkit-course/samkit"
    from google.colab import output
    output.enable_custom_widget_manager()

# %%
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from skimage import data as skdata

from samkit import narrate
from samkit.data.photos import objects_at
from samkit.evaluate import mask_iou
from samkit.notebook_utils import setup
from samkit.widgets import ClickSegmenter, image_from_upload

S = setup(model=model, checkpoint=checkpoint, device=device, seed=seed, out_dir=out_dir)
predictor = S.predictor()   # keeps an embedding cache: an image it has seen costs no encoder pass
refine = S.weights == "embedded" if refine is None else bool(refine)

SAMPLES = ("astronaut", "coffee", "coins")
if image not in SAMPLES:
    raise ValueError(f"image must be one of {SAMPLES}, got {image!r}")
picture = getattr(skdata, image)()
print(f"{image}: {picture.shape}")

# %% [markdown]
# ## The widget
#
# Click on an object. The status line under the buttons tells how long the last click took (decoder + drawing);
# the embedding was computed when the widget was created. Switch sample images with the menu under it.

# %% tags=["nbval-ignore-output"]
seg = ClickSegmenter(predictor, picture, display_size=display_size, upload=upload, refine=refine)
seg

# %% tags=["nbval-ignore-output"]
picker = widgets.Dropdown(options=SAMPLES, value=image, description="Sample:")
picker.observe(lambda change: seg.set_image(getattr(skdata, change["new"])()), names="value")
picker

# %% [markdown]
# ### Your own image
#
# Upload a JPEG or PNG: the widget above switches to it (the encoder runs once, then clicks are fast again).

# %% tags=["nbval-ignore-output"]
uploader = widgets.FileUpload(accept="image/*", multiple=False, description="Your image")
uploader.observe(lambda change: seg.set_image(image_from_upload(uploader.value)), names="value")
uploader

# %% [markdown]
# ## Reading the result back
#
# Everything the widget shows is plain Python data: `seg.masks` (one `H x W` boolean array per kept object,
# then the current one), `seg.prompts` (in original image pixels), `seg.scores` (predicted IoU of the outputs).
# Run this cell again after clicking.

# %% tags=["nbval-ignore-output"]
print(f"{len(seg.masks)} mask(s): areas {[int(m.sum()) for m in seg.masks]} pixels")
print("prompts:", seg.prompts)
print("predicted IoU of the outputs:", np.round(seg.scores, 3))

# %% [markdown]
# ## The same, without a browser
#
# The widget's event handlers are ordinary methods, so a script (or this notebook run by papermill) can click
# too. `handle_click(x, y)` takes **display** pixels — the canvas coordinates — and stores the point in image
# pixels. Here one click on the object, the three candidate masks (the model's own, edge cut off), then a negative
# click on the chosen mask's pixel farthest from the first click (where a spill beyond the object is most likely),
# shown without and with the cut along the edges.

# %% tags=["nbval-ignore-output"]
CLICKS = {"astronaut": (215, 110), "coffee": (300, 210), "coins": (50, 60)}   # (x, y) in image pixels
target = CLICKS[image]
seg.set_image(picture)
seg.set_refine(False)   # the model's own three answers
seg.handle_click(*seg.to_display_coords(*target))
print("prompts:", seg.prompts)
print("three masks, predicted IoU:", np.round(seg.scores, 3), "-> chosen:", seg.selected + 1)

fig, axes = plt.subplots(1, 3, figsize=(13, 4.6), layout="constrained")
best = seg.selected
three = []
for i, ax in enumerate(axes):
    seg.select_mask(i)
    three.append(seg.masks[-1].copy())
    seg.plot(ax=ax, title=f"mask {i + 1}: predicted IoU {seg.scores[i]:.2f}")
seg.select_mask(best)
fig.suptitle("one click, three answers (the model's ambiguity)")
S.save(fig, "click_three_masks")
pairs = [(i, j) for i in range(3) for j in range(i + 1, 3)]
S.say(narrate.ambiguity, model=S.model_name, weights=S.weights,
      pairwise_iou=[(three[i] & three[j]).sum() / max((three[i] | three[j]).sum(), 1) for i, j in pairs],
      scores=list(seg.scores[:3]), areas=[int(m.sum()) for m in three],
      containment=[(three[i] & three[j]).sum() / max(min(three[i].sum(), three[j].sum()), 1) for i, j in pairs],
      outlined=[(name, [mask_iou(m, gt) for m in three]) for name, gt in objects_at(image, *target)])

# %%
# the negative click: on the chosen mask's pixel farthest from the first click, where a spill is most likely
ys, xs = np.nonzero(seg.masks[-1])
far = int(np.argmax(np.hypot(xs - target[0], ys - target[1])))
negative = (float(xs[far]), float(ys[far]))
print(f"negative click at (x, y) = {negative}, {np.hypot(negative[0] - target[0], negative[1] - target[1]):.0f} px "
      "from the first click")
seg.handle_click(*seg.to_display_coords(*negative), button=2)
fig, axes = plt.subplots(1, 2, figsize=(16, 8.4), layout="constrained")
for ax, cut in zip(axes, (False, True)):
    seg.set_refine(cut)
    seg.plot(ax=ax, title="cut along the photo's edges (GrabCut)" if cut else "the model's mask")
S.save(fig, "click_refined")
seg.set_refine(refine)
kept = seg.keep()
png_path, json_path = seg.save(S.path("click_masks"))
print(f"kept {len(seg.objects)} object(s); wrote {png_path.name} and {json_path.name}")

# %% tags=["nbval-ignore-output"]
S.say(narrate.click_summary, model=S.model_name, weights=S.weights, refine=refine)
