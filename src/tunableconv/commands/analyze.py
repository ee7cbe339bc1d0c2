"""``tunableconv analyze``: the paper's analysis figures (Maggioni et al., CVPR 2023, Figs. 3, 8, 9).

- ``overhead``: Fig. 3, the run-time ratio tunable / plain of one convolution against the
  channel count, one line per kernel size, for inference and a training step, read from
  ``benchmarks/overhead.py``'s JSON (not re-measured). Writes ``overhead.png`` and ``.json``.
- ``kernels``: Fig. 8, the tuned kernels of both convolutions of every residual block at N
  settings along the slider (p = (1 - s, s) on a 2-knob simplex), embedded by PCA + t-SNE
  (one point per conv and setting), and how straight each block's path is. With the affine
  map p -> w the tuned kernels are affine in p, so every path is exactly straight (linearity 1
  up to rounding): a fact of the construction, which the numbers confirm. Writes
  ``kernels_MODEL.png`` and ``.json``.
- ``components``: Fig. 9, the first principal component of the RGB kernels of the first and
  last tunable convolution at each setting, as images. Writes ``components_MODEL.png`` and ``.json``.
- ``all``: the three, for every shipped model with two knobs on a simplex (one slider from
  one objective to the other) whose residual blocks are :class:`~tunableconv.nn.TunableConv2d`
  layers (:func:`analysable_models`), or the models given with ``--models``.

Needs matplotlib and scikit-learn (``pip install 'tunableconv[eval]'``). See tunableconv.analysis.

Examples::

    tunableconv analyze overhead --json results/overhead.json --out results/analysis
    tunableconv analyze kernels --model denoise --out results/analysis
    tunableconv analyze components --model sr4 --steps 5 --out /tmp/a
    tunableconv analyze all --out results/analysis
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_OVERHEAD_JSON = "results/overhead.json"


def analysable_models() -> list[str]:
    """The shipped models ``analyze all`` reads by default: two knobs on a simplex (so the
    settings are p = (1 - s, s)) and residual blocks of tunable convolutions, read from each
    file (a model tuned through :func:`~tunableconv.nn.make_tunable` slots, such as the
    NAFNet denoiser, has none)."""
    from ..analysis import residual_block_convs
    from ..models import load_model
    from ..models.files import read_metadata
    from ..zoo import available

    names = []
    for name, path in available().items():
        space = read_metadata(path).space
        if space.num_params == 2 and space.domain == "simplex" and residual_block_convs(load_model(path)[0]):
            names.append(name)
    return names


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("analyze", help="the paper's analysis figures: overhead, kernel paths, principal components",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.set_defaults(func=_no_subcommand)
    what = ap.add_subparsers(dest="analysis", metavar="ANALYSIS")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", help="output folder for the figure and its JSON")
        p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default: torch's choice)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    def model_options(p: argparse.ArgumentParser) -> None:
        from . import add_model_option

        add_model_option(p)
        p.add_argument("--steps", type=int, default=5, help="settings along the slider, evenly spaced s in [0, 1] (default: 5)")

    o = what.add_parser("overhead", help="Fig. 3: tunable / plain run time vs channels, per kernel size")
    o.add_argument("--json", default=DEFAULT_OVERHEAD_JSON,
                   help=f"benchmarks/overhead.py's JSON (default: {DEFAULT_OVERHEAD_JSON})")
    common(o)
    o.set_defaults(func=run_overhead)

    k = what.add_parser("kernels", help="Fig. 8: PCA + t-SNE of the tuned kernels, and how straight their paths are")
    model_options(k)
    k.add_argument("--perplexity", type=float, help="t-SNE perplexity (default: min(30, (points - 1) / 3), about 20 for 6 blocks x 2 convs x 5 settings)")
    k.add_argument("--seed", type=int, default=0, help="random state of PCA and t-SNE (default: 0)")
    common(k)
    k.set_defaults(func=run_kernels)

    c = what.add_parser("components", help="Fig. 9: first principal component of the first/last layer's RGB kernels")
    model_options(c)
    common(c)
    c.set_defaults(func=run_components)

    a = what.add_parser("all", help="all three, for every shipped two-knob simplex model they can read")
    a.add_argument("--json", default=DEFAULT_OVERHEAD_JSON, help=f"overhead JSON (default: {DEFAULT_OVERHEAD_JSON})")
    a.add_argument("--models", help="comma-separated models (default: every shipped model with two knobs on a "
                                    "simplex and tunable residual blocks; the NAFNet denoiser has none)")
    a.add_argument("--steps", type=int, default=5, help="settings along the slider (default: 5)")
    a.add_argument("--seed", type=int, default=0, help="random state of PCA and t-SNE (default: 0)")
    common(a)
    a.set_defaults(func=run_all)


# ----------------------------------------------------------------------------------------
def _no_subcommand(args: argparse.Namespace) -> int:
    from ..errors import InputError

    raise InputError("name an analysis: overhead, kernels, components or all (see tunableconv analyze --help)")


def _prepare(args: argparse.Namespace, sklearn: bool) -> Path:
    """Cheap checks before any work: --out, --threads, matplotlib (and scikit-learn)."""
    from ..errors import InputError

    if not args.out:
        raise InputError("give --out FOLDER for the figure and its JSON")
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("the figures need matplotlib: pip install 'tunableconv[eval]'") from None
    if sklearn:
        try:
            import sklearn  # noqa: F401
        except ImportError:
            from ..analysis import SKLEARN_HINT

            raise InputError(f"the t-SNE embedding needs scikit-learn: {SKLEARN_HINT}") from None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create --out {out} ({exc.strerror or exc})") from None
    return out


def _load(model: str):
    """(model, info, short name) of a shipped name or a model file; refuses a fixed model."""
    from ..analysis import tunable_convs
    from ..errors import InputError
    from ..models import load_model
    from ..zoo import resolve

    path = resolve(model)
    net, info = load_model(path)
    name = model if Path(model).name == model and not Path(model).suffix else path.stem
    if info.space.num_params == 0:
        raise InputError(f"model {model!r} is a fixed network: it has no knobs to analyse")
    if not tunable_convs(net):
        raise InputError(f"model {model!r} ({info.architecture}) has no TunableConv2d layers: its knobs act through "
                         "make_tunable slots, which analyze does not read")
    return net, info, name, _provenance(path)


def _provenance(path: Path) -> dict:
    """Which file was analysed: its path (relative to the working folder when inside it) and SHA-256."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    try:
        shown = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = str(path)
    return {"model_file": shown, "model_sha256": h.hexdigest()}


