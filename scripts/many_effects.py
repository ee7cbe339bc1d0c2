"""Many effects per image: the quality of 27 settings of a three-degradation model, and the report.

The measurements of ``results/many-effects`` (issue "Many imagery effects for the price of a
few"): every method gives 27 effects per image (its knobs or task vector on {0, 0.5, 1}^3);
on CBSD68 with mixed degradations we keep, per image, the best of the 27 by PSNR (the TSNet
paper's Table 2: the oracle's choice), the effect that removes every degradation
(p = (1, 1, 1)) and the automatic choice (lowest NIQE, :func:`tunableconv.sweep.choose_setting`).

Steps (each resumable; results per method are cached under ``OUT/quality``)::

    # the test set: each CBSD68 image degraded once, levels drawn as in training (seeded)
    python scripts/many_effects.py quality --out results/many-effects \\
        --model tunable=results/many-effects/models/tunable.safetensors --model ...
    python benchmarks/many_effects_cost.py --out results/many-effects/cost.json --model ...
    python scripts/many_effects.py report --out results/many-effects

The degraded inputs are written as 8-bit PNGs to ``--cache`` (default ``runs/many-effects``,
not committed: they derive from the shared data); their levels go to ``OUT/testset.json``.

Mixed degradations: image i draws its levels with ``torch.Generator().manual_seed(seed + i)``
through the task's own training sampler (:meth:`Restore3Task.draw_levels`: a third of the
images one type only, a third the binary all-or-nothing mixture at the strongest levels, a
third all three at uniform levels), so the test set covers what the knobs were trained on.
A draw whose input is not visibly degraded (PSNR >= 40 dB to the clean image: the binary
mixture's empty case, 1 in 24, or a blur of a fraction of a pixel) is drawn again from the same
generator: a clean input makes the identity effect p = (0, 0, 0) win by 15-20 dB (or reach
infinity) and swamps the means.

Per image results are cached with the image's case: a rerun recomputes only images whose
case changed (or all of them for a changed model file).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

#: the 27 effects: every knob (or task-vector entry) at 0, 0.5 and 1, the first slowest
GRID = torch.tensor([[a, b, c] for a in (0.0, 0.5, 1.0) for b in (0.0, 0.5, 1.0) for c in (0.0, 0.5, 1.0)])
FULL = 26  # index of (1, 1, 1): remove every degradation
#: a test input closer than this to its clean image (PSNR, dB) is drawn again: not visibly degraded
MIN_DEGRADATION_DB = 40.0


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_set(task, data_root: str | None, cache: Path, seed: int, limit: int | None) -> list[dict]:
    """The mixed-degradation test set: ``[{name, clean, degraded, levels, case}]`` (tensors in
    [0, 1]); degraded images are written once to ``cache`` as 8-bit PNGs and read back from there."""
    from tunableconv.io import list_images, read_image, write_image
    from tunableconv.paths import data_root as resolve_data_root
    from tunableconv.metrics import psnr
    from tunableconv.tasks.restore3 import make_case

    files = list_images(resolve_data_root(data_root) / "test" / "cbsd68")
    if limit:
        files = files[:limit]
    cache.mkdir(parents=True, exist_ok=True)
    items = []
    for i, f in enumerate(files):
        clean = read_image(f)
        g = torch.Generator().manual_seed(seed + i)
        while True:
            blur, noise, quality = task.draw_levels(g)
            case = make_case(round(blur, 4), round(noise, 4), quality)
            degraded = task.degrade_case(clean, case, g).input.clamp(0, 1)
            if float(psnr(degraded, clean)) < MIN_DEGRADATION_DB:
                break  # else no visible degradation (no type drawn, or a blur of a fraction of a pixel): draw again
        stored = cache / f"{f.stem}-{hashlib.sha256(case.label.encode()).hexdigest()[:8]}.png"
        if not stored.is_file():
            write_image(degraded, stored)
        items.append({"name": f.stem, "clean": clean, "degraded": read_image(stored),
                      "levels": {"blur": round(blur, 4), "noise": round(noise, 4), "jpeg": quality},
                      "case": case.label, "input_psnr": round(float(psnr(read_image(stored), clean)), 4)})
    return items


def quality(args: argparse.Namespace) -> None:
    """Per method: PSNR and NIQE of all 27 effects per image; SSIM and LPIPS at the best, the
    full-restoration and the automatic effect. Cached in ``OUT/quality/NAME.json``."""
    from tunableconv import metrics as M
    from tunableconv.evaluation import task_of
    from tunableconv.metrics import quantize_8bit
    from tunableconv.restore import Restorer
    from tunableconv.sweep import settings_outputs

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "quality").mkdir(parents=True, exist_ok=True)
    models = dict(m.split("=", 1) for m in args.model)
    items = None
    for name, file in models.items():
        file = Path(file)
        dest = out / "quality" / f"{name}.json"
        key = {"model": _sha(file), "seed": args.seed}
        old = json.loads(dest.read_text()) if dest.is_file() else {}
        done = {(r["name"], r["case"]): r for r in old.get("images", []) if "case" in r} \
            if {k: old.get("key", {}).get(k) for k in key} == key else {}
        restorer = Restorer.load(str(file))
        if items is None:
            items = test_set(task_of(restorer.info), args.data_root, Path(args.cache), args.seed, args.limit)
            (out / "testset.json").write_text(json.dumps(
                {"seed": args.seed, "min_degradation_db": MIN_DEGRADATION_DB,
                 "images": [{k: it[k] for k in ("name", "levels", "case", "input_psnr")} for it in items]},
                indent=1) + "\n")
        rows, start = [], time.perf_counter()
        for it in tqdm(items, desc=name, file=sys.stdout, mininterval=10):
            if (it["name"], it["case"]) in done:
                rows.append(done[(it["name"], it["case"])])
                continue
            outs = [quantize_8bit(o) for o in settings_outputs(restorer, it["degraded"], GRID)]
            clean = it["clean"]
            psnr = [float(M.psnr(o, clean)) for o in outs]
            niqe = [float(v) for v in M.niqe(torch.stack(outs), reduction="none")]
            best = max(range(len(outs)), key=lambda k: psnr[k])
            finite = [k for k in range(len(outs)) if niqe[k] == niqe[k]]
            auto = min(finite, key=lambda k: niqe[k])
            row = {"name": it["name"], "case": it["case"], "psnr": [round(v, 4) for v in psnr], "niqe": [round(v, 4) for v in niqe],
                   "best": best, "auto": auto}
            for label, k in (("best", best), ("full", FULL), ("auto", auto)):
                row[f"ssim_{label}"] = round(float(M.ssim(outs[k], clean)), 5)
                row[f"lpips_{label}"] = round(float(M.lpips(outs[k], clean)), 5)
            rows.append(row)
        extra = {}
        arch = getattr(restorer.model, "searched_architecture", None)
        if callable(arch):
            extra["searched_architecture"] = arch()
        dest.write_text(json.dumps({"key": {**key, "limit": args.limit}, "model_file": file.name, **extra,
                                    "params": sum(t.numel() for t in restorer.model.parameters()), "images": rows,
                                    "seconds_this_run": round(time.perf_counter() - start, 1),
                                    "summary": summarise(rows)}, indent=1) + "\n")
        print(f"{name}: {summarise(rows)}")


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def summarise(rows: list[dict]) -> dict:
    """Means over the images: best-of-27 (PSNR, SSIM, LPIPS, NIQE at the PSNR-best effect),
    the full restoration p = (1, 1, 1), the automatic choice and its distance to the best."""
    s = {
        "psnr_best": _mean(r["psnr"][r["best"]] for r in rows),
        "ssim_best": _mean(r["ssim_best"] for r in rows),
        "lpips_best": _mean(r["lpips_best"] for r in rows),
        "niqe_best": _mean(r["niqe"][r["best"]] for r in rows),
        "psnr_full": _mean(r["psnr"][FULL] for r in rows),
        "ssim_full": _mean(r["ssim_full"] for r in rows),
        "lpips_full": _mean(r["lpips_full"] for r in rows),
        "psnr_auto": _mean(r["psnr"][r["auto"]] for r in rows),
        "lpips_auto": _mean(r["lpips_auto"] for r in rows),
        "niqe_min": _mean(r["niqe"][r["auto"]] for r in rows),
        "auto_is_best": _mean(float(r["auto"] == r["best"]) for r in rows),
        "best_is_full": _mean(float(r["best"] == FULL) for r in rows),
        "images": len(rows),
    }
    s["auto_psnr_loss"] = s["psnr_best"] - s["psnr_auto"]
    s["auto_lpips_loss"] = s["lpips_auto"] - s["lpips_best"]
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in s.items()}


#: display names and order of the methods (others follow in file order)
LABELS = {
    "tunable": "Tunable, every block (method 1)",
    "trunk2": "Tunable, shared trunk k=2 of 6",
    "trunk3": "Tunable, shared trunk k=3 of 6",
    "trunk5": "Tunable, shared trunk k=5 of 6",
    "trunk6": "Tunable, shared trunk k=6 of 6 (last two convs tunable)",
    "cresmd": "CResMD",
    "tsnet": "TSNet (random gates, λ₁ = 0.1: collapsed)",
    "ta-tsnet": "TA+TSNet (random gates, λ₁ = 0.1: collapsed)",
    "tsnet-open": "TSNet (gates open, λ₁ = 0.003)",
    "ta-tsnet-open": "TA+TSNet (gates open, λ₁ = 0.003, λ₂ = 0.1)",
    "ta-tsnet-open-0.0005": "TA+TSNet (gates open, λ₁ = 0.0005, λ₂ = 0.1)",
}
#: the plane's short labels
SHORT = {"tunable": "tunable, every block", "tsnet": "TSNet λ₁=0.1", "ta-tsnet": "TA+TSNet λ₁=0.1",
         "tsnet-open": "TSNet λ₁=0.003", "ta-tsnet-open": "TA+TSNet λ₁=0.003",
         "ta-tsnet-open-0.0005": "TA+TSNet λ₁=0.0005"}


def _f(v, digits: int = 2, sign: bool = False) -> str:
    if v is None:
        return "–"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def architecture_lines(label: str, arch: dict) -> list[str]:
    """A searched TSNet / TA+TSNet as markdown: per channel-selection module, whether it is
    shared (task-agnostic: computed once per image) and the channels kept over the effects."""
    effects = arch["effects"]
    shared = set(arch["shared_modules"])
    lines = [f"### {label}: the searched architecture", "",
             f"{len(shared)} of {len(arch['modules'])} channel-selection modules shared "
             f"({', '.join(arch['shared_layers']) or 'no conv'} computed once per image); at "
             f"{arch['flops_at'][1]}x{arch['flops_at'][0]} the 27 effects cost {arch['gflops_total']:.0f} GFLOPs, "
             f"{arch['flops_ratio']:.3f}x 27 dense CResMD passes (the model's own count: convs and controllers). "
             f"Channels kept of {arch['channels']}, over the {len(effects)} effects:", "",
             "| Module | Shared | min | mean | max |", "|---|---|---|---|---|"]
    for i, name in enumerate(arch["modules"]):
        kept = [e["kept"][i] for e in effects]
        lines.append(f"| {name} | {'yes' if name in shared else ''} | {min(kept)} | {sum(kept) / len(kept):.1f} | "
                     f"{max(kept)} |")
    return lines + [""]


def report(args: argparse.Namespace) -> None:
    """``OUT/tables.md`` (the TSNet paper's Tables 1 and 2, and ours), ``OUT/plane.png`` (best-of-27
    PSNR against the time of 27 effects) and ``OUT/summary.json``, from ``OUT/quality/*.json``
    and ``OUT/cost.json``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(args.out)
    quality = {f.stem: json.loads(f.read_text()) for f in sorted((out / "quality").glob("*.json"))}
    cost = json.loads((out / "cost.json").read_text()) if (out / "cost.json").is_file() else {}
    names = [n for n in LABELS if n in quality or n in cost.get("flops", {})]
    names += [n for n in quality if n not in names]
    ref = "tunable"
    q = {n: quality[n]["summary"] for n in names if n in quality}
    flops, seconds = cost.get("flops", {}), cost.get("seconds", {})
    sizes = list(cost.get("sizes", {}))
    settings = list(seconds)
    n_images = next(iter(q.values()))["images"] if q else 0

    lines = ["# Many effects per image: tables", "",
             "Written by `python scripts/many_effects.py report` from `quality/*.json` (`scripts/many_effects.py "
             "quality`) and `cost.json` (`benchmarks/many_effects_cost.py`); the commands are in README.md.", ""]
    # --- the TSNet paper's Table 1: cost of 27 effects per resolution ---------------------------
    if flops:
        lines += ["## Cost of 27 effects (the TSNet paper's Table 1 layout)", "",
                  "FLOPs counted by `torch.utils.flop_counter.FlopCounterMode` (2 per multiply-add); seconds on this "
                  "CPU, every method in turn in one process; `–`: not measured.", ""]
        head = "| Computation cost | " + " | ".join(f"{LABELS.get(n, n)} ({s})" for s in sizes for n in names) + " |"
        lines += [head, "|---" * (1 + len(sizes) * len(names)) + "|"]
        lines.append("| FLOPs (T) | " + " | ".join(_f(flops[n][s] / 1e12, 3) if n in flops else "–"
                                                for s in sizes for n in names) + " |")
        for threads in sorted({k.split("@")[1] for k in settings}):
            lines.append(f"| CPU, {threads} thread(s) (s) | " + " | ".join(
                _f(seconds.get(f"{s}@{threads}", {}).get(n), 1) for s in sizes for n in names) + " |")
        lines.append("")
    # --- the TSNet paper's Table 2: best of 27 --------------------------------------------------
    if q:
        lines += [f"## Best of 27 effects per image (the TSNet paper's Table 2 layout; CBSD68, first {n_images} images, "
                  "mixed degradations)", "",
                  "Per image, the effect with the highest PSNR; SSIM, NIQE and LPIPS are those of that effect.", "",
                  "| Method | PSNR | SSIM | NIQE | LPIPS |", "|---|---|---|---|---|"]
        for n in q:
            lines.append(f"| {LABELS.get(n, n)} | {_f(q[n]['psnr_best'])} dB | {_f(q[n]['ssim_best'], 4)} | "
                         f"{_f(q[n]['niqe_best'])} | {_f(q[n]['lpips_best'], 4)} |")
        lines.append("")
    # --- ours --------------------------------------------------------------------------------
    main_setting = next((k for k in ("HD@2", "HD@1", "2K@2") if k in seconds), None)
    lines += ["## All in one (ours)", "",
              "Ratios are to method 1's 27 full passes (FLOPs at HD; time at each measured size and thread count). "
              "Δ best is the best-of-27 PSNR minus method 1's. *Full* is the effect that removes every degradation, "
              "p = (1, 1, 1); *auto* the lowest-NIQE effect, and its loss to the per-image best.", "",
              "| Method | Params | FLOPs 27×HD | " + "".join(f"time {k} | " for k in settings)
              + "best of 27 | Δ best | full (1,1,1) | auto: PSNR loss | auto: LPIPS loss | auto = best |",
              "|---" * (9 + len(settings)) + "|"]
    for n in names:
        fl = flops.get(n, {}).get("HD")
        ratio = _f(fl / flops[ref]["HD"], 3) + "×" if fl is not None and ref in flops else "–"
        times = [(_f(seconds[k][n], 1) + f" s ({seconds[k][n] / seconds[k][ref]:.2f}×)") if n in seconds[k] else "–"
                 for k in settings]
        s = q.get(n)
        cells = ["–"] * 6 if s is None else [
            _f(s["psnr_best"]), _f(s["psnr_best"] - q[ref]["psnr_best"], 2, True) if ref in q else "–",
            _f(s["psnr_full"]), _f(s["auto_psnr_loss"]) + " dB", _f(s["auto_lpips_loss"], 4, True),
            f"{s['auto_is_best'] * 100:.0f}%"]
        params = quality.get(n, {}).get("params")
        lines.append(f"| {LABELS.get(n, n)} | {params / 1e3:.0f}k | " if params else f"| {LABELS.get(n, n)} | – | ")
        lines[-1] += f"{_f(fl / 1e12, 2) if fl else '–'} T ({ratio}) | " + " | ".join(times + cells) + " |"
    lines.append("")
    for n in names:
        arch = quality.get(n, {}).get("searched_architecture")
        if arch:
            lines += architecture_lines(LABELS.get(n, n), arch)
    (out / "tables.md").write_text("\n".join(lines))
    (out / "summary.json").write_text(json.dumps({"quality": q, "cost": {"flops": flops, "seconds": seconds},
                                                  "images": n_images}, indent=1) + "\n")

    # --- the plane ---------------------------------------------------------------------------
    if q and (main_setting or flops):
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        for n in q:
            if main_setting:
                x = seconds[main_setting].get(n)
            else:
                x = flops.get(n, {}).get("HD")
                x = None if x is None else x / 1e12
            if x is None:
                continue
            ours = n == "tunable" or n.startswith("trunk")
            ax.scatter([x], [q[n]["psnr_best"]], s=60, marker="o" if ours else "s",
                       color="tab:blue" if ours else "tab:red")
            short = f"trunk k={n[5:]}" if n.startswith("trunk") else SHORT.get(n, LABELS.get(n, n))
            ax.annotate(short, (x, q[n]["psnr_best"]), fontsize=8, xytext=(5, -12 if n == "trunk5" else 4),
                        textcoords="offset points")
        ax.set_xlabel(f"time for 27 effects, s ({main_setting.replace('@', ', ')} thread(s))" if main_setting
                      else "FLOPs for 27 HD effects (T)")
        ax.set_ylabel(f"best-of-27 PSNR, dB (CBSD68, {n_images} images)")
        ax.set_title("Quality against the cost of 27 effects (up and left is better)")
        ax.grid(alpha=0.3)
        ax.set_xlim(left=0)
        fig.tight_layout()
        fig.savefig(out / "plane.png", dpi=130)
        plt.close(fig)
    print(f"wrote {out / 'tables.md'}, {out / 'summary.json'}" + (", plane.png" if q else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quality", help="27 effects per image of each --model NAME=FILE on the mixed test set")
    q.add_argument("--out", default="results/many-effects")
    q.add_argument("--model", action="append", required=True, metavar="NAME=FILE")
    q.add_argument("--cache", default="runs/many-effects", help="where the degraded inputs are written (not committed)")
    q.add_argument("--data-root")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--limit", type=int, help="first N images only (a smoke run)")
    q.add_argument("--threads", type=int, default=1)
    q.set_defaults(func=quality)
    r = sub.add_parser("report", help="the tables and the quality-cost plane from OUT/quality and OUT/cost.json")
    r.add_argument("--out", default="results/many-effects")
    r.set_defaults(func=report)
    args = ap.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
