"""The training loop on the tiny model: config, schedule, parameter groups, interaction, resume, NaN."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import samkit
from samkit import train as tr
from samkit.train import TrainConfig, TrainingDiverged, interactive, lr_factor, param_groups, round_plan, train


def tiny_config(tmp_path: Path, **changes) -> TrainConfig:
    """A few seconds of training: 2 small scenes, 1 mask each, 2 rounds (a prompt, an error point)."""
    values = dict(model="tiny", out_dir=str(tmp_path / "run"), cache_dir=str(tmp_path / "emb"),
                  max_steps=2, batch_size=1, masks_per_image=1, n_rounds=2, no_point_rounds=0,
                  warmup_steps=2, eval_every=-1, eval_masks_per_image=2, progress=False,
                  data=dict(kind="scenes", n_images=2, n_val=1, image_size=64, cache_in_memory=True))
    data = changes.pop("data", {})
    values.update(changes)
    values["data"].update(data)
    return TrainConfig.from_dict(values)


# --- configuration ---------------------------------------------------------------------------------
def test_yaml_overrides_and_unknown_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: tiny\nlr: 1.0e-3\ndata:\n  kind: scenes\n  n_images: 4\n")
    cfg = TrainConfig.from_yaml(path, ["data.n_images=3", "betas=[0.8, 0.9]", "max_steps=7"])
    assert cfg.lr == 1e-3 and cfg.data.n_images == 3 and cfg.betas == (0.8, 0.9) and cfg.max_steps == 7
    path.write_text("model: tiny\nlearning_rate: 1\n")
    with pytest.raises(ValueError, match="unknown field 'learning_rate'"):
        TrainConfig.from_yaml(path)
    with pytest.raises(ValueError, match="train_parts"):
        TrainConfig.from_dict({"train_parts": "encoder"})
    with pytest.raises(ValueError, match="data.kind"):
        TrainConfig.from_dict({"data": {"kind": "imagenet"}})
    with pytest.raises(FileNotFoundError):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parents[2] / "configs").glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = TrainConfig.from_yaml(Path(__file__).parents[2] / "configs" / name)
    assert cfg.n_rounds >= 1


# --- schedule and rounds ---------------------------------------------------------------------------
def test_round_plan_paper_placement():
    for seed in range(20):
        plan = round_plan(11, 2, "random", torch.Generator().manual_seed(seed))
        assert len(plan) == 11 and plan[0] == "first" and plan[-1] == "none"
        assert plan.count("point") == 8 and plan.count("none") == 2
        assert plan.index("none") < 10  # the other no-point round lies among the point rounds
    assert round_plan(11, 2, "middle")[5] == "none"
    assert round_plan(1, 0) == ["first"]
    assert round_plan(3, 0) == ["first", "point", "point"]


def test_lr_schedule():
    cfg = TrainConfig(warmup_steps=250, schedule="step", milestones=[60000, 86666], gamma=0.1)
    assert lr_factor(0, cfg, 100, 90000) == pytest.approx(1 / 250)
    assert lr_factor(249, cfg, 100, 90000) == 1.0
    assert lr_factor(59999, cfg, 100, 90000) == 1.0
    assert lr_factor(60000, cfg, 100, 90000) == pytest.approx(0.1)
    assert lr_factor(86666, cfg, 100, 90000) == pytest.approx(0.01)
    course = TrainConfig(warmup_steps=0, schedule="exp_epoch", gamma=0.6)
    assert [lr_factor(s, course, 10, 30) for s in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.6, 0.36])


# --- parameter groups ------------------------------------------------------------------------------
def _group_of(groups, name):
    return next(g for g in groups if name in g["names"])


def test_param_groups_decay_and_layer_decay():
    model = samkit.build_model("tiny_v1")
    tr.set_trainable(model, "all")
    groups = param_groups(model, lr=1.0, weight_decay=0.1, layer_decay=0.5)
    names = [n for g in groups for n in g["names"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    no_decay = ["mask_decoder.iou_token.weight", "prompt_encoder.no_mask_embed.weight",
                "image_encoder.pos_embed", "image_encoder.blocks.0.attn.rel_pos_h",
                "image_encoder.blocks.0.norm1.weight", "mask_decoder.iou_prediction_head.layers.0.bias"]
    for n in no_decay:
        assert _group_of(groups, n)["weight_decay"] == 0.0, n
    assert _group_of(groups, "image_encoder.blocks.0.attn.qkv.weight")["weight_decay"] == 0.1
    # depth: patch embed 0, block i -> i + 1, neck 7 (the top) for the 6-block tiny ViT
    assert _group_of(groups, "image_encoder.neck.0.weight")["lr"] == 1.0
    assert _group_of(groups, "image_encoder.blocks.5.attn.qkv.weight")["lr"] == 0.5
    assert _group_of(groups, "image_encoder.blocks.0.attn.qkv.weight")["lr"] == 0.5 ** 6
    assert _group_of(groups, "image_encoder.patch_embed.proj.weight")["lr"] == 0.5 ** 7
    assert _group_of(groups, "mask_decoder.transformer.layers.0.mlp.lin1.weight")["lr"] == 1.0
    tr.set_trainable(model, "decoder")
    names = [n for g in param_groups(model, 1.0, 0.1) for n in g["names"]]
    assert names and all(n.startswith("mask_decoder.") for n in names)


def test_param_groups_tinyvit_layer_decay():
    model = samkit.build_model("vit_t")
    tr.set_trainable(model, "all")
    groups = param_groups(model, lr=1.0, weight_decay=0.1, layer_decay=0.8)
    enc = model.image_encoder
    top = enc.num_blocks + 1
    assert _group_of(groups, "image_encoder.patch_embed.seq.0.c.weight")["lr"] == pytest.approx(0.8 ** top)
    assert _group_of(groups, "image_encoder.neck.0.weight")["lr"] == 1.0


# --- data ------------------------------------------------------------------------------------------
def test_prepare_image_resizes_pads_and_filters():
    image = np.zeros((50, 100, 3), np.uint8)
    masks = np.zeros((3, 50, 100), bool)
    masks[0, 10:20, 30:60] = True          # kept
    masks[1] = True                        # covers the whole image: dropped (> 90%)
    record = tr.prepare_image(image, masks, img_size=256)
    assert record.input_size == (128, 256) and tuple(record.image.shape) == (3, 128, 256)
    assert tuple(record.masks.shape) == (1, 256, 256)
    ys, xs = torch.nonzero(record.masks[0], as_tuple=True)
    assert ys.min() >= 24 and ys.max() <= 52 and xs.min() >= 75 and xs.max() <= 155
    assert not record.masks[0, 128:].any()   # padding stays background


def test_prompted_image_first_prompts_lie_in_the_mask():
    masks = torch.zeros(4, 256, 256, dtype=torch.bool)
    for k in range(4):
        masks[k, 40 * k: 40 * k + 30, 50:120] = True
    record = tr.PreparedImage(0, torch.zeros(3, 256, 256, dtype=torch.uint8), masks, (256, 256), (256, 256))
    cfg = TrainConfig(masks_per_image=4, box_prob=0.5)
    p = tr.prompt_image(record, cfg, 256, torch.Generator().manual_seed(3), torch.device("cpu"))
    assert p.points.shape[0] + p.boxes.shape[0] == 4
    for (x, y), gt in zip(p.points[:, 0].long().tolist(), p.gt[~p.is_box]):
        assert gt[y, x]
    # same generator seed, same prompts
    q = tr.prompt_image(record, cfg, 256, torch.Generator().manual_seed(3), torch.device("cpu"))
    assert torch.equal(p.points, q.points) and torch.equal(p.boxes, q.boxes)



@pytest.mark.parametrize("power", [0.0, 1.0])
def test_mask_area_power_favours_large_masks(power):
    masks = torch.zeros(2, 256, 256, dtype=torch.bool)
    masks[0, :16, :16] = True          # 256 px
    masks[1, 64:, 64:] = True          # 36,864 px
    record = tr.PreparedImage(0, torch.zeros(3, 256, 256, dtype=torch.uint8), masks, (256, 256), (256, 256))
    cfg = TrainConfig(masks_per_image=1, box_prob=1.0, mask_area_power=power)
    g = torch.Generator().manual_seed(0)
    large = sum(bool(tr.prompt_image(record, cfg, 256, g, torch.device("cpu")).gt[0, 200, 200]) for _ in range(200))
    if power == 0:
        assert 70 < large < 130          # uniform, the paper
    else:
        assert large > 190               # odds 144 : 1
    with pytest.raises(ValueError, match="mask_area_power"):
        TrainConfig(mask_area_power=-1).validate()


# --- the loop (each runs a few real steps: seconds on an idle CPU) ---------------------------------
@pytest.mark.slow
def test_train_decoder_runs_logs_and_caches(tmp_path):
    cfg = tiny_config(tmp_path, train_parts="decoder", eval_every=0, ckpt_every=1)
    torch.manual_seed(cfg.seed)  # train() builds its model under the same seed
    before = {k: v.clone() for k, v in samkit.build_model("tiny").state_dict().items()}
    result = train(cfg)
    assert result.steps == 2 and len(result.history) == 2
    lines = [json.loads(x) for x in result.metrics_path.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["train", "train", "eval"]
    assert {"loss", "focal", "dice", "iou_mse", "lr", "grad_norm", "time"} <= set(lines[0])
    assert lines[0]["lr"] == pytest.approx(cfg.lr / 2)   # warm-up
    assert all(0.0 < x["grad_norm"] < float("inf") for x in lines[:2])  # measured before any clipping
    assert 0.0 <= lines[-1]["miou_point_oracle"] <= 1.0 and "miou_box" in lines[-1]
    # embeddings were computed once per image (2 train + 1 val) and stored as float16
    files = sorted((tmp_path / "emb").glob("*.pt"))
    assert len(files) == 3 and torch.load(files[0])["embedding"].dtype == torch.float16
    after = result.model.state_dict()
    for k, v in after.items():
        changed = not torch.equal(v, before[k])
        if k.startswith("image_encoder.") or k.startswith("prompt_encoder."):
            assert not changed, k
    assert any(not torch.equal(after[k], before[k]) for k in after if k.startswith("mask_decoder."))
    loaded = samkit.build_model("tiny")
    loaded.load_state_dict(torch.load(result.model_path))
    assert (tmp_path / "run" / "config.yaml").exists()
    import matplotlib
    matplotlib.use("Agg")
    from samkit.viz import plot_curves
    ax = plot_curves(result.metrics_path, keys=["loss", "miou_point_oracle"])
    assert len(ax.lines) == 2


@pytest.mark.slow
def test_train_iou_head_alone_leaves_the_masks(tmp_path):
    cfg = tiny_config(tmp_path, train_parts="iou_head", iou_weight=5.0, lr=1e-2)
    torch.manual_seed(cfg.seed)
    before = {k: v.clone() for k, v in samkit.build_model("tiny").state_dict().items()}
    after = train(cfg).model.state_dict()
    changed = {k for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith("mask_decoder.iou_prediction_head.") for k in changed), changed
    with pytest.raises(ValueError, match="iou_weight"):
        TrainConfig.from_dict({"train_parts": "iou_head", "iou_weight": 0})


@pytest.mark.slow
def test_resume_continues_exactly(tmp_path):
    straight = train(tiny_config(tmp_path / "a", max_steps=6))
    part = tiny_config(tmp_path / "b", max_steps=3)
    train(part)
    resumed = train(part.replace(max_steps=6), resume=True)
    a = [h["loss"] for h in straight.history]
    b = [h["loss"] for h in resumed.history]
    assert len(a) == len(b) == 6
    assert a == b
    for k, v in straight.model.state_dict().items():
        torch.testing.assert_close(v, resumed.model.state_dict()[k], rtol=0, atol=0)


@pytest.mark.slow
def test_stop_after_cuts_a_run_short_on_the_full_schedule(tmp_path):
    straight = train(tiny_config(tmp_path / "a", max_steps=4, schedule="cosine", warmup_steps=0))
    cut = tiny_config(tmp_path / "b", max_steps=4, schedule="cosine", warmup_steps=0, stop_after=2)
    first = train(cut)
    assert first.steps == 2 and first.model_path.exists()
    assert [h["lr"] for h in first.history] == [h["lr"] for h in straight.history[:2]]   # not decayed to 0
    rest = train(cut.replace(stop_after=None), resume=True)
    assert [h["loss"] for h in rest.history] == [h["loss"] for h in straight.history]
    with pytest.raises(ValueError, match="stop_after"):
        TrainConfig(stop_after=0).validate()

@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = interactive.sam_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        if calls["n"] > 2:   # 2 rounds per step: step 2 goes bad
            out["per_prompt"] = out["per_prompt"] * float("nan")
        return out

    monkeypatch.setattr(interactive, "sam_loss", poisoned)
    cfg = tiny_config(tmp_path, max_steps=3, ckpt_every=1)
    with pytest.raises(TrainingDiverged, match=r"step 2 .*checkpoint.pt \(step 1\)"):
        train(cfg)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["step"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_snapshots_keep_the_weights_of_every_nth_step(tmp_path):
    cfg = tiny_config(tmp_path, train_parts="decoder", max_steps=3, snapshot_every=2, eval_every=-1)
    result = train(cfg)
    snaps = sorted((tmp_path / "run" / "snapshots").iterdir())
    assert [p.name for p in snaps] == ["step_000002.pth"]
    weights = torch.load(snaps[0], weights_only=True)
    final = result.model.state_dict()
    assert weights.keys() == final.keys()
    changed = [k for k in final if k.startswith("mask_decoder.") and not torch.equal(weights[k], final[k])]
    assert changed  # step 2's weights, not the last step's


@pytest.mark.slow
def test_train_all_parts_updates_the_encoder_with_drop_path(tmp_path):
    cfg = tiny_config(tmp_path, model="tiny_v1", train_parts="all", max_steps=1, drop_path=0.2, layer_decay=0.6,
                      grad_clip=1.0, amp="bf16")
    torch.manual_seed(cfg.seed)
    before = samkit.build_model("tiny_v1").image_encoder.state_dict()
    result = train(cfg)
    enc = result.model.image_encoder
    assert enc.blocks[-1].drop_path == pytest.approx(0.2) and enc.blocks[0].drop_path == 0.0
    assert not torch.equal(enc.state_dict()["blocks.0.attn.qkv.weight"], before["blocks.0.attn.qkv.weight"])
    assert not (tmp_path / "emb").exists()   # encoded on the fly, nothing cached
    assert np.isfinite(result.final_loss)


def test_parking_and_ndispark_sources(tmp_path):
    from samkit.data.parking import generate_parking

    cfg = TrainConfig.from_dict({"data": {"kind": "parking", "n_images": 2, "n_val": 1, "image_size": 128}})
    train_set, val_set = tr.build_datasets(cfg, 256)
    assert len(train_set) == 2 and len(val_set) == 1
    rec = train_set[0]
    assert rec.input_size == (192, 256) and rec.masks.shape[1:] == (256, 256) and len(rec.masks) > 0
    generate_parking(tmp_path / "lot", n_train=2, n_val=1, size=(96, 64), progress=False)
    cfg = TrainConfig.from_dict({"data": {"kind": "ndispark", "root": str(tmp_path / "lot"), "n_val": 1}})
    train_set, val_set = tr.build_datasets(cfg, 256)
    assert len(train_set) == 2 and len(val_set) == 1 and train_set[1].masks.any()
    with pytest.raises(FileNotFoundError):
        tr.build_datasets(TrainConfig.from_dict({"data": {"kind": "ndispark", "root": str(tmp_path / "x")}}), 256)


def test_sa1b_source_with_selected_masks():
    root = Path(__file__).parents[2] / "data" / "samples" / "sa1b"
    if not root.is_dir():
        pytest.skip("data/samples/sa1b is not there")
    cfg = TrainConfig.from_dict({"data": {"kind": "sa1b", "root": str(root), "n_images": 2, "n_val": 1,
                                          "masks_per_image": 3}})
    train_set, val_set = tr.build_datasets(cfg, 256)
    assert len(train_set) == 2 and len(val_set) == 1
    assert 1 <= len(train_set[0].masks) <= 3


def test_train_at_another_resolution_from_a_checkpoint(tmp_path):
    """img_size trains the model at another input side; a checkpoint made at 512 px loads with its
    position tables resized, and the result reloads at that side."""
    src = tmp_path / "at512.pth"
    torch.save(samkit.build_model("tiny_v1").state_dict(), src)
    cfg = tiny_config(tmp_path, model="tiny_v1", train_parts="all", img_size=256, checkpoint=str(src), max_steps=1)
    model = tr.build_training_model(cfg)
    assert model.img_size == 256 and model.image_encoder.pos_embed.shape == (1, 16, 16, 192)
    result = train(cfg)
    state = torch.load(result.model_path, weights_only=True)
    assert state["image_encoder.pos_embed"].shape == (1, 16, 16, 192)
    back = samkit.build_model("tiny_v1")
    samkit.checkpoints.load_into(back, state, resize=True)  # and up again, as configs/tiny_v1_phase4.yaml does
    assert back.image_encoder.pos_embed.shape == (1, 32, 32, 192)
    with pytest.raises(ValueError, match="multiple of 16"):
        tiny_config(tmp_path, img_size=100).validate()


def test_training_checkpoint_loads_with_weights_only(tmp_path):
    """Training checkpoints hold tensors and plain containers only: torch.load(weights_only=True) reads them."""
    cfg = tiny_config(tmp_path, max_steps=1, ckpt_every=1)
    train(cfg)
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert state["step"] == 1 and isinstance(state["rng"]["numpy"]["keys"], torch.Tensor)
    assert tr.load_training_checkpoint(path)["step"] == 1


def test_nested_targets_by_hand():
    masks = torch.zeros(4, 8, 8, dtype=torch.bool)
    masks[0, :, :] = True          # whole (64 px)
    masks[1, :4, :] = True         # part (32 px)
    masks[2, :2, :2] = True        # subpart (4 px)
    masks[3, 6:, 6:] = True        # another object's corner, not containing the clicks below
    clicks = torch.tensor([[0.0, 0.0], [7.0, 2.0], [1.0, 6.0], [7.0, 7.0]])  # (x, y)
    t = interactive.nested_targets(masks, clicks)
    assert t.shape == (4, 3, 8, 8)
    assert [torch.equal(t[0, k], masks[i]) for k, i in enumerate((2, 1, 0))] == [True] * 3   # 3 levels
    assert [torch.equal(t[1, k], masks[i]) for k, i in enumerate((1, 0, 0))] == [True] * 3   # part, whole
    assert all(torch.equal(t[2, k], masks[0]) for k in range(3))                               # whole only
    assert [torch.equal(t[3, k], masks[i]) for k, i in enumerate((3, 0, 0))] == [True] * 3
    # masks under min_area do not count
    t = interactive.nested_targets(masks, clicks[:1], min_area=5)
    assert [torch.equal(t[0, k], masks[i]) for k, i in enumerate((1, 0, 0))] == [True] * 3


def _three_nested() -> torch.Tensor:
    """``1 x 3 x 8 x 8``: a subpart (2 x 2) inside a part (4 rows) inside a whole (the frame)."""
    gt = torch.zeros(1, 3, 8, 8)
    gt[0, 0, :2, :2] = 1
    gt[0, 1, :4] = 1
    gt[0, 2] = 1
    return gt


def test_sam_loss_with_one_target_per_mask():
    from samkit.losses import sam_loss

    gt = _three_nested()
    logits = (gt * 2 - 1) * 10                     # each mask right for its own target
    out = sam_loss(logits, torch.ones(1, 3), gt)
    assert out["mask_loss"] < 1e-3 and out["iou_mse"] < 1e-6
    swapped = sam_loss(logits.flip(1), torch.ones(1, 3), gt)
    assert swapped["mask_loss"] > 1.0               # no min over the masks: the roles are fixed
    with pytest.raises(ValueError, match="one per mask"):
        sam_loss(logits, torch.ones(1, 3), gt[:, :2])


def test_nested_tie_break_adds_to_the_min():
    from samkit.losses import sam_loss

    gt = _three_nested()
    logits = (gt * 2 - 1) * 10                     # output m right for nested target m
    main = gt[:, 2:3]                              # the sampled mask: the whole
    plain = sam_loss(logits, torch.ones(1, 3), main)
    ordered = sam_loss(logits, torch.ones(1, 3), main, aux_gt=gt, aux_weight=0.5)
    swapped = sam_loss(logits.flip(1), torch.ones(1, 3), main, aux_gt=gt, aux_weight=0.5)
    # the min over the three is unchanged (output 2, then output 0 after the flip, is right for the whole)
    assert plain["mask_loss"] < 1e-3 and ordered["mask_loss"] < 1e-3 and swapped["mask_loss"] < 1e-3
    assert ordered["loss"] - plain["loss"] < 1e-3   # the roles as ordered cost nothing more
    assert swapped["loss"] > plain["loss"] + 1.0    # the roles reversed are charged
    assert torch.equal(ordered["selected"], plain["selected"])
    with pytest.raises(ValueError, match="aux_gt"):
        sam_loss(logits, torch.ones(1, 3), main, aux_gt=gt[:, :2], aux_weight=0.5)


def test_training_with_nested_tie_break_runs(tmp_path):
    cfg = tiny_config(tmp_path, train_parts="decoder", nested_weight=0.25, box_prob=0.0, masks_per_image=3,
                      data=dict(composite_prob=1.0, hero_prob=1.0, image_size=128))
    result = train(cfg)
    assert result.steps == 2 and np.isfinite(result.history[-1]["loss"])


def test_training_with_nested_targets_runs(tmp_path):
    cfg = tiny_config(tmp_path, train_parts="decoder", nested_targets=True, box_prob=0.0, masks_per_image=3,
                      data=dict(composite_prob=1.0, hero_prob=1.0, image_size=128))
    result = train(cfg)
    assert result.steps == 2 and np.isfinite(result.history[-1]["loss"])
