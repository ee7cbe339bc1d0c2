r"""Evaluate any model on its task's protocol over its knob space (``tunableconv eval``).

Nothing here knows a task: the model file names its task and stores its knob space; the task
(:mod:`tunableconv.tasks`) says how a clean test image is degraded at each evaluation case
(:meth:`~tunableconv.tasks.Task.degrade_case`), which target each objective has and what the
knob promises at p (:meth:`~tunableconv.tasks.Task.blended_target`).

Protocol (recorded under ``results["conventions"]``):

- **Settings.** A model with a slider on a 2-knob simplex is run along the slider at the
  grid values s (through its stored calibration unless ``raw``); any other knob space on its
  own grid (:meth:`~tunableconv.knobs.KnobSpace.grid`: the cube's product grid, the
  simplex's points). A model without knobs runs once.
- **Degradation.** Image ``index`` of dataset ``label`` at case c gets its random draws from
  a generator seeded by ``(seed, label, index, c)`` (:func:`case_seed`): every model, run and
  process sees the same degraded images. (For a case with one level the seed equals that of
  the denoising protocol of :mod:`tunableconv.tasks.denoise_protocol`, so the noisy images are the same.)
- **Outputs** are clamped to [0, 1] and quantised to 8 bits before every metric; a task may
  measure its own way (``Task.metric_options``, recorded as ``results["metric_options"]``:
  super-resolution takes PSNR / SSIM on Y with a border of the scale factor).
- **Metrics**, per image, then averaged over the images: against the ground truth the
  requested ``metrics`` (``psnr``, ``ssim``, ``lpips``, ``dists``, ``niqe``); against each objective's
  target PSNR (``psnr_<objective>``); against the blended target Σ c_i t_i where the task
  defines one (``psnr_blend``, and ``lpips_blend`` when LPIPS is requested).
- **Task measures**: whatever the task's :meth:`~tunableconv.tasks.Task.output_measures` adds
  per output (e.g. residual noise and edge sharpness for joint deblurring and denoising).
- **Knob effects** (the cube): per knob and metric, the mean over the grid of the metric with
  the knob at 1 minus at 0 with the other knobs the same (:func:`knob_effects`).
- **Evenness** along each 1-D line of the grid — the slider; on the cube each knob's axis
  with the other knobs at their defaults; on a simplex of 3+ knobs each edge — per image
  max_s |d(s) − s| with d(s) = ‖o_s − o_0‖ / ‖o_1 − o_0‖, averaged over images.
- **Conditioned models** (``conditioned_on = "condition"``, e.g. CResMD as published): their
  knobs are the degradation levels they assume; they run on their own knob grid (the user
  turning them), then — where the task defines :meth:`~tunableconv.tasks.Task.matched_condition`
  — at the task's knob settings told the levels that match each p (``"matched": true``; denoising:
  the noise level s·σ at strength s), and last at each sample's true levels (``"true_levels":
  true``), which is their fidelity end. Only their matched settings get a blended target.
- **Reference** (``reference=``): a second model on the same degraded images, run once (or at
  the task's reference p); the gap is the model at the task's reference p (the fidelity end)
  minus the reference.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .errors import InputError
from .knobs import DEFAULT_GRID, KnobSpace

FORMAT = "tunableconv-eval/2"
METRICS = ("psnr", "ssim", "lpips", "dists", "niqe")

CONVENTIONS = {
    "settings": "along the slider (2-knob simplex with a slider) at s, calibrated unless raw; else the knob space's grid",
    "degradation": "the task's degrade_case, random draws seeded by (seed, dataset label, image index, case)",
    "outputs": "clamped to [0, 1] and quantised to 8 bits before every metric",
    "metrics": "mean over images of per-image values; vs ground truth, vs each objective's target (psnr_<name>), "
               "vs the blended target (psnr_blend, lpips_blend)",
    "evenness": "per line of the grid, per image max_s |d(s) - s| with d(s) = ||o_s - o_0|| / ||o_1 - o_0||, mean over images",
    "gap": "model at the task's reference p (fidelity end) minus the reference model",
}


def case_seed(seed: int, dataset: str, index: int, case: "EvalCase") -> int:
    """The generator seed of image ``index`` of ``dataset`` at ``case`` (a BLAKE2b hash of the
    seed, the dataset, the index and the case's ``seed_key``, by default its sorted levels)."""
    key_levels = case.seed_key
    if key_levels is None:
        key_levels = "|".join(f"{k}={float(v)!r}" for k, v in sorted(case.levels.items()))
    key = f"tunableconv-eval|{int(seed)}|{dataset}|{int(index)}|{key_levels}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)


def task_of(info) -> Any:
    """The task object of a model file (from its stored recipe, else the task's default recipe)."""
    from .tasks import build_task, get_task
    from .train import Recipe, get_recipe

    extra = info.info or {}
    name = extra.get("task")
    if not name:
        raise InputError(f"{info.path}: the model file names no task (info['task']); eval needs one")
    cls = get_task(str(name))
    stored = extra.get("recipe")
    if isinstance(stored, dict):
        try:
            recipe = Recipe.from_dict(stored)
        except InputError as exc:
            raise InputError(f"{info.path}: its stored recipe does not load ({exc})") from None
    else:
        budget = next(iter(cls.budgets.values()), None)
        if budget is None:
            raise InputError(f"{info.path}: no stored recipe and the {name} task has no default recipe")
        recipe = get_recipe(budget)
    return build_task(recipe)


def check_run_options(threads: int | None, plot: bool) -> None:
    """The command-line options both evaluation commands share: set the torch threads, and
    make sure matplotlib is there before hours of evaluation when pictures are wanted."""
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    if plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("the pictures need matplotlib: pip install 'tunableconv[eval]', or pass --no-plot") from None


def parse_levels(text: str, what: str = "--levels") -> list[float] | list[str]:
    """The evaluation cases a user typed: comma-separated numbers for a task with one level, or
    ``;``-separated cases of named levels for a task with several (each task's own example:
    :func:`tunableconv.tasks.case_examples`); the task parses and checks them
    (:meth:`~tunableconv.tasks.Task.evaluation_cases`)."""
    if "=" not in text:
        return parse_numbers(text, what)
    cases = [c.strip() for c in text.split(";")]
    if any(not c for c in cases):
        from .tasks import case_examples

        raise InputError(f"{what}: cases are separated by ';' (one case of each task: {case_examples()}), got {text!r}")
    return cases


def parse_metrics(text: str | Sequence[str]) -> list[str]:
    names = [m.strip() for m in text.split(",")] if isinstance(text, str) else [str(m).strip() for m in text]
    bad = [m for m in names if m not in METRICS]
    if not names or bad:
        raise InputError(f"unknown metric {bad[0] if bad else text!r}; metrics: {', '.join(METRICS)}")
    return list(dict.fromkeys(names))


class _Model:
    """A loaded model, its knob space and its settings along the grid."""

    def __init__(self, model, grid: Sequence[float], raw: bool, device: str, only_p: Sequence[float] | None = None) -> None:
        from .restore import Restorer
        from .tasks import conditioned_on

        self.restorer = model if isinstance(model, Restorer) else Restorer.load(str(model), device=device)
        info = self.restorer.info
        self.name = Path(info.path).stem if info.path else str(model)
        if isinstance(model, str) and not model.endswith(".safetensors"):
            self.name = model
        self.space = KnobSpace.from_model_info(info)
        slider = self.space.main_slider
        self.slider = None
        self.s: list[float | None]
        #: a model conditioned on the degradation (its knobs are the levels it assumes) also runs
        #: at each sample's true levels: the setting at this index (the last), p None
        self.conditioned = conditioned_on(self.restorer.model) == "condition"
        self.true_index: int | None = None
        if self.space.num_params == 0:
            self.s, self.p = [None], [None]
        elif self.conditioned and only_p is not None:
            self.s, self.p, self.true_index = [None], [None], 0
        elif only_p is not None:
            self.s, self.p = [None], [self.space.resolve(list(only_p))]
        elif slider is not None and self.space.domain == "simplex" and self.space.num_params == 2:
            self.slider = slider.name
            self.s = [float(v) for v in grid]
            self.p = [torch.tensor(slider.p(v, calibrated=not raw), dtype=torch.float32) for v in self.s]
        else:
            ps = self.space.grid(grid)
            self.s = [None] * len(ps)
            self.p = [row for row in ps]
        #: indices of the settings that tell a conditioned model the levels matching the task's p
        #: (:meth:`~tunableconv.tasks.Task.matched_condition`), and the task that maps them
        self.matched: list[int] = []
        self.task = None
        if self.conditioned and self.true_index is None:
            self.s, self.p, self.true_index = [*self.s, None], [*self.p, None], len(self.p)
        self.calibrated = bool(self.slider and not raw and slider is not None and slider.calibration is not None)

    def add_matched(self, task, grid: Sequence[float]) -> None:
        """For a conditioned model: settings at the task's own knob grid (the slider's values, or
        the p grid), each run with the levels that match p (:meth:`Task.matched_condition` of the
        sample's true levels), inserted before the true-levels setting. Nothing when the task
        defines no matching."""
        from .tasks import RunnerFacts

        space = task.p_knob_space(RunnerFacts())
        if space.num_params == 0 or task.matched_condition(torch.full((space.num_params,), 0.5),
                                                           torch.zeros(len(task.condition_names))) is None:
            return
        slider = space.main_slider
        if slider is not None and space.domain == "simplex" and space.num_params == 2:
            s = [float(v) for v in grid]
            ps = [torch.tensor(slider.p(v, calibrated=False), dtype=torch.float32) for v in s]
        else:
            ps = list(space.grid(grid))
            s = [None] * len(ps)
        k0 = self.true_index
        self.matched = list(range(k0, k0 + len(ps)))
        self.s, self.p = [*self.s[:k0], *s, None], [*self.p[:k0], *ps, None]
        self.true_index = len(self.p) - 1
        self.task = task
        self.slider = self.slider or (slider.name if s and s[0] is not None else None)

    def control(self, k: int, condition: Tensor | None) -> Tensor | None:
        """What the model gets at setting ``k``: p, the true levels, or the levels matching p."""
        if k == self.true_index:
            return condition
        if k in self.matched:
            return self.task.matched_condition(self.p[k], condition)
        return self.p[k]

    def outputs(self, x: Tensor, tile: int | None, condition: Tensor | None = None) -> list[Tensor]:
        """The 8-bit outputs at every setting (``condition``: the sample's true levels ``(K,)``)."""
        from .metrics import quantize_8bit

        return [quantize_8bit(self.restorer(x, self.control(k, condition), tile=tile)) for k in range(len(self.p))]

    def describe(self) -> dict[str, Any]:
        info = self.restorer.info
        return {"name": self.name, "file": display_path(info.path), "sha256": _sha256(info.path), "architecture": info.architecture,
                "arguments": info.arguments, "knob_space": self.space.to_dict(), "slider": self.slider,
                "calibrated": self.calibrated, "task": (info.info or {}).get("task"),
                "conditioned_on": "condition" if self.conditioned else "p"}


def display_path(path: str | None) -> str | None:
    """A path relative to the working folder (results carry no machine paths), e.g.
    ``src/tunableconv/zoo/denoise.safetensors`` or ``../shared/data/test/cbsd68``."""
    if not path:
        return path
    try:
        return os.path.relpath(Path(path).resolve(), Path.cwd().resolve())
    except ValueError:  # another drive on Windows
        return str(path)


def _sha256(path: str | None) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def grid_lines(space: KnobSpace, ps: Sequence[Tensor | None], s: Sequence[float | None]) -> list[tuple[str, list[int], list[float]]]:
    """The 1-D lines of the settings along which evenness is measured: ``(name, indices, positions)``.

    The slider when the settings run along one; on the cube each knob's axis with the other
    knobs at their defaults; on a simplex of 3+ knobs each edge i–j (p_i from 0 to 1).
    """
    if len(ps) < 2 or ps[0] is None:
        return []
    if s[0] is not None:
        return [("slider", list(range(len(s))), [float(v) for v in s])]
    P = torch.stack([p for p in ps if p is not None])
    lines = []
    if space.domain == "cube":
        default = torch.tensor(space.default or [1.0] * space.num_params)
        for i, name in enumerate(space.names):
            others = [j for j in range(space.num_params) if j != i]
            idx = [k for k in range(len(P)) if torch.allclose(P[k, others], default[others])]
            idx.sort(key=lambda k: float(P[k, i]))
            if len(idx) >= 2:
                lines.append((name, idx, [float(P[k, i]) for k in idx]))
    else:
        n = space.num_params
        for i in range(n):
            for j in range(i + 1, n):
                rest = [k for k in range(n) if k not in (i, j)]
                idx = [k for k in range(len(P)) if not rest or float(P[k, rest].abs().sum()) < 1e-6]
                idx.sort(key=lambda k: float(P[k, i]))
                if len(idx) >= 2:
                    lines.append((f"{space.names[j]}-{space.names[i]}", idx, [float(P[k, i]) for k in idx]))
    return lines


def evaluate(
    model,
    datasets: str | Sequence[str] = ("cbsd68",),
    *,
    levels: Sequence[float] | None = None,
    grid: Sequence[float] = DEFAULT_GRID,
    metrics: Sequence[str] = ("psnr", "ssim"),
    reference=None,
    seed: int = 0,
    max_images: int | None = None,
    crop: int | None = None,
    raw: bool = False,
    data_root: str | os.PathLike | None = None,
    device: str = "cpu",
    tile: int | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (a shipped name, a file or a Restorer) on its task's protocol.

    Args:
        datasets: test sets (names under the data root or folders), list or comma-separated.
        levels: the task's degradation levels to evaluate (e.g. the noise σ of denoising);
            None: the task's defaults (:meth:`~tunableconv.tasks.Task.evaluation_cases`).
        grid: knob (or slider) values in [0, 1].
        metrics: against the ground truth (and, for LPIPS, the blended target).

    Returns:
        A JSON-ready dict (NaN as None via :func:`json_safe`)::

            {"format", "command", "model": {...}, "reference": {...} | None, "task",
             "settings": [{"s", "p"}...], "conventions",
             "datasets": {label: {"num_images", "images", "cases": {case label: {
                 "model": {metric: [per setting]}, "evenness": {line: value},
                 "reference": {metric: value} | None, "gap": {metric: value} | None}}}},
             "environment", "wall_seconds"}
    """
    from tqdm.auto import tqdm

    from . import __version__
    from . import metrics as M
    from .data import ImageFolderEval

    t0 = time.perf_counter()
    metric_names = parse_metrics(metrics)
    names = [d.strip() for d in datasets.split(",")] if isinstance(datasets, str) else [str(d).strip() for d in datasets]
    if not names or any(not n for n in names):
        raise InputError(f"datasets must be names or folders, got {datasets!r}")
    grid_values = [float(v) for v in grid]
    if not grid_values or any(not (math.isfinite(v) and 0 <= v <= 1) for v in grid_values):
        raise InputError(f"p grid values must be numbers in [0, 1], got {list(grid)}")
    if max_images is not None and int(max_images) < 1:
        raise InputError(f"max images must be at least 1, got {max_images}")
    if crop is not None and int(crop) < 32:
        raise InputError(f"crop must be at least 32 pixels, got {crop}")
    from .tiling import check_tile

    tile = check_tile(tile, overlap_option=None)  # None or 0: no tiling (the one meaning, tiling.check_tile)
    sets = {}
    for spec in names:
        ds = ImageFolderEval(spec, max_images=max_images, crop=crop, cache=False, data_root=data_root)
        label = Path(spec).resolve().name if Path(spec).is_dir() else spec.strip("/")
        if label in sets:
            raise InputError(f"dataset {label!r} given twice")
        sets[label] = ds

    main = _Model(model, grid_values, raw, device)
    task = task_of(main.restorer.info)
    cases = task.evaluation_cases(list(levels) if levels is not None else None)
    ref = None
    ref_p = task.reference_p() if main.space.num_params else None
    if reference is not None:
        ref = _Model(reference, grid_values, raw, device, only_p=None)
        if ref.space.num_params:
            ref = _Model(reference, grid_values, raw, device, only_p=task.reference_p())
    objectives = list(task.objective_names)
    same_space = main.space.domain == task.domain and main.space.num_params == task.num_params
    blend_task = task if same_space and not main.conditioned else None  # a condition is no mix of targets
    if main.conditioned:
        from .tasks import RunnerFacts

        main.add_matched(task, grid_values)
    n_grid = len(main.p) if main.true_index is None else (main.matched or [main.true_index])[0]
    lines = grid_lines(main.space, main.p[:n_grid], main.s[:n_grid])
    if main.matched:  # the matched settings' own lines (offset into the settings), named "matched ..."
        k0 = main.matched[0]
        lines += [(f"matched {name}", [k0 + i for i in idx], pos) for name, idx, pos in
                  grid_lines(task.p_knob_space(RunnerFacts()), main.p[k0:main.true_index], main.s[k0:main.true_index])]
    main_ref_index = main.true_index  # a conditioned model's fidelity end: told the true levels
    if ref_p is not None and main_ref_index is None:
        for k, p in enumerate(main.p):
            if p is not None and torch.allclose(p, torch.tensor(ref_p, dtype=torch.float32), atol=1e-6):
                main_ref_index = k
        if main_ref_index is None and main.slider:
            main_ref_index = len(main.p) - 1  # the slider's end (s = 1)

    acc: dict[tuple[str, str, str], dict[str, list]] = {}
    total = sum(len(ds) for ds in sets.values()) * len(cases)
    bar = tqdm(total=total, desc="eval", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for label, ds in sets.items():
            for index in range(len(ds)):
                clean = ds[index]["clean"]
                for case in cases:
                    g = torch.Generator().manual_seed(case_seed(seed, label, index, case))
                    sample = task.degrade_case(clean, case, g)
                    batched = _batched(sample)
                    for role, runner in (("model", main), ("reference", ref)):
                        if runner is None:
                            continue
                        outs = runner.outputs(sample.input, tile, sample.condition)
                        a = acc.setdefault((label, case.label, role), {})
                        for k, (o, p) in enumerate(zip(outs, runner.p)):
                            blend = task if k in runner.matched else blend_task  # matched: the blend at the task's p
                            row = _metrics(M, o, sample, batched, blend, p, objectives, metric_names, task)
                            for key, v in row.items():
                                a.setdefault(key, [[] for _ in outs])[k].append(v)
                        if role == "model":
                            for line, idx, pos in lines:
                                ev = M.evenness([outs[k] for k in idx], pos)
                                a.setdefault(f"evenness:{line}", []).append(float(ev["error"]))
                    bar.update(1)
    finally:
        bar.close()

    out_sets: dict[str, Any] = {}
    for label, ds in sets.items():
        entry: dict[str, Any] = {"num_images": len(ds), "images": [p.stem for p in ds.paths], "cases": {}}
        for case in cases:
            a = acc[(label, case.label, "model")]
            mdl = {k: [_mean(v) for v in vals] for k, vals in a.items() if not k.startswith("evenness:")}
            even = {k.split(":", 1)[1]: _mean(v) for k, v in a.items() if k.startswith("evenness:")}
            r = g_ = None
            if ref is not None:
                ra = acc[(label, case.label, "reference")]
                r = {k: _mean(vals[0]) for k, vals in ra.items()}
                if main_ref_index is not None or not main.space.num_params:
                    k0 = main_ref_index if main_ref_index is not None else 0
                    g_ = {k: mdl[k][k0] - r[k] for k in r if k in mdl and mdl[k][k0] is not None}
            effects = knob_effects(main.space, main.p[:n_grid], {k: v[:n_grid] for k, v in mdl.items()})
            entry["cases"][case.label] = {"levels": case.levels, "model": mdl, "evenness": even, "effects": effects,
                                          "reference": r, "gap": g_}
        out_sets[label] = entry

    return {
        "format": FORMAT,
        "command": command,
        "task": task.name,
        "model": main.describe(),
        "reference": ref.describe() if ref is not None else None,
        "settings": [{"s": s, "p": None if p is None else [round(float(v), 6) for v in p],
                      **({"true_levels": True} if k == main.true_index else {}),
                      **({"matched": True} if k in main.matched else {})}
                     for k, (s, p) in enumerate(zip(main.s, main.p))],
        "reference_setting": main_ref_index,
        "objectives": objectives,
        "metrics": metric_names,
        "options": {"datasets": names, "levels": list(levels) if levels is not None else None, "grid": grid_values,
                    "seed": int(seed), "raw": bool(raw), "max_images": max_images, "crop": crop, "tile": tile},
        "conventions": CONVENTIONS,
        "metric_options": json_safe(dict(task.metric_options)),  # the task's measuring convention (SR: Y, border)
        "datasets": out_sets,
        "environment": {"torch": torch.__version__, "tunableconv": __version__, "num_threads": torch.get_num_threads(),
                        "device": str(device)},
        "wall_seconds": time.perf_counter() - t0,
    }


def _batched(sample):
    """The sample with a leading batch dimension of 1 (what the task's blend takes)."""
    from .tasks import Sample

    return Sample(sample.input.unsqueeze(0), sample.clean.unsqueeze(0),
                  {k: v.unsqueeze(0) for k, v in sample.targets.items()}, sample.condition.unsqueeze(0))


def _metrics(M, o: Tensor, sample, batched, task, p: Tensor | None, objectives: list[str], names: list[str],
             measures=None) -> dict[str, float]:
    clean = sample.clean
    row: dict[str, float] = {}
    opts = getattr(measures, "metric_options", {}) if measures is not None else {}
    if measures is not None:
        row.update(measures.output_measures(o, sample))
    if "psnr" in names:
        row["psnr"] = float(M.psnr(o, clean, **opts.get("psnr", {})))
    if "ssim" in names:
        row["ssim"] = float(M.ssim(o, clean, **opts.get("ssim", {})))
    if "lpips" in names:
        row["lpips"] = float(M.lpips(o, clean, **opts.get("lpips", {})))
    if "dists" in names:
        row["dists"] = float(M.dists(o, clean, **opts.get("dists", {})))
    if "niqe" in names:
        row["niqe"] = float(M.niqe(o, **opts.get("niqe", {})))
    for name in objectives:
        t = sample.targets.get(name)
        if t is not None:
            row[f"psnr_{name}"] = float(M.psnr(o, t, **opts.get("psnr", {})))
    if p is not None and task is not None:
        blend = task.blended_target(batched, p)
        if blend is not None:
            row["psnr_blend"] = float(M.psnr(o, blend[0]))
            if "lpips" in names:
                row["lpips_blend"] = float(M.lpips(o, blend[0].clamp(0, 1)))
    return row


def knob_effects(space: KnobSpace, ps: Sequence[Tensor | None], metrics: dict[str, list]) -> dict[str, dict[str, float]]:
    """On the cube: for each knob and metric, the mean over the grid of (metric with the knob at 1)
    minus (the knob at 0, every other knob the same): how much each knob moves each property.
    Independent knobs move different properties. Empty for other knob spaces."""
    if space.domain != "cube" or not ps or any(p is None for p in ps):
        return {}
    P = torch.stack(list(ps))
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(space.names):
        others = [j for j in range(P.shape[1]) if j != i]
        pairs = [(a, b) for a in range(len(P)) for b in range(len(P))
                 if float(P[a, i]) == 0.0 and float(P[b, i]) == 1.0 and torch.equal(P[a, others], P[b, others])]
        if not pairs:
            continue
        for key, vals in metrics.items():
            diffs = [vals[b] - vals[a] for a, b in pairs if vals[a] is not None and vals[b] is not None]
            if diffs:
                out.setdefault(name, {})[key] = float(sum(diffs) / len(diffs))
    return out


def _mean(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(sum(vals) / len(vals)) if vals else None


def json_safe(obj: Any) -> Any:
    """NaN/Inf -> None, tuples -> lists, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _setting_label(setting: dict, slider: str | None) -> str:
    if setting.get("true_levels"):
        return "true levels"
    if setting["s"] is not None:
        return f"{slider or 's'}={setting['s']:g}"
    if setting["p"] is None:
        return "—"
    return "(" + ", ".join(f"{v:g}" for v in setting["p"]) + ")"


def results_markdown(res: dict[str, Any]) -> str:
    """The report: per dataset and case a table, rows = settings, columns = metrics; evenness; gap."""
    m = res["model"]
    lines = [f"# {res['task']} evaluation: {m['name']}", "",
             f"- model: `{m['file']}` ({m['architecture']}, knobs: {', '.join(k['name'] for k in m['knob_space']['knobs']) or 'none'}, "
             f"domain {m['knob_space']['domain']})",
             f"- settings: {'slider ' + m['slider'] + (' (calibrated)' if m['calibrated'] else ' (raw)') if m['slider'] else 'the knob grid'}",
             f"- reference: `{res['reference']['file']}`" if res["reference"] else "- reference: none",
             f"- command: `{res['command']}`" if res.get("command") else "",
             f"- {res['wall_seconds']:.1f} s, torch {res['environment']['torch']}, {res['environment']['num_threads']} threads", ""]
    paper = _paper_layout(res)
    if paper:
        lines += paper
    for label, entry in res["datasets"].items():
        for case, c in entry["cases"].items():
            keys = list(c["model"])
            lines += [f"## {label} ({entry['num_images']} images), {case}", "",
                      "| setting | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
            for k, setting in enumerate(res["settings"]):
                cells = [_fmt(c["model"][key][k]) for key in keys]
                lines.append(f"| {_setting_label(setting, m['slider'])} | " + " | ".join(cells) + " |")
            if c["reference"]:
                lines.append("| reference | " + " | ".join(_fmt(c["reference"].get(key)) for key in keys) + " |")
            lines.append("")
            if c["evenness"]:
                lines.append("Evenness error (0 = even): " + ", ".join(f"{k} {_fmt(v, 3)}" for k, v in c["evenness"].items()))
                lines.append("")
            if c.get("effects"):
                metrics = list(next(iter(c["effects"].values())))
                lines += ["Knob effects (the metric with the knob at 1 minus at 0, the other knobs the same; mean over the grid):",
                          "", "| knob | " + " | ".join(metrics) + " |", "|---|" + "---:|" * len(metrics)]
                lines += [f"| {knob} | " + " | ".join(_fmt(e.get(k), sign=True) for k in metrics) + " |"
                          for knob, e in c["effects"].items()]
                lines.append("")
            if c["gap"]:
                lines.append("Gap to the reference (model at the fidelity end minus reference): "
                             + ", ".join(f"{k} {_fmt(v, 3, sign=True)}" for k, v in c["gap"].items()))
                lines.append("")
    return "\n".join(x for x in lines if x is not None) + "\n"


def _paper_layout(res: dict[str, Any]) -> list[str]:
    """The paper's Table-1 layout for a slider: rows = dataset x case, columns = slider values,
    cells "PSNR to the ground truth / PSNR to the last objective's target", plus the reference."""
    slider = res["model"]["slider"]
    objectives = res.get("objectives") or []
    if not slider or len(objectives) < 2:
        return []
    other = f"psnr_{objectives[-1]}"
    heads = [_setting_label(s, slider) for s in res["settings"]]
    has_ref = res["reference"] is not None
    lines = [f"## PSNR (dB) to the ground truth / to the {objectives[-1]} target", "",
             "| dataset | case | " + " | ".join(heads) + (" | reference |" if has_ref else " |"),
             "|---|---|" + "---:|" * (len(heads) + int(has_ref))]
    for label, entry in res["datasets"].items():
        for i, (case, c) in enumerate(entry["cases"].items()):
            m = c["model"]
            if "psnr" not in m or other not in m:
                return []
            cells = [f"{_fmt(a)} / {_fmt(b)}" for a, b in zip(m["psnr"], m[other])]
            if has_ref:
                r = c["reference"] or {}
                cells.append(f"{_fmt(r.get('psnr'))} / {_fmt(r.get(other))}")
            lines.append(f"| {label if i == 0 else ''} | {case} | " + " | ".join(cells) + " |")
    return lines + [""]


def _fmt(v, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "—"
    if abs(v) < 1 and digits == 2 and not sign:
        digits = 4  # SSIM, LPIPS
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def write_report(res: dict[str, Any], out: str | os.PathLike, *, plot: bool = True) -> dict[str, Path]:
    """``results.json``, ``results.md`` and, with ``plot``, one picture per dataset and case."""
    from .io import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "md": out / "results.md"}
    atomic_write(paths["json"], (json.dumps(json_safe(res), indent=1) + "\n").encode())
    atomic_write(paths["md"], results_markdown(res).encode())
    keep = [k for k, st in enumerate(res["settings"]) if not st.get("true_levels")]  # the knob grid only
    ps = [res["settings"][k]["p"] for k in keep]
    if plot and ps and ps[0] is not None and len(ps) > 1:
        from .plots import plot_knob_space

        space = res["model"]["knob_space"]
        names = [k["name"] for k in space["knobs"]]
        slider = res["model"]["slider"]
        for label, entry in res["datasets"].items():
            for case, c in entry["cases"].items():
                values = {k: [v[i] for i in keep] for k, v in c["model"].items()}
                values = {k: v for k, v in values.items() if all(x is not None for x in v)}
                grid = [[res["settings"][k]["s"]] for k in keep] if slider else ps
                domain = "simplex" if slider else space["domain"]
                tag = "".join(ch if ch.isalnum() else "_" for ch in f"{label}_{case}")
                paths[f"plot:{label}:{case}"] = plot_knob_space(
                    domain, grid, values, out / f"knobs_{tag}.png",
                    knob_names=[slider] if slider else names, title=f"{res['model']['name']} — {label}, {case}")
    return paths


# ----------------------------------------------------------------------------------------
# generic helpers (numbers typed on a command line, cached results)
# ----------------------------------------------------------------------------------------
def parse_numbers(text: str | Sequence[float], what: str) -> list[float]:
    """'15,25,50' (or a sequence) -> [15.0, 25.0, 50.0]; InputError if not finite numbers."""
    if isinstance(text, str):
        parts = [t.strip() for t in text.split(",")]
        if not text.strip() or any(not t for t in parts):
            raise InputError(f"{what} must be comma-separated numbers, got {text!r}")
        try:
            values = [float(t) for t in parts]
        except ValueError:
            raise InputError(f"{what} must be comma-separated numbers, got {text!r}") from None
    else:
        try:
            values = [float(v) for v in text]
        except (TypeError, ValueError):
            raise InputError(f"{what} must be numbers, got {text!r}") from None
        if not values:
            raise InputError(f"{what} needs at least one value")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{what} must be finite numbers, got {text!r}")
    return values


def read_cached_result(path: Path, model_file: Path) -> dict[str, Any] | None:
    """The JSON result stored at ``path`` if it reads and is of ``model_file`` (by SHA-256; a
    model file that no longer exists skips the check), else None. Both evaluation protocols'
    caches (``compare`` and ``scripts/ablation.py``) start here."""
    if not path.is_file():
        return None
    try:
        res = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(res, dict):
        return None
    if Path(model_file).is_file() and res.get("model", {}).get("sha256") != _sha256(str(model_file)):
        return None
    return res
