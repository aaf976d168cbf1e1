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
# This notebook follows one image through all three, printing the real tensor shapes at each stage, looks
# inside the prompt encoder's random Fourier features and the decoder's attention, counts parameters for every
# model size, and times each part on this machine, which explains why SAM answers a click in real time while
# the encoder does not.
#
# *The outputs stored in this notebook come from its small configuration (`small=True`).*

# %% tags=["parameters"]
model = "tiny"            # trained model for the attention maps, masks and timings: "tiny", "vit_b", "vit_l", "vit_h", "vit_t"
checkpoint = None         # a state-dict file for `model`; None means the official (or embedded) weights
shapes_model = "vit_b"    # built with random weights only to print its real tensor shapes (~10-80 s on a CPU)
device = "auto"
seed = 0
n_timing = 5              # repetitions per timing
bench_json = "../benchmarks/results/speed_cpu.json"  # `make bench` results to show next to this machine's ladder
out_dir = "runs/latest/02_architecture"
small = False             # True: the quick configuration of the tests and CI (shapes of `tiny`, fewer repetitions)

# %%
# Colab only: install samkit (Colab's torch is kept as it is) and enable the widget manager.
import sys
if "google.colab" in sys.modules:
    %pip install -q "samkit @ git+https://github.com/samkit-course/samkit"
    from google.colab import output
    output.enable_custom_widget_manager()

# %%
if small:
    shapes_model, n_timing = "tiny", 1

import matplotlib.pyplot as plt
import numpy as np
import torch
from skimage import data as skdata

import samkit
from samkit import viz
from samkit.notebook_utils import (count_parameters, format_seconds, record_attention, setup, time_call,
                                   trace_shapes)

S = setup(model=model, checkpoint=checkpoint, device=device, seed=seed, out_dir=out_dir)
image = skdata.astronaut()          # 512 x 512 x 3, a real photo the embedded model never saw
point = np.array([[260.0, 130.0]])  # (x, y) in image pixels: on the astronaut's face

# %% [markdown]
# ## 1. The image encoder, stage by stage
#
# We build `shapes_model` with **random weights** (shapes do not depend on the weights) and push the astronaut
# through it. First the predictor's preprocessing: the long side is resized to the model's input size (1024 px
# for the official models), the pixels are normalised with ImageNet's mean and standard deviation, and the image
# is zero-padded at the right and bottom to a square.
#
# Then:
# * **patch embedding**: a 16 x 16 convolution with stride 16 turns 1024 x 1024 x 3 into a 64 x 64 grid of tokens
#   (768 channels for ViT-B), plus an absolute position embedding;
# * **transformer blocks**: most attend only inside **14 x 14 windows** (the 64 x 64 grid is padded to 70 x 70
#   and cut into 25 windows), which keeps attention affordable at this resolution; four equally spaced blocks
#   (2, 5, 8, 11 for ViT-B) are **global** and let information cross the whole image;
# * **neck**: a 1 x 1 and a 3 x 3 convolution (each followed by a layer norm) bring the channels down to 256:
#   the **256 x 64 x 64 image embedding** that the decoder reads.

# %%
shape_net = samkit.build_model(shapes_model).eval()
enc = shape_net.image_encoder
transform = samkit.transforms.ResizeLongestSide(shape_net.img_size)
resized = transform.apply_image(image)
x = shape_net.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float())
print(f"image {image.shape} -> resized {resized.shape} -> normalised and padded {tuple(x.shape)}")

with trace_shapes(enc) as rows, torch.no_grad():
    embedding = enc(x)
cfg = shape_net.config.encoder
for r in rows:
    if r["module"].startswith("blocks."):
        i = int(r["module"].split(".")[1])
        glob = i in cfg.global_attn_indexes
        grid = cfg.img_size // cfg.patch_size
        r["attention"] = (f"global: {grid * grid} tokens see each other" if glob else
                          f"windowed: {cfg.window_size}x{cfg.window_size} = {cfg.window_size ** 2} tokens")
    else:
        r["attention"] = "-"
S.table(rows, "encoder_shapes", title=f"{shapes_model} image encoder, one image")
print(f"image embedding: {tuple(embedding.shape)}  (channels x {shape_net.config.embedding_size} x "
      f"{shape_net.config.embedding_size})")

