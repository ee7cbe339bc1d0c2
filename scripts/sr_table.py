"""The super-resolution comparison in the paper's Table 4 layout, from a ``tunableconv compare
--task sr`` folder: every method along its knob, bicubic upsampling as the floor and the
published anchors beside it, the PSNR–LPIPS plane (one curve per method) and output strips.

Reads ``DIR/eval/<method>.json`` (the compare's evaluations) and ``DIR/models/<method>.safetensors``;
computes the bicubic floor itself on the same images, with the task's metric convention
(PSNR / SSIM on Y of the 8-bit image, a 4-pixel border dropped; LPIPS on RGB; NIQE on Y with
the same border). Writes ``OUT/sr_table.{json,md}``, ``OUT/sr_plane.png`` and
``OUT/strips/sr_<dataset>.png``::

    python scripts/sr_table.py results/compare-sr4 --strips set14:2,bsd100:3
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import torch

#: Y-PSNR (dB) on Set5 / Set14 / BSD100 at x4 as published (bicubic: the SR literature's
#: MATLAB figure; FSRCNN: Dong et al. 2016; EDSR-baseline: Lim et al. 2017, 16 x 64 on DIV2K)
ANCHORS = {
    "bicubic (published)": {"set5": 28.42, "set14": 26.00, "bsd100": 25.96},
    "FSRCNN": {"set5": 30.72, "set14": 27.61, "bsd100": 26.98},
    "EDSR-baseline": {"set5": 32.09, "set14": 28.58, "bsd100": 27.57},
}

METRICS = ("psnr", "ssim", "lpips", "niqe")
LOWER_IS_BETTER = {"lpips", "niqe"}


def eval_label(spec: str) -> str:
    """The label the evaluation gives a dataset spec (a folder: its name; a name: itself)."""
    return Path(spec).resolve().name if Path(spec).is_dir() else spec.strip("/")


def dataset_key(label: str) -> str:
    """``set5/hr`` -> ``set5`` (the anchors' names)."""
    return Path(label).parts[0].lower() if label else label


def bicubic_floor(task, datasets: list[str], options: dict, metrics: list[str], data_root) -> dict:
    """Mean metrics of bicubic upsampling on each dataset (the compare's images and options)."""
    from tqdm.auto import tqdm

    from tunableconv import metrics as M
    from tunableconv.data import ImageFolderEval
    from tunableconv.tasks import EvalCase
    from tunableconv.tasks.sr import bicubic_upscale

    out = {}
    for spec in datasets:
        ds = ImageFolderEval(spec, max_images=options.get("max_images"), crop=options.get("crop"), cache=False,
                             data_root=data_root)
        sums = {m: 0.0 for m in metrics}
        for i in tqdm(range(len(ds)), desc=f"bicubic {spec}", unit="img"):
            s = task.degrade_case(ds[i]["clean"], EvalCase(f"x{task.scale}", {}), torch.Generator())
            up = bicubic_upscale(s.input, task.scale)
            for m in metrics:
                kw = task.metric_options.get(m, {})
                v = M.niqe(up, **kw) if m == "niqe" else getattr(M, m)(up, s.clean, **kw)
                sums[m] += float(v)
        out[eval_label(spec)] = {m: v / len(ds) for m, v in sums.items()}
    return out


def method_rows(compare_dir: Path, methods: list[str]) -> dict:
    """``{method: {"s": [...], "datasets": {label: {metric: [per setting]}}}}`` from the evaluations."""
    rows = {}
    for m in methods:
        path = compare_dir / "eval" / f"{m}.json"
        res = json.loads(path.read_text())
        res = res.get("result", res)
        entry = {"s": [st["s"] for st in res["settings"]], "datasets": {},
                 "images": {label: d.get("images") for label, d in res["datasets"].items()}}
        for label, d in res["datasets"].items():
            (case,) = d["cases"].values()
            entry["datasets"][label] = {k: v for k, v in case["model"].items() if k in METRICS}
        rows[m] = entry
    return rows


def _fmt(v, metric: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.4f}" if metric in ("ssim", "lpips") else f"{v:.2f}"


def table_markdown(rows: dict, floor: dict, datasets: list[str], metrics: list[str], command: str) -> str:
    lines = ["# x4 super-resolution: every method along its knob (the paper's Table 4 layout)", "",
             f"Reproduce: `{command}`", "",
             "PSNR / SSIM on Y of the 8-bit output, 4-pixel border dropped (BasicSR's convention); LPIPS "
             "(AlexNet, v0.1) on RGB; NIQE on Y with the same border. s is the `perception` slider, "
             "p = (1 − s, s): 0 the L1 end, 1 the perceptual end. ↑ higher is better, ↓ lower.", ""]
    head = "| method | s | " + " | ".join(f"{dataset_key(d)} {m}{' ↓' if m in LOWER_IS_BETTER else ' ↑'}"
                                          for d in datasets for m in metrics) + " |"
    lines += [head, "|---|---:|" + "---:|" * (len(datasets) * len(metrics))]
    lines.append("| bicubic | — | " + " | ".join(_fmt(floor[d].get(m), m) for d in datasets for m in metrics) + " |")
    for name, r in rows.items():
        for k, s in enumerate(r["s"]):
            cells = []
            for d in datasets:
                vals = r["datasets"].get(d, {})
                cells += [_fmt(vals.get(m, [None] * (k + 1))[k], m) for m in metrics]
            lines.append(f"| {name} | {'—' if s is None else f'{s:g}'} | " + " | ".join(cells) + " |")
    lines += ["", "Published Y-PSNR anchors (full test sets; ours use the images listed in sr_table.json):", "",
              "| method | " + " | ".join(dataset_key(d) for d in datasets) + " |",
              "|---|" + "---:|" * len(datasets)]
    for name, vals in ANCHORS.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(vals.get(dataset_key(d)), "psnr") for d in datasets) + " |")
    return "\n".join(lines) + "\n"


