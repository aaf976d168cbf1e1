"""MobileSAM's TinyViT encoder (vit_t): structure, shapes, attention bias, drop path, layer ids.

Numerical parity with the official code is in tests/parity/test_vit_t_parity.py; these tests need
no reference package and run on small inputs.
"""
import dataclasses
import itertools

import pytest
import torch

from samkit.model.configs import TinyViTConfig
from samkit.model.tiny_vit import Attention, TinyViT, TinyViTBlock, relative_offset_index, tiny_vit_layer_ids

# A small TinyViT: 64 px input -> 4x4 embedding; windows 3/3/5/3 so that every stage needs padding.
SMALL = dict(img_size=64, embed_dims=(8, 16, 20, 40), depths=(1, 2, 2, 1), num_heads=(1, 2, 2, 4),
             window_sizes=(3, 3, 5, 3), out_chans=32, num_classes=10)


def randomize_(model: torch.nn.Module, seed: int = 0) -> None:
    """Perturb every parameter and BatchNorm statistic so that no branch is an identity or zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.add_(noise if name.endswith("attention_biases") else 0.1 * noise)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


@pytest.fixture(scope="module")
def vit_t() -> TinyViT:
    return TinyViT(**dataclasses.asdict(TinyViTConfig()))


def test_vit_t_parameter_names_and_count(vit_t):
    model = vit_t
    state = model.state_dict()
    # The official model has 6,065,532 parameters including the unused 320 -> 1000 ImageNet head.
    assert sum(p.numel() for p in model.parameters()) == 6_065_532
    for key in ("patch_embed.seq.0.c.weight", "patch_embed.seq.2.bn.running_var",
                "layers.0.blocks.1.conv3.bn.weight", "layers.0.downsample.conv2.c.weight",
                "layers.2.blocks.5.attn.attention_biases", "layers.2.blocks.5.attn.qkv.weight",
                "layers.3.blocks.1.local_conv.c.weight", "layers.3.blocks.1.mlp.norm.weight",
                "layers.3.blocks.1.mlp.fc2.bias", "norm_head.weight", "head.weight",
                "neck.0.weight", "neck.1.weight", "neck.2.weight", "neck.3.bias"):
        assert key in state, key
    assert not any("attention_bias_idxs" in k for k in state)  # non-persistent, as in the official code
    assert "layers.3.downsample.conv1.c.weight" not in state     # the last stage has no merging
    assert state["layers.2.blocks.0.attn.attention_biases"].shape == (5, 14 * 14)
    assert state["layers.1.blocks.0.attn.qkv.weight"].shape == (3 * 128, 128)
    assert state["layers.2.downsample.conv2.c.weight"].shape == (320, 1, 3, 3)
    assert model.layers[2].downsample.conv2.c.stride == (1, 1)   # MobileSAM: keep 64x64
    assert model.layers[1].downsample.conv2.c.stride == (2, 2)
    assert model.img_size == 1024 and model.embedding_size == 64


def test_builds_from_config_fields(vit_t):
    fields = dataclasses.asdict(TinyViTConfig())
    assert fields["img_size"] == vit_t.img_size == 1024
    assert [layer.blocks[0].attn.attention_biases.shape[0] for layer in vit_t.layers[1:]] == [4, 5, 10]
    assert [int(layer.blocks[0].attn.attention_biases.shape[1] ** 0.5) for layer in vit_t.layers[1:]] == [7, 14, 7]
    assert vit_t.neck[2].out_channels == fields["out_chans"]


def test_vit_t_architecture_on_a_small_input():
    # The vit_t widths and windows on a 128 px input (1/64 of the work): 8x8 embedding.
    model = TinyViT(img_size=128).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 128, 128))
    assert out.shape == (1, 256, 8, 8)
    assert torch.isfinite(out).all()


def test_shapes_and_batch_independence():
    model = TinyViT(**SMALL)
    randomize_(model)
    model.eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        single = model(x[1:2])
    assert out.shape == (3, 32, 4, 4)
    torch.testing.assert_close(out[1:2], single, atol=1e-5, rtol=1e-5)
    # the neck ends in a LayerNorm2d: per-pixel channel statistics are normalised (weight 1 +- noise)
    assert out.std() > 0.1


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 1, 64, 64), (3, 64, 64), (1, 3, 64, 48)])
def test_bad_input_shape_raises(shape):
    model = TinyViT(**SMALL)
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(shape))


def test_bad_config_raises():
    with pytest.raises(ValueError, match="num_heads"):
        TinyViT(num_heads=(2, 4, 5))
    with pytest.raises(ValueError, match="multiple of 16"):
        TinyViT(img_size=1000)
    with pytest.raises(ValueError, match="divisible"):
        TinyViT(**{**SMALL, "num_heads": (1, 3, 2, 4)})


def official_offset_index(window_size: int) -> torch.Tensor:
    """The official numbering: offsets numbered in the order they are first met over all pairs."""
    points = list(itertools.product(range(window_size), range(window_size)))
    seen, idxs = {}, []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            idxs.append(seen.setdefault(offset, len(seen)))
    return torch.tensor(idxs).view(len(points), len(points))


@pytest.mark.parametrize("window_size", [1, 3, 7, 14])
def test_relative_offset_index_matches_official_numbering(window_size):
    idx = relative_offset_index(window_size)
    assert torch.equal(idx, official_offset_index(window_size))
    assert idx.unique().numel() == window_size ** 2


def test_attention_matches_naive_formula():
    torch.manual_seed(0)
    dim, heads, ws = 12, 3, 4
    attn = Attention(dim, heads, ws)
    randomize_(attn)
    x = torch.randn(2, ws * ws, dim)
    hd = dim // heads
    # per head the fused projection holds [q_h, k_h, v_h]
    qkv = attn.qkv(attn.norm(x)).view(2, ws * ws, heads, 3 * hd).permute(0, 2, 1, 3)
    q, k, v = qkv[..., :hd], qkv[..., hd:2 * hd], qkv[..., 2 * hd:]
    bias = torch.empty(heads, ws * ws, ws * ws)
    for i, j in itertools.product(range(ws * ws), repeat=2):
        dy, dx = abs(i // ws - j // ws), abs(i % ws - j % ws)
        bias[:, i, j] = attn.attention_biases[:, dy * ws + dx]
    weights = (q @ k.transpose(-2, -1) / hd ** 0.5 + bias).softmax(-1)
    expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, ws * ws, dim))
    torch.testing.assert_close(attn(x), expected, atol=1e-5, rtol=1e-5)


def test_block_pads_windows_like_the_official_code():
    # A 5x5 grid in 3x3 windows is zero-padded to 6x6: the padded tokens go through the LayerNorm and
    # are attended to (no mask). Reproduce that by hand on the padded grid.
    torch.manual_seed(0)
    block = TinyViTBlock(dim=8, num_heads=2, window_size=3)
    randomize_(block)
    block.eval()
    x = torch.randn(1, 5, 5, 8)
    with torch.no_grad():
        out = block(x)
        padded = torch.nn.functional.pad(x, (0, 0, 0, 1, 0, 1))            # 1 x 6 x 6 x 8
        windows = padded.view(1, 2, 3, 2, 3, 8).permute(0, 1, 3, 2, 4, 5).reshape(4, 9, 8)
        y = block.attn(windows).view(1, 2, 2, 3, 3, 8).permute(0, 1, 3, 2, 4, 5).reshape(1, 6, 6, 8)
        y = x + y[:, :5, :5]
        y = block.local_conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        expected = y + block.mlp(y)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_layer_ids(vit_t):
    model = vit_t
    n = 12
    assert model.num_blocks == n
    assert model.layer_id("patch_embed.seq.0.c.weight") == 0
    assert model.layer_id("layers.0.blocks.0.conv1.c.weight") == 1
    assert model.layer_id("layers.0.blocks.1.conv1.c.weight") == 2
    assert model.layer_id("layers.0.downsample.conv1.c.weight") == 2
    assert model.layer_id("layers.1.blocks.0.attn.qkv.weight") == 3
    assert model.layer_id("layers.2.blocks.5.mlp.fc1.weight") == 10
    assert model.layer_id("layers.2.downsample.conv3.bn.weight") == 10
    assert model.layer_id("layers.3.blocks.1.attn.attention_biases") == n
    assert model.layer_id("neck.3.weight") == n + 1
    assert model.layer_id("head.weight") == n + 1
    assert model.layer_id("image_encoder.layers.1.blocks.1.mlp.fc1.bias") == 4
    for bad in ("pos_embed", "layers.4.blocks.0.attn.qkv.weight", "layers.1.blocks"):
        with pytest.raises(ValueError, match="not a parameter name"):
            model.layer_id(bad)
    ids = tiny_vit_layer_ids(model)
    assert set(ids) == {name for name, _ in model.named_parameters()}
    assert set(ids.values()) == set(range(n + 2))
    block_ids = [v for k, v in ids.items() if k.startswith(("patch_embed", "layers"))]
    assert block_ids == sorted(block_ids)  # depth never decreases along the network


def test_drop_path_rates_and_behaviour():
    model = TinyViT(**{**SMALL, "drop_path_rate": 0.5})
    blocks = [b for layer in model.layers for b in layer.blocks]
    rates = [b.drop_path for b in blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5)
    assert all(b > a for a, b in zip(rates, rates[1:]))
    randomize_(model)
    x = torch.randn(2, 3, 64, 64)
    model.train()
    torch.manual_seed(1)
    a = model(x)
    torch.manual_seed(2)
    b = model(x)
    assert not torch.allclose(a, b)            # random per sample and per call while training
    model.set_drop_path(0.0)
    assert all(blk.drop_path == 0.0 for blk in blocks)
    torch.testing.assert_close(model(x), model(x))
    model.set_drop_path(0.5)
    model.eval()
    with torch.no_grad():
        with_dp = model(x)
        model.set_drop_path(0.0)
        torch.testing.assert_close(model(x), with_dp)  # no effect at inference
    with pytest.raises(ValueError, match="drop path"):
        model.set_drop_path(1.0)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    plain = TinyViT(**SMALL)
    randomize_(plain)
    ckpt = TinyViT(**SMALL, use_checkpoint=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        model.train()
        model(x).square().mean().backward()
        grads.append(model.layers[1].blocks[0].attn.attention_biases.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


def test_state_dict_round_trip_is_strict():
    a = TinyViT(**SMALL)
    randomize_(a)
    b = TinyViT(**SMALL)
    b.load_state_dict(a.state_dict(), strict=True)
    a.eval(), b.eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_windows_that_tile_the_grid_need_no_padding():
    # 96 px: grids 24 -> 12 -> 6 -> 6, all multiples of the 3x3 windows (and a channels-last view as input).
    model = TinyViT(**{**SMALL, "img_size": 96, "window_sizes": (3, 3, 3, 3)})
    randomize_(model)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 96, 96)).shape == (2, 32, 6, 6)
        block = model.layers[2].blocks[0]
        x = torch.randn(1, 20, 6, 6)                       # B x C x H x W
        torch.testing.assert_close(block(x.permute(0, 2, 3, 1)), block(x.permute(0, 2, 3, 1).contiguous()))
