"""Backbones side by side: the fidelity end per CPU hour of training and per second of inference.

Each entry is ``LABEL=MODEL_FILE:RESULTS_JSON``: a trained tunable model and its
``tunableconv eval`` results (format 2, run with ``--compare`` on its fixed twin). The
training wall time and steps come from the model file; the inference time at 512² (one
thread) from ``benchmarks/backbone_cost.py``'s JSON, looked up by the model's recipe. Writes
a Markdown table and a two-panel plot (PSNR at the fidelity end against training hours and
against inference seconds)::

    python scripts/backbone_table.py \\
        resnet=src/tunableconv/zoo/denoise.safetensors:results/sota-denoise/resnet/results.json \\
        nafnet=runs/nafnet-small/model.safetensors:results/sota-denoise/nafnet-small/results.json \\
        --cost results/sota-denoise/backbone_cost.json -o results/sota-denoise/backbones
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tunableconv.models import load_model


def fidelity_end(results: dict) -> dict[str, dict[str, dict[str, float]]]:
    """``{dataset: {case: {"model": psnr, "reference": psnr, "gap": dB, "lpips": ...}}}`` at
    the setting the eval compares with its reference (the fidelity end)."""
    if results.get("format") != "tunableconv-eval/2":
        raise SystemExit(f"error: results of format {results.get('format')!r}; rerun tunableconv eval (format 2)")
    i = int(results["reference_setting"])
    out: dict = {}
    for ds, d in results["datasets"].items():
        out[ds] = {}
        for case, c in d["cases"].items():
            row = {"model": c["model"]["psnr"][i], "reference": c["reference"]["psnr"], "gap": c["gap"]["psnr"],
                   "images": d["num_images"]}
            if "lpips" in c["model"]:
                row["lpips"] = c["model"]["lpips"][i]
                row["lpips_reference"] = c["reference"]["lpips"]
            out[ds][case] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("entries", nargs="+", help="LABEL=MODEL_FILE:RESULTS_JSON")
    ap.add_argument("--cost", type=Path, required=True, help="backbone_cost.json (benchmarks/backbone_cost.py)")
    ap.add_argument("-o", "--out", type=Path, required=True, help="output prefix: PREFIX.md, PREFIX.json, PREFIX.png")
    args = ap.parse_args(argv)
    cost = json.loads(args.cost.read_text())["recipes"]
    rows = []
    for entry in args.entries:
        label, sep, rest = entry.partition("=")
        model_file, sep2, results_file = rest.rpartition(":")
        if not (sep and sep2):
            ap.error(f"entry {entry!r}: expected LABEL=MODEL_FILE:RESULTS_JSON")
        _, info = load_model(model_file)
        training = info.info.get("training", {})
        recipe = training.get("recipe")
        if recipe not in cost:
            ap.error(f"{label}: recipe {recipe!r} is not in {args.cost} (known: {', '.join(cost)})")
        results = json.loads(Path(results_file).read_text())
        rows.append({
            "label": label, "model": model_file, "results": results_file, "recipe": recipe,
            "steps": training.get("steps"), "train_hours": training.get("train_wall_seconds", float("nan")) / 3600,
            "infer_512_s": cost[recipe]["infer_s"], "parameters": cost[recipe]["parameters"],
            "fidelity_end": fidelity_end(results),
        })

    cases = [(ds, case) for ds, cs in rows[0]["fidelity_end"].items() for case in cs]
    head = "| backbone | steps | training (h, 1 thread) | inference 512² (s, 1 thread) | " + " | ".join(
        f"{ds} {case}" for ds, case in cases) + " | mean |"
    lines = [head, "|---|---:|---:|---:|" + "---:|" * (len(cases) + 1)]
    for r in rows:
        vals = [r["fidelity_end"].get(ds, {}).get(case) for ds, case in cases]
        cells = [f"{v['model']:.2f} ({v['gap']:+.2f})" if v else "—" for v in vals]
        psnrs = [v["model"] for v in vals if v]
        r["mean_psnr"] = sum(psnrs) / len(psnrs)
        lines.append(f"| {r['label']} | {r['steps']} | {r['train_hours']:.2f} | {r['infer_512_s']:.2f} | "
                     + " | ".join(cells) + f" | {r['mean_psnr']:.2f} |")
    lines.append("")
    lines.append("PSNR (dB) at the fidelity end, in brackets the gap to the backbone's own fixed twin trained for the "
                 "same steps; images per set: " + ", ".join(
                     f"{ds} {n}" for ds, n in {ds: rows[0]['fidelity_end'][ds][c]['images'] for ds, c in cases}.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps({"command": "python scripts/backbone_table.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "rows": rows}, indent=1) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(no matplotlib: no plot)")
        return 0
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for r in rows:
        for ax, x in zip(axes, (r["train_hours"], r["infer_512_s"])):
            ax.scatter([x], [r["mean_psnr"]], s=40)
            ax.annotate(r["label"], (x, r["mean_psnr"]), textcoords="offset points", xytext=(5, 4), fontsize=9)
    axes[0].set_xlabel("training wall time (h, one CPU thread)")
    axes[1].set_xlabel("inference at 512² (s, one CPU thread)")
    axes[0].set_ylabel("PSNR at the fidelity end (dB, mean of the cases)")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("Tunable denoisers: quality per CPU hour and per second of inference")
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=120)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
