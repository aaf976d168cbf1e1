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
# # 02 · The architecture: image encoder, prompt encoder, mask decoder
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/samkit-course/samkit/blob/main/notebooks/02_architecture.ipynb)
#
# SAM (paper §3, figure 4) has three parts:
#
# 1. a heavy **image encoder** (a ViT pre-trained as a masked auto-encoder) that turns the image into an
#    embedding, once per image;
# 2. a light **prompt encoder** that turns points, boxes and masks into tokens and a dense map;
# 3. a light **mask decoder** (a two-way transformer) that combines both and outputs three masks and, for each,
#    a prediction of its IoU.
#
# This notebook first says what "foundation model" and "zero-shot transfer" mean in the paper, then follows one
# image through all three parts, printing the real tensor shapes at each stage, looks inside the prompt
# encoder's random Fourier features (and at the paper's experiment with text prompts) and the decoder's
# attention, counts parameters for every model size, and times each part on this machine.
#
# *The stored outputs come from the full course configuration (`make course`); every sentence about a result
# below is written by the code from the numbers of that run.*

# %% tags=["parameters"]
model = "tiny"            # trained model for the attention maps, masks and timings: "tiny", "vit_b", "vit_l", "vit_h", "vit_t"
checkpoint = None         # a state-dict file for `model`; None means the official (or embedded) weights
shapes_model = "vit_b"    # built with random weights only to print its real tensor shapes (~10-80 s on a CPU)
device = "auto"
seed = 0
n_timing = 5              # repetitions per timing
bench_json = "../benchmarks/results/speed_cpu.json"  # `make bench` results to show next to this machine's ladder
out_dir = "runs/latest/02_architecture"
small = False             # True: the quick configuration of the tests and CI (shapes of the small ViT `tiny_v1`, fewer repetitions)

# %%
# Colab only: install samkit (Colab's torch is kept as it is) and enable the widget manager.
import sys
if "google.colab" in sys.modules:
    # %pip install -q "samkit @ git+https://github.com/samkit-course/samkit"
    from google.colab import output
    output.enable_custom_widget_manager()

# %%
if small:
    shapes_model, n_timing = "tiny_v1", 1

import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from skimage import data as skdata

import samkit
from samkit import narrate, paper, viz
from samkit.data.photos import objects_at
from samkit.evaluate import mask_iou
from samkit.notebook_utils import (count_parameters, format_seconds, record_attention, setup, time_call,
                                   trace_shapes)

S = setup(model=model, checkpoint=checkpoint, device=device, seed=seed, out_dir=out_dir)
image = skdata.astronaut()          # 512 x 512 x 3, a real photo the embedded model never saw
point = np.array([[260.0, 130.0]])  # (x, y) in image pixels: on the astronaut's face

# %% [markdown]
# ## 0. A foundation model, and zero-shot transfer
#
# The paper borrows the term **foundation model** for models that are "trained on broad data at scale and are
# adaptable to a wide range of downstream tasks" (§8, quoting Bommasani et al.). Language models reach new tasks through
# *prompts*; SAM asks the same of segmentation, with three pieces that depend on each other (§1):
#
# * a **task**, promptable segmentation: given an image and any prompt (points, a box, a mask, text), return a
#   *valid* mask, a reasonable mask for at least one of the objects the prompt could mean;
# * a **model** that answers any prompt fast enough for interactive use, and several masks when it is ambiguous;
# * **data** to train it: the data engine and SA-1B (notebooks 01 and 05).
#
# **Zero-shot transfer** (§7) means evaluating on data sets and tasks the model never saw in training, by
# prompting it, as CLIP is evaluated. The paper's five experiments and how SAM fares against models trained for
# each task:

