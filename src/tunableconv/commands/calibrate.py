"""``tunableconv calibrate``: make a model's sliders (cube knobs, simplex edges) even, and store
the calibrations in a copy of the model file (see :mod:`tunableconv.calibrate`).

Example::

    tunableconv calibrate runs/denoise/model.safetensors -o denoise_calibrated.safetensors \\
        --data train/bsds400 --images 16 --crop 128

What is calibrated, from the model's knob space: every named slider (the denoiser's
``strength``), on the cube every knob along its own axis with the other knobs at their
defaults, and on a simplex without a slider (three styles) every knob's weight warp, fitted so
that each edge of the simplex, from one objective to another, moves evenly. The response is
measured on training images (not a test set), each degraded ``--repeats`` times the way the
model's task (``info.task``) degrades training images, and where the task judges outputs: in
pixels, or for style transfer in VGG Gram space. The
output file (format ``tunableconv-model/2``) stores the calibrations in its knob space and
the measured curves in ``info.calibration_fit``; ``restore``, ``sweep`` and the app apply
them by default, and ``--raw`` there keeps the raw p.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("calibrate", help="make the sliders, cube knobs and simplex edges even (stores the maps in the model file)",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="shipped model name or model file")
    ap.add_argument("-o", "--output", required=True, help="the calibrated model file to write (not the input)")
    ap.add_argument("--data", default="train/bsds400", help="images to fit on (default: train/bsds400, not a test set)")
    ap.add_argument("--images", type=int, default=16, help="number of images (default 16)")
    ap.add_argument("--crop", type=int, default=128, help="centre crop in pixels (default 128; 0: whole images)")
    ap.add_argument("--repeats", type=int, default=3, help="degraded versions of each image (default 3)")
    ap.add_argument("--grid", type=int, default=11,
                    help="initial evenly spaced raw values, refined where the response jumps (default 11)")
    ap.add_argument("--max-points", type=int, default=61, help="most raw values measured per path, the grid included "
                                                               "(default 61)")
    ap.add_argument("--points", type=int, default=41, help="knots of each stored map (default 41)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--no-progress", action="store_true", help="no progress bars (the default when not on a terminal)")
    ap.set_defaults(func=run)


def check_counts(args: argparse.Namespace) -> None:
    """Bound every count a user can type (one-line errors naming the option)."""
    from ..calibrate import MAX_GRID, MAX_POINTS
    from ..errors import InputError

    bounds = (("--images", args.images, 1, 1000), ("--repeats", args.repeats, 1, 10), ("--grid", args.grid, 3, MAX_GRID),
              ("--max-points", args.max_points, 3, MAX_POINTS), ("--points", args.points, 3, MAX_POINTS))
    for option, value, low, high in bounds:
        if not low <= value <= high:
            raise InputError(f"{option} must be in [{low}, {high}], got {value}")
    if args.max_points < args.grid:
        raise InputError(f"--max-points ({args.max_points}) must be at least --grid ({args.grid}): the grid counts "
                         "towards it")
    if args.crop < 0 or 0 < args.crop < 16:
        raise InputError(f"--crop must be 0 (whole images) or at least 16 pixels, got {args.crop}")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np
    import torch

    from ..calibrate import (_degrade_for, _features_for, calibration_targets, fit_calibration, fit_simplex_warps,
                             measure_response, simplex_edges, with_calibration)
    from ..knobs import Calibration
    from ..data import ImageFolderEval
    from ..errors import InputError, InvalidParamsError
    from ..io import check_output_path
    from ..models import save_model
    from ..restore import Restorer
    from ..zoo import resolve
    from .restore import same_path

    check_counts(args)
    source = resolve(args.model)
    output = Path(args.output)
    if output.suffix != ".safetensors":
        raise InputError(f"cannot write {output}: a model file must end in .safetensors")
    if same_path(source, output):
        raise InputError(f"-o {output} is the input model file: write the calibrated model to another file")
    check_output_path(output)
    restorer = Restorer.load(str(source))
    space = restorer.space
    targets, edges = calibration_targets(space), simplex_edges(space)
    if not targets and not edges:
        why = "no knobs" if space.num_params == 0 else "one knob"
        raise InvalidParamsError(f"this model has nothing to calibrate ({why})")
    info = dict(restorer.info.info)
    ds = ImageFolderEval(args.data, max_images=args.images, crop=args.crop or None, data_root=args.data_root)
    g = torch.Generator().manual_seed(args.seed)
    inputs = [_degrade_for(restorer.info, ds[i]["clean"], g) for i in range(len(ds)) for _ in range(args.repeats)]
    grid = np.linspace(0, 1, args.grid).tolist()
    progress = not args.no_progress and sys.stderr.isatty()
    features = _features_for(restorer.info)
    fits = {}
    for target in targets:
        response = measure_response(restorer, inputs, target.path, grid, progress=progress,
                                    max_points=args.max_points, desc=target.label, features=features)
        cal = fit_calibration(response["s"], response["d"], points=args.points)
        space = with_calibration(space, target, cal)
        fits[target.label] = {"response": response}
        print(f"{target.label}: raw response D(s):",
              json.dumps(dict(zip([f"{s:.2f}" for s in response["s"]], response["d"]))))
        print(f"{target.label}: value -> raw:", json.dumps(dict(zip([f"{u:.2f}" for u in cal["slider"]], cal["raw"]))))
    if edges:
        responses = {}
        for target in edges:
            response = measure_response(restorer, inputs, target.path, grid, progress=progress,
                                        max_points=args.max_points, desc=target.label, features=features)
            responses[target.edge] = response
            fits[target.label] = {"response": response}
        warp = fit_simplex_warps(responses, space.num_params, points=args.points)
        for name, cal in zip(space.names, warp["warps"]):
            space = space.with_knob_calibration(name, Calibration.from_dict(cal, "calibration", f"knob {name}"))
        named = {t.name: t.edge for t in edges}
        fits["weight warps"] = {"gamma": dict(zip(space.names, warp["gamma"])),
                                "evenness_error_before": {e: warp["error_before"][ab] for e, ab in named.items()},
                                "evenness_error_after": {e: warp["error_after"][ab] for e, ab in named.items()}}
        print("weight warps c(u) = u^gamma:", json.dumps(fits["weight warps"]["gamma"]))
        for e, ab in named.items():
            print(f"edge {e}: evenness error {warp['error_before'][ab]:.3f} raw -> {warp['error_after'][ab]:.3f} "
                  "with the warps")
    info.pop("calibration", None)  # format 1 kept the strength calibration here; it is in the knob space now
    info["calibration_fit"] = {"paths": fits, "fitted_on": {
        "data": args.data, "images": len(ds), "crop": args.crop, "repeats": args.repeats, "seed": args.seed,
        "degradation": f"the {info.get('task')} task's"}}
    save_model(restorer.model, output, info=info, knob_space=space)
    done = [t.label for t in targets] + ([f"weight warps of {', '.join(space.names)}"] if edges else [])
    print(f"wrote {output} ({len(done)} calibration(s): {', '.join(done)})")
    return 0
