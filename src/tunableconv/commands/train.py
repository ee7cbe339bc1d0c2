"""``tunableconv train``: train a recipe into a run folder (resumable; torchrun for DDP).

Examples::

    tunableconv train --recipe denoise-small --out runs/denoise
    tunableconv train --recipe denoise-small --set train.lr=2e-4 --set train.steps=3000 --out runs/x
    tunableconv train --resume runs/x                  # continue a stopped run
    tunableconv train --resume runs/x --steps 8000     # ... with a new total step count
    torchrun --nproc_per_node 2 -m tunableconv train --recipe denoise-small --out runs/ddp
    tunableconv train --recipe denoise-nafnet-small --init-from denoise-nafnet-fixed.safetensors --out runs/w
                                                       # start the knob from a trained plain network
    tunableconv train --list                           # named recipes
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("train", help="train a recipe (resumable)", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", help="a named recipe or a .yaml/.json file")
    ap.add_argument("--out", help="run folder (checkpoints, logs, final model)")
    ap.add_argument("--resume", metavar="RUN", help="continue the run in this folder")
    ap.add_argument("--steps", type=int, help="total number of steps (overrides the recipe; with --resume, extends it)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override a recipe field, e.g. train.lr=2e-4 (repeatable)")
    ap.add_argument("--init-from", metavar="FILE",
                    help="start from this trained network (= --set model.init=FILE): a model file of the "
                         "recipe's architecture, tunable or its plain twin (converted, outputs kept at every p), "
                         "or a bare safetensors state dict of the plain architecture")
    ap.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                    help="stop after this step with a checkpoint (continue later with --resume)")
    ap.add_argument("--data-root", help="data root (default: TUNABLECONV_DATA or ../shared/data)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("--list", action="store_true", help="list the named recipes and exit")
    ap.add_argument("--print", action="store_true", help="print the resolved recipe (YAML) and exit")
    ap.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Everything a user can get wrong is checked before any work starts: the options, every
    field of the resolved recipe (:meth:`~tunableconv.train.Recipe.validate`), the run folder
    and, with ``--resume``, that the checkpoint matches the recipe and has not done more steps
    than asked for. The run folder is not touched by a refused command."""
    from ..train import RECIPES, Recipe, Trainer, get_recipe
    from ..train.trainer import LATEST, RECIPE, check_resumable, check_run_folder

    if args.list:
        for name, fn in RECIPES.items():
            print(f"{name:24s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / RECIPE).is_file():
            raise InputError(f"{run_dir} is not a run folder (no {RECIPE})")
        if args.recipe:
            raise InputError("--resume continues the saved recipe; do not pass --recipe")
        if args.out and Path(args.out) != run_dir:
            raise InputError("--resume continues the run in its own folder; do not pass --out")
        recipe = Recipe.load(run_dir / RECIPE)
        out = run_dir
    else:
        if not args.recipe:
            raise InputError("give --recipe NAME (see --list) or --resume RUN")
        recipe = get_recipe(args.recipe)
        if not args.out and not args.print:
            raise InputError("give --out RUN_FOLDER")
        out = Path(args.out) if args.out else None
    for a in args.overrides:
        recipe.override(a)
    if args.init_from:
        if args.resume:
            raise InputError("--init-from starts a new run; --resume continues one (its weights are in the checkpoint)")
        if not Path(args.init_from).is_file():
            raise InputError(f"--init-from: no file at {args.init_from}")
        recipe.model.init = str(args.init_from)
    if args.steps is not None:
        if args.steps < 1:
            raise InputError(f"--steps must be >= 1, got {args.steps}")
        recipe.train.steps = args.steps
    if args.stop_at is not None and args.stop_at < 1:
        raise InputError(f"--stop-at must be >= 1, got {args.stop_at}")
    if args.data_root:
        recipe.data.root = args.data_root
    recipe.validate()
    if args.print:
        import yaml

        print(yaml.safe_dump(recipe.to_dict(), sort_keys=False), end="")
        return 0
    check_run_folder(out)
    if args.resume:
        if (out / LATEST).is_file():
            check_resumable(recipe, out / LATEST)
    elif (out / LATEST).exists():
        raise InputError(f"{out} already holds a run: use --resume {out} or another --out")
    summary = Trainer(recipe, out, progress=not args.no_progress).fit(resume=bool(args.resume), stop_at=args.stop_at)
    if summary.get("stopped"):
        print(f"stopped at step {summary['steps']}; continue with: tunableconv train --resume {out}")
        return 0
    if summary.get("val"):
        print(f"final validation: {summary['val']}")
    print(f"trained {summary['steps']} steps in {summary['train_wall_seconds']:.0f} s; model: {out / 'model.safetensors'}")
    return 0