# %%
edges = {r["method"]: r for r in paper.EDGES.value}
props = {r["method"]: r for r in paper.PROPOSALS.value}
inst = {r["method"]: r for r in paper.INSTANCES.value}
wins, total = paper.point_wins()
S.table([
    {"task (§)": "one point → a valid mask (§7.1)", "SAM, zero-shot": f"above RITM on {wins} of {total} data sets",
     "trained baseline": "RITM (interactive, COCO+LVIS)", "source": "Fig. 9a"},
    {"task (§)": "edge detection (§7.2)", "SAM, zero-shot": f"ODS {edges['SAM']['ODS']:.3f}",
     "trained baseline": f"HED {edges['HED']['ODS']:.3f} (trained on BSDS500)", "source": "Table 3, 200 images"},
    {"task (§)": "object proposals (§7.3)", "SAM, zero-shot": f"AR@1000 {props['SAM']['all']}",
     "trained baseline": f"ViTDet-H {props['ViTDet-H']['all']} (trained on LVIS)", "source": "Table 4, LVIS v1 val"},
    {"task (§)": "instance segmentation (§7.4)", "SAM, zero-shot": f"COCO AP {inst['SAM']['COCO AP']}, LVIS AP {inst['SAM']['LVIS AP']}",
     "trained baseline": f"ViTDet-H {inst['ViTDet-H']['COCO AP']}, {inst['ViTDet-H']['LVIS AP']}",
     "source": "Table 5"},
    {"task (§)": "text → mask (§7.5)", "SAM, zero-shot": "qualitative only", "trained baseline": "-",
     "source": "Fig. 12"},
], "zero_shot_tasks", title=f"The paper's zero-shot experiments ({paper.PAPER_SHORT}, §7)")
S.say(narrate.zero_shot_overview)

# %% [markdown]
# ## 1. The image encoder, stage by stage
#
# We build `shapes_model` with **random weights** (shapes do not depend on the weights) and push the astronaut
# through it. First the predictor's preprocessing: the long side is resized to the model's input size, the pixels
# are normalised with ImageNet's mean and standard deviation, and the image is zero-padded at the right and
# bottom to a square.
#
# Then:
# * **patch embedding**: a convolution with a stride equal to its kernel (the patch size) turns the image into a
#   grid of tokens, plus an absolute position embedding;
# * **transformer blocks**: most attend only inside small **windows** (the grid is padded to a multiple of the
#   window), which keeps attention affordable at this resolution; a few equally spaced blocks are **global** and
#   let information cross the whole image;
# * **neck**: a 1 x 1 and a 3 x 3 convolution (each followed by a layer norm) bring the channels down to the
#   decoder's width: the **image embedding** the decoder reads.
#
# The table lists every stage's output for this run's `shapes_model`; the text under it is written from the
# model's configuration.

# %% tags=["nbval-ignore-output"]
shape_net = samkit.build_model(shapes_model).eval()
enc = shape_net.image_encoder
transform = samkit.transforms.ResizeLongestSide(shape_net.img_size)
resized = transform.apply_image(image)
x = shape_net.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())
print(f"image {image.shape} -> resized {resized.shape} -> normalised and padded {tuple(x.shape)}")

start = time.perf_counter()
with trace_shapes(enc) as rows, torch.no_grad():
    embedding = enc(x)
