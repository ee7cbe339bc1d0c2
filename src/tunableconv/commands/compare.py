"""``tunableconv compare``: train and evaluate every controllable method on the same work.

``--task T`` is any task that lists rivals (``tunableconv.tasks.TASKS``); its methods and the
recipe of each ``--budget`` come from the task. Example (resumable: stop it at any time and
run the same command again)::

    tunableconv compare --task denoise --budget small --out results/compare-denoise
    tunableconv compare --task denoise --budget small --out results/compare-denoise --methods tunable,fixed,dni

Writes ``compare.json``, ``compare.md`` (the paper's Table 1 layout plus parameter counts and
inference-time ratios), ``compare.png`` (both PSNR curves of every method) and
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
    from ..tasks import TASKS  # light: the compare module (trainer, models) loads only when the command runs

    ap = sub.add_parser("compare", help="train and compare every controllable method (Table 1)", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="denoise", choices=[n for n, t in TASKS.items() if len(t.rivals) > 1],
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
    ap.add_argument("--sigma", default="15,25,50")
    ap.add_argument("--p-grid", default="0,0.25,0.5,0.75,1")
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
             "--data", args.data, "--sigma", args.sigma, "--p-grid", args.p_grid]
    for flag, value in (("--runs", args.runs), ("--methods", args.methods), ("--steps", args.steps),
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
    from ..evaluate import parse_numbers
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
    overrides = list(args.overrides) + ([f"train.steps={args.steps}"] if args.steps else [])
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
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
    datasets = [d.strip() for d in args.data.split(",")]
    sigmas = parse_numbers(args.sigma, "--sigma")
    from ..evaluate import evaluate

    from ..evaluate import check_grid, json_safe
    from ..io import atomic_write

    wanted = {"dataset_specs": datasets, "sigmas": sigmas, "grid": check_grid(args.p_grid), "seed": 0, "raw": True,
              "max_images": args.max_images, "crop": args.crop}
    results, params, models = {}, {}, {}
    for m in methods:
        restorer = Restorer.load(str(files[m]))
        models[m], params[m] = restorer.model, C.count_parameters(restorer.model)
        cache = out / "eval" / f"{m}.json"
        results[m] = C.cached_evaluation(cache, files[m], wanted)
        if results[m] is not None:
            print(f"{m}: evaluation reused from {cache}", file=sys.stderr)
            continue
        print(f"== evaluating {m}", file=sys.stderr)
        results[m] = json_safe(evaluate(restorer, datasets, sigmas, args.p_grid, raw=True, max_images=args.max_images, crop=args.crop,
                              data_root=args.data_root, progress=not args.no_progress, model_name=m, compute_ssim=False))
        cache.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(results[m], indent=1)  # fresh and cached results alike: NaN stored as None
        atomic_write(cache, lambda f: f.write(text.encode()))
    if args.no_table:
        print(f"evaluated: {', '.join(methods)}")
        return 0
    recipe = C.recipe_for("tunable", args.budget, overrides, args.task)
    task = task_cls(recipe)
    backbone = {k: v for k, v in recipe.model.args.items() if k in C.BACKBONE_KEYS}
    plain = ResNet(ResNetConfig(**backbone, num_params=0)).eval()
    cost = C.inference_cost(models, plain)
    labels = list(next(iter(results.values()))["datasets"])  # names as evaluate() reports them
    table = C.table1(results, labels)
    # one strip per method on the same degraded crop (first image of the first dataset, the
    # task's middle evaluation case: sigma 25 for denoising), degraded by the task
    ds = ImageFolderEval(datasets[0], max_images=1, crop=args.crop or 192, data_root=args.data_root)
    clean = ds[0]["clean"]
    cases = task.evaluation_cases()
    noisy = task.degrade_case(clean, cases[len(cases) // 2], torch.Generator().manual_seed(0)).input
    grid = parse_numbers(args.p_grid, "--p-grid")
    (out / "strips").mkdir(parents=True, exist_ok=True)
    for m in methods:
        restorer = Restorer.load(str(files[m]))
        if restorer.num_params == 0:
            imgs, panel_labels = [restorer(noisy, None)], ["fixed"]
        else:
            ps = sweep_params(restorer, grid, calibrated=False)
            imgs, panel_labels = [restorer(noisy, p) for p in ps], sweep_labels(restorer, grid, calibrated=False)
        make_strip([noisy.clamp(0, 1), *imgs], [f"{m}: noisy", *panel_labels]).save(out / "strips" / f"{m}.png")
    _plot(table, labels, out / "compare.png")
    steps = recipe.train.steps
    md = C.table1_markdown(table, cost, params, labels, steps)
    summary = {"command": command_line(args),
               "budget": args.budget, "steps": steps, "methods": methods, "datasets": labels, "sigmas": sigmas,
               "table1": table, "head_to_head": C.head_to_head(table, labels), "parameters": params, "inference_cost": cost,
               "train_wall_seconds": {m: json.loads((out / "models" / f"{m}.json").read_text()).get("train_wall_seconds")
                                      for m in methods if (out / "models" / f"{m}.json").is_file()},
               "wall_seconds": round(time.perf_counter() - t0, 1), "torch": torch.__version__, "threads": torch.get_num_threads()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(summary, indent=2))
    (out / "compare.md").write_text(md)
    print(md)
    return 0


def _plot(table: dict, datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for i, (method, per_ds) in enumerate(table.items()):
            t = per_ds[ds]
            color = f"C{i}"
            if t["s"] == [None]:
                ax.axhline(t["psnr_gt"][0], color=color, ls="--", label=f"{method} (vs GT)")
                continue
            ax.plot(t["s"], t["psnr_gt"], "-o", color=color, label=f"{method} vs GT")
            ax.plot(t["s"], t["psnr_target"], ":s", color=color, label=f"{method} vs noise target")
        ax.set_title(f"{ds} (mean over sigma)")
        ax.set_xlabel("strength s  (p = (s, 1 - s))")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
