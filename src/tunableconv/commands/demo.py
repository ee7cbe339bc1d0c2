"""``tunableconv demo``: a small layer demo (replaced by the denoising demo once a model ships)."""

from __future__ import annotations

import argparse

from ..errors import InvalidParamsError


def parse_p(text: str) -> list[float]:
    """'0.3,0.7' -> [0.3, 0.7] (range checks happen where the number of knobs is known)."""
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise InvalidParamsError(f"--p must be comma-separated numbers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("demo", help="run the demo", description=__doc__)
    ap.add_argument("--p", action="append", type=str, default=None,
                    help="a setting of the two knobs, e.g. 0.3,0.7 (repeatable)")
    ap.add_argument("--steps", type=int, default=150, help="fine-tuning steps")
    ap.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from torch import nn

    from ..nn import check_params, make_tunable

    settings = [check_params(parse_p(t), 2) for t in (args.p or ["1,0", "0.5,0.5", "0,1"])]
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
