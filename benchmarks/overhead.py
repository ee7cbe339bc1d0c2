"""Overhead of a tunable convolution against nn.Conv2d, measured side by side in one process.

(a) inference: batch 1 at 256x256, one shared p (weights mixed once, one conv);
(b) training step: forward + backward, batch 16 at 64x64, per-sample p (batch-as-groups conv).

For each (kernel size, channels) the two layers are timed in alternation (A B A B ...), so
drift of this noisy machine hits both alike; the ratio of medians is reported.

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

from tunableconv.nn import TunableConv2d


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _alternate(fa, fb, warmup: int, repeats: int) -> tuple[float, float]:
    for _ in range(warmup):
        fa(), fb()
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_timed(fa))
        tb.append(_timed(fb))
    return statistics.median(ta), statistics.median(tb)


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
    print(f"median inference ratio {summary['inference_ratio_median']:.3f} (target <= 1.05), "
          f"median training-step ratio {summary['train_ratio_median']:.3f} (target <= 1.30)")
    if args.json:
        out = {
            **summary, "num_params": args.num_params, "repeats": repeats, "quick": args.quick,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "rows": rows,
        }
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
