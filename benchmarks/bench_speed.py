"""Speed of samkit next to the official ``segment_anything`` 1.0 code, on this machine.

Both run the same random-weight vit_b checkpoint (the official model seeded and perturbed as in
``tests/parity/conftest.py``, saved, and loaded into samkit with ``samkit.load_model``). Measurements of
the two implementations are interleaved in one process, so machine load affects both alike; each
figure is the median of the timed runs after warm-up. Peak memory of an encoder pass is measured in a
fresh subprocess per implementation (growth of the peak RSS, ``VmHWM``, during the pass).

samkit runs through ``samkit.fast.FastSam`` (what ``samkit.Predictor`` uses by default).

Rows: vit_b encoder fp32 (s/image at 1024x1024), encoder under bf16 autocast, predict (ms per click: one
point, masks returned at 640x480, embedding set), batched predict (16 prompts in one decoder call, ms per
prompt), automatic mask generation (32x32 grid, embedding precomputed), ONNX decoder on onnxruntime
(ms per click). Columns: official, samkit, ratio (official / samkit: > 1 means samkit is faster), error.

    python benchmarks/bench_speed.py                 # full (the encoder rows take minutes on a CPU)
    python benchmarks/bench_speed.py --quick         # fewer repeats, 8x8 AMG grid
    python benchmarks/bench_speed.py --json runs/bench/speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import samkit  # noqa: E402
from samkit.evaluate import mask_iou  # noqa: E402

IMAGE_HW = (480, 640)


# ----------------------------------------------------------------------------------------- setup
def make_checkpoint(path: Path):
    """The official vit_b with seeded random weights (as the parity tests build it), saved to ``path``."""
    from segment_anything import sam_model_registry

    from samkit.testing import perturb_ as randomize_

    torch.manual_seed(0)
    official = randomize_(sam_model_registry["vit_b"]()).eval()
    torch.save(official.state_dict(), path)
    return official


def load_pair(path: Path):
    from segment_anything import sam_model_registry

    official = sam_model_registry["vit_b"](checkpoint=str(path)).eval()
    ours = samkit.load_model("vit_b", checkpoint=path)
    return official, ours


def bench_image() -> np.ndarray:
    from tests.parity.conftest import parity_image

    return parity_image(*IMAGE_HW)


def load() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(fn: Callable[[], object]) -> Dict[str, float]:
    """Wall and process CPU seconds of one call."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return {"wall": time.perf_counter() - t, "cpu": time.process_time() - c}