# %% [markdown]
# ## 2. The prompt encoder
#
# A point is not given to the network as two numbers. Its position $(x, y)$, scaled to $[-1, 1]$, is multiplied
# by a fixed random Gaussian matrix $G$ ($2 \times 128$ for the official models) and passed through
# $\sin$ and $\cos$: $\gamma(p) = [\sin(2\pi G p), \cos(2\pi G p)]$. These **random Fourier features**
# (Tancik et al. 2020) let a small network resolve fine positions. A learned embedding is added that says what
# the token is (positive point, negative point, box corner, or "no point" padding).
#
# The same features of every cell of the 64 x 64 grid form the **dense positional encoding** added to the image
# embedding inside the decoder. Below: a few of its channels (stripes of different frequencies and directions),
# and the similarity between the encoding of our point and that of every cell: it peaks at the point, so
# positions can be matched by a dot product.

# %%
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
fig, axes = plt.subplots(1, 5, figsize=(15, 3.2))
for ax, c in zip(axes[:4], (0, 5, 40, dense_pe.shape[0] // 2 + 3)):
    ax.imshow(dense_pe[c], cmap="RdBu")
    ax.set_title(f"PE channel {c}")
    ax.axis("off")
e = S.model.config.embedding_size
axes[4].imshow(similarity, cmap="magma")
axes[4].plot(input_point[0, 0] / S.model.img_size * e - 0.5, input_point[0, 1] / S.model.img_size * e - 0.5,
             "c*", ms=12)
axes[4].set_title("similarity to the point's encoding")
axes[4].axis("off")
S.save(fig, "fourier_features")

# %% [markdown]
# ## 3. The mask decoder and its attention
#
# The decoder works on **tokens**: one IoU token and four mask tokens (learned), followed by the prompt tokens.
# Each of its two layers (figure 14 of the paper) does four steps: self-attention among the tokens,
# **token-to-image** cross-attention (each token looks at the 64 x 64 image embedding), an MLP on each token, and
# **image-to-token** cross-attention (the image embedding is updated by the tokens). A final token-to-image
# attention follows. We record every attention with forward hooks and look at where the tokens look.

# %%
predictor = S.predictor()
predictor.set_image(image)
coords = torch.as_tensor(predictor.transform.apply_coords(point, image.shape[:2]), dtype=torch.float,
                         device=S.device)[None]
labels = torch.tensor([[1]], device=S.device)
with record_attention(S.model.mask_decoder) as maps, torch.no_grad():
    low_res, iou_pred = S.model.encode_prompts_and_decode(predictor.features, coords, labels, multimask_output=True)
for name, attn in maps.items():
    print(f"{name:48s} {tuple(attn.shape)}  (batch, heads, queries, keys)")

# %%
token_names = ["IoU token", "mask token 0", "mask token 1", "mask token 2", "mask token 3", "point", "padding"]
layers = ["transformer.layers.0.cross_attn_token_to_image", "transformer.layers.1.cross_attn_token_to_image",
          "transformer.final_attn_token_to_image"]
show_tokens = [5, 2, 3, 4]
h, w = predictor.input_size
model_input = predictor.transform.apply_image(image)
fig, axes = plt.subplots(len(layers), len(show_tokens), figsize=(3.2 * len(show_tokens), 3.2 * len(layers)))
for r, layer in enumerate(layers):
    for c, t in enumerate(show_tokens):
        att = maps[layer][0, :, t].mean(0).reshape(e, e).numpy()      # heads averaged, E x E
        ax = axes[r, c]
        ax.imshow(model_input)
        ax.imshow(att, cmap="inferno", alpha=0.6, extent=(0, S.model.img_size, S.model.img_size, 0))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"{layer.split('.')[-1].replace('cross_attn_', '')} L{r}: {token_names[t]}", fontsize=8)
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
# (`multimask_output=False`). The decoder's raw output is 4x the embedding grid
# (256 x 256 logits for the official models); it is upsampled and cropped back to the image.

# %% tags=["nbval-ignore-output"]
masks, scores, logits = predictor.predict(point_coords=point, point_labels=np.array([1]), multimask_output=True)
single, single_score, _ = predictor.predict(point_coords=point, point_labels=np.array([1]), multimask_output=False)
print(f"low-res logits {tuple(low_res.shape)} -> masks {masks.shape} (bool, original image size), "
      f"predicted IoU {np.round(scores, 3)}")
fig, axes = plt.subplots(1, 4, figsize=(14, 3.8))
for ax, m, s, title in zip(axes, [*masks, single[0]], [*scores, single_score[0]],
                           ["mask token 1", "mask token 2", "mask token 3", "mask token 0 (single)"]):
    ax.imshow(image)
    viz.show_mask(m, ax)
    viz.show_points(point, np.array([1]), ax)
    ax.set_title(f"{title}: predicted IoU {s:.2f}")
    ax.axis("off")
S.save(fig, "three_masks")

# %% [markdown]
# ## 5. How big is each model?
#
# Almost all parameters are in the image encoder; the prompt encoder and mask decoder together have about 4 M
# for every official model. We build each configuration on PyTorch's `meta` device, which creates the
# parameters' shapes without allocating their memory, so even ViT-H (over 600 M parameters) is counted instantly.

# %%
rows = []
for name in ("vit_h", "vit_l", "vit_b", "vit_t", "tiny"):
    with torch.device("meta"):
        net = samkit.build_model(name)
    cfg = net.config
    rows.append({"model": name, "encoder": type(net.image_encoder).__name__,
                 "input px": cfg.img_size, "embedding": f"{cfg.decoder.prompt_embed_dim}x{cfg.embedding_size}x{cfg.embedding_size}",
                 "image encoder (M)": count_parameters(net.image_encoder) / 1e6,
                 "prompt encoder (M)": count_parameters(net.prompt_encoder) / 1e6,
                 "mask decoder (M)": count_parameters(net.mask_decoder) / 1e6,
                 "total (M)": count_parameters(net) / 1e6})
S.table(rows, "parameters", title="parameters per part (millions)", floatfmt=".2f")

# %% [markdown]
# ## 6. Time per component on this machine
#
# The paper's design point: the image encoder runs **once per image** (0.15 s for ViT-H on an A100), then every
# prompt costs only the prompt encoder and the mask decoder (about 50 ms in a web browser on a CPU), so a user
# can click and see masks in real time. Measured here, with the model of this run (times vary between runs, so
# this cell's output is not compared by the tests):

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
S.table(timing, "timings", title=f"on {S.device}")
print(f"one image + 10 clicks: {format_seconds(t_encoder + 10 * t_post)}; each extra click {format_seconds(t_post)}")
fig, ax = plt.subplots(figsize=(6, 2.6))
ax.barh(["image encoder", "prompt encoder", "prompt enc. + decoder", "full predict()"],
        [t_encoder * 1e3, t_prompt * 1e3, t_decoder * 1e3, t_post * 1e3], color=["tab:red"] + ["tab:blue"] * 3)
ax.set_xscale("log")
ax.set_xlabel("milliseconds (log scale)")
ax.set_title(f"{S.model_name} on {S.device}")
S.save(fig, "timings")

# %% [markdown]
# ## 7. The speed ladder: exact shortcuts, one rung at a time
#
# The course's conclusion was that SAM is "not real-time with a heavy image encoder". The encoder runs once per
# image; the kit makes every *click* cheap with shortcuts that change the order of operations, not the result.
# Each rung below switches one more on (`samkit.speed.fast_paths`), times `predictor.predict` on this machine
# and compares its logits with the plain rung, which computes in the official code's order:
#
# * **attention folded into the few tokens**: in the decoder's cross-attentions one side is ~7 tokens and the
#   other the whole image grid; instead of projecting every image token (`4096 x 256 -> 128` for vit_b), the
#   projection matrices are multiplied into the 7 tokens (a shift of all scores cancels in the softmax);
# * **first layer kept between clicks**: with no mask input, the first layer's image-side projections are the same
#   for every click on an image, so the second click computes them once and later clicks reuse them;
# * **sparse post-processing**: upsampling the low-res logits, cropping the padding and resizing to the image are
#   two small matrices with at most 3 non-zeros per row, applied in sparse form.

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
# own 2-core CPU; run `make bench` to measure yours (it writes `runs/bench/speed.json`; pass that as `bench_json`).

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
# * image → resize + normalise + pad → patch embedding (64 x 64 tokens) → windowed and global blocks → neck →
#   **256 x 64 x 64** embedding (96 x 32 x 32 for the embedded `tiny` model);
# * prompts → random Fourier features + type embeddings (sparse tokens) and a mask or "no mask" map (dense);
# * two-way transformer → three masks + IoU predictions at 256 x 256 → upsampled to the image.
# * The encoder dominates parameters and time; prompts are cheap, which is what makes interactive use possible,
#   and exact reorderings of the decoder's arithmetic make them cheaper still.
#
# Next: [03 · training the decoder from scratch](03_decoder_from_scratch.ipynb).
