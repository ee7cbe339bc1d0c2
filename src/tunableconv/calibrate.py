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

**Simplex knobs** (a model whose knobs are P >= 2 weights on the simplex and which has no
named slider, e.g. three styles): D is measured along every edge of the simplex, from
objective a (s = 0) to objective b (s = 1), and each knob gets a *weight warp*
c_i(u) = u^γ_i; the user's weights u become p_i = c_i(u_i) / Σ_j c_j(u_j)
(:meth:`~tunableconv.knobs.KnobSpace.simplex_weights`). On edge (a, b) at the user's t the raw
fraction is s(t) = t^γ_b / ((1 − t)^γ_a + t^γ_b); the exponents are chosen (coordinate descent
on a grid of γ ∈ [0.2, 5]) to minimise the mean over edges and t of (D_ab(s(t)) − t)^2, so
every edge moves about evenly at once. P exponents cannot straighten P(P − 1)/2 edges
exactly: :func:`fit_simplex_warps` reports each edge's evenness error before and after.

The distances are taken in the space the model's task says the output should be judged in
(:meth:`tunableconv.tasks.base.Task.response_features`): the pixels for restoration, the VGG
Gram matrices for style transfer.
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
    """One path to calibrate: a named slider (``kind="slider"``), a cube knob along its axis
    (``kind="knob"``) or an edge of the simplex (``kind="edge"``, from the vertex of knob a to
    that of knob b). ``path(s)`` is the raw p at s ∈ [0, 1] (no calibration applied)."""

    kind: str
    name: str
    path: Callable[[float], Tensor]
    edge: tuple[int, int] | None = None  # kind "edge": the knobs (a, b) it runs between

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
                     desc: str = "calibrate", features: Callable[[Tensor], Tensor] | None = None) -> dict[str, Any]:
    """D(s) of ``restorer`` along ``path`` (raw s -> p) on the network inputs ``inputs``,
    the distances taken between ``features(output)`` (default: the output's pixels).

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
    embed = features if features is not None else (lambda y: y)

    def out(x: Tensor, p: Tensor) -> Tensor:
        return embed(restorer(x, p)).double()

    cases = []  # (input, o_0, ||o_1 - o_0||)
    for x in inputs:
        o0, o1 = out(x, path(0.0)), out(x, path(1.0))
        cases.append((x, o0, float(torch.linalg.vector_norm(o1 - o0))))
    if any(c[2] == 0 for c in cases):
        raise InputError("the two ends of the path give the same image: there is no response to calibrate")

    def d_at(s: float) -> float:
        return float(np.mean([float(torch.linalg.vector_norm(out(x, path(float(s))) - o0)) / denom
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


def simplex_edges(space: KnobSpace) -> list[CalibrationTarget]:
    """The edges of a simplex model's knob space, for the weight warps: one path per pair of
    knobs (a, b), a < b, raw p from the vertex of a (s = 0) to the vertex of b (s = 1).
    Empty for a cube model, fewer than two knobs, or a model with a named slider (its
    calibration is the slider's)."""
    if space.domain != "simplex" or space.num_params < 2 or space.sliders:
        return []
    n = space.num_params

    def path(a: int, b: int) -> Callable[[float], Tensor]:
        def p(s: float) -> Tensor:
            v = torch.zeros(n)
            v[a], v[b] = 1.0 - s, s
            return v
        return p

    return [CalibrationTarget("edge", f"{space.names[a]}-{space.names[b]}", path(a, b), (a, b))
            for a in range(n) for b in range(a + 1, n)]


#: The exponents a weight warp may take (:func:`fit_simplex_warps`): 0.2 ... 5, log-spaced.
WARP_EXPONENTS = np.geomspace(0.2, 5.0, 65)


def fit_simplex_warps(responses: dict[tuple[int, int], dict], num_params: int, *, points: int = 41,
                      sweeps: int = 6) -> dict[str, Any]:
    """Weight warps c_i(u) = u^γ_i that make the edges of a simplex even (module docstring).

    Args:
        responses: per edge ``(a, b)`` the measured ``{"s": raw fractions, "d": D(s)}`` of
            :func:`measure_response` (made monotone here).
        num_params: P.
        points: knots of each stored warp.
        sweeps: rounds of coordinate descent over the knobs.

    Returns:
        ``{"gamma": [γ_i], "warps": [{"slider": u, "raw": u^γ}], "error_before": {edge: e},
        "error_after": {edge: e}}`` with e = max_t |D(s(t)) − t| over t = 0, 0.05, ..., 1
        (the mean curve's, interpolated).
    """
    t = np.linspace(0.0, 1.0, 21)
    curves = {}
    for edge, r in responses.items():
        d = np.clip(np.maximum.accumulate(np.asarray(r["d"], dtype=np.float64)), 0.0, 1.0)
        d[0], d[-1] = 0.0, 1.0
        curves[edge] = (np.asarray(r["s"], dtype=np.float64), d)

    def raw_fraction(ga: np.ndarray, gb: np.ndarray) -> np.ndarray:
        """s(t) = t^γb / ((1 − t)^γa + t^γb); a γ given as a vector of candidates adds a
        leading axis."""
        a_w = (1.0 - t) ** (ga[..., None] if np.ndim(ga) else ga)
        b_w = t ** (gb[..., None] if np.ndim(gb) else gb)
        return b_w / np.maximum(a_w + b_w, 1e-12)

    def errors(gamma: np.ndarray, knob: int | None = None, candidates: np.ndarray | None = None) -> np.ndarray:
        """Mean squared error over edges and t: for the γ vector, or for each candidate value
        of one knob's γ (the others fixed)."""
        total = 0.0
        for (a, b), (s_grid, d) in curves.items():
            ga = candidates if knob == a else gamma[a]
            gb = candidates if knob == b else gamma[b]
            s = raw_fraction(np.asarray(ga), np.asarray(gb))
            total = total + ((np.interp(s, s_grid, d) - t) ** 2).mean(axis=-1)
        return np.asarray(total)

    gamma = np.ones(num_params)
    for _ in range(sweeps):
        for i in range(num_params):
            gamma[i] = WARP_EXPONENTS[int(np.argmin(errors(gamma, i, WARP_EXPONENTS)))]

    # the stored warps: piecewise linear through knots that crowd towards 0, where u^γ bends most
    u = np.round(np.linspace(0.0, 1.0, points) ** 2, 6)
    warps = [{"slider": [float(v) for v in u], "raw": [round(float(v), 6) for v in u ** g]} for g in gamma]

    def worst(edge: tuple[int, int], stored: list[dict] | None) -> float:
        """max_t |D(s(t)) − t| on the edge, s(t) from the stored (piecewise-linear) warps."""
        s_grid, d = curves[edge]
        if stored is None:
            s = t
        else:
            ca = np.interp(1.0 - t, stored[edge[0]]["slider"], stored[edge[0]]["raw"])
            cb = np.interp(t, stored[edge[1]]["slider"], stored[edge[1]]["raw"])
            s = cb / np.maximum(ca + cb, 1e-12)
        return round(float(np.abs(np.interp(s, s_grid, d) - t).max()), 4)

    return {"gamma": [round(float(g), 4) for g in gamma], "warps": warps,
            "error_before": {e: worst(e, None) for e in curves},
            "error_after": {e: worst(e, warps) for e in curves}}


def _features_for(info) -> Callable[[Tensor], Tensor]:
    """The space the model file's task judges outputs in (:meth:`Task.response_features`)."""
    from .evaluation import task_of

    return task_of(info).response_features


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