def interleave(fns: Dict[str, Callable[[], object]], warmup: int, repeats: int) -> Dict[str, Dict[str, float]]:
    """Run every function ``warmup + repeats`` times, alternating between them; medians of the timed runs."""
    runs: Dict[str, List[Dict[str, float]]] = {k: [] for k in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            r = timed(fn)
            if i >= warmup:
                runs[name].append(r)
    return {k: {"wall": statistics.median(r["wall"] for r in v), "cpu": statistics.median(r["cpu"] for r in v),
                "runs": len(v)} for k, v in runs.items()}


def encoder_input(official) -> torch.Tensor:
    """The benchmark image preprocessed exactly as both predictors do (1 x 3 x 1024 x 1024)."""
    from segment_anything.utils.transforms import ResizeLongestSide

    t = ResizeLongestSide(1024).apply_image(bench_image())
    x = torch.as_tensor(t).permute(2, 0, 1).contiguous()[None].float()
    return official.preprocess(x)


def errors(ref: torch.Tensor, x: torch.Tensor) -> Dict[str, float]:
    ref, x = ref.float(), x.float()
    d = (ref - x).abs().max().item()
    return {"max_abs": d, "max_rel": d / max(ref.abs().max().item(), 1e-12)}


# ----------------------------------------------------------------------------------------- memory
def peak_rss_mb() -> float:
    """Peak resident memory of this process (MB): ``VmHWM``, which starts afresh at ``exec``.

    (``ru_maxrss`` would not do in a subprocess: Linux carries it over from the forking parent.)
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(impl: str, dtype: str, checkpoint: str) -> None:
    """Subprocess entry: one encoder pass, print the peak RSS (MB) and its growth during the pass."""
    import psutil

    if impl == "official":
        from segment_anything import sam_model_registry

        encode = sam_model_registry["vit_b"](checkpoint=checkpoint).eval().image_encoder
    else:
        encode = samkit.fast.FastSam(samkit.load_model("vit_b", checkpoint=checkpoint)).encode_image
    x = torch.randn(1, 3, 1024, 1024)
    before = psutil.Process().memory_info().rss / 2**20
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        encode(x)
    peak = peak_rss_mb()
    print(json.dumps({"peak_rss_mb": peak, "rss_before_mb": before, "pass_mb": peak - before}))


def measure_memory(impl: str, dtype: str, checkpoint: Path) -> Dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--memory-child", impl, dtype, str(checkpoint)],
                         capture_output=True, text=True, check=True, cwd=str(ROOT))
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------------------- predictors
def set_embedding(predictor, embedding: torch.Tensor) -> None:
    """Give a predictor (official or samkit) a precomputed embedding of the benchmark image."""
    from segment_anything.utils.transforms import ResizeLongestSide

    predictor.reset_image()
    predictor.features = embedding
    predictor.original_size = IMAGE_HW
    predictor.input_size = ResizeLongestSide.get_preprocess_shape(*IMAGE_HW, 1024)
    predictor.is_image_set = True


AGREEMENT_PROMPTS = [dict(point_coords=np.array([[320, 240]]), point_labels=np.array([1])),
                     dict(point_coords=np.array([[100, 380]]), point_labels=np.array([1])),
                     dict(point_coords=np.array([[500, 100], [320, 240]]), point_labels=np.array([1, 0])),
                     dict(box=np.array([100, 80, 420, 400])),
                     dict(point_coords=np.array([[250, 250]]), point_labels=np.array([1]),
                          box=np.array([100, 80, 420, 400]))]


def mask_agreement(official, ref_emb: torch.Tensor, emb: torch.Tensor) -> float:
    """Mean IoU of the masks decoded (official fp32 decoder) from ``emb`` vs from ``ref_emb``, 5 prompts x 3."""
    from segment_anything import SamPredictor

    p = SamPredictor(official)
    ious = []
    for kw in AGREEMENT_PROMPTS:
        set_embedding(p, ref_emb)
        m_ref = p.predict(**kw)[0]
        set_embedding(p, emb.float())
        m = p.predict(**kw)[0]
        ious += [mask_iou(a, b) for a, b in zip(m_ref, m)]
    return float(np.mean(ious))


# ----------------------------------------------------------------------------------------- rows
def row(name: str, unit: str, official: Optional[float], ours: Optional[float], error: str,
        **extra) -> dict:
    ratio = official / ours if official and ours else None
    return {"row": name, "unit": unit, "official": official, "samkit": ours, "ratio": ratio, "error": error,
            **extra}


def bench_encoders(official, ours, args, results: list, extra: dict) -> torch.Tensor:
    x = encoder_input(official)
    emb = {}

    def run(encode, key, bf16=False):
        def f():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                emb[key] = encode(x)
        return f

    rungs = [("fp32", False)] + ([("bf16", True)] if not args.no_bf16 else [])
    for dtype, bf16 in rungs:
        print(f"encoder {dtype}: {args.warmup_enc} warm-up + {args.repeats_enc} timed runs each, interleaved ...",
              flush=True)
        la0 = load()
        t = interleave({"official": run(official.image_encoder, f"official_{dtype}", bf16),
                        "samkit": run(samkit.fast.FastSam(ours).encode_image, f"samkit_{dtype}",
                                      bf16)},
                       args.warmup_enc, args.repeats_enc)
        la1 = load()
        mem = {}
        if not args.no_memory and (dtype == "fp32" or not args.quick):
            mem = {impl: measure_memory(impl, dtype, args.checkpoint) for impl in ("official", "samkit")}
        e = errors(emb["official_fp32"], emb[f"samkit_{dtype}"])
        note = f"max abs {e['max_abs']:.1e}, rel {e['max_rel']:.1e} vs official fp32"
        agree = {}
        if dtype != "fp32":
            e_off = errors(emb["official_fp32"], emb[f"official_{dtype}"])
            agree = {"official": mask_agreement(official, emb["official_fp32"], emb[f"official_{dtype}"]),
                     "samkit": mask_agreement(official, emb["official_fp32"], emb[f"samkit_{dtype}"])}
            note += (f"; official {dtype}: rel {e_off['max_rel']:.1e}; mask IoU vs fp32 "
                     f"{agree['official']:.4f} / {agree['samkit']:.4f}")
        else:
            agree = {"samkit": mask_agreement(official, emb["official_fp32"], emb["samkit_fp32"])}
            note += f"; mask IoU {agree['samkit']:.4f}"
        results.append(row(f"vit_b encoder {dtype}" + (" autocast" if bf16 else ""), "s/image",
                           t["official"]["wall"], t["samkit"]["wall"], note,
                           cpu_s={k: v["cpu"] for k, v in t.items()}, runs=t["samkit"]["runs"],
                           memory=mem, errors=e, mask_iou=agree, load_before=la0, load_after=la1))
    return emb["official_fp32"]


def bench_predict(official, ours, embedding, args, results: list) -> None:
    from segment_anything import SamPredictor

    p_off, p_ours = SamPredictor(official), samkit.Predictor(ours, cache=False)
    set_embedding(p_off, embedding)
    set_embedding(p_ours, embedding)
    rng = np.random.default_rng(0)
    clicks = rng.uniform([0, 0], [IMAGE_HW[1] - 1, IMAGE_HW[0] - 1], size=(args.clicks, 2))
    it = {"i": 0}
    out: Dict[str, list] = {"official": [], "samkit": []}

    def click(p, key):
        def f():
            pt = clicks[it["i"] % len(clicks)][None]
            out[key].append(p.predict(point_coords=pt, point_labels=np.array([1]), multimask_output=True))
        return f

    la0 = load()
    times: Dict[str, List[dict]] = {"official": [], "samkit": []}
    for i in range(args.warmup + args.clicks):
        it["i"] = i
        for key, p in (("official", p_off), ("samkit", p_ours)):
            r = timed(click(p, key))
            if i >= args.warmup:
                times[key].append(r)
    med = {k: statistics.median(r["wall"] for r in v) * 1e3 for k, v in times.items()}
    err = max(np.abs(a[2] - b[2]).max() for a, b in zip(out["official"], out["samkit"]))
    mism = max(float((a[0] != b[0]).mean()) for a, b in zip(out["official"], out["samkit"]))
    results.append(row("predict (1 point, 3 masks at 640x480)", "ms/click", med["official"], med["samkit"],
                       f"logits {err:.1e}; mask pixels differing {mism:.1e}", clicks=args.clicks,
                       load_before=la0, load_after=load()))

    # batched: B prompts in one decoder call (predict_torch, input frame)
    B = 16
    coords = torch.as_tensor(p_ours.transform.apply_coords(rng.uniform([0, 0], [639, 479], (B, 2)), IMAGE_HW),
                             dtype=torch.float)[:, None]
    labels = torch.ones(B, 1, dtype=torch.int)
    res = {}

    def batched(p, key):
        def f():
            res[key] = p.predict_torch(coords, labels, multimask_output=True)
        return f

    la0 = load()
    t = interleave({"official": batched(p_off, "official"), "samkit": batched(p_ours, "samkit")},
                   args.warmup, max(3, args.clicks // 4))
    err = (res["official"][2] - res["samkit"][2]).abs().max().item()
    results.append(row(f"predict batched ({B} prompts/call)", "ms/prompt", t["official"]["wall"] * 1e3 / B,
                       t["samkit"]["wall"] * 1e3 / B, f"logits {err:.1e}", prompts_per_call=B,
                       load_before=la0, load_after=load()))


def bench_amg(official, ours, embedding, args, results: list) -> None:
    name = f"AMG generate ({args.amg_side}x{args.amg_side} grid)"
    try:
        from samkit import AutomaticMaskGenerator
        from samkit.cache import image_key
    except Exception as exc:  # pragma: no cover - depends on the state of the package
        results.append(row(name, "s/image", None, None, f"skipped: samkit AMG not importable ({exc})"))
        return
    from segment_anything import SamAutomaticMaskGenerator

    image = bench_image()
    # Random weights predict low IoU and unstable masks: with the default filters nothing would survive,
    # so both run with the quality filters off (same NMS) and every candidate goes through to the output.
    filters = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0)
    gen_off = SamAutomaticMaskGenerator(official, points_per_side=args.amg_side, **filters)
    # The encoder is timed above: both generators get the precomputed embedding.
    gen_off.predictor.set_image = lambda img, image_format="RGB": set_embedding(gen_off.predictor, embedding)
    p_ours = samkit.Predictor(ours)
    t_img = torch.as_tensor(p_ours.transform.apply_image(image)).permute(2, 0, 1).contiguous()[None]
    p_ours.cache.put(image_key(ours, t_img), embedding)
    gen_ours = AutomaticMaskGenerator(p_ours, points_per_side=args.amg_side, progress=False, **filters)
    res = {}

    def gen(g, key):
        def f():
            res[key] = g.generate(image)
        return f

    la0 = load()
    t = interleave({"official": gen(gen_off, "official"), "samkit": gen(gen_ours, "samkit")},
                   1, args.repeats_amg)
    a = sorted(res["official"], key=lambda r: (-r["predicted_iou"], r["bbox"]))
    b = sorted(res["samkit"], key=lambda r: (-r["predicted_iou"], r["bbox"]))
    if a and len(a) == len(b):
        ious = [mask_iou(x["segmentation"], y["segmentation"]) for x, y in zip(a, b)]
        note = f"{len(a)} masks each, min IoU {min(ious):.4f}"
    else:
        note = f"masks: official {len(a)}, samkit {len(b)}"
    results.append(row(name, "s/image", t["official"]["wall"], t["samkit"]["wall"],
                       note + "; embedding precomputed, IoU/stability filters off", load_before=la0, load_after=load()))


def bench_onnx(official, ours, embedding, args, results: list) -> None:
    try:
        import onnxruntime as ort  # noqa: F401
        from segment_anything.utils.onnx import SamOnnxModel

        from samkit.onnx import OnnxPredictor, export_decoder
    except Exception as exc:
        results.append(row("ONNX decoder (onnxruntime)", "ms/click", None, None, f"skipped: {exc}"))
        return
    import warnings

    d = Path(args.tmp)
    path_ours = export_decoder(ours, d / "samkit_decoder.onnx")
    # The official export, as its scripts/export_onnx_model.py does it.
    wrapper = SamOnnxModel(official, return_single_mask=True)
    e = official.prompt_encoder.image_embedding_size
    dummy = {"image_embeddings": torch.randn(1, 256, *e), "point_coords": torch.randint(0, 1024, (1, 5, 2)).float(),
             "point_labels": torch.randint(0, 4, (1, 5)).float(), "mask_input": torch.randn(1, 1, 256, 256),
             "has_mask_input": torch.tensor([1.0]), "orig_im_size": torch.tensor([480.0, 640.0])}
    path_off = d / "official_decoder.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, tuple(dummy.values()), str(path_off), input_names=list(dummy),
                          output_names=["masks", "iou_predictions", "low_res_masks"], opset_version=17,
                          dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                          do_constant_folding=True, dynamo=False)
    ours_p = OnnxPredictor(path_ours)
    ours_p.set_embedding(embedding, IMAGE_HW)
    sess_off = ort.InferenceSession(str(path_off), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    clicks = rng.uniform([0, 0], [639, 479], size=(args.clicks, 2))
    feeds = [ours_p.prompt_inputs(point_coords=c[None], point_labels=np.array([1])) for c in clicks]
    outs: Dict[str, list] = {"official": [], "samkit": []}
    times: Dict[str, list] = {"official": [], "samkit": []}
    for i in range(args.warmup + args.clicks):
        feed = feeds[i % len(feeds)]
        for key, sess in (("official", sess_off), ("samkit", ours_p.decoder)):
            t = time.perf_counter()
            o = sess.run(None, feed)
            if i >= args.warmup:
                times[key].append(time.perf_counter() - t)
                outs[key].append(o)
    err = max(np.abs(a[2] - b[2]).max() for a, b in zip(outs["official"], outs["samkit"]))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    results.append(row("ONNX decoder (onnxruntime, 1 mask at 640x480)", "ms/click", med["official"],
                       med["samkit"], f"low-res logits {err:.1e} (official vs samkit graph)"))


# ----------------------------------------------------------------------------------------- output
def fmt(v: Optional[float], unit: str) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if unit.startswith("s/") else f"{v:.1f}"


def print_table(results: list, meta: dict) -> None:
    print(f"\nsamkit vs segment_anything {meta['official_version']} | {meta['cpu']} | torch {meta['torch']}, "
          f"{meta['threads']} threads | load average (1/5/15 min) at start {meta['load_start']}, "
          f"at end {meta['load_end']} on {meta['cores']} cores")
    head = f"{'row':48s} {'unit':>10s} {'official':>9s} {'samkit':>9s} {'ratio':>6s}  error / agreement"
    print(head)
    print("-" * len(head))
    for r in results:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "-"
        print(f"{r['row']:48s} {r['unit']:>10s} {fmt(r['official'], r['unit']):>9s} "
              f"{fmt(r['samkit'], r['unit']):>9s} {ratio:>6s}  {r['error']}")
    for r in results:
        if r.get("memory"):
            m = r["memory"]
            print(f"peak memory, {r['row']}: official {m['official']['peak_rss_mb']:.0f} MB "
                  f"(+{m['official']['pass_mb']:.0f} MB during the pass), samkit {m['samkit']['peak_rss_mb']:.0f} MB "
                  f"(+{m['samkit']['pass_mb']:.0f} MB)")
        if r.get("cpu_s"):
            print(f"process CPU time, {r['row']}: official {r['cpu_s']['official']:.1f} s, "
                  f"samkit {r['cpu_s']['samkit']:.1f} s (median of {r['runs']})")
    print("ratio = official / samkit (> 1: samkit faster); times are medians of interleaved runs after warm-up")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 8x8 AMG grid, fp32 memory only")
    ap.add_argument("--json", default=str(ROOT / "runs" / "bench" / "speed.json"), help="where to write the results")
    ap.add_argument("--rows", default="encoder,predict,amg,onnx", help="comma-separated subset of rows")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast encoder row")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads (default: torch's choice; 1 is faster on a crowded machine)")
    ap.add_argument("--default-malloc", action="store_true",
                    help="leave glibc's malloc settings alone (by default "
                         "samkit.fast.keep_freed_memory() is called at start: it applies to both "
                         "implementations)")
    ap.add_argument("--memory-child", nargs=3, metavar=("IMPL", "DTYPE", "CKPT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    args.warmup_enc, args.repeats_enc = (0, 1) if args.quick else (1, 3)
    args.warmup, args.clicks = (3, 10) if args.quick else (5, 30)
    args.amg_side, args.repeats_amg = (8, 1) if args.quick else (32, 2)
    rows = set(args.rows.split(","))
    malloc_tuned = False if args.default_malloc else samkit.fast.keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    from importlib.metadata import version

    import segment_anything

    meta = {"official_version": version("segment-anything"), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cores": os.cpu_count(), "cpu": platform.processor() or
            platform.machine(), "python": platform.python_version(), "quick": args.quick,
            "keep_freed_memory": malloc_tuned,
            "load_start": load(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        meta["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    del segment_anything
    results: list = []
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = tmp
        args.checkpoint = Path(tmp) / "sam_vit_b_random.pth"
        make_checkpoint(args.checkpoint)
        official, ours = load_pair(args.checkpoint)
        if "encoder" in rows:
            embedding = bench_encoders(official, ours, args, results, meta)
        else:
            with torch.no_grad():
                embedding = official.image_encoder(encoder_input(official))
        if "predict" in rows:
            bench_predict(official, ours, embedding, args, results)
        if "amg" in rows:
            bench_amg(official, ours, embedding, args, results)
        if "onnx" in rows:
            bench_onnx(official, ours, embedding, args, results)
    meta["load_end"] = load()
    print_table(results, meta)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": results}, indent=1, default=float))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
