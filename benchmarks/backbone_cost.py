"""Training-step and inference cost of the denoising backbones: ResNet (``denoise-small``),
NAFNet (``denoise-nafnet-small``) and SwinIR (``denoise-swinir-small``), tunable and plain.

Each recipe's model is built from the recipe itself. Timed in alternation, round after round
(these machines are noisy: ratios measured side by side are what to read):

- a training step: forward + L1 + backward at the recipe's batch and patch, per-sample p;
- inference: one forward at ``--size`` (default 512) with one shared p (or none), no grad.

Prints a table of seconds and ratios to the tunable ResNet, and writes ``--json``.

    python benchmarks/backbone_cost.py [--repeats 5] [--size 512] [--threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tunableconv.tasks import build_task
from tunableconv.train import get_recipe

RECIPES = ("denoise-small", "denoise-fixed-small", "denoise-nafnet-small", "denoise-nafnet-fixed-small",
           "denoise-swinir-small", "denoise-swinir-fixed-small")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size", type=int, default=512, help="inference image side (pixels)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--json", help="write the measurements here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    cases = {}
    for name in names:
        recipe = get_recipe(name)
        model = build_task(recipe).build_model(recipe)
        tunable = getattr(model, "num_params", 0) > 0
        b, s = recipe.train.batch_size, recipe.data.patch_size
        x = torch.rand(b, 3, s, s)
        p = torch.distributions.Dirichlet(torch.ones(2)).sample((b,)) if tunable else None
        big = torch.rand(1, 3, args.size, args.size)
        shared = torch.tensor([0.5, 0.5]) if tunable else None
        params = sum(t.numel() for t in model.parameters())
        cases[name] = dict(model=model, x=x, p=p, big=big, shared=shared, params=params, batch=b, patch=s)

    def train_step(c):
        model = c["model"].train()
        model.zero_grad()
        out = model(c["x"], c["p"]) if c["p"] is not None else model(c["x"])
        out.abs().mean().backward()

    @torch.no_grad()
    def infer(c):
        model = c["model"].eval()
        big = c["big"].contiguous(memory_format=torch.channels_last)
        return model(big, c["shared"]) if c["shared"] is not None else model(big)

    for c in cases.values():  # warm-up (allocator, oneDNN primitives)
        train_step(c)
        infer(c)
    times = {n: {"train": [], "infer": []} for n in cases}
    for _ in range(args.repeats):
        for n, c in cases.items():
            t0 = time.perf_counter()
            train_step(c)
            t1 = time.perf_counter()
            infer(c)
            t2 = time.perf_counter()
            times[n]["train"].append(t1 - t0)
            times[n]["infer"].append(t2 - t1)
    ref = names[0]
    med = {n: {k: statistics.median(v) for k, v in t.items()} for n, t in times.items()}
    print(f"{'recipe':30s} {'params':>10s} {'batch x patch':>14s} {'train s/step':>13s} {'x ' + ref:>18s} "
          f"{'infer ' + str(args.size) + '² s':>14s} {'x ' + ref:>18s}")
    rows = {}
    for n, c in cases.items():
        tr, inf = med[n]["train"], med[n]["infer"]
        rows[n] = dict(parameters=c["params"], batch=c["batch"], patch=c["patch"], train_s_per_step=tr,
                       train_ratio=tr / med[ref]["train"], infer_s=inf, infer_ratio=inf / med[ref]["infer"],
                       train_all=times[n]["train"], infer_all=times[n]["infer"])
        print(f"{n:30s} {c['params']:>10,d} {c['batch']:>6d} x {c['patch']:<5d} {tr:>13.3f} {tr / med[ref]['train']:>18.2f} "
              f"{inf:>14.3f} {inf / med[ref]['infer']:>18.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(command="python benchmarks/backbone_cost.py " + " ".join(
                f"--{k} {v}" for k, v in vars(args).items() if k != "json" and v is not None),
                threads=args.threads, size=args.size, repeats=args.repeats, reference=ref, recipes=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
