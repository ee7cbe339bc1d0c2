r"""Calibrated sliders and knobs: make equal moves change the image by equal amounts.

A tunable model's response along a path through its knobs is usually uneven (an L1 mixture
of two targets tends to switch rather than blend). For each path p(s), s ∈ [0, 1] — every
named slider of the model's knob space, and on the cube each knob along its own axis with
the other knobs at their defaults — we measure the response curve on images that are *not*
test images (training images by default), degraded as the model's task degrades them,

.. math::
    D(s) = \operatorname{mean}_{\text{images}} \frac{\lVert o_{p(s)} - o_{p(0)} \rVert}{\lVert o_{p(1)} - o_{p(0)} \rVert},

make it monotone (running maximum, clipped to [0, 1]; D(0) = 0 and D(1) = 1 by definition)
and store its inverse as a monotone piecewise-linear map from the user's value u to the raw
s, ``raw = D^{-1}(u)``, in the model file's knob space (a
:class:`~tunableconv.knobs.Calibration` on the slider or knob). The CLI, the sweeps and the
web app apply it by default; the raw p stays available (``--p``, ``--raw``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .errors import InputError
from .knobs import Calibration, KnobSpace

#: Bounds of what a user can ask for (issue 16 B4).
MAX_GRID = 101
MAX_POINTS = 201


def fit_calibration(grid: Sequence[float], response: Sequence[float], points: int = 21) -> dict:
    """Monotone inverse of a measured response curve.

    Args:
        grid: raw values s_0 = 0 < ... < s_n = 1.
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


@dataclass(frozen=True)
class CalibrationTarget:
    """One path to calibrate: a named slider (``kind="slider"``) or a cube knob along its axis
    (``kind="knob"``). ``path(s)`` is the raw p at s ∈ [0, 1] (no calibration applied)."""

    kind: str
    name: str
    path: Callable[[float], Tensor]

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name}"


def calibration_targets(space: KnobSpace) -> list[CalibrationTarget]:
    """Every named slider, and on the cube every knob along its own axis (the others at their defaults)."""
    targets = [CalibrationTarget("slider", s.name, lambda v, s=s: torch.tensor(s.p(v, calibrated=False)))
               for s in space.sliders]
    if space.domain == "cube":
        targets += [CalibrationTarget("knob", name, lambda v, name=name: space.along_knob(name, v, calibrated=False))
                    for name in space.names]
    return targets


def with_calibration(space: KnobSpace, target: CalibrationTarget, calibration: dict | Calibration) -> KnobSpace:
    """``space`` with ``calibration`` stored on ``target``'s slider or knob."""
    cal = calibration if isinstance(calibration, Calibration) else Calibration.from_dict(
        {"slider": calibration["slider"], "raw": calibration["raw"]}, "calibration", target.label)
    if target.kind == "slider":
        return space.with_slider_calibration(target.name, cal)
    return space.with_knob_calibration(target.name, cal)


@torch.no_grad()
def measure_response(restorer, inputs: Sequence[Tensor], path: Callable[[float], Tensor], grid: Sequence[float],
                     progress: bool = False, max_step: float = 0.02, max_points: int = 61,
                     desc: str = "calibrate") -> dict[str, Any]:
    """D(s) of ``restorer`` along ``path`` (raw s -> p) on the network inputs ``inputs``.

    Starts from ``grid`` (0 and 1 are added), then adaptively adds midpoints of the interval
    with the largest jump of D until no jump exceeds ``max_step`` or ``max_points`` values are
    measured in all (uneven sliders change fastest in a narrow band of s, which a uniform
    grid samples too coarsely). The initial grid counts towards ``max_points``.

    Returns ``{"s": sorted values, "d": mean curve}``.

    Raises:
        InputError: ``max_points`` smaller than the initial grid, or the two ends of the path
            give the same image (nothing to calibrate).
    """
    from tqdm import tqdm

    points = sorted({round(float(v), 9) for v in grid} | {0.0, 1.0})
    if len(points) > max_points:
        raise InputError(f"the initial grid has {len(points)} values but max_points is {max_points}: "
                         "lower --grid or raise --max-points")
    cases = []  # (input, o_0, ||o_1 - o_0||)
    for x in inputs:
        o0, o1 = restorer(x, path(0.0)), restorer(x, path(1.0))
        cases.append((x, o0, float(torch.linalg.vector_norm(o1 - o0))))
    if any(c[2] == 0 for c in cases):
        raise InputError("the two ends of the path give the same image: there is no response to calibrate")

    def d_at(s: float) -> float:
        return float(np.mean([float(torch.linalg.vector_norm(restorer(x, path(float(s))) - o0)) / denom
                              for x, o0, denom in cases]))

    bar = tqdm(total=max_points, desc=desc, disable=not progress)
    values: dict[float, float] = {}
    for s in points:
        values[s] = d_at(s)
        bar.update(1)
    while len(values) < max_points:
        ss = sorted(values)
        jump, a, b = max((values[b] - values[a], a, b) for a, b in zip(ss, ss[1:]))
        if jump <= max_step or b - a < 1e-4:
            break
        values[(a + b) / 2] = d_at((a + b) / 2)
        bar.update(1)
    bar.close()
    ss = sorted(values)
    return {"s": [round(x, 6) for x in ss], "d": [round(values[x], 5) for x in ss]}


def _degrade_for(info, clean: Tensor, generator: torch.Generator) -> Tensor:
    """The network input for ``clean``, degraded as the task of the model file
    (``info.info["task"]``, ``info`` a :class:`~tunableconv.models.files.ModelInfo`) degrades
    its training images: the task layer's ``degrade(clean, generator).input``, the task built
    from the file's stored recipe (:func:`tunableconv.evaluation.task_of`). Calibrate itself
    knows no task.

    Raises:
        InputError: the file names no task, or one this tunableconv does not know.
    """
    from .evaluation import task_of

    if not (info.info or {}).get("task"):
        raise InputError(f"{info.path or 'model file'}: the model file names no task (info.task), so calibrate "
                         "cannot degrade its images")
    return task_of(info).degrade(clean, generator).input
