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
                     seed: int = 0, progress: bool = False, max_step: float = 0.02, max_points: int = 61) -> dict:
    """D(s) of ``restorer`` at raw strengths on noisy versions of ``images``.

    Starts from ``grid`` (which must contain 0 and 1), then adaptively adds midpoints of the
    interval with the largest jump of D until no jump exceeds ``max_step`` or ``max_points``
    strengths are measured: uneven sliders change fastest in a narrow band of s, which a
    uniform grid samples too coarsely.

    Returns ``{"s": sorted strengths, "d": mean curve, "d_per_sigma": {sigma: curve}}``.
    """
    from tqdm import tqdm

    g = torch.Generator().manual_seed(seed)
    cases = []  # (sigma, noisy, o_0, ||o_1 - o_0||)
    for clean in images:
        for sigma in sigmas:
            noisy = clean + (sigma / 255.0) * torch.randn(clean.shape, generator=g)
            o0 = restorer(noisy, restorer.strength_to_p(0.0, calibrated=False))
            o1 = restorer(noisy, restorer.strength_to_p(1.0, calibrated=False))
            cases.append((f"{sigma:g}", noisy, o0, float(torch.linalg.vector_norm(o1 - o0))))
    if any(c[3] == 0 for c in cases):
        raise ValueError("the two knob ends give the same image: there is no response to calibrate")

    def d_at(s: float) -> dict[str, float]:
        per: dict[str, list[float]] = {}
        for key, noisy, o0, denom in cases:
            o = restorer(noisy, restorer.strength_to_p(float(s), calibrated=False))
            per.setdefault(key, []).append(float(torch.linalg.vector_norm(o - o0)) / denom)
        out = {k: float(np.mean(v)) for k, v in per.items()}
        out["mean"] = float(np.mean([x for v in per.values() for x in v]))
        return out

    points = sorted({float(v) for v in grid} | {0.0, 1.0})
    bar = tqdm(total=max_points, desc="calibrate", disable=not progress)
    values: dict[float, dict[str, float]] = {}
    for s in points:
        values[s] = d_at(s)
        bar.update(1)
    while len(values) < max_points:
        ss = sorted(values)
        jumps = [(values[b]["mean"] - values[a]["mean"], a, b) for a, b in zip(ss, ss[1:])]
        jump, a, b = max(jumps)
        if jump <= max_step or b - a < 1e-4:
            break
        values[(a + b) / 2] = d_at((a + b) / 2)
        bar.update(1)
    bar.close()
    ss = sorted(values)
    keys = sorted({k for v in values.values() for k in v} - {"mean"}, key=float)
    return {"s": [round(x, 6) for x in ss], "d": [round(values[x]["mean"], 5) for x in ss],
            "d_per_sigma": {k: [round(values[x][k], 5) for x in ss] for k in keys}}
