"""``tunableconv demo``: the main job in under two minutes.

Takes a natural photo that ships with a dependency (scikit-image's "astronaut"; a seeded
dead-leaves image when scikit-image is absent), adds Gaussian noise, restores it with the
shipped tunable denoiser at five strengths, writes the labelled strip (and a GIF) and prints
the PSNR against the ground truth and against the noise-preservation target for each.

``--layers`` runs the small layer demo instead: convert a plain CNN with ``make_tunable``
(outputs unchanged for every p), train it briefly on two conflicting objectives, and show
that the two knob ends now do different things.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InvalidParamsError
from .restore import parse_values


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("demo", help="denoise a bundled photo at five strengths (the main job)", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="denoise", help="shipped model name or model file (default: denoise)")
    ap.add_argument("--image", default=None, help="use this photo instead of the bundled one")
    ap.add_argument("--sigma", type=float, default=25.0, help="noise level on the 0..255 scale (default 25)")
    ap.add_argument("--strengths", default="0,0.25,0.5,0.75,1", help="strengths to show (default 0,0.25,0.5,0.75,1)")
    ap.add_argument("--crop", type=int, default=256, help="centre crop of the photo in pixels (0: whole image)")
    ap.add_argument("--out", default="demo_output", help="folder for strip.png, sweep.gif, noisy.png (default demo_output)")
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
    from ..io import read_image, write_image
    from ..metrics import psnr, quantize_8bit
    from ..restore import Restorer
    from ..sweep import make_gif, make_strip, save_gif, sweep_labels, sweep_params
    from ..zoo import available

    if args.model == "denoise" and "denoise" not in available():
        print("no shipped denoiser in this installation: running the layer demo instead (tunableconv demo --layers)")
        return run_layers(args)
    values = parse_values(args.strengths, "--strengths")
    if not 0 <= args.sigma <= 255:
        raise InvalidParamsError(f"--sigma must be in [0, 255], got {args.sigma}")
    restorer = Restorer.load(args.model)
    if not restorer.has_strength:
        raise InvalidParamsError(f"model {args.model!r} has no strength slider; the demo needs a denoiser")
    clean = read_image(args.image) if args.image else bundled_sample_image()
    if args.crop:
        clean = center_crop(clean, args.crop, args.crop)
    g = torch.Generator().manual_seed(args.seed)
    noisy = clean + (args.sigma / 255.0) * torch.randn(clean.shape, generator=g)
    beta = float(restorer.info.info.get("beta", 0.9))
    target = clean + beta * (noisy - clean)
    params = sweep_params(restorer, values)
    outputs = [restorer(noisy, p) for p in params]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    noisy_shown = noisy.clamp(0, 1)
    strip = make_strip([noisy_shown, *outputs, clean], [f"noisy (sigma {args.sigma:g})", *sweep_labels(restorer, values), "clean"])
    strip.save(out / "strip.png")
    save_gif(make_gif(outputs, sweep_labels(restorer, values)), out / "sweep.gif")
    write_image(noisy_shown, out / "noisy.png")
    name = Path(restorer.info.path).stem
    print(f"{name}: {restorer.info.architecture}, knobs {', '.join(restorer.info.knob_names)}; "
          f"photo {tuple(clean.shape[1:])}, noise sigma {args.sigma:g}/255")
    print(f"{'strength':>8} | {'p':>11} | {'PSNR vs clean':>13} | {'PSNR vs noise target':>20}")
    print(f"{'noisy':>8} | {'':>11} | {float(psnr(quantize_8bit(noisy_shown), clean)):13.2f} | {'':>20}")
    for s, p, y in zip(values, params, outputs):
        yq = quantize_8bit(y)
        print(f"{s:8.2f} | {p[0]:.2f},{p[1]:.2f}{'':>2} | {float(psnr(yq, clean)):13.2f} | {float(psnr(yq, target)):20.2f}")
    print(f"wrote {out / 'strip.png'}, {out / 'sweep.gif'} (noise target: clean + {beta:g}·(noisy − clean))")
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
