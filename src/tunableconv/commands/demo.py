"""``tunableconv demo``: the main job in under two minutes.

Takes a natural photo that ships with a dependency (scikit-image's "astronaut"; a seeded
dead-leaves image when scikit-image is absent), degrades it as the model's task does (the
model file names its task; by default at the task's middle evaluation case, denoising: noise
σ 25), restores it with the model at five settings of its first slider (or first knob), writes
the labelled strip (and a GIF) and prints the PSNR against the ground truth and against what
the knob promises at each setting (the blended target), where the task defines one.

``--layers`` runs the small layer demo instead: convert a plain CNN with ``make_tunable``
(outputs unchanged for every p), train it briefly on two conflicting objectives, and show
that the two knob ends now do different things.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..zoo import DEFAULT_MODEL
from ..tasks import case_examples
from . import add_model_option
from .restore import parse_values


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("demo", help="restore a bundled photo at five knob settings (the main job)", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_option(ap)
    ap.add_argument("--image", default=None, help="use this photo instead of the bundled one")
    ap.add_argument("--degrade", metavar="LEVELS", default=None,
                    help=f"one case of the task's levels ({case_examples()}; "
                         "default: the task's middle evaluation case)")
    ap.add_argument("--values", dest="values", default="0,0.25,0.5,0.75,1",
                    help="slider (or knob) values to show (default 0,0.25,0.5,0.75,1)")
    ap.add_argument("--knob", default=None,
                    help="the knob to sweep (default: the model's first slider, else its first knob, the others at 1)")
    ap.add_argument("--crop", type=int, default=256, help="centre crop of the photo in pixels (0: whole image)")
    ap.add_argument("--out", default="demo_output", help="folder for strip.png, sweep.gif, degraded.png (default demo_output)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", action="store_true", help="run the small layer demo instead")
    ap.add_argument("--p", action="append", type=str, default=None, help="(--layers) a setting of the two knobs, e.g. 0.3,0.7")
    ap.add_argument("--steps", type=int, default=150, help="(--layers) fine-tuning steps")
    ap.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.layers:
        return run_layers(args)
    import torch

    from ..data import bundled_sample_image
    from ..data.datasets import center_crop
    from ..evaluation import task_of
    from ..io import read_image, write_image
    from ..metrics import psnr, quantize_8bit
    from ..restore import Restorer
    from ..sweep import make_gif, make_strip, save_gif, sweep_labels, sweep_params
    from ..zoo import available
    from .sweep import degradation_case

    if args.model == DEFAULT_MODEL and DEFAULT_MODEL not in available():
        print(f"no shipped {DEFAULT_MODEL} model in this installation: running the layer demo instead (tunableconv demo --layers)")
        return run_layers(args)
    values = parse_values(args.values, "--values")
    restorer = Restorer.load(args.model)
    if args.degrade is not None:
        task, case = degradation_case(restorer, args.degrade)
    else:
        task = task_of(restorer.info)
        cases = task.evaluation_cases()
        case = cases[len(cases) // 2]
    choice = {"knob": args.knob}
    if args.knob is None and not restorer.space.sliders:
        choice = {"knob": restorer.space.names[0]}
    base = [1.0] * restorer.space.num_params if choice["knob"] and restorer.space.domain == "cube" else None
    params = sweep_params(restorer, values, base=base, **choice)  # validates the values against the knob space
    labels = sweep_labels(restorer, values, **choice)
    clean = read_image(args.image) if args.image else bundled_sample_image()
    if args.crop:
        clean = center_crop(clean, args.crop, args.crop)
    sample = task.degrade_case(clean[None], case, torch.Generator().manual_seed(args.seed))
    degraded = sample.input[0]
    outputs = [restorer(degraded, p) for p in params]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shown = degraded.clamp(0, 1)
    if shown.shape[-2:] != clean.shape[-2:]:  # upscaling models: show the input at output size
        shown = torch.nn.functional.interpolate(shown[None], size=tuple(clean.shape[-2:]), mode="nearest")[0]
    strip = make_strip([shown, *outputs, clean], [f"degraded ({case.label})", *labels, "clean"])
    strip.save(out / "strip.png")
    save_gif(make_gif(outputs, labels), out / "sweep.gif")
    write_image(degraded.clamp(0, 1), out / "degraded.png")
    name = Path(restorer.info.path).stem
    print(f"{name}: {restorer.info.architecture}, task {type(task).__name__}, knobs {', '.join(restorer.info.knob_names)}; "
          f"photo {tuple(clean.shape[1:])}, degraded at {case.label}")
    print(f"{'setting':>20} | {'p':>15} | {'PSNR vs clean':>13} | {'PSNR vs blended target':>22}")
    if shown.shape == clean.shape:
        print(f"{'degraded':>20} | {'':>15} | {float(psnr(quantize_8bit(shown), clean)):13.2f} | {'':>22}")
    for label, p, y in zip(labels, params, outputs):
        yq = quantize_8bit(y)
        target = task.blended_target(sample, p) if task.num_params else None
        vs_target = f"{float(psnr(yq, target[0])):22.2f}" if target is not None else f"{'—':>22}"
        p_text = ",".join(f"{float(v):.2f}" for v in p)
        print(f"{label:>20} | {p_text:>15} | {float(psnr(yq, clean)):13.2f} | {vs_target}")
    print(f"wrote {out / 'strip.png'}, {out / 'sweep.gif'}, {out / 'degraded.png'}")
    return 0


def run_layers(args: argparse.Namespace) -> int:
    import torch
    from torch import nn

    from ..nn import check_params, make_tunable

    settings = [check_params(parse_values(t), 2) for t in (args.p or ["1,0", "0.5,0.5", "0,1"])]
    torch.manual_seed(0)
    # a plain "pretrained" network: here just a random 2-layer CNN
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
    model = make_tunable(net, num_params=2, knobs=["identity", "inverse"])
    x = torch.rand(8, 3, 24, 24)
    print("converted model: output equals the original for every p:",
          all(torch.allclose(model(x, s), net(x), atol=1e-5) for s in settings))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(args.steps):  # objective 1: reproduce x; objective 2: invert it
        p = torch.distributions.Dirichlet(torch.ones(2)).sample((8,))
        out = model(x, p)
        per_sample = torch.stack([(out - x).abs().mean((1, 2, 3)), (out - (1 - x)).abs().mean((1, 2, 3))], 1)
        loss = (p * per_sample).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    print(f"after {args.steps} steps of parametric multi-loss training:")
    print(f"{'p':>12} | {'L1 to x':>8} | {'L1 to 1-x':>9}")
    with torch.no_grad():
        for s in settings:
            out = model(x, s)
            print(f"{','.join(f'{v:.2f}' for v in s.tolist()):>12} | {(out - x).abs().mean():8.4f} | {(out - 1 + x).abs().mean():9.4f}")
    return 0