def _settings(info, steps: int):
    from ..analysis import slider_settings

    return slider_settings(info.space.num_params, info.space.domain, steps)


def _progress(args: argparse.Namespace, total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=args.no_progress or not sys.stderr.isatty(), dynamic_ncols=True)


# ----------------------------------------------------------------------------------------
def overhead(json_path: str, out: Path) -> list[Path]:
    from .. import analysis as A

    table = A.read_overhead(json_path)
    png = A.plot_overhead(table, out / "overhead.png")
    js = A.write_json({"source": str(json_path), "ratio": "run time tunable / plain (median)", **table},
                      out / "overhead.json")
    print(f"overhead (tunable / plain) from {json_path}:")
    print("| k | " + " | ".join(f"C={c} inf / train" for c in table["channels"]) + " |")
    for k in table["kernel_sizes"]:
        cells = [f"{i:.3f} / {t:.3f}" if i is not None else "-"
                 for i, t in zip(table["inference"][str(k)], table["train"][str(k)])]
        print(f"| {k} | " + " | ".join(cells) + " |")
    return [png, js]


def kernels(model: str, out: Path, steps: int, perplexity: float | None = None, seed: int = 0) -> list[Path]:
    from .. import analysis as A

    net, info, name, source = _load(model)
    s, ps = _settings(info, steps)
    report = A.kernel_paths_report(net, s, ps, perplexity=perplexity, random_state=seed)
    report = {"model": model, **source, "knobs": info.space.names, "domain": info.space.domain, **report}
    knob = info.space.names[-1] if info.space.names else "s"
    title = f"{name}: s = weight of '{knob}', p = {'(1 - s, s)' if info.space.domain == 'simplex' else '(s,)'}"
    png = A.plot_kernel_paths(report, out / f"kernels_{name}.png", title=title)
    js = A.write_json(report, out / f"kernels_{name}.json")
    print(f"{name}: kernel paths over s = {', '.join(f'{v:g}' for v in report['s'])} "
          f"({report['dims']} dims per conv; t-SNE perplexity {report['tsne']['perplexity']:g})")
    print("| block | linearity (PC1 variance) | off-line | relative length | step evenness |")
    print("|---:|---:|---:|---:|---:|")
    for r in report["blocks"]:
        print(f"| {r['block']} | {r['linearity']:.15f} | {r['off_line']:.1e} | {r['relative_length']:.4f} | "
              f"{r['step_evenness']:.6f} |")
    print("exactly linear by construction (w(p) affine in p)" if report["exactly_linear_by_construction"]
          else "the map p -> w is not affine: the linearity is a measurement")
    return [png, js]


