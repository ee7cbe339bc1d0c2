"""``tunableconv compare``: train and evaluate every controllable method on the same work.

``--task T`` is any task that lists rivals (``tunableconv.tasks.TASKS``); its methods and the
recipe of each ``--budget`` come from the task. Example (resumable: stop it at any time and
run the same command again)::

    tunableconv compare --task denoise --budget small --out results/compare-denoise
    tunableconv compare --task denoise --budget small --out results/compare-denoise --methods tunable,fixed,dni

Every method is evaluated by the task-agnostic protocol of ``tunableconv eval``
(:mod:`tunableconv.evaluation`) at its raw knobs; each evaluation is cached in
``OUT/eval/METHOD.json`` (reused while the model file and the options are the same). A rival
conditioned on the degradation (CResMD as published: ``--set model.args.condition=degradation``
trains it on the true levels) is evaluated on its own knob grid and told the true levels.

Writes ``compare.json``, ``compare.md`` (the paper's Table 1 layout — PSNR to the ground truth /
to the other objective's target at each knob setting — knob quality against the blended target,
head to head, parameter counts and inference-time ratios), ``compare.png`` and
``strips/METHOD.png`` (each method's outputs over the knob on the same crop).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ..tasks import TASKS, case_examples  # light: the compare module (trainer, models) loads only when the command runs
    from . import add_levels_option

    ap = sub.add_parser("compare", help="train and compare every controllable method (Table 1)", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=[n for n, t in TASKS.items() if len(t.rivals) > 1],
                    help="a task that lists rivals (its methods and budgets come from it)")
    ap.add_argument("--budget", default="small", help="the task's budget, e.g. small (this CPU) or paper (GPU)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--runs", default=None, help="folder for the training checkpoints (default OUT/runs)")
    ap.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                    help="stop each unfinished run after this step (continue later with the same command)")
    ap.add_argument("--methods", default=None, help="comma-separated subset of the task's methods (default: all)")
    ap.add_argument("--steps", type=int, default=None, help="gradient steps of every method (default: the budget's)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="recipe override applied to every method (repeatable)")
    ap.add_argument("--data", default="cbsd68,kodak24")
    add_levels_option(ap, "the task's degradation levels, ';'-separated cases (default: the task's evaluation "
                         f"cases; one case of each task: {case_examples()})")
    ap.add_argument("--p-grid", default="0,0.25,0.5,0.75,1", help="knob (or slider) values in [0, 1]")
    ap.add_argument("--metrics", default="psnr,lpips",
                    help="against the ground truth (and LPIPS to the blended target): psnr, ssim, lpips, dists, niqe "
                         "(default: psnr,lpips)")
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--crop", type=int, default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--train-only", action="store_true", help="train (or continue) the runs, do not evaluate")
    ap.add_argument("--eval-only", action="store_true", help="evaluate the finished runs only")
    ap.add_argument("--no-table", action="store_true",
                    help="evaluate (and cache in OUT/eval) the methods, write no table: lets the evaluations run "
                         "in separate processes, e.g. --eval-only --methods dni --no-table")
    ap.add_argument("--no-progress", action="store_true")
    ap.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The equivalent ``tunableconv compare ...`` command line (all evaluation options explicit)."""
    parts = ["tunableconv", "compare", "--task", args.task, "--budget", args.budget, "--out", str(args.out),
             "--data", args.data, "--p-grid", args.p_grid, "--metrics", args.metrics]
    for flag, value in (("--levels", args.levels), ("--runs", args.runs), ("--methods", args.methods), ("--steps", args.steps),
                        ("--max-images", args.max_images), ("--crop", args.crop), ("--data-root", args.data_root)):
        if value is not None:
            parts += [flag, str(value)]
    for o in args.overrides:
        parts += ["--set", o]
    parts += [flag for flag, on in (("--eval-only", args.eval_only), ("--no-table", args.no_table)) if on]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import compare as C
    from ..data import ImageFolderEval
    from ..errors import InputError
    from ..evaluation import json_safe, parse_levels, parse_metrics, parse_numbers
    from ..io import atomic_write
    from ..models import ResNet, ResNetConfig
    from ..restore import Restorer
    from ..sweep import make_strip, sweep_labels, sweep_params
    from ..tasks import get_task

    task_cls = get_task(args.task)
    known = C.methods_for(args.task)
    if args.budget not in task_cls.budgets:
        raise InputError(f"unknown budget {args.budget!r} for the {args.task} task; budgets: {', '.join(task_cls.budgets)}")
    methods = known if not args.methods else [m.strip() for m in args.methods.split(",")]
    for m in methods:
        if m not in known:
            raise InputError(f"unknown method {m!r}; methods: {', '.join(known)}")
    # cheap checks first, before hours of training
    datasets = [d.strip() for d in args.data.split(",")]
    levels = parse_levels(args.levels, "--levels") if args.levels is not None else None
    grid = parse_numbers(args.p_grid, "--p-grid")
    if any(not 0 <= v <= 1 for v in grid):
        raise InputError(f"--p-grid values must be in [0, 1], got {args.p_grid}")
    metrics = parse_metrics(args.metrics)
    overrides = list(args.overrides) + ([f"train.steps={args.steps}"] if args.steps else [])
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    task_cls(C.recipe_for("tunable", args.budget, overrides, task=args.task)).evaluation_cases(levels)  # the task checks them
    out = Path(args.out)
    t0 = time.perf_counter()
    files = {}
    for m in methods:
        if args.eval_only:
            files[m] = out / "models" / f"{m}.safetensors"
            if not files[m].is_file():
                raise InputError(f"{m} has no finished model {files[m]}")
        else:
            print(f"== {m}", file=sys.stderr)
            files[m] = C.train_method(m, out, args.budget, overrides, progress=not args.no_progress,
                                      stop_at=args.stop_at, runs=Path(args.runs) if args.runs else None, task=args.task)
    unfinished = [m for m, f in files.items() if f is None]
    if unfinished:
        print(f"stopped before the end: {', '.join(unfinished)}; run the same command again to continue")
        return 0
    if args.train_only:
        print(f"trained: {', '.join(methods)}")
        return 0
    options = {"datasets": datasets, "levels": levels, "grid": grid, "seed": 0, "raw": True,
               "max_images": args.max_images, "crop": args.crop}
    results, params, models = {}, {}, {}
    for m in methods:
        restorer = Restorer.load(str(files[m]))
        models[m], params[m] = restorer.model, C.count_parameters(restorer.model)
        cache = out / "eval" / f"{m}.json"
        if C.cached_evaluation(cache, files[m], options) is None:
            print(f"== evaluating {m}", file=sys.stderr)
        else:
            print(f"{m}: evaluation reused from {cache}", file=sys.stderr)
        results[m], _ = C.evaluate_method(m, files[m], cache, options, metrics=metrics, data_root=args.data_root,
                                          progress=not args.no_progress)
    if args.no_table:
        print(f"evaluated: {', '.join(methods)}")
        return 0
    recipe = C.recipe_for("tunable", args.budget, overrides, task=args.task)
    task = task_cls(recipe)
    backbone = {k: v for k, v in recipe.model.args.items() if k in C.BACKBONE_KEYS}
    plain = ResNet(ResNetConfig(**backbone, num_params=0)).eval()
    cost = C.inference_cost(models, plain)
    table = {m: C.summarise(results[m]) for m in methods}
    # one strip per method on the same degraded crop (first image of the first dataset, the
    # task's middle evaluation case: sigma 25 for denoising), degraded by the task
    ds = ImageFolderEval(datasets[0], max_images=1, crop=args.crop or 192, data_root=args.data_root)
    clean = ds[0]["clean"]
    cases = task.evaluation_cases(levels)
    sample = task.degrade_case(clean, cases[len(cases) // 2], torch.Generator().manual_seed(0))
    (out / "strips").mkdir(parents=True, exist_ok=True)
    for m in methods:
        restorer = Restorer.load(str(files[m]))
        if restorer.num_params == 0:
            imgs, panel_labels = [restorer(sample.input, None)], ["fixed"]
        else:
            if restorer.space.main_slider is not None:
                ps = sweep_params(restorer, grid, calibrated=False)
                panel_labels = sweep_labels(restorer, grid, calibrated=False)
            else:  # no slider (the cube, a simplex of 3+): every setting of the knob grid
                ps = list(restorer.space.grid(grid))
                panel_labels = ["(" + ", ".join(f"{float(v):g}" for v in p) + ")" for p in ps]
            imgs = [restorer(sample.input, p) for p in ps]
            if C.summarise(results[m])["conditioned"]:
                imgs, panel_labels = [*imgs, restorer(sample.input, sample.condition)], [*panel_labels, "true levels"]
        make_strip([sample.input.clamp(0, 1), *imgs], [f"{m}: input ({cases[len(cases) // 2].label})", *panel_labels]
                   ).save(out / "strips" / f"{m}.png")
    objectives = list(task.objective_names)
    C.plot_table(table, out / "compare.png", objectives=objectives)
    steps = recipe.train.steps
    md = C.table_markdown(table, objectives=objectives, cost=cost, params=params, steps=steps, task=args.task)
    summary = {"command": command_line(args), "task": args.task,
               "budget": args.budget, "steps": steps, "methods": methods, "options": options, "metrics": metrics,
               "objectives": objectives, "table": table, "head_to_head": C.head_to_head(table, objectives),
               "parameters": params, "inference_cost": cost,
               "train_wall_seconds": {m: json.loads((out / "models" / f"{m}.json").read_text()).get("train_wall_seconds")
                                      for m in methods if (out / "models" / f"{m}.json").is_file()},
               "wall_seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__, "threads": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "compare.json", (json.dumps(json_safe(summary), indent=2) + "\n").encode())
    atomic_write(out / "compare.md", md.encode())
    print(md)
    return 0
