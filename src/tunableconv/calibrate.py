r"""Calibrated slider: make equal slider moves change the image by equal amounts.

A tunable model's response to its raw strength s is usually uneven (an L1 mixture of two
targets tends to switch rather than blend). We measure the response curve on images that
are *not* test images (training images by default),

.. math::
    D(s) = \operatorname{mean}_{\text{images}} \frac{\lVert o_s - o_0 \rVert}{\lVert o_1 - o_0 \rVert},

make it monotone (running maximum, clipped to [0, 1]; D(0) = 0 and D(1) = 1 by definition)
and store its inverse as a monotone piecewise-linear map from the user's slider u to the raw
strength, ``raw = D^{-1}(u)``, in the model file's metadata
(``info["calibration"] = {"slider": [...], "raw": [...], ...}``). The CLI, the sweeps and the
web app apply it by default; the raw p stays available (``--p``, ``--raw``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def fit_calibration(grid: Sequence[float], response: Sequence[float], points: int = 21) -> dict:
    """Monotone inverse of a measured response curve.

    Args:
        grid: raw strengths s_0 = 0 < ... < s_n = 1.
        response: D(s) on that grid (any values; made monotone here).
        points: number of slider knots of the stored map.

    Returns:
        ``{"slider": u_knots, "raw": s(u_knots)}``, both non-decreasing, from 0 to 1.
    """
    s = np.asarray(grid, dtype=np.float64)
    d = np.asarray(response, dtype=np.float64)
    if s.ndim != 1 or s.shape != d.shape or len(s) < 2 or s[0] != 0 or s[-1] != 1 or np.any(np.diff(s) <= 0):
        raise ValueError("grid must increase from 0 to 1 and match the response")
    if not np.all(np.isfinite(d)):
        raise ValueError("the response curve has NaN/Inf values (do the two knob ends give the same image?)")
    d = np.clip(np.maximum.accumulate(d), 0.0, 1.0)
    d[0], d[-1] = 0.0, 1.0
    d = d + 1e-9 * s  # strictly increasing, so the inverse is a function
    u = np.linspace(0.0, 1.0, points)
    raw = np.interp(u, d, s)
    raw[0], raw[-1] = 0.0, 1.0
    return {"slider": [round(float(v), 6) for v in u], "raw": [round(float(v), 6) for v in np.maximum.accumulate(raw)]}


@torch.no_grad()
def measure_response(restorer, images: Sequence[Tensor], sigmas: Sequence[float], grid: Sequence[float],
                     seed: int = 0, progress: bool = False) -> dict:
    """D(s) of ``restorer`` at raw strengths ``grid`` on noisy versions of ``images``.

    Returns ``{"s": grid, "d": mean curve, "d_per_sigma": {sigma: curve}}``.
    """
    from .metrics import evenness

    curves: dict[str, list[np.ndarray]] = {}
    g = torch.Generator().manual_seed(seed)
    total = len(images) * len(sigmas)
    from tqdm import tqdm

    bar = tqdm(total=total, desc="calibrate", disable=not progress)
    for clean in images:
        for sigma in sigmas:
            noisy = clean + (sigma / 255.0) * torch.randn(clean.shape, generator=g)
            outs = [restorer(noisy, restorer.strength_to_p(float(s), calibrated=False)) for s in grid]
            d = evenness(outs, list(grid))["d"].double().numpy()
            curves.setdefault(f"{sigma:g}", []).append(d)
            bar.update(1)
    bar.close()
    per_sigma = {k: np.mean(v, axis=0) for k, v in curves.items()}
    mean = np.mean([c for v in curves.values() for c in v], axis=0)
    return {"s": [float(v) for v in grid], "d": [round(float(v), 5) for v in mean],
            "d_per_sigma": {k: [round(float(x), 5) for x in v] for k, v in per_sigma.items()}}
