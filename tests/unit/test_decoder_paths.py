"""The decoder's fast paths compute the same numbers as the plain formulation they replace."""
import pytest
import torch
import torch.nn.functional as F

import samkit
from samkit.model.sam import resize_matrix
from samkit.speed import fast_paths


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = samkit.build_model("tiny").eval()
    with torch.no_grad():  # random, non-trivial decoder weights (biases included)
        for p in model.mask_decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("input_size,original_size", [((256, 192), (480, 360)), ((171, 256), (300, 449)),
                                                      ((256, 256), (64, 64))])
@pytest.mark.parametrize("batch", [1, 12])  # 3 planes: sparse matrices; 36: dense ones
def test_postprocess_equals_two_bilinear_resizes(tiny, input_size, original_size, batch):
    low = torch.randn(batch, 3, 64, 64) * 5
    ref = F.interpolate(low, (tiny.img_size, tiny.img_size), mode="bilinear", align_corners=False)
    ref = F.interpolate(ref[..., : input_size[0], : input_size[1]], original_size, mode="bilinear",
                        align_corners=False)
    out = tiny.postprocess_masks(low, input_size, original_size)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-5)


def test_resize_matrix_rows_sum_to_one():
    m = resize_matrix(64, 256, 200, 333)
    assert m.shape == (333, 64)
    torch.testing.assert_close(m.sum(1), torch.ones(333))


def _plain_upscale(decoder, src_tokens, h, w):
    """The official formulation: tokens back to an image, then the transposed convolutions."""
    b, n, c = src_tokens.shape
    return decoder.output_upscaling(src_tokens.transpose(1, 2).reshape(b, c, h, w))


def test_upscale_matches_transposed_convolutions(tiny):
    dec = tiny.mask_decoder
    h = w = tiny.config.embedding_size
    src = torch.randn(2, h * w, dec.transformer_dim)
    ref = _plain_upscale(dec, src, h, w)                                  # B x C'' x 4h x 4w
    blocked = dec.upscale(src, h, w)                                      # B x 16hw x C''
    c = blocked.shape[-1]
    out = blocked.reshape(2, h, w, 2, 2, 2, 2, c).permute(0, 7, 1, 3, 5, 2, 4, 6).reshape(2, c, 4 * h, 4 * w)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("multimask", [True, False])
