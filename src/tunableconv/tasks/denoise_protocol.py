r"""The frozen denoising protocol: PSNR/SSIM of a denoiser along its strength slider, evenness.

Kept, unchanged, so that old results stay reproducible: ``scripts/ablation.py`` evaluates its
variants with it (``python -m tunableconv.tasks.denoise_protocol``, one process per variant)
and its cached protocol evaluations (hours of CPU, :func:`cached_protocol_evaluation`) are in
its format, as are the tables the previous ``compare`` wrote. New evaluations use the
task-agnostic :mod:`tunableconv.evaluation` (``tunableconv eval``, today's ``compare``), which
gives the same numbers for denoising (same noisy images) and more (blended target, LPIPS).

:func:`evaluate` runs a (tunable or plain) denoising model, and optionally a reference model,
on the images of one or more test sets with additive Gaussian noise of each sigma, and
returns a plain dict (JSON-ready after :func:`json_safe`). :func:`write_report` writes it as
``results.json``, ``results.md`` (tables in the layout of the paper's Table 1) and
``psnr_vs_p.png``. The command line is ``python -m tunableconv.tasks.denoise_protocol``.

Conventions (recorded under ``results["conventions"]``):

- **Noise.** ``noisy = clean + sigma/255 · n``, n ~ N(0, 1) per pixel and channel, float32,
  not clipped (as in training). n is drawn from a generator seeded by
  ``(seed, dataset label, image index, sigma)`` (:func:`noise_seed`), so every model, every
  run and every process sees the same noisy images whatever else is evaluated. The dataset
  label is the name as given (``"cbsd68"``) or, for a folder path, the folder's name, so a
  test set gets the same noise whether it is named or given as a path.
- **Strength.** A tunable model is run at each slider value s of the grid. By default the
  slider goes through the model's stored calibration when it has one (see
  :meth:`tunableconv.restore.Restorer.params`); with ``raw=True`` (``--raw``)
  p = (s, 1 − s) directly. Models without knobs are run once (no grid).
- **Outputs** are clamped to [0, 1] and quantised to 8 bits (``round(255·x)/255``) before
  every metric: the usual convention, the values one gets after saving them as 8-bit images.
- **Metrics**, per image, then averaged over the images (mean of per-image values):
  PSNR against the ground truth (``psnr_gt``), PSNR against the noise-preservation target
  ``clean + beta·(noisy − clean)`` (``psnr_target``; beta from the model file's
  ``info["beta"]``, default 0.9; the target is the training target, neither clipped nor
  quantised) and SSIM against the ground truth (``ssim_gt``, Gaussian window, as
  :func:`tunableconv.metrics.ssim`). All on RGB, data range 1, no border crop.
- **Evenness** of a tunable model, per image: d(s) = ||o_s − o_0|| / ||o_1 − o_0|| over the
  grid (endpoints = the grid's first and last values) and the error max_s |d(s) − s|
  (:func:`tunableconv.metrics.evenness`), averaged over images; ``evenness_d`` is the mean
  d(s). 0 is a perfectly even slider. NaN (``null`` in JSON) if the knob does nothing on
  some image.
- **Reference** (``reference=``): a second model on the same noisy images. A plain reference
  is run once, a tunable one at full strength s = 1 only. The gap is the model at the
  largest grid value (normally s = 1) minus the reference: positive = the tunable model is
  better.
"""

from __future__ import annotations

import dataclasses
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

from ..errors import InputError
from ..evaluation import parse_numbers, read_cached_result

__all__ = [
    "FORMAT",
    "DEFAULT_GRID",
    "DEFAULT_SIGMAS",
    "evaluate",
    "noise_seed",
    "add_noise",
    "check_sigmas",
    "check_grid",
    "json_safe",
    "results_markdown",
    "plot_psnr_vs_p",
    "write_report",
]

FORMAT = "tunableconv-eval/1"
DEFAULT_SIGMAS = (15.0, 25.0, 50.0)
DEFAULT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_BETA = 0.9