def components(model: str, out: Path, steps: int) -> list[Path]:
    from .. import analysis as A

    net, info, name, source = _load(model)
    s, ps = _settings(info, steps)
    comps = A.first_components(net, ps)
    png = A.plot_components(comps, [float(v) for v in s], out / f"components_{name}.png",
                            title=f"{name}: p = {'(1 - s, s)' if info.space.domain == 'simplex' else '(s,)'}, "
                                  f"s = weight of '{info.space.names[-1]}'")
    report = {
        "model": model, **source, "knobs": info.space.names, "s": [float(v) for v in s], "p": ps.tolist(),
        "sign": "the first setting's component has its largest-magnitude entry positive; each next one is flipped "
                "to a non-negative dot product with the previous one",
        "image": "values v shown as 0.5 + v / (2 max|v|), one scale per layer (row)",
        "layers": {n: {"side": d["side"], "layout": "(settings, kh, kw, RGB), unit-norm principal direction",
                       "components": d["components"], "explained_variance": d["explained"],
                       "cos_to_previous": d["cos_prev"], "flipped": d["flipped"]} for n, d in comps.items()},
    }
    js = A.write_json(report, out / f"components_{name}.json")
    print(f"{name}: first principal component of the RGB kernels")
    for n, d in comps.items():
        ev = ", ".join(f"{v:.3f}" for v in d["explained"])
        cs = ", ".join(f"{v:.3f}" for v in d["cos_prev"])
        print(f"  {n} ({d['side']} side): explained variance {ev}; cosine to previous setting {cs}")
    return [png, js]


def run_overhead(args: argparse.Namespace) -> int:
    out = _prepare(args, sklearn=False)
    paths = overhead(args.json, out)
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


def run_kernels(args: argparse.Namespace) -> int:
    out = _prepare(args, sklearn=True)
    t0 = time.perf_counter()
    paths = kernels(args.model, out, args.steps, args.perplexity, args.seed)
    print(f"wrote {', '.join(map(str, paths))} ({time.perf_counter() - t0:.1f} s)")
    return 0


def run_components(args: argparse.Namespace) -> int:
    out = _prepare(args, sklearn=False)
    paths = components(args.model, out, args.steps)
    print(f"wrote {', '.join(map(str, paths))}")
    return 0


def run_all(args: argparse.Namespace) -> int:
    from ..analysis import read_overhead, slider_settings
    from ..errors import InputError

    out = _prepare(args, sklearn=True)
    models = analysable_models() if args.models is None else [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise InputError("--models: give at least one model")
    read_overhead(args.json)  # cheap checks first
    slider_settings(2, "simplex", args.steps)
    t0 = time.perf_counter()
    paths: list[Path] = []
    bar = _progress(args, 1 + 2 * len(models), "analyze")
    with bar:
        paths += overhead(args.json, out)
        bar.update()
        for m in models:
            print()
            paths += kernels(m, out, args.steps, None, args.seed)
            bar.update()
            print()
            paths += components(m, out, args.steps)
            bar.update()
    print(f"\nwrote {len(paths)} files to {out} ({time.perf_counter() - t0:.1f} s)")
    return 0