def test_shared_image_equals_one_copy_per_prompt(tiny, multimask):
    pe = tiny.prompt_encoder
    emb = torch.randn(1, pe.embed_dim, *pe.image_embedding_size)
    pts = torch.rand(5, 2, 2) * tiny.img_size
    labels = torch.tensor([[1, 0]] * 5)
    sparse, dense = pe(points=(pts, labels), boxes=None, masks=None)
    with torch.no_grad():
        shared = tiny.mask_decoder(emb, pe.get_dense_pe(), sparse, dense, multimask)        # image batch 1
        repeated = tiny.mask_decoder(emb.repeat(5, 1, 1, 1), pe.get_dense_pe(), sparse,
                                     dense.contiguous(), multimask)                          # one copy each
    assert shared[0].shape == (5, 3 if multimask else 1, 4 * emb.shape[-2], 4 * emb.shape[-1])
    torch.testing.assert_close(shared[0], repeated[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(shared[1], repeated[1], atol=1e-5, rtol=1e-4)


def test_decoder_rejects_wrong_image_batch(tiny):
    pe = tiny.prompt_encoder
    emb = torch.randn(2, pe.embed_dim, *pe.image_embedding_size)
    sparse, dense = pe(points=(torch.rand(3, 1, 2) * 100, torch.ones(3, 1, dtype=torch.long)), boxes=None, masks=None)
    with pytest.raises(ValueError, match="image_embeddings has batch 2"):
        tiny.mask_decoder(emb, pe.get_dense_pe(), sparse, dense, True)


@pytest.mark.parametrize("bq,nq,bk,nk", [(1, 7, 1, 1024), (3, 7, 1, 1024), (3, 7, 3, 1024), (1, 1024, 1, 7),
                                         (1, 1024, 3, 7), (3, 1024, 3, 7), (2, 6, 2, 6)])
def test_attention_orders_agree(bq, nq, bk, nk):
    """The folded evaluation orders give the projected attention's numbers (float64, random biases)."""
    from samkit.model.transformer import Attention

    torch.manual_seed(1)
    attn = Attention(64, 4, downsample_rate=2).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    q = torch.randn(bq, nq, 64, dtype=torch.float64)
    k = torch.randn(bk, nk, 64, dtype=torch.float64)
    v = torch.randn(bk, nk, 64, dtype=torch.float64)
    with torch.no_grad(), fast_paths(fold_attention=False):
        ref = attn(q, k, v)  # the projected order, as the official code computes it
    assert ref.shape == (max(bq, bk), nq, 64)
    with torch.inference_mode():
        for path in (attn._few_queries, attn._few_keys):
            torch.testing.assert_close(path(q, k, v), ref, atol=1e-12, rtol=1e-10)


def test_attention_picks_the_folded_order_for_one_click():
    from samkit.model.transformer import Attention

    attn = Attention(256, 8, downsample_rate=2)
    tokens, image = torch.zeros(1, 7, 256), torch.zeros(1, 4096, 256)
    assert attn._cheapest(tokens, image) == "few_queries"
    assert attn._cheapest(image, tokens) == "few_keys"
    # 32 prompts on one shared image: projecting the image once is cheaper than folding into 32 x 7 tokens
    assert attn._cheapest(torch.zeros(32, 7, 256), image) == "projected"


def test_inference_decoder_matches_training_order(tiny):
    """A whole decoder call at inference (folded orders) against the same call with autograd on."""
    emb = torch.randn(1, tiny.prompt_encoder.embed_dim, *tiny.prompt_encoder.image_embedding_size)
    pts = (torch.tensor([[[100.0, 200.0], [300.0, 50.0]]]), torch.tensor([[1, 0]]))
    sparse, dense = tiny.prompt_encoder(points=pts, boxes=None, masks=None)
    pe = tiny.prompt_encoder.get_dense_pe()
    ref, ref_iou = tiny.mask_decoder(emb, pe, sparse, dense, True)
    with torch.inference_mode():
        out, iou = tiny.mask_decoder(emb, pe, sparse, dense, True)
    torch.testing.assert_close(out, ref.detach(), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(iou, ref_iou.detach(), atol=1e-5, rtol=1e-4)


def test_dense_pe_is_cached_until_the_weights_change():
    model = samkit.build_model("tiny")
    pe = model.prompt_encoder
    with torch.no_grad():
        first = pe.get_dense_pe()
        assert pe.get_dense_pe() is first
    model.load_state_dict(samkit.build_model("tiny").state_dict())  # new Gaussian matrix
    with torch.no_grad():
        again = pe.get_dense_pe()
    assert again is not first
    torch.testing.assert_close(again, pe.pe_layer(pe.image_embedding_size).unsqueeze(0))
    assert pe.get_dense_pe() is not again  # with autograd on it is recomputed, never the cache


def test_kept_first_layer_gives_the_same_masks(tiny):
    """Clicks on one image: the second call builds the first layer's image side, later calls reuse it;
    a mask input, a new image or changed weights fall back to the full computation. Same numbers."""
    pe_mod, dec = tiny.prompt_encoder, tiny.mask_decoder
    emb = torch.randn(1, pe_mod.embed_dim, *pe_mod.image_embedding_size)

    def call(points, labels, mask=None, embedding=emb, grad=False):
        with torch.set_grad_enabled(grad):
            sparse, dense = pe_mod(points=(torch.tensor([points]), torch.tensor([labels])), boxes=None, masks=mask)
            out, iou = dec(embedding, pe_mod.get_dense_pe(), sparse, dense, True)
        return out.detach(), iou.detach()

    clicks = [([[100.0, 200.0]], [1]), ([[300.0, 50.0]], [1]), ([[30.0, 60.0], [400.0, 410.0]], [1, 0])]
    dec._kept = None
    for i, (pts, lab) in enumerate(clicks * 2):
        ref = call(pts, lab, grad=True)
        out = call(pts, lab)
        torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
        assert (dec._kept["side"] is not None) == (i >= 1)
    low = torch.randn(1, 1, *pe_mod.mask_input_size)
    torch.testing.assert_close(call(*clicks[0], mask=low), call(*clicks[0], mask=low, grad=True), atol=1e-4, rtol=1e-4)
    other = torch.randn_like(emb)
    torch.testing.assert_close(call(*clicks[0], embedding=other), call(*clicks[0], embedding=other, grad=True),
                               atol=1e-4, rtol=1e-4)
    assert dec._kept["embedding"] is other and dec._kept["side"] is None
    call(*clicks[0], embedding=other)  # builds the side for `other`
    with torch.no_grad():  # a weight changes in place: the kept side must not be used
        dec.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.mul_(1.5)
    torch.testing.assert_close(call(*clicks[1], embedding=other), call(*clicks[1], embedding=other, grad=True),
                               atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        dec.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.div_(1.5)


def test_kept_first_layer_not_used_across_autocast_or_new_weights(tiny):
    """No side is kept from a bf16 autocast call (its bf16 tensors would meet float32 queries later), and a
    kept side is not used with weights that were replaced by new tensors, even with equal version counters."""
    pe_mod, dec = tiny.prompt_encoder, tiny.mask_decoder
    emb = torch.randn(1, pe_mod.embed_dim, *pe_mod.image_embedding_size)

    def call():
        sparse, dense = pe_mod(points=(torch.tensor([[[100.0, 200.0]]]), torch.tensor([[1]])), boxes=None, masks=None)
        return dec(emb, pe_mod.get_dense_pe(), sparse, dense, True)[0]

    dec._kept = None
    with torch.no_grad():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert call().dtype == torch.bfloat16 and call().dtype == torch.bfloat16
        out = call()
        assert out.dtype == torch.float32
    with torch.enable_grad():
        torch.testing.assert_close(out, call().detach(), atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        call(), call()
        assert dec._kept["side"] is not None
        proj = dec.transformer.layers[0].cross_attn_token_to_image.k_proj
        new = torch.nn.Parameter(proj.weight.detach() * 2)
        for _ in range(proj.weight._version - new._version):
            new.mul_(1.0)  # same values, version counter brought level with the old weight's
        assert new._version == proj.weight._version
        proj.weight = new
        out = call()
    with torch.enable_grad():
        torch.testing.assert_close(out, call().detach(), atol=1e-4, rtol=1e-4)