t_shapes = time.perf_counter() - start
cfg = shape_net.config.encoder
grid = cfg.img_size // cfg.patch_size
padded = -(-grid // cfg.window_size) * cfg.window_size
for r in rows:
    if r["module"].startswith("blocks."):
        i = int(r["module"].split(".")[1])
        r["attention"] = (f"global: {grid * grid:,} tokens see each other" if i in cfg.global_attn_indexes else
                          f"windowed: {cfg.window_size}x{cfg.window_size} = {cfg.window_size ** 2} tokens")
    else:
        r["attention"] = "-"
S.table(rows, "encoder_shapes", title=f"{shapes_model} image encoder, one image")
S.say(narrate.encoder_shapes, model=shapes_model, img_size=cfg.img_size, patch=cfg.patch_size, grid=grid,
      width=cfg.embed_dim, depth=cfg.depth, window=cfg.window_size, padded_grid=padded,
      n_windows=(padded // cfg.window_size) ** 2, global_blocks=list(cfg.global_attn_indexes),
      out_chans=cfg.out_chans, seconds_one_image=t_shapes, device=str(S.device))

# %% [markdown]
# ## 2. The prompt encoder
#
# A point is not given to the network as two numbers. Its position $(x, y)$, scaled to $[-1, 1]$, is multiplied
# by a fixed random Gaussian matrix $G$ and passed through $\sin$ and $\cos$:
# $\gamma(p) = [\sin(2\pi G p), \cos(2\pi G p)]$. These **random Fourier features** (Tancik et al. 2020) let a
# small network resolve fine positions. A learned embedding is added that says what the token is (positive
# point, negative point, box corner, or "no point" padding).
#
# The same features of every cell of the embedding grid form the **dense positional encoding** added to the
# image embedding inside the decoder. Below: a few of its channels (stripes of different frequencies and
# directions), and the similarity between the encoding of our point and that of every cell: it peaks at the
# point, so positions can be matched by a dot product.

# %% tags=["nbval-ignore-output"]
pe = S.model.prompt_encoder
dense_pe = pe.get_dense_pe()[0].cpu()                  # C x E x E
input_point = samkit.transforms.ResizeLongestSide(S.model.img_size).apply_coords(point, image.shape[:2])
with torch.no_grad():
    sparse, dense = pe(points=(torch.as_tensor(input_point, dtype=torch.float, device=S.device)[None],
                               torch.tensor([[1]], device=S.device)), boxes=None, masks=None)
    sparse_box, _ = pe(points=None, boxes=torch.tensor([[50.0, 40.0, 200.0, 180.0]], device=S.device), masks=None)
print(f"one point  -> sparse {tuple(sparse.shape)} (the point + a padding token), dense {tuple(dense.shape)}")
print(f"one box    -> sparse {tuple(sparse_box.shape)} (two corner tokens)")
print(f"dense positional encoding: {tuple(dense_pe.shape)}; Gaussian matrix "
      f"{tuple(pe.pe_layer.positional_encoding_gaussian_matrix.shape)}")

point_pe = sparse[0, 0].cpu() - pe.point_embeddings[1].weight[0].detach().cpu()  # remove the "positive" embedding
similarity = torch.einsum("c,chw->hw", point_pe, dense_pe) / dense_pe.shape[0]
fig, axes = plt.subplots(1, 5, figsize=(15, 3.6), layout="constrained")
for ax, c in zip(axes[:4], (0, 5, 40, dense_pe.shape[0] // 2 + 3)):
    ax.imshow(dense_pe[c], cmap="RdBu")
    ax.set_title(f"PE channel {c}")
    ax.axis("off")
e = S.model.config.embedding_size
axes[4].imshow(similarity, cmap="magma")
axes[4].plot(input_point[0, 0] / S.model.img_size * e - 0.5, input_point[0, 1] / S.model.img_size * e - 0.5,
             "c*", ms=12)
axes[4].set_title("similarity to the point")
axes[4].axis("off")
S.save(fig, "fourier_features")

# %% [markdown]
# ### Text prompts: the paper's exploratory experiment
#
# The paper also lists free-form **text** among the sparse prompts, and tests it as a proof of concept (§7.5,
# appendix D.5). There were no text annotations, so the trick is CLIP: CLIP's image and text embeddings are
# trained to align, so SAM was trained with the CLIP *image* embedding of each mask's crop as its first prompt,
# and at inference a CLIP *text* embedding takes its place. The results are shown as examples only (Fig. 12: "a
# wheel", "beaver tooth grille"; a wrong pick is often fixed by one extra point). The released models have no
# text input, and neither has samkit. The setup, from the paper:

# %%
t2m = paper.TEXT_TO_MASK.value
S.table([
    {"setting": "text and image encoder", "value": f"CLIP {t2m['clip_model']} (embeddings l2-normalised)"},
    {"setting": "training masks", "value": f"{t2m['training_masks']}, larger than 100 x 100 px"},
    {"setting": "training prompt", "value": f"CLIP image embedding of the mask's box grown {t2m['box_expansion'][0]:g}-"
                                              f"{t2m['box_expansion'][1]:g}x, square-cropped to {t2m['crop_side']} px, "
                                              f"outside of the mask zeroed with probability {t2m['zero_outside_mask_probability']:g}"},
    {"setting": "inference prompt", "value": "CLIP text embedding of the phrase"},
    {"setting": "training length", "value": f"{t2m['iterations']:,} iterations, batch {t2m['batch']}"},
    {"setting": "results", "value": t2m["results"]},
], "text_prompts", title=f"Zero-shot text-to-mask ({paper.TEXT_TO_MASK.cite()})")

# %% [markdown]
# ## 3. The mask decoder and its attention
#
# The decoder works on **tokens**: one IoU token and four mask tokens (learned), followed by the prompt tokens.
# Each of its two layers (figure 14 of the paper) does four steps: self-attention among the tokens,
# **token-to-image** cross-attention (each token looks at the image embedding), an MLP on each token, and
# **image-to-token** cross-attention (the image embedding is updated by the tokens). A final token-to-image
# attention follows. We record every attention with forward hooks and look at where the tokens look.

# %% tags=["nbval-ignore-output"]
predictor = S.predictor()
predictor.set_image(image)
coords = torch.as_tensor(predictor.transform.apply_coords(point, image.shape[:2]), dtype=torch.float,
                         device=S.device)[None]
labels = torch.tensor([[1]], device=S.device)
with record_attention(S.model.mask_decoder) as maps, torch.no_grad():
    low_res, iou_pred = S.model.encode_prompts_and_decode(predictor.features, coords, labels, multimask_output=True)
for name, attn in maps.items():
    print(f"{name:48s} {tuple(attn.shape)}  (batch, heads, queries, keys)")

# %% tags=["nbval-ignore-output"]
token_names = ["IoU token", "mask token 0", "mask token 1", "mask token 2", "mask token 3", "point", "padding"]
layers = ["transformer.layers.0.cross_attn_token_to_image", "transformer.layers.1.cross_attn_token_to_image",
          "transformer.final_attn_token_to_image"]
layer_names = ["layer 0", "layer 1", "final"]
show_tokens = [5, 2, 3, 4]
h, w = predictor.input_size
model_input = predictor.transform.apply_image(image)
fig, axes = plt.subplots(len(layers), len(show_tokens), figsize=(12, 9.6), layout="constrained")
for r, layer in enumerate(layers):
    for c, t in enumerate(show_tokens):
        att = maps[layer][0, :, t].mean(0).reshape(e, e).numpy()      # heads averaged, E x E
        ax = axes[r, c]
        ax.imshow(model_input)
        ax.imshow(att, cmap="inferno", alpha=0.6, extent=(0, S.model.img_size, S.model.img_size, 0))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"{layer_names[r]}: {token_names[t]}", fontsize=10)
        ax.axis("off")
fig.suptitle("token-to-image attention (heads averaged)")
S.save(fig, "decoder_attention")

# %% [markdown]
# ## 4. Three masks and the IoU head
#
# One point is ambiguous: on a face it could mean the face, the head, or the whole person. SAM therefore outputs
# **three masks** (from mask tokens 1-3, roughly subpart, part, whole object), and its **IoU head** (an MLP on
# the IoU token) predicts the IoU of each with the intended object. Interactive tools show the highest-scoring
# one. With several prompts the ambiguity mostly disappears and mask token 0 gives a single mask
# (`multimask_output=False`). SAM 2 added a safeguard, which the embedded `tiny` uses too (its configuration's
# `dynamic_multimask_via_stability`): when token 0's mask is *unstable* (its area changes by more than 2% when the
# logit threshold moves by 0.05) and no earlier mask is given, the single answer is the best of tokens 1-3 instead.
# SAM 1's official models keep token 0. The panel on the right says which token answered. The decoder's raw output
# is 4x the embedding grid; it is upsampled and cropped back to the image.

# %% tags=["nbval-ignore-output"]
masks, scores, logits = predictor.predict(point_coords=point, point_labels=np.array([1]), multimask_output=True)
single, single_score, _ = predictor.predict(point_coords=point, point_labels=np.array([1]), multimask_output=False)
print(f"low-res logits {tuple(low_res.shape)} -> masks {masks.shape} (bool, original image size), "
      f"predicted IoU {np.round(scores, 3)}")
same = [k for k in range(3) if np.isclose(scores[k], single_score[0]) and (masks[k] == single[0]).all()]
answered = f"token {same[0] + 1}" if same else "token 0"
fig, axes = plt.subplots(1, 4, figsize=(14, 4.2), layout="constrained")
for ax, m, s, title in zip(axes, [*masks, single[0]], [*scores, single_score[0]],
                           ["mask token 1", "mask token 2", "mask token 3", f"single mask ({answered})"]):
    ax.imshow(image)
    viz.show_mask(m, ax)
    viz.show_points(point, np.array([1]), ax)
    ax.set_title(f"{title}: IoU pred. {s:.2f}")
    ax.axis("off")
S.save(fig, "three_masks")
pairs = [(i, j) for i in range(3) for j in range(i + 1, 3)]
pairwise = [(masks[i] & masks[j]).sum() / max((masks[i] | masks[j]).sum(), 1) for i, j in pairs]
containment = [(masks[i] & masks[j]).sum() / max(min(masks[i].sum(), masks[j].sum()), 1) for i, j in pairs]
outlined = [(name, [mask_iou(m, gt) for m in masks]) for name, gt in objects_at("astronaut", *point[0])]
S.say(narrate.ambiguity, model=S.model_name, weights=S.weights, pairwise_iou=pairwise, scores=scores,
      areas=masks.sum(axis=(1, 2)), containment=containment, outlined=outlined)

# %% [markdown]
# ## 5. How big is each model?
#
# We build each configuration on PyTorch's `meta` device, which creates the parameters' shapes without
# allocating their memory, so even ViT-H is counted instantly.

# %%
rows = []
for name in ("vit_h", "vit_l", "vit_b", "vit_t", "tiny"):
    with torch.device("meta"):
        net = samkit.build_model(name)
    cfg_n = net.config
    rows.append({"model": name, "encoder": type(net.image_encoder).__name__,
                 "input px": cfg_n.img_size,
                 "embedding": f"{cfg_n.decoder.prompt_embed_dim}x{cfg_n.embedding_size}x{cfg_n.embedding_size}",
                 "image encoder (M)": count_parameters(net.image_encoder) / 1e6,
                 "prompt encoder (M)": count_parameters(net.prompt_encoder) / 1e6,
                 "mask decoder (M)": count_parameters(net.mask_decoder) / 1e6,
                 "total (M)": count_parameters(net) / 1e6})
S.table(rows, "parameters", title="parameters per part (millions)", floatfmt=".2f")
S.say(narrate.parameter_split, rows=rows)

# %% [markdown]
# ## 6. Time per component on this machine
#
# The paper's design point: the image encoder runs **once per image**, then every prompt costs only the prompt
# encoder and the mask decoder, so a user can click and see masks in real time. Measured here, with the model of
# this run (times vary between runs, so the tests do not compare this cell's output):

# %% tags=["nbval-ignore-output"]
net = S.model
with torch.no_grad():
    x_in = net.preprocess(torch.as_tensor(predictor.transform.apply_image(image), device=S.device)
                          .permute(2, 0, 1)[None].float())
    with S.autocast():
        t_encoder = time_call(lambda: net.image_encoder(x_in), repeat=n_timing, device=S.device)
        t_prompt = time_call(lambda: net.prompt_encoder(points=(coords, labels), boxes=None, masks=None),
                             repeat=n_timing * 4, device=S.device)
        t_decoder = time_call(lambda: net.encode_prompts_and_decode(predictor.features, coords, labels),
                              repeat=n_timing * 4, device=S.device)
        t_post = time_call(lambda: predictor.predict(point_coords=point, point_labels=np.array([1])),
                           repeat=n_timing * 4, device=S.device)
timing = [
    {"component": f"image encoder ({S.model_name})", "when": "once per image", "time": format_seconds(t_encoder)},
    {"component": "prompt encoder", "when": "per prompt", "time": format_seconds(t_prompt)},
    {"component": "prompt encoder + mask decoder", "when": "per prompt", "time": format_seconds(t_decoder)},
    {"component": "predictor.predict (incl. upsampling to the image)", "when": "per prompt", "time": format_seconds(t_post)},
]
if shapes_model != S.model_name:
    timing.append({"component": f"image encoder ({shapes_model}, section 1, random weights)", "when": "once per image",
                   "time": format_seconds(t_shapes)})
S.table(timing, "timings", title=f"on {S.device}")
fig, ax = plt.subplots(figsize=(10, 3.6), layout="constrained")
bars = {f"{S.model_name} image encoder": t_encoder, "prompt encoder": t_prompt, "prompt enc. + decoder": t_decoder,
        "full predict()": t_post}
if shapes_model != S.model_name:
    bars[f"{shapes_model} image encoder"] = t_shapes
ax.barh(list(bars), [v * 1e3 for v in bars.values()],
        color=["tab:red" if "encoder" in k and "prompt" not in k else "tab:blue" for k in bars])
ax.axvline(paper.EFFICIENCY.value["prompt_decoder_ms_browser_cpu"], color="0.3", ls="--", lw=1)
ax.text(paper.EFFICIENCY.value["prompt_decoder_ms_browser_cpu"] * 1.1, len(bars) - 0.6,
        "paper: ~50 ms per prompt in a browser (§3)", color="0.3")
ax.set_xscale("log")
ax.set_xlabel("milliseconds (log scale)")
ax.set_title(f"{S.model_name} on {S.device}")
S.save(fig, "timings")
S.say(narrate.timing, model=S.model_name, device=str(S.device), encoder_s=t_encoder, decoder_s=t_decoder,
      predict_s=t_post, big_model=shapes_model if shapes_model != S.model_name else None,
      big_encoder_s=t_shapes if shapes_model != S.model_name else None)

# %% [markdown]
# ## 7. The speed ladder: exact shortcuts, one rung at a time
#
# The encoder runs once per image; the kit makes every *click* cheap with shortcuts that change the order of
# operations, not the result. Each rung below switches one more on (`samkit.speed.RUNGS`, the switches of
# `samkit.fast.FastSam`), times `predictor.predict` on this machine and compares its logits with the plain rung,
# which computes in the official code's order:
#
# * **the fast path itself**: without a mask input every prompt sees the same image side, so it enters the
#   decoder's transformer once for all the prompts of a call (not once per prompt) until the first attention that
#   mixes in the prompt; the mask upscaling works on the token layout; cropping the padding and resizing to the
#   image are two matrix products;
# * **attention folded into the few tokens**: in the decoder's cross-attentions one side is ~7 tokens and the
#   other the whole image grid; instead of projecting every image token, the projection matrices are multiplied
#   into the 7 tokens (a shift of all scores cancels in the softmax);
# * **first layer kept between clicks**: with no mask input, the first layer's image-side projections are the same
#   for every click on an image, so the second click computes them once and later clicks reuse them;
# * **sparse post-processing**: those two resize matrices have at most 3 non-zeros per row; applied in sparse
#   form they cost a fraction of the dense products.

# %% tags=["nbval-ignore-output"]
from samkit.speed import decoder_ladder, load_bench

ladder = decoder_ladder(predictor, point_coords=point, point_labels=np.array([1]), repeat=n_timing * 4)
S.table(ladder, "speed_ladder", title=f"predict() with {S.model_name} on {S.device}, one click, 3 masks",
        floatfmt=".3g")
print(f"all rungs: logits within {max(r['max_abs_logit_diff'] for r in ladder):.1e} of the plain computation, "
      f"masks identical on {min(r['masks_equal'] for r in ladder):.4%} of the pixels or more")

# %% [markdown]
# The same comparison against Meta's `segment-anything` package itself, for vit_b on a 1024 x 1024 image (image
# encoder included), is `make bench` (`benchmarks/bench_speed.py`). The kit ships the table it measured on its
# own 2-core CPU; run `make bench` to measure yours (it writes `runs/bench/speed.json` in the repository; this
# notebook runs in `notebooks/`, so pass `bench_json="../runs/bench/speed.json"`).

# %% tags=["nbval-ignore-output"]
bench = load_bench(bench_json)
if bench is None:
    print(f"no benchmark results at {bench_json}: run `make bench` (or `python benchmarks/bench_speed.py --json ...`)")
else:
    meta = bench["meta"]
    S.table([{"row": r["row"], "unit": r["unit"], "official": r["official"], "samkit": r["samkit"],
              "official / samkit": r["ratio"], "agreement": r["error"]} for r in bench["rows"]], "bench",
            title=f"samkit vs segment-anything {meta.get('official_version', '?')} on {meta.get('cpu', '?')}, "
                  f"{meta.get('threads', '?')} threads, torch {meta.get('torch', '?')} ({meta.get('time', '?')})",
            floatfmt=".3g")

# %% [markdown]
# ## Summary
#
# * image → resize + normalise + pad → patch embedding → windowed and global blocks → neck → the image embedding
#   (section 1 gives its shape for this run's model);
# * prompts → random Fourier features + type embeddings (sparse tokens) and a mask or "no mask" map (dense); text
#   prompts were an exploratory experiment through CLIP and are not in the released models;
# * two-way transformer → three masks + IoU predictions → upsampled to the image;
# * the encoder holds most parameters and time, prompts are cheap (section 6 measures both here), and exact
#   reorderings of the decoder's arithmetic make them cheaper still.
#
# Next: [03 · training the decoder from scratch](03_decoder_from_scratch.ipynb).