def plot_plane(rows: dict, floor: dict, datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.8), squeeze=False)
    for ax, d in zip(axes[0], datasets):
        for name, r in rows.items():
            vals = r["datasets"].get(d)
            if not vals or "lpips" not in vals:
                continue
            xs, ys = vals["psnr"], vals["lpips"]
            style = dict(marker="o", ms=4, lw=2.2 if name == "tunable" else 1.2, zorder=3 if name == "tunable" else 2)
            if len(xs) == 1:
                ax.plot(xs, ys, marker="s", ls="none", ms=6, label=name)
            else:
                ax.plot(xs, ys, label=name, **style)
                ax.annotate("s=1", (xs[-1], ys[-1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.plot([floor[d]["psnr"]], [floor[d]["lpips"]], marker="x", color="k", ls="none", ms=7, label="bicubic")
        ax.set_title(dataset_key(d))
        ax.set_xlabel("PSNR-Y (dB) →")
        ax.set_ylabel("LPIPS ↓")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("x4 SR: the perception–distortion plane (down-right is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def strips(task, compare_dir: Path, methods: list[str], spec: str, index: int, crop: int, grid: list[float],
           data_root, out: Path) -> Path:
    """One panel row per method on the HR crop ``crop`` of image ``index`` of ``spec``."""
    from PIL import Image

    from tunableconv.data import ImageFolderEval
    from tunableconv.restore import Restorer
    from tunableconv.sweep import make_strip
    from tunableconv.tasks import EvalCase
    from tunableconv.tasks.sr import bicubic_upscale

    ds = ImageFolderEval(spec, max_images=index + 1, crop=crop, cache=False, data_root=data_root)
    s = task.degrade_case(ds[index]["clean"], EvalCase(f"x{task.scale}", {}), torch.Generator())
    rows = [make_strip([s.clean, bicubic_upscale(s.input, task.scale)], ["ground truth", "bicubic"])]
    for m in methods:
        r = Restorer.load(str(compare_dir / "models" / f"{m}.safetensors"))
        if r.num_params == 0:
            imgs, labels = [r(s.input, None)], [f"{m}"]
        else:
            imgs = [r(s.input, r.params(slider=("perception", v), calibrated=False)) for v in grid]
            labels = [f"{m} s={v:g}" for v in grid]
        rows.append(make_strip([x.clamp(0, 1) for x in imgs], labels))
    width = max(im.width for im in rows)
    canvas = Image.new("RGB", (width, sum(im.height for im in rows) + 4 * (len(rows) - 1)), "white")
    y = 0
    for im in rows:
        canvas.paste(im, (0, y))
        y += im.height + 4
    path = out / "strips" / f"sr_{dataset_key(eval_label(spec))}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("compare_dir", help="the folder of `tunableconv compare --task sr --out DIR`")
    ap.add_argument("--out", default=None, help="output folder (default: the compare folder)")
    ap.add_argument("--methods", default=None, help="comma-separated (default: every method evaluated)")
    ap.add_argument("--strips", default="set14:0,bsd100:0", help="DATASET:INDEX,... images for the strips")
    ap.add_argument("--strip-crop", type=int, default=128, help="HR crop of the strips (centre)")
    ap.add_argument("--data-root", default=None)
    args = ap.parse_args(argv)

    from tunableconv.errors import InputError
    from tunableconv.evaluation import json_safe

    cdir = Path(args.compare_dir)
    out = Path(args.out) if args.out else cdir
    try:
        summary = json.loads((cdir / "compare.json").read_text())
    except (OSError, ValueError) as exc:
        print(f"sr_table: error: cannot read {cdir / 'compare.json'} ({exc})", file=sys.stderr)
        return 2
    if summary.get("task") != "sr":
        print(f"sr_table: error: {cdir} is a {summary.get('task')} comparison, not sr", file=sys.stderr)
        return 2
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else summary["methods"]
    options = summary["options"]
    specs = list(options["datasets"])
    datasets = [eval_label(d) for d in specs]
    metrics = [m for m in METRICS if m in summary["metrics"]]
    try:
        from tunableconv.evaluation import task_of
        from tunableconv.models import read_metadata

        task = task_of(read_metadata(cdir / "models" / f"{methods[0]}.safetensors"))  # the task the file records
        rows = method_rows(cdir, methods)
        floor = bicubic_floor(task, specs, options, metrics, args.data_root)
        grid = [float(v) for v in options["grid"]]
        out.mkdir(parents=True, exist_ok=True)
        strip_paths = []
        for item in args.strips.split(","):
            spec, _, idx = item.partition(":")
            match = [d for d, lab in zip(specs, datasets) if dataset_key(lab) == spec.strip()] or [spec.strip()]
            strip_paths.append(str(strips(task, cdir, methods, match[0], int(idx or 0), args.strip_crop, grid,
                                          args.data_root, out)))
    except (InputError, OSError) as exc:
        print(f"sr_table: error: {exc}", file=sys.stderr)
        return 2
    command = "python scripts/sr_table.py " + " ".join(argv if argv is not None else sys.argv[1:])
    md = table_markdown(rows, floor, datasets, metrics, command)
    plot_plane(rows, floor, datasets, out / "sr_plane.png")
    result = {"command": command, "compare": summary.get("command"), "datasets": datasets, "dataset_specs": specs,
              "images": rows[methods[0]]["images"],
              "metrics": metrics, "bicubic": floor, "methods": rows, "anchors": ANCHORS, "strips": strip_paths}
    (out / "sr_table.json").write_text(json.dumps(json_safe(result), indent=2) + "\n")
    (out / "sr_table.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
