"""Joint deblurring + denoising outside the training range (issue 17 c): does any knob setting
produce NaN or saturated blotches?

Inputs the models never saw in training: noise sigma 70 (training: 0-50), Gaussian blur
sigma 5 (training: 0-4), and the eight real camera-shake kernels of Levin et al. 2009
(``../shared/data/blur_kernels/kernels.npz``) with light noise. Each model runs on each input
at every setting of a knob grid (the tunable model: its two knobs on {0, 0.5, 1}^2; a model
conditioned on the degradation: told the true levels, clipped to its range — for a motion
kernel, the largest blur level). Per output:

- ``nan``: the number of non-finite values (before clamping);
- ``saturated``: the share of pixels at 0 or 255 in the 8-bit output minus that share in the
  clean image (blotches), beside the same for the degraded input (strong noise clips);
- ``psnr``: to the clean image.

Writes ``extremes.json``, ``extremes.md`` and one picture per input kind
(``extremes_<case>.jpg``: the degraded input, the outputs at the grid corners and centre, and
the clean image) for the first image::

    python scripts/deblur_denoise_extremes.py --model runs/deblur-denoise-small/model.safetensors \\
        --rival results/compare-deblur-denoise/models/cresmd-condition.safetensors \\
        --data kodak24 --max-images 4 --crop 256 --out results/deblur-denoise/extremes
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tunableconv.data import ImageFolderEval  # noqa: E402
from tunableconv.data.degradations import add_gaussian_noise, blur, gaussian_blur, load_blur_kernels, quantize_8bit  # noqa: E402
from tunableconv.errors import InputError  # noqa: E402
from tunableconv.evaluation import display_path  # noqa: E402
from tunableconv.io import atomic_write  # noqa: E402
from tunableconv.metrics import psnr, quantize_8bit as to_8bit  # noqa: E402
from tunableconv.restore import Restorer  # noqa: E402
from tunableconv.sweep import make_strip  # noqa: E402
from tunableconv.tasks import conditioned_on  # noqa: E402

#: the training range's upper ends (tasks/deblur_denoise.py): the condition's scales
MAX_BLUR, MAX_NOISE = 4.0, 50.0


def cases(kernels: dict[str, torch.Tensor], noise_with_kernel: float) -> list[dict]:
    """The out-of-range inputs: name, Gaussian blur sigma or a kernel, noise sigma."""
    out = [{"name": "noise=70", "blur": 0.0, "kernel": None, "noise": 70.0},
           {"name": "blur=5", "blur": 5.0, "kernel": None, "noise": 0.0},
           {"name": "blur=5,noise=15", "blur": 5.0, "kernel": None, "noise": 15.0}]
    for name in sorted(k for k in kernels if k.startswith("levin09_")):
        out.append({"name": f"{name},noise={noise_with_kernel:g}", "blur": None, "kernel": name, "noise": noise_with_kernel})
    return out


def degrade(clean: torch.Tensor, case: dict, kernels: dict, g: torch.Generator) -> torch.Tensor:
    """Blur (a Gaussian or a kernel, replicate padding), then noise, then 8-bit quantisation."""
    x = clean
    if case["kernel"] is not None:
        x = blur(x, kernels[case["kernel"]], padding="replicate")
    elif case["blur"]:
        x = gaussian_blur(x, case["blur"], size=2 * int(3 * case["blur"] + 0.5) + 1, padding="replicate")
    return quantize_8bit(add_gaussian_noise(x, case["noise"], generator=g))


def condition_of(case: dict) -> torch.Tensor:
    """What a conditioned model is told: (blur/4, noise/50) clipped to [0, 1] (a kernel: blur 1)."""
    b = 1.0 if case["kernel"] is not None else min(case["blur"] / MAX_BLUR, 1.0)
    return torch.tensor([b, min(case["noise"] / MAX_NOISE, 1.0)])


def settings(restorer: Restorer) -> list[tuple[str, torch.Tensor | None]]:
    """(label, p) per setting; p None: the model is told the case's true levels."""
    if conditioned_on(restorer.model) == "condition":
        return [("true levels", None)]
    if restorer.num_params == 0:
        return [("fixed", None)]
    names = restorer.space.names
    return [(f"{names[0]}={a:g},{names[1]}={b:g}", torch.tensor([a, b]))
            for a in (0.0, 0.5, 1.0) for b in (0.0, 0.5, 1.0)]


