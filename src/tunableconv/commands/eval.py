"""``tunableconv eval``: any model on its task's protocol, over its knob space.

The model file names its task and stores its knob space; the task degrades each test image
at each evaluation case (denoising: one case per noise σ) with draws seeded per (seed,
dataset, image, case), so every model and run sees the same inputs. A model with a slider on
a 2-knob simplex runs along the slider (calibrated unless --raw); any other knob space on
its grid (the cube's product grid, the simplex's points). Metrics against the ground truth
(--metrics), PSNR against each objective's target and against the blended target, evenness
along each line of the grid; with --compare, a reference model and the gap at the fidelity
end. Writes results.json, results.md and one picture per dataset and case (curves for a
slider, heat maps for two cube knobs, triangles for three knobs on a simplex). See
tunableconv.evaluation for the conventions.

Examples::

    tunableconv eval --model denoise --data cbsd68,kodak24 --levels 15,25,50 --out results/denoise
    tunableconv eval --model denoise --data cbsd68 --levels 25 --p-grid 0,0.5,1 --metrics psnr,ssim,lpips --out /tmp/e
    tunableconv eval --model runs/x/model.safetensors --data my/folder --max-images 4 --crop 128 --out /tmp/ev
"""

from __future__ import annotations

import argparse
import sys
import shlex

from ..tasks import case_examples
from . import add_levels_option, add_model_option


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("eval", help="evaluate a model on its task's protocol over its knob space",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_option(ap)
    ap.add_argument("--data", default="cbsd68",
                    help="comma-separated test sets: names under the data root (cbsd68, kodak24, ...) or folders "
                         "(default: cbsd68)")
    add_levels_option(ap, "the task's degradation levels: comma-separated numbers for a task with one level, ';'-separated "
                         f"cases of named levels for one with several (one case of each task: {case_examples()}; "
                         "default: the task's evaluation cases)")
    ap.add_argument("--p-grid", default="0,0.25,0.5,0.75,1",
                    help="knob (or slider) values in [0, 1] (default: 0,0.25,0.5,0.75,1)")
    ap.add_argument("--metrics", default="psnr,ssim", help="against the ground truth: psnr, ssim, lpips, dists, niqe (default: psnr,ssim)")
    ap.add_argument("--out", help="output folder (results.json, results.md, pictures)")
    ap.add_argument("--compare", metavar="MODEL", help="reference model (e.g. denoise-fixed) on the same inputs")
    ap.add_argument("--max-images", type=int, metavar="N", help="only the first N images of each test set")
    ap.add_argument("--crop", type=int, metavar="N", help="centre-crop the images to N x N")
    ap.add_argument("--seed", type=int, default=0, help="degradation seed (default: 0)")
    ap.add_argument("--raw", action="store_true", help="raw knob values: ignore the model's stored calibration")
    ap.add_argument("--data-root", help="data root (default: TUNABLECONV_DATA or ../shared/data)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    ap.add_argument("--tile", type=int, metavar="N",
                    help="run the models on N x N tiles, N > 32 (bounds memory; 0: no tiling, the default)")
    ap.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-plot", action="store_true", help="no pictures (no matplotlib needed)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The equivalent ``tunableconv eval ...`` command line (all options explicit)."""
    parts = ["tunableconv", "eval", "--model", args.model, "--data", args.data, "--p-grid", args.p_grid,
             "--metrics", args.metrics, "--seed", str(args.seed)]
    for flag, value in (("--levels", args.levels), ("--out", args.out), ("--compare", args.compare),
                        ("--max-images", args.max_images), ("--crop", args.crop), ("--data-root", args.data_root),
                        ("--tile", args.tile), ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    parts += [flag for flag, on in (("--raw", args.raw), ("--no-plot", args.no_plot)) if on]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..evaluation import (check_run_options, evaluate, parse_levels, parse_metrics, parse_numbers, results_markdown,
                              write_report)
    from ..tiling import DEFAULT_OVERLAP, check_tile

    # Cheap checks first, before loading anything.
    grid = parse_numbers(args.p_grid, "p grid")
    levels = parse_levels(args.levels, "levels") if args.levels is not None else None
    parse_metrics(args.metrics)
    if not args.out:
        raise InputError("give --out FOLDER for results.json, results.md and the pictures")
    check_run_options(args.threads, not args.no_plot)
    tile = check_tile(args.tile, DEFAULT_OVERLAP, overlap_option=None)  # 0: no tiling, as in restore and sweep
    results = evaluate(
        args.model, args.data, levels=levels, grid=grid, metrics=args.metrics, reference=args.compare, seed=args.seed,
        max_images=args.max_images, crop=args.crop, raw=args.raw, data_root=args.data_root, device=args.device,
        tile=tile, progress=not args.no_progress and sys.stderr.isatty(), command=command_line(args),
    )
    paths = write_report(results, args.out, plot=not args.no_plot)
    md = results_markdown(results)
    print(md.split("\n## ", 1)[1].split("\n## ")[0].rstrip() if "\n## " in md else md)
    print(f"\nwrote {', '.join(str(p) for p in paths.values())} ({results['wall_seconds']:.1f} s)")
    return 0
