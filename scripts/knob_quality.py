"""What each method's knob delivers at every setting: PSNR and LPIPS to the blended target.

The comparison table (``tunableconv compare``) scores each method against the two objectives'
targets at the knob's ends; this adds, for every model of a comparison folder, the distance to
the image the knob promises at each setting — the blended target Σ c_i t_i — in PSNR and
LPIPS, LPIPS to the ground truth, and the evenness of the raw knob, all from the
task-agnostic evaluation (:mod:`tunableconv.evaluation`, raw knob, same degraded images for
every method). Each method's evaluation is cached in ``OUT/knob_quality/METHOD.json``.

    python scripts/knob_quality.py results/compare-denoise-best --data cbsd68 --levels 25 \\
        [--methods tunable,cresmd] [--max-images N] [--threads 1]

Writes ``OUT/knob_quality.json`` and ``OUT/knob_quality.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tunableconv.evaluation import evaluate, json_safe  # noqa: E402
from tunableconv.io import atomic_write  # noqa: E402

GRID = [0.0, 0.25, 0.5, 0.75, 1.0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a comparison folder with models/METHOD.safetensors")
    ap.add_argument("--data", default="cbsd68")
    ap.add_argument("--levels", default="25")
    ap.add_argument("--methods", help="comma-separated subset (default: every model in FOLDER/models)")
    ap.add_argument("--max-images", type=int)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table-only", action="store_true", help="assemble the table from the cached evaluations")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = sorted((args.folder / "models").glob("*.safetensors"))
    if args.methods:
        wanted = args.methods.split(",")
        models = [m for m in models if m.stem in wanted]
    cache = args.folder / "knob_quality"
    cache.mkdir(exist_ok=True)
    levels = [float(v) for v in args.levels.split(",")]
    results = {}
    for path in models:
        cached = cache / f"{path.stem}.json"
        if cached.is_file():
            results[path.stem] = json.loads(cached.read_text())
            continue
        if args.table_only:
            continue
        print(f"== {path.stem}", flush=True)
        res = evaluate(str(path), args.data, levels=levels, grid=GRID, metrics=["psnr", "lpips"], raw=True,
                       max_images=args.max_images, progress=False,
                       command=f"python scripts/knob_quality.py {args.folder} --data {args.data} --levels {args.levels}"
                               + (f" --max-images {args.max_images}" if args.max_images else ""))
        atomic_write(cached, (json.dumps(json_safe(res), indent=1) + "\n").encode())
        results[path.stem] = json.loads(cached.read_text())
    rows = []
    for name, res in results.items():
        for label, entry in res["datasets"].items():
            for case, c in entry["cases"].items():
                m = c["model"]
                rows.append({"method": name, "dataset": label, "case": case, "images": entry["num_images"],
                             "psnr_blend": m.get("psnr_blend"), "lpips_blend": m.get("lpips_blend"),
                             "lpips_gt": m.get("lpips"), "psnr_gt": m.get("psnr"),
                             "evenness": (c.get("evenness") or {}).get("slider"), "wall_seconds": res["wall_seconds"]})
    lines = ["# Knob quality: distance to the blended target at every knob value", "",
             "Raw knob s, p = (s, 1 − s); blended target = (s · clean + (1 − s) · noise-preservation target); "
             "outputs quantised to 8 bits; mean over images. Produced by `python scripts/knob_quality.py "
             f"{args.folder} --data {args.data} --levels {args.levels}"
             + (f" --max-images {args.max_images}" if args.max_images else "") + "`.", ""]
    for key, title, fmt in (("psnr_blend", "PSNR to the blended target (dB, higher is better)", "{:.2f}"),
                            ("lpips_blend", "LPIPS to the blended target (lower is better)", "{:.4f}"),
                            ("lpips_gt", "LPIPS to the ground truth (lower is better)", "{:.4f}")):
        lines += [f"## {title}", "", "| method | dataset, case | " + " | ".join(f"s={s:g}" for s in GRID) + " | mean |",
                  "|---|---|" + "---:|" * (len(GRID) + 1)]
        for r in rows:
            vals = r[key]
            if not vals:
                continue
            if len(vals) == 1:  # no knob: the fixed network stands at the fidelity end
                vals = [None] * (len(GRID) - 1) + vals
            cells = [fmt.format(v) if v is not None else "—" for v in vals]
            finite = [v for v in vals if v is not None]
            mean = fmt.format(sum(finite) / len(finite)) if finite else "—"
            lines.append(f"| {r['method']} | {r['dataset']} ({r['images']}), {r['case']} | " + " | ".join(cells) + f" | {mean} |")
        lines.append("")
    lines += ["## Evenness of the raw knob (0 = even)", "", "| method | dataset, case | evenness |", "|---|---|---:|"]
    for r in rows:
        ev = r["evenness"]
        lines.append(f"| {r['method']} | {r['dataset']}, {r['case']} | {'—' if ev is None else f'{ev:.3f}'} |")
    atomic_write(args.folder / "knob_quality.md", ("\n".join(lines) + "\n").encode())
    atomic_write(args.folder / "knob_quality.json", (json.dumps(json_safe(rows), indent=1) + "\n").encode())
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