def measure(out: torch.Tensor, clean: torch.Tensor) -> dict:
    nan = int((~torch.isfinite(out)).sum())
    o = to_8bit(torch.nan_to_num(out, 0.0))
    sat = float(((o <= 0) | (o >= 1)).float().mean() - ((clean <= 0) | (clean >= 1)).float().mean())
    return {"nan": nan, "saturated": sat, "psnr": float(psnr(o, clean))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="the tunable deblur_denoise model file")
    ap.add_argument("--rival", action="append", default=[], help="more model files (e.g. the conditioned CResMD)")
    ap.add_argument("--data", default="kodak24")
    ap.add_argument("--max-images", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--kernel-noise", type=float, default=5.0, help="noise sigma added after a Levin kernel")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        t0 = time.perf_counter()
        models = {Path(f).stem: Restorer.load(f) for f in [args.model, *args.rival]}
        kernels = load_blur_kernels(None if args.data_root is None else Path(args.data_root) / "blur_kernels")
        ds = ImageFolderEval(args.data, max_images=args.max_images, crop=args.crop, data_root=args.data_root)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        results: dict = {}
        worst = {"nan": 0, "saturated": -1.0}
        for case in cases(kernels, args.kernel_noise):
            per_model: dict = {}
            pictures, labels = [], []
            input_sat = []
            for i in range(len(ds)):
                clean = ds[i]["clean"]
                x = degrade(clean, case, kernels, torch.Generator().manual_seed(1000 + i))
                input_sat.append(measure(x, clean)["saturated"])
                if i == 0:
                    pictures, labels = [x], ["input"]
                for name, r in models.items():
                    for label, p in settings(r):
                        y = r(x, condition_of(case) if p is None and r.num_params else p)
                        m = measure(y, clean)
                        worst["nan"] = max(worst["nan"], m["nan"])
                        worst["saturated"] = max(worst["saturated"], m["saturated"])
                        acc = per_model.setdefault(name, {}).setdefault(label, {"nan": 0, "saturated": [], "psnr": []})
                        acc["nan"] += m["nan"]
                        acc["saturated"].append(m["saturated"])
                        acc["psnr"].append(m["psnr"])
                        shown = label in ("true levels", "fixed") or label.count("=0.5") == 0
                        if i == 0 and shown:
                            pictures.append(y.clamp(0, 1))
                            labels.append(f"{name}: {label}" if len(models) > 1 else label)
                if i == 0:
                    pictures.append(clean)
                    labels.append("clean")
            for name, per in per_model.items():
                for label, acc in per.items():
                    acc["saturated"] = max(acc["saturated"])
                    acc["psnr"] = sum(acc["psnr"]) / len(acc["psnr"])
            results[case["name"]] = {"input_saturated": max(input_sat), "models": per_model}
            tag = "".join(ch if ch.isalnum() else "_" for ch in case["name"])
            make_strip(pictures, labels).save(out / f"extremes_{tag}.jpg", quality=90)  # photos: JPEG keeps them small
            print(f"{case['name']}: done", file=sys.stderr)
        summary = {"command": "python scripts/deblur_denoise_extremes.py " + " ".join(argv or sys.argv[1:]),
                   "models": {n: display_path(r.info.path) for n, r in models.items()}, "data": args.data,
                   "num_images": len(ds), "crop": args.crop, "cases": results, "worst": worst,
                   "wall_seconds": round(time.perf_counter() - t0, 1)}
        atomic_write(out / "extremes.json", (json.dumps(summary, indent=1) + "\n").encode())
        lines = [f"# Outside the training range ({len(ds)} images of {args.data}, {args.crop} px crops)", "",
                 f"Worst over every input and setting: {worst['nan']} non-finite values; saturated share above the "
                 f"clean image's: {worst['saturated']:+.4f}.", "",
                 "| input | model | setting | PSNR (dB) | non-finite | saturated (max over images) |",
                 "|---|---|---|---:|---:|---:|"]
        for cname, res in results.items():
            lines.append(f"| {cname} | the input | — | — | 0 | {res['input_saturated']:+.4f} |")
            for name, per in res["models"].items():
                for label, acc in per.items():
                    lines.append(f"| {cname} | {name} | {label} | {acc['psnr']:.2f} | {acc['nan']} | {acc['saturated']:+.4f} |")
        atomic_write(out / "extremes.md", ("\n".join(lines) + "\n").encode())
        print("\n".join(lines[:3]))
        return 0
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
