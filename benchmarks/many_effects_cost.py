"""The cost of 27 effects per image: FLOPs and wall time of every three-degradation method.

Each ``--model NAME=FILE`` (a trained model file: TSNet's pruning depends on its learned gates)
renders the 27 effects (knobs or task vector on {0, 0.5, 1}^3) of one image through
:func:`tunableconv.sweep.settings_outputs`, the path of ``tunableconv sweep --grid 3`` and the
web app: ``model.sweep`` where the architecture has one (a shared trunk, TA+TSNet's
task-agnostic layers: computed once), else one full pass per effect.

- **FLOPs** are counted by ``torch.utils.flop_counter.FlopCounterMode`` (its convention: a
  multiply-add is 2 FLOPs) on the whole 27-effect call at three small sizes (HD / 16, / 12, / 8
  per side); every operation's count is affine in the number of pixels (convolutions scale
  with it, the controllers and knob mixes do not), so the first two sizes fix ``a + b·pixels``,
  the third checks it (its residual is printed and stored), and the fit gives HD and 2K.
- **Wall time** of the 27-effect call on a random image, every method in turn, round after
  round (``--repeats``), after one untimed effect of every method (a warm-up), at each
  ``--sizes`` x ``--threads``; the median per method and its
  ratio to the first ``--model`` (27 full passes of the fully tunable network). Run it on a
  quiet machine: nothing else running.

    python benchmarks/many_effects_cost.py --json results/many-effects/cost.json \\
        --model tunable=results/many-effects/models/tunable.safetensors --model ...

The JSON is rewritten after every (size, threads) setting, so a stopped run keeps what it
measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from tunableconv.restore import Restorer
from tunableconv.sweep import settings_outputs

GRID = torch.tensor([[a, b, c] for a in (0.0, 0.5, 1.0) for b in (0.0, 0.5, 1.0) for c in (0.0, 0.5, 1.0)])
SIZES = {"HD": (720, 1280), "2K": (1080, 2048)}


def count_flops(restorer: Restorer, height: int, width: int) -> int:
    """FLOPs of the 27-effect call on one ``height x width`` image (``FlopCounterMode``)."""
    x = torch.rand(3, height, width)
    with FlopCounterMode(display=False) as counter:
        settings_outputs(restorer, x, GRID)
    return int(counter.get_total_flops())


def flops_at(restorer: Restorer, sizes: dict[str, tuple[int, int]]) -> dict:
    """FLOPs at each size by the affine fit in pixels (see the module docstring)."""
    h, w = SIZES["HD"]
    probes = [(h // d, w // d) for d in (16, 12, 8)]
    counts = [count_flops(restorer, *s) for s in probes]
    px = [a * b for a, b in probes]
    slope = (counts[1] - counts[0]) / (px[1] - px[0])
    const = counts[0] - slope * px[0]
    predicted = const + slope * px[2]
    out = {name: int(round(const + slope * a * b)) for name, (a, b) in sizes.items()}
    out["check"] = {"size": list(probes[2]), "counted": counts[2], "fit": int(round(predicted)),
                    "relative_residual": abs(predicted - counts[2]) / counts[2]}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, metavar="NAME=FILE")
    ap.add_argument("--sizes", default="HD,2K", help="comma-separated of HD, 2K")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--settings", help="only these size@threads pairs, e.g. HD@1,HD@2,2K@2 (default: all)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    models = {n: Restorer.load(f) for n, f in (m.split("=", 1) for m in args.model)}
    sizes = {s: SIZES[s] for s in args.sizes.split(",")}
    ref = next(iter(models))
    dest = Path(args.json)
    dest.parent.mkdir(parents=True, exist_ok=True)
    result = {"effects": len(GRID), "sizes": {k: list(v) for k, v in sizes.items()}, "reference": ref,
              "flops": {}, "seconds": {}, "ratio": {}, "torch": torch.__version__}
    torch.set_num_threads(2)
    for name, r in models.items():
        result["flops"][name] = flops_at(r, sizes)
        f = result["flops"][name]
        print(f"{name}: " + ", ".join(f"{s} {f[s] / 1e9:.1f} GFLOPs ({f[s] / result['flops'][ref][s]:.3f}x)"
                                      for s in sizes) + f"; fit residual {f['check']['relative_residual']:.1e}")
    dest.write_text(json.dumps(result, indent=1) + "\n")

    settings = [(s, int(t)) for s in sizes for t in args.threads.split(",")]
    if args.settings:
        wanted = {tuple(x.split("@")) for x in args.settings.split(",")}
        settings = [(s, t) for s, t in settings if (s, str(t)) in wanted]
    for size, threads in settings:
        torch.set_num_threads(threads)
        h, w = sizes[size]
        x = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
        times: dict[str, list[float]] = {n: [] for n in models}
        for r in models.values():  # warm-up: one effect each (allocator, kernel mixes), not timed
            settings_outputs(r, x, GRID[:1])
        for rep in range(args.repeats):
            for name, r in models.items():
                start = time.perf_counter()
                settings_outputs(r, x, GRID)
                times[name].append(time.perf_counter() - start)
                print(f"{size} {threads} thread(s) round {rep + 1}: {name} {times[name][-1]:.1f} s", flush=True)
        key = f"{size}@{threads}"
        result["seconds"][key] = {n: statistics.median(v) for n, v in times.items()}
        result["ratio"][key] = {n: result["seconds"][key][n] / result["seconds"][key][ref] for n in models}
        result.setdefault("all_seconds", {})[key] = times
        dest.write_text(json.dumps(result, indent=1) + "\n")
        print(key + ": " + ", ".join(f"{n} {result['seconds'][key][n]:.1f} s ({result['ratio'][key][n]:.3f}x)"
                                     for n in models))
    return 0


if __name__ == "__main__":
    sys.exit(main())
