"""samkit.fast computes the same numbers as the plain model it reads its weights from, and keeps
nothing on it."""
import pytest
import torch
import torch.nn.functional as F

import samkit
from samkit.fast import FastSam, ImageSession, attention, decoder, encoder
from samkit.fast.postprocess import postprocess_masks, resize_matrix
from samkit.model.configs import get_config
from samkit.model.sam import build_sam
from samkit.model.transformer import Attention


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = samkit.build_model("tiny").eval()
    with torch.no_grad():  # random, non-trivial weights (biases and relative positions included)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _prompts(model, n=1, points=((100.0, 200.0), (300.0, 50.0)), labels=(1, 0), mask=None):
    pts = torch.tensor([list(points)] * n)
    lab = torch.tensor([list(labels)] * n)
    return model.prompt_encoder(points=(pts, lab), boxes=None, masks=mask)


@pytest.mark.parametrize("input_size,original_size", [((256, 192), (480, 360)),
                                                      ((171, 256), (300, 449)),
                                                      ((256, 256), (64, 64))])
@pytest.mark.parametrize("batch", [1, 12])  # 3 planes: sparse matrices; 36: dense ones
def test_postprocess_equals_two_bilinear_resizes(tiny, input_size, original_size, batch):
    low = torch.randn(batch, 3, 64, 64) * 5
    ref = F.interpolate(low, (tiny.img_size, tiny.img_size), mode="bilinear", align_corners=False)
    ref = F.interpolate(ref[..., : input_size[0], : input_size[1]], original_size, mode="bilinear",
                        align_corners=False)
    plain = tiny.postprocess_masks(low, input_size, original_size)
    torch.testing.assert_close(plain, ref)
    for sparse in (True, False):
        out = postprocess_masks(low, tiny.img_size, input_size, original_size, sparse=sparse)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-5)


def test_resize_matrix_rows_sum_to_one():
    m = resize_matrix(64, 256, 200, 333)
    assert m.shape == (333, 64)
    torch.testing.assert_close(m.sum(1), torch.ones(333))


def _raster(blocked, h, w):
    """The fast upscaling's blocked pixel order back to ``B x C x 4h x 4w``."""
    b, _, c = blocked.shape
    out = blocked.reshape(b, h, w, 2, 2, 2, 2, c).permute(0, 7, 1, 3, 5, 2, 4, 6)
    return out.reshape(b, c, 4 * h, 4 * w)


