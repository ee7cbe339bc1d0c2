"""Cost of one training step of the shipped denoiser's architecture, tunable vs plain.

ResNet 6 blocks x 32 channels, batch 16, 48x48 patches, one thread (the denoise-small recipe),
forward + backward, timed in alternation: plain, tunable with per-sample p, tunable with one
shared p. Prints the ratios to the plain step.

    python benchmarks/step_cost.py [--repeats 12]
"""

import argparse
import statistics
import time

import torch

from tunableconv.models import ResNet, ResNetConfig


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tunable = ResNet(ResNetConfig(channels=32, num_blocks=6, num_params=2))
    plain = ResNet(ResNetConfig(channels=32, num_blocks=6, num_params=0))
    x = torch.rand(16, 3, 48, 48)
    p = torch.distributions.Dirichlet(torch.ones(2)).sample((16,))

    def step(model, *extra):
        model.zero_grad()
        model(x, *extra).abs().mean().backward()

    times = {"plain": [], "per-sample p": [], "shared p": []}
    for _ in range(args.repeats):
        for name, fn in (("plain", lambda: step(plain)), ("per-sample p", lambda: step(tunable, p)),
                         ("shared p", lambda: step(tunable, p[0]))):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v[2:]) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:>13}: {v * 1e3:7.0f} ms  (x{v / med['plain']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
