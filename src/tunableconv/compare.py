"""The comparison of controllable networks on the same work (the paper's Table 1).

A task lists the methods it can be compared with (:attr:`tunableconv.tasks.Task.rivals`)
and the recipe of each budget (:attr:`~tunableconv.tasks.Task.budgets`). Every method is
trained from the same recipe — backbone size, data, objectives, number of gradient steps,
seed — differing only in ``model.arch`` (two-stage methods split the steps between their
stages, see :mod:`tunableconv.models.baselines`; the rivals take the task's knob count and
domain), then evaluated on the same seeded degraded images. For denoising the knob is the
strength s with p = (s, 1 − s); every method is evaluated at its *raw* knob (no
calibration), so none gets a remapping the others lack.

Checkpoints live in ``RUNS/METHOD`` (default ``OUT/runs``) and are resumable; each finished
model is copied to ``OUT/models/METHOD.safetensors`` and reused from there.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from .errors import InputError
from .tasks import get_task
from .train import Recipe, Trainer, get_recipe

BACKBONE_KEYS = ("channels", "num_blocks", "kernel_size", "input_residual", "in_channels", "out_channels", "upscale")


def methods_for(task: str) -> list[str]:
    """The methods ``task`` can be compared with, the tunable model first."""
    return list(get_task(task).rivals)


def recipe_for(method: str, budget: str, overrides: list[str] = (), task: str = "denoise") -> Recipe:
    """The recipe of ``task``'s ``budget`` turned into ``method`` (same size, data, steps, seed)."""
    cls = get_task(task)
    if method not in cls.rivals:
        raise InputError(f"unknown method {method!r}; methods: {', '.join(cls.rivals)}")
    if budget not in cls.budgets:
        raise InputError(f"unknown budget {budget!r}; budgets: {', '.join(cls.budgets)}")
    r = get_recipe(cls.budgets[budget])
    for o in overrides:
        r.override(o)
    if r.task.name != task:
        raise InputError(f"the overrides turned the {task} recipe into a {r.task.name} one")
    r.name = f"compare-{method}"
    return cls.rival_recipe(method, r, BACKBONE_KEYS)


def train_method(method: str, out: Path, budget: str, overrides: list[str] = (), progress: bool = True,
                 stop_at: int | None = None, runs: Path | None = None, task: str = "denoise") -> Path | None:
    """Train (or continue, or reuse) one method; returns its finished model file.

    Finished models are kept in ``OUT/models/METHOD.safetensors`` (small; meant to be
    committed) and reused from there. Checkpoints live in ``RUNS/METHOD`` (default
    ``OUT/runs``); a stopped run continues from its checkpoint. Returns None if the run
    stopped early (``stop_at``).
    """
    import shutil

    from .models import read_metadata

    recipe = recipe_for(method, budget, overrides, task)
    final = out / "models" / f"{method}.safetensors"
    if final.is_file():
        steps = read_metadata(final).info.get("training", {}).get("steps")
        if steps == recipe.train.steps:
            return final
        raise InputError(f"{final} was trained for {steps} steps, not {recipe.train.steps}: remove it or match --steps")
    run = (runs or out / "runs") / method
    resume = (run / "latest.safetensors").is_file()
    if resume:
        saved = Recipe.load(run / "recipe.yaml")
        if saved.to_dict() != recipe.to_dict():
            raise InputError(f"{run} holds a run of a different recipe: remove it or use the same settings")
    summary = Trainer(recipe, run, progress=progress).fit(resume=resume, stop_at=stop_at)
    if summary.get("stopped"):
        return None
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run / "model.safetensors", final)
    (out / "models" / f"{method}.json").write_text((run / "summary.json").read_text())
    return final


EVAL_KEYS = ("dataset_specs", "sigmas", "grid", "seed", "raw", "max_images", "crop")


def cached_evaluation(path: Path, model_file: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation stored at ``path`` if it is of the same model file (by SHA-256) under the
    same settings (``EVAL_KEYS`` of ``settings``), else None. Lets ``compare`` evaluate one method
    at a time, in separate processes or sessions, and assemble the table at the end. A
    ``model_file`` that no longer exists (its run folder is gone) skips the SHA-256 check."""
    from .evaluate import _file_sha256

    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if Path(model_file).is_file() and res.get("model", {}).get("sha256") != _file_sha256(str(model_file)):
        return None
    have = res.get("settings", {})
    keys = [k for k in EVAL_KEYS if not (k == "grid" and res["model"].get("tunable") is False)]  # no knob, no grid
    if any(have.get(k) != settings.get(k) for k in keys):
        return None
    return res


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def middle_p(model: torch.nn.Module) -> torch.Tensor:
    """The centre of ``model``'s knob domain: 1/P per knob on the simplex, 0.5 on the cube (P = 2: (0.5, 0.5))."""
    n = int(getattr(model, "num_params", 2))
    return torch.full((n,), 1.0 / n if getattr(model, "domain", "simplex") == "simplex" else 0.5)


@torch.no_grad()
def inference_cost(models: dict[str, torch.nn.Module], plain: torch.nn.Module, size: int = 256, repeats: int = 10) -> dict:
    """Inference time of each model relative to the plain backbone, timed in alternation
    (plain, model, plain, model, ...) in one process; a shared p at the centre of each model's
    domain (:func:`middle_p`), batch 1, NHWC input as :class:`~tunableconv.restore.Restorer` runs them."""
    x = torch.rand(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    out = {}
    for name, model in models.items():
        p = middle_p(model) if getattr(model, "num_params", 2) else None
        fn = (lambda: model(x)) if p is None else (lambda: model(x, p))
        for _ in range(2):
            plain(x), fn()
        tp, tm = [], []
        for _ in range(repeats):
            t0 = time.perf_counter(); plain(x); tp.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); fn(); tm.append(time.perf_counter() - t0)
        out[name] = {"ms": 1e3 * statistics.median(tm), "plain_ms": 1e3 * statistics.median(tp),
                     "ratio": statistics.median(tm) / statistics.median(tp)}
    return out


def _mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None and v == v]
    return statistics.mean(values) if values else None


