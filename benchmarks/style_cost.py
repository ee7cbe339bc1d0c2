"""The cost of one stylisation with three styles on the simplex, against what else a user could run.

On one ``--size`` x ``--size`` photo (default 512, the issue's), median wall time of:

- ``tunable``: the tunable style network at one blend p (the kernels mixed once, one pass);
- ``plain``: the same network without knobs (a single-style twin): the floor;
- ``pixel-blend``: the three single-style networks run one after another and their outputs
  mixed by p (what "50% style" costs without a tunable network);
- ``dni``: the three twins' weights blended by p (:func:`tunableconv.models.baselines.interpolate_networks`),
  then one pass of the blended network;
- ``dynamicnet``: Dynamic-Net on one edge (``style-dynamicnet-small``: a twin plus tuning blocks
  after its latent residual blocks) at α = 0.5, so the tuning blocks run (two styles only).

Every method runs in turn, round after round (``--repeats``), after one untimed run of each (a
warm-up), at each ``--threads``; ratios are to ``plain``, measured side by side in one process.
FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts convolutions and
matrix products only: the element-wise work of mixing kernels (tunable) or blending weights
(DNI) is not in it (the time shows it). The networks are the
``style3-small`` recipe's (random weights unless ``--tunable`` / ``--twin`` files are given:
the cost does not depend on the values). Run it on a quiet machine: nothing else running.

    python benchmarks/style_cost.py --json results/style3/cost.json
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

from tunableconv.models.baselines import interpolate_networks


def networks(args) -> tuple[torch.nn.Module, list[torch.nn.Module], torch.nn.Module]:
    """The tunable network, three single-style twins and Dynamic-Net (files, else the recipes', random)."""
    from tunableconv.models import load_model
    from tunableconv.tasks import build_task
    from tunableconv.train import get_recipe

    if args.tunable:
        tunable = load_model(args.tunable)[0]
        twins = [load_model(f)[0] for f in args.twin]
    else:
        recipe = get_recipe("style3-small")
        tunable = build_task(recipe).build_model(recipe)
        twins = []
        for seed, style in enumerate(("mosaic", "edtaonisl", "kandinsky")):
            torch.manual_seed(seed)
            twin_recipe = get_recipe(f"style3-fixed-{style}-small")
            twins.append(build_task(twin_recipe).build_model(twin_recipe))
    if args.dynamicnet:
        dynamicnet = load_model(args.dynamicnet)[0]
    else:
        recipe = get_recipe("style-dynamicnet-small")
        dynamicnet = build_task(recipe).build_model(recipe)
    return tunable.eval(), [t.eval() for t in twins], dynamicnet.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--tunable", help="a trained tunable style model file (default: the recipe's, random weights)")
    ap.add_argument("--twin", nargs=3, metavar="FILE", help="with --tunable: the three single-style model files")
    ap.add_argument("--dynamicnet", help="a trained dynamicnet-style file (default: the recipe's, random weights)")
    args = ap.parse_args(argv)
    if bool(args.tunable) != bool(args.twin):
        ap.error("--tunable and --twin go together")
    tunable, twins, dynamicnet = networks(args)
    blended = interpolate_networks(twins, [1.0, 0.0, 0.0])
    x = torch.rand(1, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    p = torch.tensor([0.5, 0.25, 0.25])
    w = p.tolist()

    def run_tunable():
        return tunable(x, p)

    def run_plain():
        return twins[0](x)

    def run_pixel_blend():
        return sum(wi * t(x) for wi, t in zip(w, twins))

    def run_dni():
        return interpolate_networks(twins, w, into=blended)(x)

    half = torch.tensor([0.5, 0.5])

    def run_dynamicnet():
        return dynamicnet(x, half)

    methods = {"tunable": run_tunable, "plain": run_plain, "pixel-blend": run_pixel_blend, "dni": run_dni,
               "dynamicnet": run_dynamicnet}
    result = {"size": args.size, "p": w, "repeats": args.repeats, "flops": {}, "seconds": {}, "ratio_to_plain": {},
              "torch": torch.__version__, "params": {"tunable": sum(t.numel() for t in tunable.parameters()),
                                                      "plain": sum(t.numel() for t in twins[0].parameters()),
                                                      "dynamicnet": sum(t.numel() for t in dynamicnet.parameters())}}
    with torch.no_grad():
        for name, fn in methods.items():
            with FlopCounterMode(display=False) as counter:
                fn()
            result["flops"][name] = int(counter.get_total_flops())
        for threads in [int(t) for t in args.threads.split(",")]:
            torch.set_num_threads(threads)
            for fn in methods.values():  # warm-up
                fn()
            times = {name: [] for name in methods}
            for _ in range(args.repeats):
                for name, fn in methods.items():
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
            med = {name: statistics.median(v) for name, v in times.items()}
            result["seconds"][str(threads)] = {k: round(v, 4) for k, v in med.items()}
            result["ratio_to_plain"][str(threads)] = {k: round(v / med["plain"], 3) for k, v in med.items()}
            print(f"{args.size}x{args.size}, {threads} thread(s): " + ", ".join(
                f"{k} {v * 1000:.0f} ms ({v / med['plain']:.2f}x)" for k, v in med.items()))
    print("FLOPs: " + ", ".join(f"{k} {v / 1e9:.2f} G ({v / result['flops']['plain']:.2f}x)"
                                for k, v in result["flops"].items()))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
