"""Why a pruned TSNet is not as fast as its FLOPs: thin convolutions on this CPU.

TSNet prunes the middle of a residual block to a few channels, so the block's two 3x3 convs
become C -> k and k -> C with k as small as 1. Their FLOPs fall by C / k, their time does not:
PyTorch's CPU convolution is memory-bound at such shapes. This prints the time of one 3x3
convolution at HD (1280x720) for C = 32 and several k, each as a ratio to the full 32 -> 32
conv, measured side by side in one run (median of ``--repeats``). Run it on a quiet machine::

    python benchmarks/thin_convs.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def conv_seconds(c_in: int, c_out: int, size: tuple[int, int], repeats: int) -> float:
    """Median seconds of one 3x3 'same' convolution of a random (1, c_in, H, W) input."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, c_in, *size, generator=g)
    w = torch.randn(c_out, c_in, 3, 3, generator=g)
    F.conv2d(x, w, padding=1)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        F.conv2d(x, w, padding=1)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    size, c = (720, 1280), args.channels
    full = conv_seconds(c, c, size, args.repeats)
    print(f"3x3 conv at HD, {args.threads} thread(s); ratios to {c} -> {c}")
    for k in (1, 2, 5, 11, c):
        for c_in, c_out in ((c, k), (k, c)) if k != c else ((c, c),):
            s = full if (c_in, c_out) == (c, c) else conv_seconds(c_in, c_out, size, args.repeats)
            print(f"{c_in:>3} -> {c_out:<3} {s * 1e3:7.1f} ms  time {s / full:.2f}x  FLOPs {c_in * c_out / c / c:.3f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
