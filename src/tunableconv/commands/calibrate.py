"""``tunableconv calibrate``: measure a model's response to its strength slider and store a
monotone slider -> raw-strength map in a copy of the model file (see
:mod:`tunableconv.calibrate`). Fit on training images, evaluate on test images.

Example::

    tunableconv calibrate runs/denoise/model.safetensors -o denoise_calibrated.safetensors \\
        --data train/bsds400 --images 16 --crop 128 --sigma 15,25,50
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("calibrate", help="make the strength slider even (stores a map in the model file)",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="shipped model name or model file")
    ap.add_argument("-o", "--output", required=True, help="the calibrated model file to write")
    ap.add_argument("--data", default="train/bsds400", help="images to fit on (default: train/bsds400, not a test set)")
    ap.add_argument("--images", type=int, default=16, help="number of images (default 16)")
    ap.add_argument("--crop", type=int, default=128, help="centre crop in pixels (default 128)")
    ap.add_argument("--sigma", default="15,25,50", help="noise levels (0..255 scale)")
    ap.add_argument("--grid", type=int, default=11, help="initial evenly spaced raw strengths, refined where the response jumps (default 11)")
    ap.add_argument("--max-points", type=int, default=61, help="most raw strengths measured (default 61)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=None)
    ap.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..calibrate import fit_calibration, measure_response
    from ..data import ImageFolderEval
    from ..errors import InputError, InvalidParamsError
    from ..evaluate import parse_numbers
    from ..models import save_model
    from ..restore import Restorer

    sigmas = parse_numbers(args.sigma, "--sigma")
    if args.grid < 3:
        raise InputError("--grid must be at least 3")
    restorer = Restorer.load(args.model)
    if not restorer.has_strength:
        raise InvalidParamsError("this model has no strength slider to calibrate")
    ds = ImageFolderEval(args.data, max_images=args.images, crop=args.crop or None, data_root=args.data_root)
    images = [ds[i]["clean"] for i in range(len(ds))]
    grid = np.linspace(0, 1, args.grid).tolist()
    response = measure_response(restorer, images, sigmas, grid, seed=args.seed, progress=True, max_points=args.max_points)
    cal = fit_calibration(response["s"], response["d"], points=41)
    cal.update({"response": response, "fitted_on": {"data": args.data, "images": len(images), "crop": args.crop,
                                                     "sigmas": sigmas, "seed": args.seed}})
    info = dict(restorer.info.info)
    info["calibration"] = cal
    save_model(restorer.model, args.output, knobs=restorer.info.knobs, info=info)
    print("raw response D(s):", json.dumps(dict(zip([f"{s:.2f}" for s in response["s"]], response["d"]))))
    print("slider -> raw strength:", json.dumps(dict(zip([f"{u:.2f}" for u in cal["slider"]], cal["raw"]))))
    print(f"wrote {args.output}")
    return 0
