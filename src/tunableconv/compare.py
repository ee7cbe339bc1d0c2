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
from collections.abc import Sequence
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


def recipe_for(method: str, budget: str, overrides: list[str] = (), *, task: str) -> Recipe:
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
                 stop_at: int | None = None, runs: Path | None = None, *, task: str) -> Path | None:
    """Train (or continue, or reuse) one method; returns its finished model file.

    Finished models are kept in ``OUT/models/METHOD.safetensors`` (small; meant to be
    committed) and reused from there. Checkpoints live in ``RUNS/METHOD`` (default
    ``OUT/runs``); a stopped run continues from its checkpoint. Returns None if the run
    stopped early (``stop_at``).
    """
    import shutil

    from .models import read_metadata

    recipe = recipe_for(method, budget, overrides, task=task)
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


# ----------------------------------------------------------------------------------------
# evaluation (the task-agnostic protocol of tunableconv.evaluation), cached per method
# ----------------------------------------------------------------------------------------
#: the evaluation options a cached result must share to be reused (``results["options"]``)
CACHE_KEYS = ("datasets", "levels", "grid", "seed", "raw", "max_images", "crop")


def cached_evaluation(path: Path, model_file: Path, options: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation stored at ``path`` if it is of the same model file (by SHA-256), in this
    protocol's format and under the same ``options`` (:data:`CACHE_KEYS`), else None. Lets
    ``compare`` evaluate one method at a time, in separate processes or sessions, and assemble
    the table at the end."""
    from .evaluation import FORMAT, read_cached_result

    res = read_cached_result(path, model_file)
    if res is None or res.get("format") != FORMAT:
        return None
    have = res.get("options", {})
    if any(have.get(k) != options.get(k) for k in CACHE_KEYS):
        return None
    return res


def evaluate_method(name: str, model_file: Path, cache: Path, options: dict[str, Any], *, metrics: Sequence[str],
                    data_root: str | None = None, progress: bool = True) -> tuple[dict[str, Any], bool]:
    """``model_file`` evaluated by :func:`tunableconv.evaluation.evaluate` under ``options``
    (raw knobs: no method gets a remapping the others lack), from ``cache`` when it holds the
    same evaluation; returns ``(results, reused)``. The result is written to ``cache``."""
    from .evaluation import evaluate, json_safe
    from .io import atomic_write

    res = cached_evaluation(cache, model_file, options)
    if res is not None:
        return res, True
    res = evaluate(str(model_file), options["datasets"], levels=options["levels"], grid=options["grid"], metrics=metrics,
                   seed=options["seed"], max_images=options["max_images"], crop=options["crop"], raw=options["raw"],
                   data_root=data_root, progress=progress)
    res["model"]["name"] = name
    res = json_safe(res)  # fresh and cached results alike: NaN stored as None
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(cache, (json.dumps(res, indent=1) + "\n").encode())
    return res, False


# ----------------------------------------------------------------------------------------
# the table
# ----------------------------------------------------------------------------------------
def setting_labels(res: dict[str, Any]) -> list[str]:
    """The label of each setting of an evaluation: ``strength=0.5``, ``(0.5, 1)``, ``true levels``, ``fixed``."""
    from .evaluation import _setting_label

    knobs = res["model"]["knob_space"]["knobs"]
    if knobs == []:
        return ["fixed"]
    own_names = len(knobs) == 1 or res["model"].get("conditioned_on") == "condition"
    if own_names:  # a conditioned model's own knobs (or one knob) by name, so they never read as the task's p
        return [_setting_label(s, res["model"]["slider"]) if s.get("true_levels") or s.get("matched") or s["p"] is None
                else ",".join(f"{k['name']}={v:g}" for k, v in zip(knobs, s["p"])) for s in res["settings"]]
    return [_setting_label(s, res["model"]["slider"]) for s in res["settings"]]


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None and v == v]
    return statistics.mean(vals) if vals else None


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    """One method's evaluation averaged over the task's cases (per dataset): each metric per
    setting, and the evenness of each grid line."""
    out: dict[str, Any] = {"labels": setting_labels(res), "p": [s["p"] for s in res["settings"]],
                           "conditioned": res["model"].get("conditioned_on") == "condition",
                           "reference_setting": res.get("reference_setting"), "datasets": {}}
    for label, entry in res["datasets"].items():
        cases = list(entry["cases"].values())
        keys = list(cases[0]["model"])
        n = len(out["labels"])
        metrics = {k: [_mean([c["model"][k][i] for c in cases if k in c["model"]]) for i in range(n)] for k in keys}
        lines = list(cases[0]["evenness"])
        even = {line: _mean([c["evenness"].get(line) for c in cases]) for line in lines}
        # a conditioned rival's evenness along the task's knobs (its matched lines) where it has them
        matched = [v for line, v in even.items() if line.startswith("matched ")]
        out["datasets"][label] = {"metrics": metrics, "evenness": even,
                                  "mean_evenness": _mean(matched if matched else list(even.values()))}
    return out


def fidelity_index(row: dict[str, Any]) -> int:
    """The setting at a method's fidelity end: the task's reference p (or the slider's end) for a
    p-driven model, the true levels for a conditioned one, the only setting of a fixed one."""
    if row["reference_setting"] is not None:
        return int(row["reference_setting"])
    return len(row["labels"]) - 1


def head_to_head(table: dict[str, Any], objectives: Sequence[str] = (), ours: str = "tunable") -> dict[str, dict[str, dict]]:
    """``ours`` minus each other method, per dataset (dB; positive favours ``ours``):

    - ``fidelity_psnr``: PSNR to the ground truth at each method's fidelity end
      (:func:`fidelity_index`; a conditioned rival told the true levels, a fixed network);
    - on the settings both methods share (the same p-knob space): the mean over the settings
      of the PSNR to the ground truth (``mean_psnr``), to the blended target and to the target
      of each objective after the first (the first's is the ground truth);
    - ``evenness``: mean evenness error, negative = ``ours`` more even.
    """
    out: dict[str, dict[str, dict]] = {}
    if ours not in table:
        return out
    a_row = table[ours]
    for method, b_row in table.items():
        if method == ours:
            continue
        shared = [i for i, lab in enumerate(a_row["labels"]) if lab in b_row["labels"]]
        for ds, a in a_row["datasets"].items():
            b = b_row["datasets"][ds]
            ia, ib = fidelity_index(a_row), fidelity_index(b_row)
            d: dict[str, Any] = {"fidelity_psnr": _diff(a["metrics"]["psnr"][ia], b["metrics"]["psnr"][ib])}
            if len(shared) > 1:
                for key in ("psnr", "psnr_blend", *(f"psnr_{o}" for o in objectives[1:])):
                    if key in a["metrics"] and key in b["metrics"]:
                        js = [b_row["labels"].index(a_row["labels"][i]) for i in shared]
                        d[f"mean_{key}"] = _diff(_mean([a["metrics"][key][i] for i in shared]),
                                                 _mean([b["metrics"][key][j] for j in js]))
            ea, eb = a["mean_evenness"], b["mean_evenness"]
            d["evenness"] = None if ea is None or eb is None else ea - eb
            out.setdefault(method, {})[ds] = d
    return out


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _fmt(v: float | None, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def cell_keys(objectives: Sequence[str], metrics: dict[str, list], slider: bool = True) -> tuple[str, str | None]:
    """What a table cell shows: PSNR to the ground truth and, second, for a slider PSNR to the last
    objective's target (the paper's Table 1: the noise-preservation target), else (the cube, a
    simplex of 3+) PSNR to the blended target, what the knobs promise at p."""
    other = f"psnr_{objectives[-1]}" if len(objectives) > 1 else None
    if slider and other in metrics:
        return "psnr", other
    return "psnr", ("psnr_blend" if "psnr_blend" in metrics else None)


def _is_slider(row: dict[str, Any]) -> bool:
    return any("=" in lab for lab in row["labels"])


def table_markdown(table: dict[str, Any], *, objectives: Sequence[str], cost: dict[str, Any], params: dict[str, int],
                   steps: int, task: str, ours: str = "tunable") -> str:
    """The comparison in the paper's layout: per dataset, rows = methods, columns = ``ours``'s knob
    settings (a conditioned rival there told the levels matching each setting, where the task
    defines them) plus ``one setting`` (a fixed network; a conditioned rival told the true levels),
    cells "PSNR to ground truth / to the other target"; conditioned rivals' own knob grids in a
    second table; knob quality (blended target, LPIPS) where measured; head to head; cost."""
    first = next(iter(table.values()))
    datasets = list(first["datasets"])
    head_row = table.get(ours, first)
    cols = [lab for lab in head_row["labels"] if lab not in ("fixed", "true levels")]
    some = head_row["datasets"][datasets[0]]["metrics"]
    k1, k2 = cell_keys(objectives, some, _is_slider(head_row))
    what = "PSNR (dB) to the ground truth" + (f" / to the {'blended' if k2 == 'psnr_blend' else k2[5:]} target" if k2 else "")
    lines = [f"# {task}: every method on the same work", "",
             f"All methods: same backbone size, data, objectives, seed and {steps} gradient steps; raw knobs; "
             f"metrics averaged over the task's evaluation cases. Cells: {what}.", ""]
    for ds in datasets:
        lines += [f"## {ds}", "", "| method | " + " | ".join(cols) + " | one setting | evenness |",
                  "|---|" + "---:|" * (len(cols) + 2)]
        own_grids = []
        for method, row in table.items():
            m = row["datasets"][ds]["metrics"]

            def cell(i: int) -> str:
                return _fmt(m[k1][i]) + (f" / {_fmt(m[k2][i])}" if k2 and k2 in m else "")

            cells = [cell(row["labels"].index(c)) if c in row["labels"] else "—" for c in cols]
            one = "—"
            if row["labels"] == ["fixed"] or row["conditioned"]:
                one = cell(fidelity_index(row)) + (" (true levels)" if row["conditioned"] else "")
            if row["conditioned"]:
                own_grids.append(method)
            ev = row["datasets"][ds]["mean_evenness"]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {one} | {_fmt(ev, 3)} |")
        lines.append("")
        for method in own_grids:
            row = table[method]
            m = row["datasets"][ds]["metrics"]
            own = [i for i, lab in enumerate(row["labels"]) if lab != "true levels" and lab not in cols]
            lines += [f"{method} turned by its own knobs (the degradation levels it is told; {what}):", "",
                      "| " + " | ".join(row["labels"][i] for i in own) + " |", "|" + "---:|" * len(own),
                      "| " + " | ".join(_fmt(m[k1][i]) + (f" / {_fmt(m[k2][i])}" if k2 and k2 in m else "")
                                        for i in own) + " |", ""]
        quality = [(method, row) for method, row in table.items() if "psnr_blend" in row["datasets"][ds]["metrics"]]
        if quality:
            has_lpips = all("lpips_blend" in row["datasets"][ds]["metrics"] for _, row in quality)
            lines += ["Knob quality: PSNR (dB) to the blended target (what the knob promises at p)"
                      + (" / LPIPS to it" if has_lpips else "") + ":", "",
                      "| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
            for method, row in quality:
                m = row["datasets"][ds]["metrics"]
                cells = [(_fmt(m["psnr_blend"][row["labels"].index(c)])
                          + (f" / {_fmt(m['lpips_blend'][row['labels'].index(c)], 4)}" if has_lpips else ""))
                         if c in row["labels"] else "—" for c in cols]
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    h2h = head_to_head(table, objectives, ours)
    if h2h:
        keys = [k for k in ("mean_psnr", "mean_psnr_blend", *(f"mean_psnr_{o}" for o in objectives[1:]))
                if any(k in d for per in h2h.values() for d in per.values())]
        names = {"mean_psnr": "mean vs GT", "mean_psnr_blend": "mean vs blended target",
                 **{f"mean_psnr_{o}": f"mean vs {o} target" for o in objectives}}
        lines += [f"## {ours} minus each method (dB; positive: {ours} better; evenness: negative = {ours} more even)", "",
                  "Means over the knob settings both methods have; the fidelity end: the task's reference p, "
                  "a conditioned rival told the true levels, a fixed network.", "",
                  "| method | dataset | at the fidelity end vs GT | " + " | ".join(names[k] for k in keys) + " | evenness |",
                  "|---|---|---:|" + "---:|" * (len(keys) + 1)]
        for method, per_ds in h2h.items():
            for ds, d in per_ds.items():
                lines.append(f"| {method} | {ds} | {_fmt(d['fidelity_psnr'], sign=True)} | "
                             + " | ".join(_fmt(d.get(k), sign=True) for k in keys) + f" | {_fmt(d['evenness'], 3, sign=True)} |")
        lines.append("")
    lines += ["## Cost", "", "| method | parameters | inference time vs plain backbone |", "|---|---:|---:|"]
    for method in table:
        c = cost.get(method, {})
        lines.append(f"| {method} | {params.get(method, 0):,} | {_fmt(c.get('ratio'))}x |")
    return "\n".join(lines) + "\n"


def plot_table(table: dict[str, Any], path: Path, *, objectives: Sequence[str], ours: str = "tunable") -> None:
    """One panel per dataset: each method's PSNR to the ground truth (solid) and to the other
    target (dotted) at ``ours``'s settings; a fixed network or a conditioned rival told the true
    levels as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = next(iter(table.values()))
    datasets = list(first["datasets"])
    head_row = table.get(ours, first)
    cols = [lab for lab in head_row["labels"] if lab not in ("fixed", "true levels")]
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.5), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        for i, (method, row) in enumerate(table.items()):
            m = row["datasets"][ds]["metrics"]
            k1, k2 = cell_keys(objectives, m, _is_slider(head_row))
            color = f"C{i}"
            if row["labels"] == ["fixed"] or row["conditioned"]:
                tag = " (true levels)" if row["conditioned"] else ""
                ax.axhline(m[k1][fidelity_index(row)], color=color, ls="--", label=f"{method}{tag} vs GT")
                if not any(c in row["labels"] for c in cols):
                    continue
            xs = [j for j, c in enumerate(cols) if c in row["labels"]]
            idx = [row["labels"].index(cols[j]) for j in xs]
            ax.plot(xs, [m[k1][k] for k in idx], "-o", color=color, label=f"{method} vs GT")
            if k2:
                ax.plot(xs, [m[k2][k] for k in idx], ":s", color=color,
                        label=f"{method} vs {'blended' if k2 == 'psnr_blend' else k2[5:]} target")
        ax.set_xticks(range(len(cols)), cols, rotation=30 if len(cols) > 5 else 0, fontsize=8)
        ax.set_title(f"{ds} (mean over the evaluation cases)")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
