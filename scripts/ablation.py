"""The knob-quality ablation of the ``denoise-small`` recipe (issue #7), at equal wall-clock budget.

It starts from ``denoise-small-v1`` (the recipe as it was before the study, frozen).

One thing changes at a time against ``base`` (the recipe as it is). For each variant:

1. **step cost**: the variants that change what a training step computes (p granularity, the
   p -> weights map, ``--add`` combinations) are timed against the base in one process, in the
   order A B ... B A A B ... B A (machine drift cancels), after a warm-up window;
   ``ratio = t_variant / t_base``. Variants that only change a hyperparameter (loss, target mix,
   p distribution, EMA, LR) run the very same convolutions as the base: their budget is the
   base's steps, because a ratio timed on a busy 2-core machine is noisier (+-10% seen) than
   their real cost difference; a variant that computes what an already-timed one does (say
   ``expansion-2`` plus a target mix) takes that one's ratio. Step costs are still reported,
   from the training logs.
2. **budget**: the base gets ``--base-steps`` steps, a timed variant ``round(base_steps / ratio)``,
   so every variant gets the same wall-clock time (same seed everywhere). The fixed fidelity-only
   twin gets the base's number of *steps*: it is the reference of the fidelity-end gap, as in the
   issue ("at equal steps"). The plan is stored in ``OUT/plan.json`` and reused, so the runs
   can be stopped and continued with the same command; a finished variant's evaluation and
   training summary are cached in ``OUT/eval/VARIANT`` (enough for the table when the runs
   folder is gone, e.g. in a later session).
3. **training**: ``tunableconv train`` per variant (resumable checkpoints in ``RUNS/VARIANT``),
   ``--jobs`` at a time, one torch thread each.
4. **evaluation**: ``tunableconv eval`` on ``bsd100-holdout`` (the 32 BSD100 images that are
   not in CBSD68: disjoint from the training set and from both test sets, so choosing a
   winner here does not peek at the test sets), centre crops, sigma 15/25/50, raw knob
   s = 0, .25, .5, .75, 1, with the fixed twin as the reference. Cached per variant.
5. **table**: ``OUT/ablation.json``, ``OUT/ablation.md`` and ``OUT/ablation.png``.

Usage::

    python scripts/ablation.py --out results/ablation --runs runs/ablation
    python scripts/ablation.py --out results/ablation --variants base,loss-l2,fixed   # a subset
    python scripts/ablation.py --out results/ablation --add "best=task.mix=targets;task.vertex_share=0.2"
    python scripts/ablation.py --out /tmp/abl --base-steps 4 --tiny                     # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

BASE_RECIPE = "denoise-small-v1"  # frozen: the recipe the study starts from (see recipes.py)

#: name -> (what changes, recipe overrides). ``base`` is the recipe as it is: per-sample p, uniform
#: simplex sampling, affine map with expansion 1, mixed L1 losses, no EMA, cosine LR from 1e-3.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "base": ("denoise-small-v1 as it is", []),
    "p-batch": ("one p per batch (the fused one-conv path)", ["task.p_granularity=batch"]),
    "p-group4": ("one p per group of 4 samples", ["task.p_granularity=group:4"]),
    "vertex-0.2": ("20% of the samples at the two ends p = (1, 0), (0, 1)", ["task.vertex_share=0.2"]),
    "vertex-0.5": ("50% of the samples at the two ends", ["task.vertex_share=0.5"]),
    "map-identity": ("identity p -> weights map (no learned affine map)", ["model.args.mapping=identity"]),
    "expansion-2": ("affine map to 2 kernels per objective (K = 4)", ["model.args.expansion=2"]),
    "loss-l2": ("L2 per-objective distance", ["task.loss=l2"]),
    "loss-charbonnier": ("Charbonnier per-objective distance", ["task.loss=charbonnier"]),
    "mix-targets": ("L1 to the blended target sum_i p_i t_i instead of sum_i p_i L1(o, t_i)", ["task.mix=targets"]),
    "ema": ("EMA of the weights, decay 0.999", ["train.ema=0.999"]),
    "lr-constant": ("constant LR 1e-3 (after the warm-up) instead of cosine", ["train.schedule=constant"]),
    "lr-2e-3": ("cosine from 2e-3 instead of 1e-3", ["train.lr=2e-3"]),
    "fixed": ("the fixed fidelity-only twin (reference; equal steps to base)",
              ["task.fidelity_only=true", "model.args.num_params=0"]),
}

#: recipe fields that change what is learnt, not what a training step computes: a variant (or an
#: ``--add`` combination) that changes only these runs the base's convolutions, so equal steps are
#: equal wall-clock time and it is not timed.
HYPERPARAMETER_FIELDS = {"task.vertex_share", "task.loss", "task.mix", "train.ema", "train.schedule", "train.lr"}


def step_cost_overrides(overrides: list[str]) -> list[str]:
    """The overrides that change what a training step computes (everything but the hyperparameters)."""
    return sorted(o for o in overrides if o.partition("=")[0] not in HYPERPARAMETER_FIELDS)


TINY = ["model.args.channels=8", "model.args.num_blocks=1", "train.batch_size=4", "data.patch_size=16",
        "data.val_images=1", "data.val_crop=32", "train.log_every=1", "train.ckpt_every=2", "data.num_workers=0"]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="results folder (plan, evaluations, table)")
    ap.add_argument("--recipe", default=BASE_RECIPE, help=f"the base recipe (default {BASE_RECIPE})")
    ap.add_argument("--runs", help="training runs folder (default OUT/runs; not for committing)")
    ap.add_argument("--variants", help="comma-separated subset (default: all; base and fixed are always added)")
    ap.add_argument("--add", action="append", default=[], metavar="NAME=OVERRIDE;OVERRIDE",
                    help="an extra variant, e.g. 'combo=task.mix=targets;task.vertex_share=0.2' (repeatable)")
    ap.add_argument("--base-steps", type=int, default=2000, help="steps of the base variant (default 2000)")
    ap.add_argument("--time-steps", type=int, default=40, help="steps per variant and round of the step timing")
    ap.add_argument("--jobs", type=int, default=2, help="trainings/evaluations at a time (default 2)")
    ap.add_argument("--data", default="bsd100-holdout")
    ap.add_argument("--sigma", default="15,25,50")
    ap.add_argument("--p-grid", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--crop", type=int, default=256, help="centre crop of the evaluation images (0: full)")
    ap.add_argument("--max-images", type=int, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="override for every variant")
    ap.add_argument("--tiny", action="store_true", help="tiny models and data (a smoke run of the pipeline)")
    ap.add_argument("--train-data", help="training folder (default: the recipe's)")
    ap.add_argument("--stop-after", choices=["plan", "train"], help="stop after this phase")
    ap.add_argument("--train-only", metavar="VARIANTS",
                    help="train exactly these variants (comma-separated; base and fixed are not added) and stop: "
                         "to spread the trainings over several processes or machines; the plan must exist")
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------------
def variant_overrides(args, name: str, extra: dict[str, tuple[str, list[str]]]) -> list[str]:
    # implementation settings, not hyperparameters: one thread per run, NHWC activations (faster on CPU)
    common = ["train.threads=1", "train.channels_last=true"] + list(args.overrides) + (TINY if args.tiny else [])
    if args.train_data:
        common += [f"data.train={args.train_data}", f"data.val={args.train_data}"]
    return common + (VARIANTS.get(name) or extra[name])[1]


def build_recipe(overrides: list[str], recipe: str = BASE_RECIPE):
    from tunableconv.train import get_recipe

    r = get_recipe(recipe)
    for o in overrides:
        r.override(o)
    return r


def time_steps(args, names: list[str], extra, rounds: int = 4) -> dict[str, float]:
    """Median seconds per step of each variant, timed in the order A..Z Z..A A..Z ... in this process."""
    import tempfile

    from tunableconv.train import Trainer

    per: dict[str, list[float]] = {n: [] for n in names}
    window = max(1, args.time_steps // 4)
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(rounds):
            for n in (names if rnd % 2 == 0 else names[::-1]):
                r = build_recipe(variant_overrides(args, n, extra), args.recipe)
                r.train.steps, r.train.log_every, r.train.val_every = args.time_steps, window, 10**8  # never
                r.train.ckpt_every = 10**8  # never
                Trainer(r, Path(tmp) / f"{n}-{rnd}", progress=False).fit()
                rows = [json.loads(l) for l in (Path(tmp) / f"{n}-{rnd}" / "log.jsonl").read_text().splitlines()]
                sps = [row["sec_per_step"] for row in rows if "sec_per_step" in row][1:]  # drop the warm-up window
                per[n] += sps
                print(f"  {n:18s} round {rnd}: {statistics.median(sps):.4f} s/step", file=sys.stderr)
    return {n: statistics.median(v) for n, v in per.items()}


def load_plan(out: Path) -> dict:
    """``OUT/plan.json``, or an empty plan."""
    plan_path = Path(out) / "plan.json"
    return json.loads(plan_path.read_text()) if plan_path.is_file() else {"variants": {}}


def make_plan(args, names: list[str], extra) -> dict:
    plan_path = Path(args.out) / "plan.json"
    plan = load_plan(args.out)
    if plan.get("recipe") not in (None, args.recipe):
        raise SystemExit(f"error: {plan_path} was made from the recipe {plan['recipe']}; use that, or another --out")
    if plan.get("base_steps") not in (None, args.base_steps):
        raise SystemExit(f"error: {plan_path} was made with --base-steps {plan['base_steps']}; "
                         f"use that, or another --out")
    todo = [n for n in names if n not in plan["variants"]]
    if todo:
        what = {n: VARIANTS.get(n) or extra[n] for n in todo}
        cost = {n: step_cost_overrides(what[n][1]) for n in todo}
        # a variant whose step computes what an already-timed one's does (e.g. that variant plus a
        # hyperparameter) takes its ratio: timing it again would only add noise
        timed_before = {tuple(step_cost_overrides(v["overrides"])): k for k, v in plan["variants"].items()
                        if v.get("step_time_ratio")}
        to_time = [n for n in todo if n != "fixed" and cost[n] and tuple(cost[n]) not in timed_before]
        timed = {}
        if to_time:
            print(f"timing the training step of: {', '.join(to_time)} (against base)", file=sys.stderr)
            timed = time_steps(args, ["base", *sorted(to_time)], extra)
        plan.update(base_steps=args.base_steps, recipe=args.recipe)
        for n in todo:
            entry = {"what": what[n][0], "overrides": what[n][1]}
            if n == "fixed" or not cost[n]:
                entry.update(budget="same computation as base: equal steps", step_time_ratio=None,
                             steps=args.base_steps)
            elif n not in timed:
                twin = timed_before[tuple(cost[n])]
                ratio = plan["variants"][twin]["step_time_ratio"]
                entry.update(budget=f"same computation as {twin}: its timed step-cost ratio",
                             step_time_ratio=ratio, steps=max(1, round(args.base_steps / ratio)))
            else:
                ratio = timed[n] / timed["base"]  # measured side by side in this run
                entry.update(budget="equal time: base steps / timed step-cost ratio", step_time_ratio=round(ratio, 4),
                             sec_per_step=round(timed[n], 4), base_sec_per_step=round(timed["base"], 4),
                             steps=max(1, round(args.base_steps / ratio)))
            plan["variants"][n] = entry
        plan_path.parent.mkdir(parents=True, exist_ok=True)
        plan_path.write_text(json.dumps(plan, indent=2))
    return plan


# ---------------------------------------------------------------------------------------------
def run_jobs(jobs: list[tuple[str, list[str], Path]], parallel: int, progress_of=None, total: int = 0) -> None:
    """Run ``(name, argv, log)`` commands, ``parallel`` at a time; a failure stops everything."""
    from tqdm.auto import tqdm

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    pending, running = list(jobs), {}
    bar = tqdm(total=total or len(jobs), desc="ablation", unit="step" if total else "job", dynamic_ncols=True)
    done_jobs = 0
    try:
        while pending or running:
            while pending and len(running) < parallel:
                name, argv, log = pending.pop(0)
                log.parent.mkdir(parents=True, exist_ok=True)
                running[name] = (subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env), log)
                tqdm.write(f"started {name}  (log: {log})")
            time.sleep(5)
            for name, (proc, log) in list(running.items()):
                if proc.poll() is not None:
                    del running[name]
                    done_jobs += 1
                    if proc.returncode != 0:
                        tail = log.read_text()[-2000:]
                        raise SystemExit(f"error: {name} failed (exit {proc.returncode}); end of {log}:\n{tail}")
                    tqdm.write(f"finished {name}")
            bar.n = progress_of() if progress_of else done_jobs
            bar.refresh()
    finally:
        for proc, _ in running.values():
            proc.terminate()
        bar.close()


def last_step(run: Path) -> int:
    log = run / "log.jsonl"
    if not log.is_file():
        return 0
    lines = log.read_text().splitlines()
    for line in reversed(lines):
        try:
            return int(json.loads(line).get("step", 0))
        except ValueError:
            continue
    return 0


def train_all(args, plan: dict, names: list[str], runs: Path, extra) -> None:
    jobs = []
    for n in names:
        run = runs / n
        if (run / "model.safetensors").is_file():
            continue
        steps = plan["variants"][n]["steps"]
        cli = [sys.executable, "-m", "tunableconv", "train", "--no-progress"]
        if (run / "latest.safetensors").is_file():
            cli += ["--resume", str(run)]
        else:
            cli += ["--recipe", args.recipe, "--out", str(run), "--steps", str(steps)]
            for o in variant_overrides(args, n, extra):
                cli += ["--set", o]
        jobs.append((n, cli, runs / f"{n}.log"))
    if not jobs:
        return
    total = sum(plan["variants"][n]["steps"] for n in names)
    run_jobs(jobs, args.jobs, progress_of=lambda: sum(min(last_step(runs / n), plan["variants"][n]["steps"])
                                                      for n in names), total=total)


def cached_result(args, n: str, runs: Path, out: Path) -> dict | None:
    """The cached evaluation of variant ``n`` if its settings match (and its model, while it exists)."""
    from tunableconv.tasks.denoise_protocol import cached_protocol_evaluation

    wanted = {"dataset_specs": [args.data], "sigmas": [float(x) for x in args.sigma.split(",")],
              "grid": [float(x) for x in args.p_grid.split(",")], "seed": 0, "raw": True,
              "max_images": args.max_images, "crop": args.crop or None}
    return cached_protocol_evaluation(out / "eval" / n / "results.json", runs / n / "model.safetensors", wanted)


def train_record(run: Path) -> dict:
    """Steps, wall time and median seconds per step of a finished training run (from its logs)."""
    rows = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines() if l.strip()]
    sps = [r["sec_per_step"] for r in rows if "sec_per_step" in r]
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    return {"steps": last_step(run), "train_wall_seconds": summary.get("train_wall_seconds"),
            "median_sec_per_step": round(statistics.median(sps), 4) if sps else None}


def eval_all(args, names: list[str], runs: Path, out: Path) -> dict[str, dict]:
    fixed = runs / "fixed" / "model.safetensors"
    jobs, results = [], {}
    for n in names:
        cached = cached_result(args, n, runs, out)
        if cached is not None:
            results[n] = cached
            continue
        folder = out / "eval" / n
        cli = [sys.executable, "-m", "tunableconv.tasks.denoise_protocol", "--model", str(runs / n / "model.safetensors"),
               "--data", args.data, "--sigma", args.sigma, "--p-grid", args.p_grid, "--raw", "--no-ssim",
               "--no-plot", "--no-progress", "--threads", "1", "--out", str(folder)]
        if n != "fixed":
            cli += ["--compare", str(fixed)]
        if args.crop:
            cli += ["--crop", str(args.crop)]
        if args.max_images:
            cli += ["--max-images", str(args.max_images)]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "train.json").write_text(json.dumps(train_record(runs / n), indent=2))
        jobs.append((n, cli, out / "eval" / f"{n}.log"))
    run_jobs(jobs, args.jobs)
    for n in names:
        results.setdefault(n, json.loads((out / "eval" / n / "results.json").read_text()))
    return results


# ---------------------------------------------------------------------------------------------
def summarise(plan: dict, results: dict[str, dict], out: Path) -> dict:
    rows = {}
    for n, res in results.items():
        per_sigma = [v for ds in res["datasets"].values() for v in ds["sigma"].values()]
        m = [v["model"] for v in per_sigma]
        rec_file = out / "eval" / n / "train.json"
        rec = json.loads(rec_file.read_text()) if rec_file.is_file() else {}
        row = {**plan["variants"][n], "train_wall_seconds": rec.get("train_wall_seconds"),
               "train_sec_per_step": rec.get("median_sec_per_step")}
        if n == "fixed":
            row.update(psnr_gt_fidelity_end=statistics.mean(x["psnr_gt"][0] for x in m))
        else:
            row.update(
                psnr_gt_fidelity_end=statistics.mean(x["psnr_gt"][-1] for x in m),
                gap_to_fixed=statistics.mean(v["gap"]["psnr_gt"] for v in per_sigma),
                gap_by_sigma={k: v["gap"]["psnr_gt"] for ds in res["datasets"].values() for k, v in ds["sigma"].items()},
                psnr_target_noise_end=statistics.mean(x["psnr_target"][0] for x in m),
                evenness=statistics.mean(x["evenness"] for x in m),
                evenness_by_sigma={k: v["model"]["evenness"] for ds in res["datasets"].values()
                                   for k, v in ds["sigma"].items()},
                d_mid=statistics.mean(x["evenness_d"][len(x["s"]) // 2] for x in m),
            )
        rows[n] = row
    return rows


def write_table(rows: dict, plan: dict, args, out: Path, command: str) -> None:
    base = rows.get("base", {})
    lines = [
        f"# Ablation of `{plan['recipe']}` at equal wall-clock budget",
        "",
        f"Base: {plan['base_steps']} steps. A variant that changes what a step computes gets the steps that fit "
        "the base's time (step cost timed against the base side by side in one run: 'timed'); one that only "
        "changes a hyperparameter runs the same convolutions and gets the base's steps; the fixed twin gets the "
        "base's steps. 'train s/step': median seconds per step in its own training log (two runs at a time, "
        "one thread each; indicative only). Same seed for all. Evaluation: "
        f"`{args.data}` ({'centre crops ' + str(args.crop) if args.crop else 'full images'}), sigma {args.sigma}, "
        f"raw knob s = {args.p_grid}, p = (s, 1 - s).",
        "",
        f"- command: `{command}`",
        "",
        "| variant | what | steps | timed step cost | train s/step | PSNR at s=1 | gap to fixed | vs base "
        "| PSNR to noise target at s=0 | evenness | d(0.5) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r in rows.items():
        if n == "fixed":
            continue
        vs = r["psnr_gt_fidelity_end"] - base["psnr_gt_fidelity_end"] if base else float("nan")
        lines.append(f"| {n} | {r['what']} | {r['steps']} | {_ratio(r)} | {_sps(r)} | "
                     f"{r['psnr_gt_fidelity_end']:.3f} | {r['gap_to_fixed']:+.3f} | {vs:+.3f} | "
                     f"{r['psnr_target_noise_end']:.3f} | {r['evenness']:.3f} | {r['d_mid']:.3f} |")
    if "fixed" in rows:
        f = rows["fixed"]
        lines.append(f"| fixed | {f['what']} | {f['steps']} | {_ratio(f)} | {_sps(f)} | "
                     f"{f['psnr_gt_fidelity_end']:.3f} | — | — | — | — | — |")
    lines += ["", "PSNR in dB, means over sigma. Gap to fixed: tunable at s = 1 minus the fixed twin (PSNR to "
              "ground truth). Evenness: max over s of |d(s) − s|, d(s) = ‖o_s − o_0‖ / ‖o_1 − o_0‖, mean over "
              "images and sigma (0 = even). d(0.5): where the midpoint of the raw knob lands (0.5 = even).", ""]
    (out / "ablation.md").write_text("\n".join(lines))
    (out / "ablation.json").write_text(json.dumps({"command": command, "plan": plan, "rows": rows}, indent=2))
    _plot(rows, out / "ablation.png")
    print("\n".join(lines))


def _ratio(row: dict) -> str:
    return "same as base" if row.get("step_time_ratio") is None else f"{row['step_time_ratio']:.2f}x"


def _sps(row: dict) -> str:
    return "—" if row.get("train_sec_per_step") is None else f"{row['train_sec_per_step']:.3f}"


def _plot(rows: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in rows if n != "fixed"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.4 * len(names) + 1.5))
    for ax, key, title in ((axes[0], "gap_to_fixed", "fidelity end minus fixed twin (dB, higher is better)"),
                           (axes[1], "evenness", "evenness error (lower is better)")):
        vals = [rows[n][key] for n in names]
        colors = ["C1" if n == "base" else "C0" for n in names]
        ax.barh(names, vals, color=colors)
        if "base" in rows:
            ax.axvline(rows["base"][key], color="C1", ls="--", lw=1)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    extra: dict[str, tuple[str, list[str]]] = {}
    for spec in args.add:
        name, _, rest = spec.partition("=")
        if not name or not rest or name in VARIANTS:
            raise SystemExit(f"error: --add wants NEW_NAME=override;override, got {spec!r}")
        extra[name] = (f"combination: {rest}", [o for o in rest.split(";") if o])
    wanted = list(VARIANTS) if not args.variants else [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in wanted if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"error: unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    names = list(dict.fromkeys(["base", *wanted, *extra, "fixed"]))
    out = Path(args.out)
    runs = Path(args.runs) if args.runs else out / "runs"
    for n in names:  # fail early on a bad override
        build_recipe(variant_overrides(args, n, extra), args.recipe)
    if args.train_only:
        only = [v.strip() for v in args.train_only.split(",") if v.strip()]
        unknown = [v for v in only if v not in VARIANTS and v not in extra]
        if unknown:
            raise SystemExit(f"error: unknown variant(s) {', '.join(unknown)} in --train-only")
        plan = load_plan(out)
        missing = [v for v in only if v not in plan["variants"]]
        if missing:  # timing belongs on a quiet machine, not beside other trainings: make the plan first
            raise SystemExit(f"error: {out / 'plan.json'} has no entry for {', '.join(missing)}; "
                             f"make the plan first (--stop-after plan)")
        train_all(args, plan, only, runs, extra)
        return 0
    plan = make_plan(args, names, extra)
    if args.stop_after == "plan":
        return 0
    t0 = time.time()
    need_eval = [n for n in names if cached_result(args, n, runs, out) is None]
    # the fixed twin is the reference of every evaluation: it is needed while anything is left to evaluate
    train_all(args, plan, list(dict.fromkeys(need_eval + (["fixed"] if need_eval else []))), runs, extra)
    print(f"training done ({time.time() - t0:.0f} s in this call)", file=sys.stderr)
    if args.stop_after == "train":
        return 0
    results = eval_all(args, names, runs, out)
    rows = summarise(plan, results, out)
    command = shlex.join(["python", "scripts/ablation.py", *(argv if argv is not None else sys.argv[1:])])
    write_table(rows, plan, args, out, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