CONVENTIONS = {
    "noise": "noisy = clean + sigma/255 * N(0, 1), float32, not clipped; generator seeded by "
             "(seed, dataset label, image index, sigma)",
    "strength": "p = (s, 1 - s); s goes through the model's calibration unless raw",
    "outputs": "clamped to [0, 1] and quantised to 8 bits before every metric",
    "psnr_gt": "PSNR (dB, RGB, data range 1) against the ground truth, mean over images",
    "psnr_target": "PSNR against clean + beta*(noisy - clean) (unclipped), mean over images",
    "ssim_gt": "SSIM (11x11 Gaussian window, sigma 1.5, RGB) against the ground truth, mean over images",
    "evenness": "per image max_s |d(s) - s| with d(s) = ||o_s - o_0|| / ||o_1 - o_0||, mean over images",
    "gap": "model at the largest grid value (normally s = 1) minus the reference",
}


# ----------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------
def check_sigmas(sigmas: str | Sequence[float]) -> list[float]:
    """Noise levels on the 0..255 scale: finite, >= 0, duplicates removed, order kept."""
    values = parse_numbers(sigmas, "sigma")
    bad = [v for v in values if v < 0]
    if bad:
        raise InputError(f"sigma must be >= 0 (on the 0..255 scale), got {bad[0]:g}")
    return list(dict.fromkeys(values))


def check_grid(grid: str | Sequence[float]) -> list[float]:
    """Slider values: finite, in [0, 1]; sorted, duplicates removed."""
    values = parse_numbers(grid, "p grid")
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise InputError(f"p grid values must be in [0, 1], got {bad[0]:g}")
    return sorted(set(values))


def _dataset_label(spec: str) -> str:
    p = Path(spec)
    if p.is_dir():
        return p.resolve().name
    return spec.strip("/")


def noise_seed(seed: int, dataset: str, index: int, sigma: float) -> int:
    """The generator seed of the noise of image ``index`` of ``dataset`` at ``sigma``.

    A hash (BLAKE2b) of the four values, so it does not depend on the order of evaluation,
    on the other datasets or sigmas of a run, or on Python's hash randomisation."""
    key = f"tunableconv-eval|{int(seed)}|{dataset}|{int(index)}|{float(sigma)!r}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") & (2**63 - 1)


def add_noise(clean: Tensor, sigma: float, seed: int, dataset: str, index: int) -> Tensor:
    """``clean + sigma/255 · N(0, 1)`` (float32, CPU generator, not clipped) with the noise
    of :func:`noise_seed` ``(seed, dataset, index, sigma)``. ``clean`` is ``(3, H, W)``."""
    g = torch.Generator().manual_seed(noise_seed(seed, dataset, index, sigma))
    noise = torch.randn(tuple(clean.shape), generator=g, dtype=torch.float32)
    return clean.float().cpu() + (float(sigma) / 255.0) * noise