def table1(results: dict[str, dict], datasets: list[str]) -> dict[str, Any]:
    """Per method and dataset: PSNR vs noise target and vs ground truth at each s, averaged over sigma."""
    table: dict[str, Any] = {}
    for method, res in results.items():
        for ds in datasets:
            sig = res["datasets"][ds]["sigma"]
            rows = [v["model"] for v in sig.values()]
            s = rows[0]["s"]
            table.setdefault(method, {})[ds] = {
                "s": s,
                "psnr_target": [statistics.mean(r["psnr_target"][i] for r in rows) for i in range(len(s))],
                "psnr_gt": [statistics.mean(r["psnr_gt"][i] for r in rows) for i in range(len(s))],
                "evenness": _mean_or_none([r.get("evenness") for r in rows]),
            }
    return table


def head_to_head(table: dict[str, Any], datasets: list[str], ours: str = "tunable") -> dict[str, dict[str, dict]]:
    """``ours`` minus each other knob method, per dataset: PSNR to ground truth at the fidelity end
    (s = 1), PSNR to the noise target at the other end (s = 0), the mean of both PSNRs over the
    knob, and evenness (negative = ours more even). Positive PSNR differences favour ``ours``."""
    out: dict[str, dict[str, dict]] = {}
    if ours not in table:
        return out
    for method, per_ds in table.items():
        if method == ours or per_ds[datasets[0]]["s"] == [None]:
            continue
        for ds in datasets:
            a, b = table[ours][ds], per_ds[ds]
            ev = None if a["evenness"] is None or b["evenness"] is None else a["evenness"] - b["evenness"]
            out.setdefault(method, {})[ds] = {
                "fidelity_end_psnr_gt": a["psnr_gt"][-1] - b["psnr_gt"][-1],
                "noise_end_psnr_target": a["psnr_target"][0] - b["psnr_target"][0],
                "mean_psnr_gt": statistics.mean(a["psnr_gt"]) - statistics.mean(b["psnr_gt"]),
                "mean_psnr_target": statistics.mean(a["psnr_target"]) - statistics.mean(b["psnr_target"]),
                "evenness": ev,
            }
    return out


def wins_markdown(table: dict[str, Any], datasets: list[str], ours: str = "tunable") -> list[str]:
    h2h = head_to_head(table, datasets, ours)
    if not h2h:
        return []
    lines = [f"### {ours} minus each method (dB; positive: {ours} better; evenness: negative = {ours} more even)", "",
             "| method | dataset | s=1 vs GT | s=0 vs noise target | mean over s vs GT | mean over s vs target | evenness |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for method, per_ds in h2h.items():
        for ds, d in per_ds.items():
            ev = "—" if d["evenness"] is None else f"{d['evenness']:+.3f}"
            lines.append(f"| {method} | {ds} | {d['fidelity_end_psnr_gt']:+.2f} | {d['noise_end_psnr_target']:+.2f} | "
                         f"{d['mean_psnr_gt']:+.2f} | {d['mean_psnr_target']:+.2f} | {ev} |")
    if "fixed" in table:
        for ds in datasets:
            gap = table[ours][ds]["psnr_gt"][-1] - table["fixed"][ds]["psnr_gt"][0]
            lines.append(f"\n{ours} at s = 1 minus the fixed fidelity network on {ds}: {gap:+.2f} dB")
    return [*lines, ""]


def table1_markdown(table: dict[str, Any], cost: dict[str, Any], params: dict[str, int], datasets: list[str],
                    steps: int) -> str:
    lines = [f"All methods: same backbone size, data, objectives, seed and {steps} gradient steps; raw knob s, "
             "p = (s, 1 - s); PSNR (dB) averaged over sigma 15, 25, 50.", ""]
    for ds in datasets:
        some = next(iter(table.values()))[ds]["s"]
        grid = [x for x in some if x is not None] or [1.0]
        head = " | ".join(f"s={x:g}" for x in grid)
        lines += [f"### {ds}: PSNR vs noise-preservation target / vs ground truth", "",
                  f"| method | {head} | evenness |", "|---|" + "---|" * len(grid) + "---|"]
        for method, per_ds in table.items():
            t = per_ds[ds]
            if t["s"] == [None]:
                cells = [f"— / {t['psnr_gt'][0]:.2f}"] * len(grid)
            else:
                cells = [f"{a:.2f} / {b:.2f}" for a, b in zip(t["psnr_target"], t["psnr_gt"])]
            ev = "—" if t["evenness"] is None else f"{t['evenness']:.3f}"
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {ev} |")
        lines.append("")
    lines += wins_markdown(table, datasets)
    lines += ["### Cost", "", "| method | parameters | inference time vs plain backbone |", "|---|---|---|"]
    for method in table:
        c = cost.get(method, {})
        lines.append(f"| {method} | {params[method]:,} | {c.get('ratio', float('nan')):.2f}x |")
    return "\n".join(lines) + "\n"
