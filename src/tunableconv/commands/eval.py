"""``tunableconv eval``: PSNR/SSIM of a denoiser along its strength slider, on noisy test sets.

Writes ``results.json`` (everything), ``results.md`` (tables in the paper's Table-1 layout:
rows = sigma per dataset, columns = slider values, cells "PSNR to ground truth / PSNR to
the noise-preservation target"; SSIM; evenness; gap to the reference) and
``psnr_vs_p.png`` into --out.

Noise is seeded per (seed, dataset, image, sigma): every model and run sees the same noisy
images. Outputs are clamped to [0, 1] and quantised to 8 bits before the metrics. The
slider goes through the model's stored calibration unless --raw. Models without knobs are
evaluated once. See tunableconv.evaluate for the conventions.

Examples::

    tunableconv eval --model denoise --data cbsd68,kodak24 --sigma 15,25,50 --out results/denoise
    tunableconv eval --model denoise --compare denoise-fixed --out results/denoise
    tunableconv eval --model runs/x/model.safetensors --data my/folder --max-images 4 --crop 128 --out /tmp/ev
"""

from __future__ import annotations

import argparse
import shlex


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("eval", help="evaluate a denoiser along its slider (PSNR, SSIM, evenness)",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    ap.add_argument("--tile", type=int, metavar="N", help="run the models on N x N tiles (bounds memory)")
    ap.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-plot", action="store_true", help="skip psnr_vs_p.png (no matplotlib needed)")
    ap.add_argument("--no-ssim", action="store_true", help="skip SSIM (about a third of the time with small models)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.set_defaults(func=run)


def command_line(args: argparse.Namespace) -> str:
    """The equivalent ``tunableconv eval ...`` command line (all options explicit)."""
    parts = ["tunableconv", "eval", "--model", args.model, "--data", args.data, "--sigma", args.sigma,
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


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..evaluate import check_grid, check_sigmas, evaluate, results_markdown, write_report

    # Cheap checks first, before loading anything.
    check_sigmas(args.sigma)
    check_grid(args.p_grid)
    if not args.out:
        raise InputError("give --out FOLDER for results.json, results.md and psnr_vs_p.png")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if not args.no_plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InputError("the plot needs matplotlib: pip install 'tunableconv[eval]', or pass --no-plot") from None

    results = evaluate(
        args.model, args.data, args.sigma, args.p_grid,
        reference=args.compare, seed=args.seed, max_images=args.max_images, crop=args.crop, raw=args.raw,
        data_root=args.data_root, device=args.device, tile=args.tile, progress=not args.no_progress,
        command=command_line(args), compute_ssim=not args.no_ssim,
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