def test_upscale_matches_transposed_convolutions(tiny):
    dec = tiny.mask_decoder
    h = w = tiny.config.embedding_size
    src = torch.randn(2, h * w, dec.transformer_dim)
    with torch.no_grad():
        ref = dec.output_upscaling(src.transpose(1, 2).reshape(2, -1, h, w))  # B x C/8 x 4h x 4w
        out = _raster(decoder.upscale(dec, src, h, w), h, w)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_upscale_adds_high_res_features_after_each_step(tiny):
    """SAM 2's skip features: ``act2(up2(act1(norm(up1(x) + s1))) + s0)``, on the token layout."""
    dec = tiny.mask_decoder
    h = w = tiny.config.embedding_size
    c = dec.transformer_dim
    src = torch.randn(2, h * w, c)
    s0 = torch.randn(2, c // 8, 4 * h, 4 * w)
    s1 = torch.randn(1, c // 4, 2 * h, 2 * w)  # one for both prompts
    up1, norm, act1, up2, act2 = dec.output_upscaling
    with torch.no_grad():
        x = src.transpose(1, 2).reshape(2, c, h, w)
        ref = act2(up2(act1(norm(up1(x) + s1))) + s0)
        out = _raster(decoder.upscale(dec, src, h, w, high_res_features=(s0, s1)), h, w)
        without = _raster(decoder.upscale(dec, src, h, w), h, w)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)
    assert (out - without).abs().max() > 0.1  # the features did enter


def test_to_blocked_is_the_upscaling_order():
    h, w = 3, 5
    pixels = torch.arange(16 * h * w, dtype=torch.float32).reshape(1, 1, 4 * h, 4 * w)
    blocked = decoder.to_blocked(pixels, h, w)                    # 1 x 16hw x 1
    torch.testing.assert_close(_raster(blocked, h, w), pixels)
    two = torch.arange(4 * h * w, dtype=torch.float32).reshape(1, 1, 2 * h, 2 * w)
    rows = decoder.to_blocked(two, h, w)[0, :, 0].reshape(h, w, 2, 2)  # (i, j, di, dj)
    assert rows[1, 2, 1, 0] == two[0, 0, 2 * 1 + 1, 2 * 2 + 0]


@pytest.mark.parametrize("multimask", [True, False])
def test_fast_decoder_equals_plain_decoder(tiny, multimask):
    """Five prompts on one image: the fast path (image batch 1, folded attention, token upscaling)
    against the plain decoder, which repeats the image for each prompt."""
    emb = torch.randn(1, tiny.prompt_encoder.embed_dim, *tiny.prompt_encoder.image_embedding_size)
    pe = tiny.prompt_encoder.get_dense_pe()
    sparse, dense = _prompts(tiny, n=5)
    sl = slice(1, None) if multimask else slice(0, 1)
    with torch.no_grad():
        ref = tiny.mask_decoder(emb, pe, sparse, dense, multimask)
        for fold in (True, False):
            out = decoder.predict_masks(tiny.mask_decoder, emb, pe, sparse, dense, sl,
                                        fold_attention=fold)
            side = 4 * emb.shape[-1]
            assert out[0].shape == ref[0].shape == (5, 3 if multimask else 1, side, side)
            torch.testing.assert_close(out[0], ref[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(out[1], ref[1], atol=1e-5, rtol=1e-4)
        # one embedding per prompt and a mask input (no shared image side)
        low = torch.randn(5, 1, *tiny.prompt_encoder.mask_input_size)
        sparse, dense = _prompts(tiny, n=5, mask=low)
        many = emb.repeat(5, 1, 1, 1) + 0.1 * torch.randn(5, *emb.shape[1:])
        ref = tiny.mask_decoder(many, pe, sparse, dense, multimask)
        out = decoder.predict_masks(tiny.mask_decoder, many, pe, sparse, dense, sl)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_decoders_reject_wrong_image_batch(tiny):
    pe = tiny.prompt_encoder
    emb = torch.randn(2, pe.embed_dim, *pe.image_embedding_size)
    points = (torch.rand(3, 1, 2) * 100, torch.ones(3, 1, dtype=torch.long))
    sparse, dense = pe(points=points, boxes=None, masks=None)
    with pytest.raises(ValueError, match="image_embeddings has batch 2"):
        tiny.mask_decoder(emb, pe.get_dense_pe(), sparse, dense, True)
    with pytest.raises(ValueError, match="image_embeddings has batch 2"):
        decoder.predict_masks(tiny.mask_decoder, emb, pe.get_dense_pe(), sparse, dense)


@pytest.mark.parametrize("bq,nq,bk,nk", [(1, 7, 1, 1024), (3, 7, 1, 1024), (3, 7, 3, 1024),
                                         (1, 1024, 1, 7), (1, 1024, 3, 7), (3, 1024, 3, 7),
                                         (2, 6, 2, 6)])
def test_attention_orders_agree(bq, nq, bk, nk):
    """Every evaluation order gives the plain attention's numbers (float64, random biases)."""
    torch.manual_seed(1)
    attn = Attention(64, 4, downsample_rate=2).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    q = torch.randn(bq, nq, 64, dtype=torch.float64)
    k = torch.randn(bk, nk, 64, dtype=torch.float64)
    v = torch.randn(bk, nk, 64, dtype=torch.float64)
    b = max(bq, bk)
    with torch.no_grad():
        ref = attn(q.expand(b, -1, -1), k.expand(b, -1, -1), v.expand(b, -1, -1))  # plain module
        assert ref.shape == (b, nq, 64)
        for order in (attention.projected, attention.few_queries, attention.few_keys,
                      attention.attention):
            torch.testing.assert_close(order(attn, q, k, v), ref, atol=1e-12, rtol=1e-10)


def test_attention_picks_the_folded_order_for_one_click():
    attn = Attention(256, 8, downsample_rate=2)
    tokens, image = torch.zeros(1, 7, 256), torch.zeros(1, 4096, 256)
    assert attention.cheapest(attn, tokens, image) == "few_queries"
    assert attention.cheapest(attn, image, tokens) == "few_keys"
    # 32 prompts on one image: projecting the image once is cheaper than folding into 32 x 7 tokens
    assert attention.cheapest(attn, torch.zeros(32, 7, 256), image) == "projected"


@pytest.mark.parametrize("img_size", [512, 448])  # 32 x 32 tokens; 28 x 28 (padded to 32 x 32)
def test_fast_encoder_equals_plain_encoder(img_size, monkeypatch):
    """Windowed blocks (with and without padding), global blocks whole and in chunks of queries."""
    torch.manual_seed(2)
    model = build_sam(get_config("tiny_v1").at_resolution(img_size)).eval()
    enc = model.image_encoder
    with torch.no_grad():
        for p in enc.parameters():
            p.add_(0.05 * torch.randn_like(p))
    assert {b.window_size for b in enc.blocks} == {0, 8}
    x = torch.randn(2, 3, img_size, img_size)
    with torch.no_grad():
        ref = enc(x)
        torch.testing.assert_close(encoder.encode(enc, x), ref, atol=1e-4, rtol=1e-4)
        chunked = 2 * 6 * (img_size // 16) ** 2 * 100  # batch x heads x keys x 100 queries
        monkeypatch.setattr(encoder, "MAX_BIAS_ELEMENTS", chunked)
        torch.testing.assert_close(encoder.encode(enc, x), ref, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(FastSam(model).encode_image(x), ref, atol=1e-4, rtol=1e-4)


def test_fast_sam_with_autograd_gives_the_plain_gradients(tiny):
    """Training through FastSam: every decoder and prompt-encoder parameter gets the plain model's
    gradient
    (the attention stays in the plain order, so DDP sees every parameter used)."""
    emb = torch.randn(3, tiny.prompt_encoder.embed_dim, *tiny.prompt_encoder.image_embedding_size)
    coords, labels = torch.rand(3, 2, 2) * 400, torch.tensor([[1, 0], [1, 1], [0, 1]])
    mask = torch.randn(3, 1, *tiny.prompt_encoder.mask_input_size)
    params = [p for n, p in tiny.named_parameters() if not n.startswith("image_encoder.")]
    grads = []
    for sam in (tiny, FastSam(tiny)):
        low, iou = sam.encode_prompts_and_decode(emb, coords, labels, None, mask, True)
        assert low.requires_grad
        loss = low.square().mean() + iou.sum()
        grads.append(torch.autograd.grad(loss, params, allow_unused=True))
    used = [a is not None for a in grads[0]]
    assert used == [b is not None for b in grads[1]]
    assert sum(used) > 0.9 * len(params)  # all but the box corners
    for a, b in zip(*grads):
        if a is not None:
            torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-3)
    with torch.no_grad():  # and at inference (the folded order) the same numbers
        ref = tiny.encode_prompts_and_decode(emb[:1], coords[:1], labels[:1])
        out = FastSam(tiny).encode_prompts_and_decode(emb[:1], coords[:1], labels[:1])
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def _attributes(model):
    return {name: set(vars(m)) for name, m in model.named_modules()}


def test_session_keeps_the_first_layer_and_gives_the_same_masks(tiny):
    """Clicks on one image: the second call builds the first layer's image side, later calls reuse
    it; a mask input or changed weights fall back to the full computation. Same numbers; nothing is
    set on the model."""
    pe_mod, dec = tiny.prompt_encoder, tiny.mask_decoder
    emb = torch.randn(1, pe_mod.embed_dim, *pe_mod.image_embedding_size)
    before = _attributes(tiny)
    session = ImageSession(tiny, emb, FastSam(tiny))

    def call(points, labels, mask=None):
        args = (torch.tensor([points]), torch.tensor([labels]), None, mask, True)
        with torch.no_grad():
            out = session.decode(*args)
        ref = tiny.encode_prompts_and_decode(emb, *args)  # the plain model, autograd on
        return out, tuple(r.detach() for r in ref)

    clicks = [([[100.0, 200.0]], [1]), ([[300.0, 50.0]], [1]),
              ([[30.0, 60.0], [400.0, 410.0]], [1, 0])]
    for i, (pts, lab) in enumerate(clicks * 2):
        out, ref = call(pts, lab)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        assert (session._side is not None) == (i >= 1)
    out, ref = call(*clicks[0], mask=torch.randn(1, 1, *pe_mod.mask_input_size))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    kept = session._side
    with torch.no_grad():  # a weight changes in place: the kept side must not be used
        dec.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.mul_(1.5)
    try:
        out, ref = call(*clicks[1])
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        assert session._side is None
        call(*clicks[1])
        assert session._side is not None and session._side is not kept
    finally:
        with torch.no_grad():
            dec.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.div_(1.5)
    assert _attributes(tiny) == before  # no cache, switch or memo was set on any module


def test_session_not_kept_across_autocast_or_replaced_weights(tiny):
    """Nothing is kept from a bf16 autocast call (its bf16 tensors would meet float32 queries
    later), and a kept side is not used with weights replaced by new tensors, even with equal
    versions."""
    pe_mod = tiny.prompt_encoder
    emb = torch.randn(1, pe_mod.embed_dim, *pe_mod.image_embedding_size)
    session = ImageSession(tiny, emb, FastSam(tiny))
    coords, labels = torch.tensor([[[100.0, 200.0]]]), torch.tensor([[1]])

    def call():
        return session.decode(coords, labels)[0]

    def plain():
        return tiny.encode_prompts_and_decode(emb, coords, labels)[0].detach()

    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert call().dtype == torch.bfloat16 and call().dtype == torch.bfloat16
        assert session._pe is None and session._side is None
        out = call()
        assert out.dtype == torch.float32
    torch.testing.assert_close(out, plain(), atol=1e-4, rtol=1e-4)
    proj = tiny.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj
    old = proj.weight
    with torch.no_grad():
        call()
        assert session._side is not None
        new = torch.nn.Parameter(proj.weight.detach() * 2)
        for _ in range(proj.weight._version - new._version):
            new.mul_(1.0)  # same values, version counter brought level with the old weight's
        assert new._version == proj.weight._version
        proj.weight = new
        try:
            out = call()
            ref = plain()
        finally:
            proj.weight = old
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_session_without_fast_is_the_plain_model(tiny):
    emb = torch.randn(1, tiny.prompt_encoder.embed_dim, *tiny.prompt_encoder.image_embedding_size)
    session = ImageSession(tiny, emb)
    coords, labels = torch.tensor([[[100.0, 200.0]]]), torch.tensor([[1]])
    with torch.no_grad():
        out = session.decode(coords, labels)
        ref = tiny.encode_prompts_and_decode(emb, coords, labels)
        torch.testing.assert_close(out, ref, atol=0, rtol=0)
        low = torch.randn(1, 3, 128, 128)
        sizes = (512, 384), (600, 450)
        torch.testing.assert_close(session.postprocess_masks(low, *sizes),
                                   tiny.postprocess_masks(low, *sizes), atol=0, rtol=0)
    with pytest.raises(ValueError, match="FastSam of another model"):
        ImageSession(tiny, emb, FastSam(samkit.build_model("tiny")))


def test_single_mask_keeps_a_stable_token_0_and_otherwise_the_best_multimask_output(tiny):
    """SAM 2's rule: token 0 where its mask is stable (logits far from 0), else the multimask output
    with the highest predicted IoU."""
    dec = tiny.mask_decoder
    masks = torch.zeros(3, 4, 8, 8)
    masks[:, :, :4] = 10.0
    masks[:, :, 4:] = -10.0                     # every token steep: stable
    masks[1, 0, 4:] = 0.01                      # prompt 1: half of token 0's mask in the band (-0.05, 0.05]
    masks[2, 0] = 0.0                           # prompt 2: token 0 empty at > +0.05, half the image at > -0.05
    iou = torch.tensor([[0.1, 0.9, 0.2, 0.3],
                        [0.9, 0.2, 0.3, 0.8],
                        [0.9, 0.5, 0.7, 0.1]])
    out, out_iou = dec.single_mask(masks, iou)
    assert out.shape == (3, 1, 8, 8) and out_iou.shape == (3, 1)
    assert out_iou[:, 0].tolist() == pytest.approx([0.1, 0.8, 0.7])  # token 0, token 3, token 2
    torch.testing.assert_close(out[:, 0], masks[[0, 1, 2], [0, 3, 2]])
    empty = torch.full((1, 4, 8, 8), -10.0)     # nothing above -delta: stable as in SAM 2
    assert dec.single_mask(empty, iou[:1])[1].item() == pytest.approx(0.1)


def test_dynamic_single_mask_only_at_inference_without_a_mask_input(tiny):
    """Both decoding paths pick the same mask; a mask input, training mode, an explicit multimask request or the
    flag off give token 0 (or tokens 1-3) exactly as SAM 1 does."""
    emb = torch.randn(1, tiny.prompt_encoder.embed_dim, *tiny.prompt_encoder.image_embedding_size)
    fast = FastSam(tiny)
    box = torch.tensor([[40.0, 60.0, 300.0, 400.0]])
    dec = tiny.mask_decoder
    assert dec.dynamic_multimask_via_stability  # the embedded model's config turns it on
    with torch.no_grad():
        sparse, dense = tiny.prompt_encoder(points=None, boxes=box, masks=None)
        all_low, all_iou = dec.predict_masks(emb, tiny.prompt_encoder.get_dense_pe(), sparse, dense)
        want = dec.single_mask(all_low, all_iou)
        for run in (tiny.encode_prompts_and_decode, fast.encode_prompts_and_decode):
            got = run(emb, None, None, box, None, False)
            torch.testing.assert_close(got[0], want[0], atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(got[1], want[1], atol=1e-5, rtol=1e-4)
        # the random weights give an unstable token 0 here, so the rule chose a multimask output
        assert not torch.allclose(want[1], all_iou[:, :1])
        low = torch.randn(1, 1, *tiny.prompt_encoder.mask_input_size)
        sparse_m, dense_m = tiny.prompt_encoder(points=None, boxes=box, masks=low)
        token0 = dec.predict_masks(emb, tiny.prompt_encoder.get_dense_pe(), sparse_m, dense_m, slice(0, 1))
        torch.testing.assert_close(tiny.encode_prompts_and_decode(emb, None, None, box, low, False), token0)
        torch.testing.assert_close(tiny.encode_prompts_and_decode(emb, None, None, box, None, True),
                                   (all_low[:, 1:], all_iou[:, 1:]))
    try:
        dec.train()
        with torch.no_grad():
            torch.testing.assert_close(tiny.encode_prompts_and_decode(emb, None, None, box, None, False)[1],
                                       all_iou[:, :1])
        dec.eval()
        dec.dynamic_multimask_via_stability = False
        with torch.no_grad():
            torch.testing.assert_close(tiny.encode_prompts_and_decode(emb, None, None, box, None, False)[1],
                                       all_iou[:, :1])
    finally:
        dec.eval()
        dec.dynamic_multimask_via_stability = True


def test_sam_1_configurations_keep_token_0():
    for name in ("vit_b", "vit_l", "vit_h", "vit_t"):
        assert not get_config(name).decoder.dynamic_multimask_via_stability
    assert get_config("tiny").decoder.dynamic_multimask_via_stability