# ----------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------
def _file_sha256(path: str | None) -> str | None:
    if not path or not os.path.isfile(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _short_name(model, restorer) -> str:
    """A shipped name as given; a model file as its stem (with its folder for generic stems
    like ``runs/x/model.safetensors`` -> ``x/model``)."""
    from ..restore import Restorer

    path = Path(restorer.info.path or "model") if isinstance(model, Restorer) else Path(str(model))
    if path.suffix != ".safetensors":
        return str(model) if not isinstance(model, Restorer) else path.stem
    if path.stem in ("model", "latest", "best", "final") and path.parent.name:
        return f"{path.parent.name}/{path.stem}"
    return path.stem


class _Runner:
    """A loaded model and how it is run along the grid."""

    def __init__(self, model, name: str | None, grid: list[float], raw: bool, device: str,
                 full_strength_only: bool = False) -> None:
        from ..restore import Restorer

        self.restorer = model if isinstance(model, Restorer) else Restorer.load(str(model), device=device)
        r = self.restorer
        self.name = name if name is not None else _short_name(model, r)
        task = r.info.info.get("task")
        if task not in (None, "denoise"):
            raise InputError(f"model {self.name!r} is for the task {task!r}; eval evaluates denoising models")
        self.tunable = r.num_params > 0
        if self.tunable and r.num_params != 2:
            raise InputError(f"model {self.name!r} has {r.num_params} knobs; eval needs a denoiser with "
                             f"2 knobs, p = (s, 1 - s), or none")
        has_strength = r.space.has_slider("strength")
        self.calibrated = bool(self.tunable and not raw and has_strength
                               and r.space.slider("strength").calibration is not None)
        if not self.tunable:
            self.s: list[float | None] = [None]
            self.p: list[Tensor | None] = [None]
        else:
            self.s = [1.0] if full_strength_only else list(grid)
            if has_strength:
                self.p = [r.params(slider=("strength", s), calibrated=not raw) for s in self.s]
            else:  # two knobs but no declared slider: the denoiser's mapping, raw
                self.p = [r.params(p=[s, 1.0 - s]) for s in self.s]

    def describe(self) -> dict[str, Any]:
        info = dataclasses.asdict(self.restorer.info)
        return {
            "name": self.name,
            "file": info.pop("path"),
            "sha256": _file_sha256(self.restorer.info.path),
            **info,
            "tunable": self.tunable,
            "calibrated": self.calibrated,
        }

    def outputs(self, noisy: Tensor, tile: int | None) -> list[Tensor]:
        """Quantised outputs (3, H, W) float32, one per s."""
        from ..metrics import quantize_8bit

        return [quantize_8bit(self.restorer(noisy, p, tile=tile)) for p in self.p]


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


# ----------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------
def evaluate(
    model,
    datasets: str | Sequence[str] = ("cbsd68",),
    sigmas: str | Sequence[float] = DEFAULT_SIGMAS,
    grid: str | Sequence[float] = DEFAULT_GRID,
    *,
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
    model_name: str | None = None,
    reference_name: str | None = None,
    compute_ssim: bool = True,
) -> dict[str, Any]:
    """Evaluate a denoising model (and optionally a reference) on noisy test sets.

    Args:
        model: a shipped model name, a model file, or a :class:`~tunableconv.restore.Restorer`.
        datasets: test-set names under the data root (``"cbsd68"``, ``"kodak24"``) or folders;
            a list or a comma-separated string.
        sigmas: noise levels on the 0..255 scale (list or ``"15,25,50"``).
        grid: slider values s in [0, 1] (list or ``"0,0.5,1"``); sorted, duplicates dropped.
        reference: a second model (name, file or Restorer) run on the same noisy images.
        seed: the noise seed (see :func:`noise_seed`).
        max_images: the first N images (by file name) of each dataset.
        crop: centre-crop images to ``crop x crop`` (sides already smaller are kept).
        raw: use p = (s, 1 − s) without the model's stored calibration.
        data_root: the data root for dataset names (see :mod:`tunableconv.paths`).
        device: ``"cpu"``, ``"cuda"``...
        tile: run the models tile by tile (tiles of this size) to bound memory.
        progress: show a tqdm progress bar (stderr).
        command: the command line, recorded in the results.
        model_name, reference_name: labels for the results (default: the names given).
        compute_ssim: compute SSIM (about a third of the CPU time of a small model's
            evaluation); when False the ``ssim_gt`` values are NaN.

    Returns:
        A dict (see the module notes and ``results["conventions"]``)::

            {"format", "command", "model": {...file metadata...}, "reference": {...} | None,
             "settings": {"datasets", "sigmas", "grid", "seed", "raw", "calibrated", "beta", ...},
             "conventions": {...},
             "datasets": {label: {"path", "num_images", "images": [names],
                 "sigma": {"15": {
                     "model": {"s": [...], "p": [[p1, p2], ...], "psnr_gt": [...],
                               "psnr_target": [...], "ssim_gt": [...], "evenness": x,
                               "evenness_d": [...], "per_image": {...}},
                     "reference": {same, one s} | None,
                     "gap": {"s", "psnr_gt", "psnr_target", "ssim_gt"} | None}}}},
             "environment": {"torch", "tunableconv", "num_threads", "device"},
             "wall_seconds"}

        Metric lists are aligned with ``s`` (``[None]`` for a model without knobs). Values are
        Python floats (NaN possible; :func:`json_safe` turns them into ``None``).

    Raises:
        InputError: unknown dataset or model, bad sigma or grid values, wrong kind of model.
    """
    from tqdm.auto import tqdm

    from .. import __version__
    from ..data import ImageFolderEval
    from ..evaluation import display_path
    from ..metrics import evenness, psnr, ssim

    t_start = time.perf_counter()
    names = [d.strip() for d in datasets.split(",")] if isinstance(datasets, str) else [str(d).strip() for d in datasets]
    if not names or any(not n for n in names):
        raise InputError(f"datasets must be names or folders, got {datasets!r}")
    sigma_values = check_sigmas(sigmas)
    grid_values = check_grid(grid)
    if max_images is not None and int(max_images) < 1:
        raise InputError(f"max images must be at least 1, got {max_images}")
    if crop is not None and int(crop) < 11:
        raise InputError(f"crop must be at least 11 pixels (the SSIM window), got {crop}")
    if tile is not None and int(tile) < 16:
        raise InputError(f"tile must be at least 16 pixels, got {tile}")

    # Datasets first (cheap, fails early on a typo), then the models.
    sets: dict[str, ImageFolderEval] = {}
    for spec in names:
        ds = ImageFolderEval(spec, max_images=max_images, crop=crop, cache=False, data_root=data_root)
        label = _dataset_label(spec)
        if label in sets:
            raise InputError(f"dataset {label!r} given twice")
        sets[label] = ds

    main = _Runner(model, model_name, grid_values, raw, device)
    ref = None
    if reference is not None:
        ref = _Runner(reference, reference_name, grid_values, raw, device, full_strength_only=True)
    beta = float(main.restorer.info.info.get("beta", DEFAULT_BETA))

    runners = [("model", main)] + ([("reference", ref)] if ref is not None else [])
    per_image: dict[tuple[str, float, str], dict[str, list]] = {}
    total = sum(len(ds) for ds in sets.values()) * len(sigma_values)
    bar = tqdm(total=total, desc="eval", unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for label, ds in sets.items():
            for index in range(len(ds)):
                clean = ds[index]["clean"]
                if min(clean.shape[-2:]) < 11:
                    raise InputError(f"{ds.paths[index]}: images must be at least 11x11 pixels for SSIM")
                for sigma in sigma_values:
                    bar.set_postfix_str(f"{label} sigma={sigma:g}", refresh=False)
                    noisy = add_noise(clean, sigma, seed, label, index)
                    target = clean + beta * (noisy - clean)
                    for role, runner in runners:
                        outs = runner.outputs(noisy, tile)
                        acc = per_image.setdefault((label, sigma, role), {
                            "psnr_gt": [], "psnr_target": [], "ssim_gt": [], "evenness": [], "d": []})
                        acc["psnr_gt"].append([float(psnr(o, clean)) for o in outs])
                        acc["psnr_target"].append([float(psnr(o, target)) for o in outs])
                        acc["ssim_gt"].append([float(ssim(o, clean)) if compute_ssim else math.nan for o in outs])
                        if len(outs) >= 2:
                            ev = evenness(outs, runner.s)
                            acc["evenness"].append(float(ev["error"]))
                            acc["d"].append([float(v) for v in ev["d"]])
                    bar.update(1)
    finally:
        bar.close()

    def summarise(runner: _Runner, acc: dict[str, list]) -> dict[str, Any]:
        n_s = len(runner.s)
        out: dict[str, Any] = {
            "s": list(runner.s),
            "p": [None if p is None else [round(float(v), 6) for v in p] for p in runner.p],
        }
        for key in ("psnr_gt", "psnr_target", "ssim_gt"):
            out[key] = [_mean([row[j] for row in acc[key]]) for j in range(n_s)]
        if acc["evenness"]:
            out["evenness"] = _mean(acc["evenness"])
            out["evenness_d"] = [_mean([row[j] for row in acc["d"]]) for j in range(n_s)]
        else:
            out["evenness"] = None
            out["evenness_d"] = None
        out["per_image"] = {k: acc[k] for k in ("psnr_gt", "psnr_target", "ssim_gt")}
        out["per_image"]["evenness"] = acc["evenness"] or None
        return out

    results_sets: dict[str, Any] = {}
    for label, ds in sets.items():
        entry: dict[str, Any] = {
            "path": display_path(str(ds.paths[0].parent)) if ds.paths else None,
            "num_images": len(ds),
            "images": [p.stem for p in ds.paths],
            "sigma": {},
        }
        for sigma in sigma_values:
            m = summarise(main, per_image[(label, sigma, "model")])
            r = summarise(ref, per_image[(label, sigma, "reference")]) if ref is not None else None
            gap = None
            if r is not None:
                gap = {"s": m["s"][-1]}
                for key in ("psnr_gt", "psnr_target", "ssim_gt"):
                    gap[key] = m[key][-1] - r[key][-1]
            entry["sigma"][f"{sigma:g}"] = {"model": m, "reference": r, "gap": gap}
        results_sets[label] = entry

    gap_summary = None
    if ref is not None:
        gaps = [v["gap"]["psnr_gt"] for e in results_sets.values() for v in e["sigma"].values()]
        gap_summary = {"s": main.s[-1], "mean_psnr_gt": _mean(gaps), "min_psnr_gt": min(gaps), "max_psnr_gt": max(gaps)}

    return {
        "format": FORMAT,
        "command": command,
        "model": main.describe(),
        "reference": ref.describe() if ref is not None else None,
        "settings": {
            "datasets": list(sets),
            "dataset_specs": names,
            "sigmas": sigma_values,
            "grid": grid_values if main.tunable else None,
            "seed": int(seed),
            "raw": bool(raw),
            "calibrated": main.calibrated,
            "beta": beta,
            "max_images": max_images,
            "crop": crop,
            "tile": tile,
            "ssim": bool(compute_ssim),
            "data_root": str(data_root) if data_root is not None else None,
        },
        "conventions": dict(CONVENTIONS),
        "datasets": results_sets,
        "gap_summary": gap_summary,
        "environment": {
            "tunableconv": __version__,
            "torch": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "device": str(main.restorer.device),
        },
        "wall_seconds": round(time.perf_counter() - t_start, 3),
    }


# ----------------------------------------------------------------------------------------
# reports
# ----------------------------------------------------------------------------------------
def json_safe(obj: Any) -> Any:
    """A copy with NaN/inf floats as ``None``, paths as strings, tuples as lists (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if isinstance(obj, Tensor):
        return json_safe(obj.tolist())
    return obj


def _fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def _signed(v: float | None, digits: int = 2) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:+.{digits}f}"


def results_markdown(results: dict[str, Any]) -> str:
    """The results as markdown: PSNR table (paper's Table-1 layout: rows = sigma per dataset,
    columns = slider values, cells "PSNR to GT / PSNR to noise target"), SSIM table,
    evenness table and the reference gap."""
    model, ref, st = results["model"], results.get("reference"), results["settings"]
    first = next(iter(next(iter(results["datasets"].values()))["sigma"].values()))
    s_values = first["model"]["s"]
    cols = ["fixed"] if s_values == [None] else [f"s={s:g}" for s in s_values]
    ref_col = [f"ref: {ref['name']}"] if ref else []
    if st["raw"]:
        slider = "raw p = (s, 1 − s) (--raw: no calibration)"
    elif st["calibrated"]:
        slider = "slider s through the model's stored calibration, p = (s', 1 − s')"
    else:
        slider = "p = (s, 1 − s) (the model stores no calibration)"
    lines = [
        f"# Denoising evaluation: {model['name']}",
        "",
        f"- model: `{model['file']}` ({model['architecture']}, {model['num_params']} knobs"
        + (f": {', '.join(k['name'] for k in model['knobs'])}" if model["knobs"] else "") + ")",
        f"- knob values: {slider if model['tunable'] else 'none (model without knobs)'}",
    ]
    if ref:
        lines.append(f"- reference: `{ref['file']}` ({ref['num_params']} knobs"
                     + (", at s = 1" if ref["tunable"] else "") + ")")
    lines += [
        f"- noise: additive Gaussian, sigma on the 0..255 scale, seed {st['seed']} "
        f"(same noisy images for every model and run); noise-preservation target "
        f"clean + {st['beta']:g}·(noisy − clean)",
        "- outputs clamped to [0, 1] and quantised to 8 bits before the metrics (the usual "
        "convention); PSNR/SSIM on RGB, averaged over images",
        "- images: " + ", ".join(f"{k} ({v['num_images']})" for k, v in results["datasets"].items())
        + (f", centre crop {st['crop']}" if st.get("crop") else ""),
    ]
    if results.get("command"):
        lines.append(f"- command: `{results['command']}`")
    env = results["environment"]
    lines += [f"- {results['wall_seconds']:.1f} s, torch {env['torch']}, {env['num_threads']} threads, {env['device']}", ""]

    def table(title: str, cell) -> list[str]:
        header = ["Dataset", "σ", *cols, *ref_col]
        out = [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
        for label, entry in results["datasets"].items():
            for i, (sig, v) in enumerate(entry["sigma"].items()):
                row = [label if i == 0 else "", sig]
                row += [cell(v["model"], j) for j in range(len(cols))]
                if ref:
                    row.append(cell(v["reference"], 0))
                out.append("| " + " | ".join(row) + " |")
        return out + [""]

    lines += table("PSNR (dB): to ground truth / to noise-preservation target",
                   lambda m, j: f"{_fmt(m['psnr_gt'][j])} / {_fmt(m['psnr_target'][j])}")
    lines += table("SSIM to ground truth", lambda m, j: _fmt(m["ssim_gt"][j], 4))

    if model["tunable"] and len(s_values) >= 2:
        sig_keys = list(next(iter(results["datasets"].values()))["sigma"])
        lines += [
            "## Evenness error of the slider",
            "",
            f"max over s of |d(s) − s|, d(s) = ‖o_s − o_{s_values[0]:g}‖ / ‖o_{s_values[-1]:g} − "
            f"o_{s_values[0]:g}‖, averaged over images (0 = perfectly even).",
            "",
            "| Dataset | " + " | ".join(f"σ={k}" for k in sig_keys) + " |",
            "|---|" + "---:|" * len(sig_keys),
        ]
        for label, entry in results["datasets"].items():
            lines.append(f"| {label} | " + " | ".join(_fmt(entry["sigma"][k]["model"]["evenness"], 3) for k in sig_keys) + " |")
        lines.append("")

    if ref:
        gs = results["gap_summary"]
        s_txt = "fixed" if gs["s"] is None else f"s = {gs['s']:g}"
        lines += [
            "## Gap to the reference",
            "",
            f"Reference gap ({model['name']} at {s_txt} minus {ref['name']}, PSNR to ground truth): "
            f"mean {_signed(gs['mean_psnr_gt'])} dB (min {_signed(gs['min_psnr_gt'])}, max {_signed(gs['max_psnr_gt'])}).",
            "",
            "| Dataset | σ | ΔPSNR to GT (dB) | ΔSSIM |",
            "|---|---|---:|---:|",
        ]
        for label, entry in results["datasets"].items():
            for i, (sig, v) in enumerate(entry["sigma"].items()):
                lines.append(f"| {label if i == 0 else ''} | {sig} | {_signed(v['gap']['psnr_gt'])} | "
                             f"{_signed(v['gap']['ssim_gt'], 4)} |")
        lines.append("")
    return "\n".join(lines)


def plot_psnr_vs_p(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """PSNR against s, one panel per dataset, one colour per sigma: solid = to ground truth,
    dotted = to the noise-preservation target, dashed horizontal = the reference (to ground
    truth). Needs matplotlib (the ``eval`` extra); uses the headless Agg backend."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        raise InputError("the plot needs matplotlib: pip install 'tunableconv[eval]' (or use --no-plot)") from None

    sets = results["datasets"]
    n = len(sets)
    fig, axes = plt.subplots(1, n, figsize=(max(6.0, 4.6 * n), 4.4), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    ref = results.get("reference")
    for ax, (label, entry) in zip(axes[0], sets.items()):
        for i, (sig, v) in enumerate(entry["sigma"].items()):
            c = colours[i % len(colours)]
            m = v["model"]
            s = [0.0, 1.0] if m["s"] == [None] else m["s"]
            gt = m["psnr_gt"] * (2 if m["s"] == [None] else 1)
            tg = m["psnr_target"] * (2 if m["s"] == [None] else 1)
            nan = float("nan")
            ax.plot(s, [nan if x is None else x for x in gt], "-o", color=c, ms=3.5, label=f"σ={sig}")
            ax.plot(s, [nan if x is None else x for x in tg], ":s", color=c, ms=3)
            if v.get("reference") is not None and v["reference"]["psnr_gt"][0] is not None:
                ax.axhline(v["reference"]["psnr_gt"][0], color=c, ls="--", lw=1)
        ax.set_title(f"{label} ({entry['num_images']} images)")
        ax.set_xlabel("strength s" + (" (raw p)" if results["settings"]["raw"] else ""))
        ax.set_ylabel("PSNR (dB)")
        ax.set_xlim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=colours[i % len(colours)], label=f"σ={k}")
               for i, k in enumerate(next(iter(sets.values()))["sigma"])]
    handles += [Line2D([], [], color="k", ls="-", marker="o", ms=3.5, label="to ground truth"),
                Line2D([], [], color="k", ls=":", marker="s", ms=3, label="to noise target")]
    if ref:
        handles.append(Line2D([], [], color="k", ls="--", label=f"{ref['name']} (to GT)"))
    fig.suptitle(f"{results['model']['name']}: PSNR against the strength slider", fontsize=11)
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=min(len(handles), 4 if n == 1 else 7),
               frameon=False)
    rows = math.ceil(len(handles) / min(len(handles), 4 if n == 1 else 7))
    fig.tight_layout(rect=(0, 0.02 + 0.045 * rows, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(results: dict[str, Any], out: str | os.PathLike, *, plot: bool = True) -> dict[str, Path]:
    """Write ``results.json`` (strict JSON, NaN -> null), ``results.md`` and, with ``plot``,
    ``psnr_vs_p.png`` into the folder ``out``; returns {"json", "markdown"[, "plot"]: path}."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "results.json", "markdown": out / "results.md"}
    tmp = paths["json"].with_name(".results.json.tmp")
    tmp.write_text(json.dumps(json_safe(results), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, paths["json"])
    paths["markdown"].write_text(results_markdown(results) + "\n", encoding="utf-8")
    if plot:
        paths["plot"] = plot_psnr_vs_p(results, out / "psnr_vs_p.png")
    return paths


# ----------------------------------------------------------------------------------------
# the command of this protocol (scripts/ablation.py runs it per variant)
# ----------------------------------------------------------------------------------------
def _parser() -> "argparse.ArgumentParser":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tunableconv.tasks.denoise_protocol",
                                 description="The denoising protocol (compare's and the ablation's cached format).")
    ap.add_argument("--model", default="denoise", help="shipped model name or model file (default: denoise)")
    ap.add_argument("--data", default="cbsd68",
                    help="comma-separated test sets: names under the data root (cbsd68, kodak24, ...) or folders "
                         "(default: cbsd68)")
    ap.add_argument("--sigma", default="15,25,50", help="noise levels on the 0..255 scale (default: 15,25,50)")
    ap.add_argument("--p-grid", default="0,0.25,0.5,0.75,1",
                    help="slider values s in [0, 1], p = (s, 1 - s) (default: 0,0.25,0.5,0.75,1)")
    ap.add_argument("--out", help="output folder (results.json, results.md, psnr_vs_p.png)")
    ap.add_argument("--compare", metavar="MODEL",
                    help="reference model (e.g. denoise-fixed) on the same noisy images; reports the gap at s = 1")
    ap.add_argument("--max-images", type=int, metavar="N", help="only the first N images of each test set")
    ap.add_argument("--crop", type=int, metavar="N", help="centre-crop the images to N x N")
    ap.add_argument("--seed", type=int, default=0, help="noise seed (default: 0)")
    ap.add_argument("--raw", action="store_true", help="raw p = (s, 1 - s): ignore the model's stored calibration")
    ap.add_argument("--data-root", help="data root (default: TUNABLECONV_DATA or ../shared/data)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: cpu)")
    ap.add_argument("--tile", type=int, metavar="N",
                    help="run the models on N x N tiles, N > 32 (bounds memory; 0: no tiling, the default)")
    ap.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-plot", action="store_true", help="skip psnr_vs_p.png (no matplotlib needed)")
    ap.add_argument("--no-ssim", action="store_true", help="skip SSIM (about a third of the time with small models)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    return ap


def _command_line(args) -> str:
    """The equivalent command line (all options explicit)."""
    import shlex

    parts = ["python", "-m", "tunableconv.tasks.denoise_protocol", "--model", args.model, "--data", args.data, "--sigma", args.sigma,
             "--p-grid", args.p_grid, "--seed", str(args.seed)]
    for flag, value in (("--out", args.out), ("--compare", args.compare), ("--max-images", args.max_images),
                        ("--crop", args.crop), ("--data-root", args.data_root), ("--tile", args.tile),
                        ("--threads", args.threads)):
        if value is not None:
            parts += [flag, str(value)]
    if args.device != "cpu":
        parts += ["--device", args.device]
    parts += [flag for flag, on in (("--raw", args.raw), ("--no-plot", args.no_plot)) if on]
    return shlex.join(parts)


def _run(args) -> int:
    # Cheap checks first, before loading anything.
    check_sigmas(args.sigma)
    check_grid(args.p_grid)
    if not args.out:
        raise InputError("give --out FOLDER for results.json, results.md and psnr_vs_p.png")
    from ..evaluation import check_run_options

    check_run_options(args.threads, not args.no_plot)
    from ..tiling import DEFAULT_OVERLAP, check_tile

    tile = check_tile(args.tile, DEFAULT_OVERLAP, overlap_option=None)  # 0: no tiling, as in every command
    results = evaluate(
        args.model, args.data, args.sigma, args.p_grid,
        reference=args.compare, seed=args.seed, max_images=args.max_images, crop=args.crop, raw=args.raw,
        data_root=args.data_root, device=args.device, tile=tile, progress=not args.no_progress,
        command=_command_line(args), compute_ssim=not args.no_ssim,
    )
    paths = write_report(results, args.out, plot=not args.no_plot)
    md = results_markdown(results)
    # the PSNR table (and the gap line) on stdout
    sections = md.split("\n## ")
    print("## " + sections[1].rstrip())
    gap = next((s for s in sections if s.startswith("Gap")), None)
    if gap:
        print("\n" + gap.splitlines()[2])
    print(f"\nwrote {', '.join(str(p) for p in paths.values())} ({results['wall_seconds']:.1f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tunableconv.tasks.denoise_protocol``: the denoising protocol as a command (one-line errors, exit 2)."""
    import sys

    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except InputError as err:
        print(f"python -m tunableconv.tasks.denoise_protocol: error: {err}", file=sys.stderr)
        return 2



PROTOCOL_KEYS = ("dataset_specs", "sigmas", "grid", "seed", "raw", "max_images", "crop")


def cached_protocol_evaluation(path: Path, model_file: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The evaluation stored at ``path`` if it is of the same model file (by SHA-256) under the
    same settings (``PROTOCOL_KEYS`` of ``settings``), else None. Lets ``scripts/ablation.py`` evaluate one
    variant at a time, in separate processes or sessions, and assemble the table at the end. A
    ``model_file`` that no longer exists (its run folder is gone) skips the SHA-256 check."""
    res = read_cached_result(path, model_file)
    if res is None:
        return None
    have = res.get("settings", {})
    keys = [k for k in PROTOCOL_KEYS if not (k == "grid" and res["model"].get("tunable") is False)]  # no knob, no grid
    if any(have.get(k) != settings.get(k) for k in keys):
        return None
    return res


if __name__ == "__main__":
    raise SystemExit(main())
