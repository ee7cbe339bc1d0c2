"""Overhead of tunable layers and models against their plain twins, measured side by side in one process.

Layer grid, kernel sizes x channels, nn.Conv2d vs TunableConv2d:
(a) inference: batch 1 at 256x256, one shared p (weights mixed once, one conv);
(b) training step: forward + backward, batch 16 at 64x64, per-sample p (batch-as-groups conv).
Whole models, one thread:
(c) training step of the shipped denoiser's architecture (ResNet 6 x 32, expansion 2, batch 16,
    48x48, per-sample p) vs the plain ResNet: the hand-written explicit layers, and the plain
    ResNet converted with make_tunable (per_sample="vmap" and "loop");
(d) a Swin-style block (window attention + relative position bias + MLP + LayerNorm, 32
    channels, window 8) converted with make_tunable: per-sample training step (batch 8, 32x32)
    vs the plain block;
(e) a per-pixel knob map vs shared p: the shipped architecture, one 512x512 image, inference;
(f) 27 settings of one 512x512 image: ResNet.sweep with 3 of the 6 blocks in the p-independent
    trunk vs 27 full calls (and the batched sweep, 27 settings in one call).

Every pair is timed in alternation (A B A B ...), so drift of this noisy machine hits both
alike; the ratio of medians is reported. ``--quick`` shrinks the grid and the images
(128x128 for (e) and (f)) to stay under a minute.

    python benchmarks/overhead.py [--quick] [--json PATH] [--num-params 2] [--repeats 15]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
from torch import nn

from tunableconv.models import ResNet, ResNetConfig
from tunableconv.models.window_block import WindowAttentionBlock
from tunableconv.nn import TunableConv2d, make_tunable


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _alternate(fa, fb, warmup: int, repeats: int) -> tuple[float, float]:
    a, b = _alternate_many([fa, fb], warmup, repeats)
    return a, b


def _alternate_many(fns, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        for f in fns:
            f()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for t, f in zip(times, fns):
            t.append(_timed(f))
    return [statistics.median(t) for t in times]


def _train_step(model, x, target, *p):
    def step():
        model.zero_grad(set_to_none=True)
        (model(x, *p) - target).abs().mean().backward()

    return step


def _no_grad(fn):
    def run():
        with torch.no_grad():
            fn()

    return run


def bench_models(quick: bool, repeats: int) -> dict:
    """(c)-(f): whole models on one thread (the caller sets the thread count)."""
    torch.manual_seed(0)
    out: dict = {}
    reps = 3 if quick else max(5, repeats // 2)
    cfg = dict(channels=32, num_blocks=6)
    plain = ResNet(ResNetConfig(**cfg, num_params=0))
    explicit = ResNet(ResNetConfig(**cfg, num_params=2, expansion=2))
    vmapped = make_tunable(plain, 2, expansion=2)
    looped = make_tunable(plain, 2, expansion=2, per_sample="loop")
    x, target = torch.rand(16, 3, 48, 48), torch.rand(16, 3, 48, 48)
    p = torch.distributions.Dirichlet(torch.ones(2)).sample((16,))
    times = _alternate_many([_train_step(plain, x, target), _train_step(explicit, x, target, p),
                             _train_step(vmapped, x, target, p), _train_step(looped, x, target, p)],
                            2, reps)
    out["c_model_train_step"] = {
        "shape": "ResNet 6x32, expansion 2, batch 16, 48x48, per-sample p", "plain_ms": 1e3 * times[0],
        "explicit_ms": 1e3 * times[1], "explicit_ratio": times[1] / times[0],
        "make_tunable_vmap_ms": 1e3 * times[2], "make_tunable_vmap_ratio": times[2] / times[0],
        "make_tunable_loop_ms": 1e3 * times[3], "make_tunable_loop_ratio": times[3] / times[0],
    }
    block = WindowAttentionBlock(channels=32, heads=2, window=8)
    tblock = make_tunable(block, 2)
    xb, tb = torch.rand(8, 32, 32, 32), torch.rand(8, 32, 32, 32)
    pb = torch.rand(8, 2)
    times = _alternate_many([_train_step(block, xb, tb), _train_step(tblock, xb, tb, pb)], 2, reps)
    out["d_window_block_train_step"] = {
        "shape": "window attention block, 32 channels, window 8, batch 8, 32x32, per-sample p",
        "plain_ms": 1e3 * times[0], "tunable_ms": 1e3 * times[1], "ratio": times[1] / times[0],
    }
    size = 128 if quick else 512
    img = torch.rand(1, 3, size, size)
    explicit.eval()
    ps = torch.tensor([0.7, 0.3])
    pmap = torch.stack([torch.linspace(0, 1, size).expand(size, size), 1 - torch.linspace(0, 1, size).expand(size, size)])
    slow_repeats = 2 if quick else 3
    times = _alternate_many([_no_grad(lambda: explicit(img, ps)), _no_grad(lambda: explicit(img, pmap))], 1, slow_repeats)
    out["e_knob_map_inference"] = {
        "shape": f"ResNet 6x32, expansion 2 (K = 4), 1x{size}x{size}", "shared_ms": 1e3 * times[0],
        "map_ms": 1e3 * times[1], "ratio": times[1] / times[0],
        "note": "a map runs each layer once per weight set (K = 4 convolutions) and mixes the outputs per pixel",
    }
    trunked = ResNet(ResNetConfig(**cfg, num_params=3, expansion=1, domain="cube", trunk_blocks=3)).eval()
    grid = torch.tensor([[a, b, c] for a in (0, 0.5, 1) for b in (0, 0.5, 1) for c in (0, 0.5, 1)])

    def full_calls():
        for g in grid:
            trunked(img, g)

    times = _alternate_many([_no_grad(full_calls), _no_grad(lambda: trunked.sweep(img, grid)),
                             _no_grad(lambda: trunked.sweep(img, grid, chunk=27))], 0, 1 if not quick else 1)
    out["f_sweep_27"] = {
        "shape": f"ResNet 6x32 cube P=3, trunk = head + 3 blocks, 27 settings of 1x{size}x{size}",
        "full_calls_ms": 1e3 * times[0], "sweep_ms": 1e3 * times[1], "ratio": times[1] / times[0],
        "sweep_batched_ms": 1e3 * times[2], "batched_ratio": times[2] / times[0],
    }
    return out


def bench_case(k: int, c: int, num_params: int, repeats: int, warmup: int, infer_size: int, train_batch: int,
               train_size: int) -> dict:
    torch.manual_seed(0)
    plain = nn.Conv2d(c, c, k, padding="same")
    tunable = TunableConv2d(c, c, k, num_params, padding="same")
    # (a) inference, shared p
    x = torch.randn(1, c, infer_size, infer_size)
    p = torch.rand(num_params)

    def inf_plain():
        with torch.no_grad():
            plain(x)

    def inf_tunable():
        with torch.no_grad():
            tunable(x, p)

    t_plain_inf, t_tun_inf = _alternate(inf_plain, inf_tunable, warmup, repeats)
    # (b) training step, per-sample p
    xb = torch.randn(train_batch, c, train_size, train_size)
    pb = torch.rand(train_batch, num_params)

    def train_plain():
        plain.zero_grad(set_to_none=True)
        plain(xb).square().mean().backward()

    def train_tunable():
        tunable.zero_grad(set_to_none=True)
        tunable(xb, pb).square().mean().backward()

    t_plain_tr, t_tun_tr = _alternate(train_plain, train_tunable, warmup, repeats)
    return {
        "kernel_size": k, "channels": c,
        "inference_plain_ms": 1e3 * t_plain_inf, "inference_tunable_ms": 1e3 * t_tun_inf,
        "inference_ratio": t_tun_inf / t_plain_inf,
        "train_plain_ms": 1e3 * t_plain_tr, "train_tunable_ms": 1e3 * t_tun_tr,
        "train_ratio": t_tun_tr / t_plain_tr,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small subset, under a minute")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--md", metavar="PATH", help="write the results as a markdown summary")
    ap.add_argument("--num-params", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 15, quick 10)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    kernels, channels = ((1, 3, 5), (16, 32, 64, 128))
    repeats, warmup = args.repeats or 15, 3
    if args.quick:
        kernels, channels = (1, 3), (16, 64)
        repeats = args.repeats or 10
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = lambda it, **kw: it  # noqa: E731
    rows = []
    grid = [(k, c) for k in kernels for c in channels]
    for k, c in tqdm(grid, desc="overhead", file=sys.stderr):
        rows.append(bench_case(k, c, args.num_params, repeats, warmup, 256, 16, 64))
    print(f"{'k':>2} {'C':>4} | {'infer plain ms':>14} {'tunable ms':>10} {'ratio':>6} | {'train plain ms':>14} {'tunable ms':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['kernel_size']:>2} {r['channels']:>4} | {r['inference_plain_ms']:>14.2f} {r['inference_tunable_ms']:>10.2f} "
              f"{r['inference_ratio']:>6.3f} | {r['train_plain_ms']:>14.2f} {r['train_tunable_ms']:>10.2f} {r['train_ratio']:>6.3f}")
    summary = {
        "inference_ratio_median": statistics.median(r["inference_ratio"] for r in rows),
        "train_ratio_median": statistics.median(r["train_ratio"] for r in rows),
    }
    print(f"(a) median inference ratio {summary['inference_ratio_median']:.3f} (target <= 1.02), "
          f"(b) median training-step ratio {summary['train_ratio_median']:.3f}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        models = bench_models(args.quick, repeats)
    finally:
        torch.set_num_threads(threads)
    c, d, e, f = (models[k] for k in ("c_model_train_step", "d_window_block_train_step", "e_knob_map_inference", "f_sweep_27"))
    print(f"(c) {c['shape']}: explicit layers {c['explicit_ratio']:.3f}x, make_tunable vmap "
          f"{c['make_tunable_vmap_ratio']:.3f}x, loop {c['make_tunable_loop_ratio']:.3f}x the plain step "
          f"({c['plain_ms']:.0f} ms); goal <= 1.15")
    print(f"(d) {d['shape']}: {d['ratio']:.3f}x the plain step ({d['plain_ms']:.0f} ms)")
    print(f"(e) {e['shape']}: knob map {e['ratio']:.2f}x shared p ({e['shared_ms']:.0f} ms)")
    print(f"(f) {f['shape']}: sweep {f['ratio']:.3f}x, batched sweep {f['batched_ratio']:.3f}x the 27 full calls "
          f"({f['full_calls_ms'] / 1e3:.1f} s)")
    if args.md:
        lines = ["| k | C | inference plain ms | tunable ms | ratio | train step plain ms | tunable ms | ratio |",
                 "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['kernel_size']} | {r['channels']} | {r['inference_plain_ms']:.2f} | {r['inference_tunable_ms']:.2f} | "
                         f"{r['inference_ratio']:.3f} | {r['train_plain_ms']:.2f} | {r['train_tunable_ms']:.2f} | {r['train_ratio']:.3f} |")
        lines += ["", f"(a) median inference ratio **{summary['inference_ratio_median']:.3f}** (target <= 1.02); "
                      f"(b) median training-step ratio **{summary['train_ratio_median']:.3f}**", "",
                  "| case | what | plain | tunable | ratio |", "|---|---|---:|---:|---:|",
                  f"| (c) | {c['shape']}: explicit layers | {c['plain_ms']:.0f} ms | {c['explicit_ms']:.0f} ms | **{c['explicit_ratio']:.3f}** |",
                  f"| (c) | the plain ResNet converted by make_tunable, per_sample=vmap | {c['plain_ms']:.0f} ms | {c['make_tunable_vmap_ms']:.0f} ms | {c['make_tunable_vmap_ratio']:.3f} |",
                  f"| (c) | the same, per_sample=loop | {c['plain_ms']:.0f} ms | {c['make_tunable_loop_ms']:.0f} ms | {c['make_tunable_loop_ratio']:.3f} |",
                  f"| (d) | {d['shape']} | {d['plain_ms']:.1f} ms | {d['tunable_ms']:.1f} ms | **{d['ratio']:.3f}** |",
                  f"| (e) | {e['shape']}: knob map vs shared p | {e['shared_ms']:.0f} ms | {e['map_ms']:.0f} ms | **{e['ratio']:.2f}** |",
                  f"| (f) | {f['shape']}: sweep vs 27 full calls | {f['full_calls_ms'] / 1e3:.1f} s | {f['sweep_ms'] / 1e3:.1f} s | **{f['ratio']:.3f}** |",
                  f"| (f) | the same, batched sweep (27 settings per call) | {f['full_calls_ms'] / 1e3:.1f} s | {f['sweep_batched_ms'] / 1e3:.1f} s | {f['batched_ratio']:.3f} |"]
        os.makedirs(os.path.dirname(os.path.abspath(args.md)), exist_ok=True)
        with open(args.md, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    if args.json:
        out = {
            **summary, "models": models, "num_params": args.num_params, "repeats": repeats, "quick": args.quick,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "rows": rows,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
