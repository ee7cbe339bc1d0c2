"""Side-by-side means of several ``tunableconv eval`` results (``results.json``).

For each test set and metric: one row per (label, setting), the mean over the evaluation
cases, and with ``--per-case`` one column per case. A reference model evaluated with
``--compare`` appears as its own row (``LABEL (reference)``). Used for the level-sampling and
NIQE studies of joint deblurring and denoising (``docs/deblur-denoise.md``)::

    python scripts/summarise_evals.py uniform=runs/niqe-tunable/results.json \\
        beta=results/deblur-denoise/levels-beta/results.json --metrics psnr,niqe -o out.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _label(setting) -> str:
    if isinstance(setting, dict) and setting.get("true_levels"):
        return "true levels"
    if isinstance(setting, dict) and setting.get("matched"):
        return _label({k: v for k, v in setting.items() if k != "matched"}) + " matched"
    if isinstance(setting, dict):
        for key in ("label", "name", "p"):
            if setting.get(key) is not None:
                value = setting[key]
                return "(" + ", ".join(f"{v:g}" for v in value) + ")" if isinstance(value, list) else str(value)
    if isinstance(setting, list):
        return "(" + ", ".join(f"{v:g}" for v in setting) + ")"
    return str(setting)


def rows_of(label: str, result: dict, metric: str, dataset: str) -> list[tuple[str, str, dict[str, float]]]:
    """``[(row label, setting label, {case: value})]`` of one metric in one results file."""
    data = result["datasets"].get(dataset)
    if data is None:
        return []
    out = []
    settings = [_label(s) for s in result["settings"]]
    for role, name in (("model", label), ("reference", f"{label} (reference)")):
        per_setting: dict[str, dict[str, float]] = {}
        for case, entry in data["cases"].items():
            block = entry.get(role)
            if not isinstance(block, dict) or metric not in block:
                continue
            values = block[metric]
            values = values if isinstance(values, list) else [values]
            ref = result.get("reference_setting")
            names = settings if len(values) == len(settings) else [
                settings[ref] if isinstance(ref, int) and 0 <= ref < len(settings) else _label(ref)]
            for s, v in zip(names, values):
                per_setting.setdefault(s, {})[case] = float(v)
        out += [(name, s, cases) for s, cases in per_setting.items()]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", help="LABEL=path/to/results.json")
    ap.add_argument("--metrics", default="psnr")
    ap.add_argument("--per-case", action="store_true", help="one column per evaluation case")
    ap.add_argument("-o", "--out", help="write the markdown here (default: print)")
    args = ap.parse_args(argv)
    loaded = []
    for item in args.results:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            print(f"summarise_evals: error: expected LABEL=results.json of an existing file, got {item!r}", file=sys.stderr)
            return 2
        loaded.append((label, json.loads(Path(path).read_text())))
    datasets = list(dict.fromkeys(d for _, r in loaded for d in r["datasets"]))
    lines = ["# Evaluation means", "", "Inputs: " + ", ".join(f"`{item}`" for item in args.results), ""]
    for metric in [m.strip() for m in args.metrics.split(",") if m.strip()]:
        for dataset in datasets:
            rows = [row for label, r in loaded for row in rows_of(label, r, metric, dataset)]
            if not rows:
                continue
            cases = list(dict.fromkeys(c for _, _, per in rows for c in per))
            head = ["model", "setting", "mean"] + (cases if args.per_case else [])
            lines += [f"## {metric}, {dataset} (mean over {len(cases)} cases)", "",
                      "| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
            for name, setting, per in rows:
                mean = sum(per.values()) / len(per)
                cells = [name, setting, f"{mean:.3f}"] + ([f"{per[c]:.3f}" if c in per else "—" for c in cases]
                                                          if args.per_case else [])
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    text = "\n".join(lines)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
