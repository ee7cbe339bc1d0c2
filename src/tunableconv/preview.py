"""Instant previews: a model's outputs at a few *anchor* settings, blended for the settings between.

One pass of a restoration network costs about a second on a CPU at 512², so a slider that
waits for the network cannot keep up with a drag. The web app therefore asks once per image
(and per control it shows) for the outputs at a few anchor settings; while the user drags, the
page draws the blend of the anchors around the current setting (a few milliseconds), and
when the control rests the exact result replaces the blend. The same anchors are the contact
sheet (a strip, a grid or a triangle of settings) the page shows for comparison.

The anchors are placed in the coordinates of the control the user moves, called **u** here
(slider positions and knob values as the user sees them, i.e. before a calibration), so the
blend interpolates between the settings the user would have asked for. Three layouts:

=========  =============================================  ==========================================
layout     control                                        blend of anchor outputs ``A_n`` at u
=========  =============================================  ==========================================
line       a slider, or knob 0 of a 2-knob simplex        piecewise linear between neighbours
grid       every knob of a cube model (``n^P`` anchors)   multilinear in the cell around u
triangle   the three knobs of a 3-knob simplex            linear on the triangle of the barycentric
                                                          lattice (step ``1/m``) that holds u
=========  =============================================  ==========================================

The blend is exact at the anchors and an approximation between them (the network is not
linear in p); ``benchmarks/app_latency.py`` measures how far it is from the exact result.
u may be one setting ``(A,)`` or a map ``(A, H, W)`` (one setting per pixel, a painted knob
map): :func:`anchor_weights` returns the anchors' weights ``(N,)`` or ``(N, H, W)`` and
:func:`blend` the blended image. ``app/static/app.js`` implements the same weights for the page.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import InvalidParamsError
from .knobs import KnobSpace

LAYOUTS = ("line", "grid", "triangle")
#: The most anchors one set may hold (27 = the 3-knob cube at three values per knob).
MAX_ANCHORS = 27
#: Default anchors per axis: a line has 5 (u = 0, 0.25, ..., 1); a grid 3 per knob; a triangle 3
#: per edge (step 1/2: the corners and the edge midpoints).
DEFAULT_STEPS = {"line": 5, "grid": 3, "triangle": 3}


@dataclass(frozen=True)
class AnchorSet:
    """Where the anchors of one control lie.

    Attributes:
        layout: ``"line"``, ``"grid"`` or ``"triangle"``.
        control: the slider's name, or ``"knobs"`` (the model's knobs themselves).
        axes: the names of u's coordinates (the slider, or the knobs).
        values: the anchor values along each axis (line and grid); for a triangle the lattice
            values ``0, 1/m, ..., 1``.
        points: u of each anchor, ``(N, A)``; for a grid in row-major order (first axis slowest);
            for a triangle the barycentric coordinates ``(a, b, c)`` of the lattice points
            ``(i, j) = (a·m, b·m)`` in order of i, then j.
        ps: the raw p of each anchor, ``(N, P)`` (u through the calibrations when ``calibrated``).
        calibrated: whether u went through the model's calibrations.
    """

    layout: str
    control: str
    axes: tuple[str, ...]
    values: tuple[float, ...]
    points: Tensor
    ps: Tensor
    calibrated: bool

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def to_dict(self) -> dict:
        """JSON-serialisable: what the page needs to blend and to draw the contact sheet."""
        return {"layout": self.layout, "control": self.control, "axes": list(self.axes),
                "values": [float(v) for v in self.values], "points": self.points.tolist(),
                "p": self.ps.tolist(), "calibrated": self.calibrated}


def anchor_set(space: KnobSpace, control: str | None = None, *, calibrated: bool = True,
               steps: int | None = None) -> AnchorSet:
    """The anchors of one control of a model's knob space.

    Args:
        space: the model's knob space.
        control: a slider's name; ``"knobs"`` for the knobs themselves; None: the main slider
            if the model has one, else the knobs.
        calibrated: pass u through the slider's calibration, the cube knobs' or the simplex knobs' weight warps.
        steps: anchors per axis (line, grid) or lattice points per edge (triangle); default
            :data:`DEFAULT_STEPS`. At most :data:`MAX_ANCHORS` anchors in all.

    Raises:
        InvalidParamsError: a model without knobs, an unknown slider, a simplex of more than
            three knobs (no triangle to draw), too many anchors, ``steps`` < 2.
    """
    if space.num_params == 0:
        raise InvalidParamsError("this model has no knobs: there are no settings to preview")
    if control is None:
        control = space.main_slider.name if space.main_slider is not None else "knobs"
    if control != "knobs":
        layout = "line"
    elif space.domain == "cube":
        layout = "grid"
    elif space.num_params == 2:
        layout = "line"
    elif space.num_params == 3:
        layout = "triangle"
    else:
        raise InvalidParamsError(f"no preview layout for a simplex of {space.num_params} knobs (lines, cube grids and "
                                 "3-knob triangles only): use a slider")
    n = DEFAULT_STEPS[layout] if steps is None else steps
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise InvalidParamsError(f"steps must be a whole number >= 2, got {steps!r}")
    values = tuple(i / (n - 1) for i in range(n))

    if control != "knobs":  # a named slider
        slider = space.slider(control)
        points = [(u,) for u in values]
        ps = [space.resolve(slider=(slider.name, u), calibrated=calibrated).tolist() for u in values]
        axes: tuple[str, ...] = (slider.name,)
    elif layout == "line":  # knob 0 of a 2-knob simplex: p = (u, 1 - u), through the weight warps
        points = [(u,) for u in values]
        ps = [space.simplex_weights([u, 1.0 - u], calibrated=calibrated) for u in values]
        axes = (space.names[0],)
    elif layout == "grid":
        points = list(itertools.product(values, repeat=space.num_params))
        ps = []
        for u in points:
            p = [float(c(v)) if (calibrated and (c := k.calibration) is not None) else float(v)
                 for k, v in zip(space.knobs, u)]
            ps.append(p)
        axes = tuple(space.names)
    else:  # triangle
        m = n - 1
        points = [(i / m, j / m, (m - i - j) / m) for i in range(m + 1) for j in range(m + 1 - i)]
        ps = [space.simplex_weights(pt, calibrated=calibrated) for pt in points]
        axes = tuple(space.names)
    if len(points) > MAX_ANCHORS:
        raise InvalidParamsError(f"{len(points)} anchors asked for (steps {n} on {layout} of {len(axes)} axes); "
                                 f"at most {MAX_ANCHORS}")
    return AnchorSet(layout, control, axes, values, torch.tensor(points, dtype=torch.float32),
                     torch.tensor(ps, dtype=torch.float32).clamp(0, 1), calibrated)


def _axis_cell(values: tuple[float, ...], u: Tensor) -> tuple[Tensor, Tensor]:
    """For u (any shape) on an axis with sorted anchor ``values``: the lower anchor's index j
    and the fraction t in [0, 1] of the way to anchor j + 1."""
    v = torch.tensor(values, dtype=u.dtype)
    u = u.clamp(float(v[0]), float(v[-1]))
    j = (torch.searchsorted(v, u.contiguous(), right=True) - 1).clamp(0, len(values) - 2)
    lo, hi = v[j], v[j + 1]
    t = ((u - lo) / (hi - lo)).clamp(0, 1)
    return j, t


def anchor_weights(anchors: AnchorSet, u: Tensor) -> Tensor:
    """The weight of each anchor in the blend at u: ``(N,)`` for one setting ``u (A,)``,
    ``(N, H, W)`` for a map ``u (A, H, W)``; non-negative and summing to 1.

    A triangle's u is barycentric (a, b, c), renormalised to sum to 1.
    """
    u = torch.as_tensor(u, dtype=torch.float32)
    axes = len(anchors.axes)
    if u.shape[0] != axes:
        raise InvalidParamsError(f"u has {u.shape[0]} coordinate(s), the {anchors.layout} of "
                                 f"{', '.join(anchors.axes)} has {axes}")
    shape = tuple(u.shape[1:])
    weights = torch.zeros((len(anchors),) + shape)
    if anchors.layout in ("line", "grid"):
        n = len(anchors.values)
        cells = [_axis_cell(anchors.values, u[a]) for a in range(axes)]
        for corner in itertools.product((0, 1), repeat=axes):
            index = torch.zeros(shape, dtype=torch.long)
            w = torch.ones(shape)
            for (j, t), c in zip(cells, corner):
                index = index * n + j + c  # row-major: the first axis slowest
                w = w * (t if c else 1 - t)
            weights.scatter_add_(0, index.unsqueeze(0), w.unsqueeze(0))
        return weights
    # triangle: the barycentric lattice {(i, j): i + j <= m}, linear on its triangles
    m = len(anchors.values) - 1
    u = u.clamp(min=0)
    u = u / u.sum(0, keepdim=True).clamp(min=1e-12)
    big_a, big_b = u[0] * m, u[1] * m
    i = big_a.floor().clamp(0, m - 1).long()
    j = big_b.floor().clamp(0, m - 1).long()
    # the cell's corner (i, j) needs i + j <= m - 1: on the far edge step back (i first)
    over = (i + j - (m - 1)).clamp(min=0)
    back_i = torch.minimum(over, i)
    i, j = i - back_i, j - (over - back_i)
    fa, fb = big_a - i, big_b - j
    lower = (fa + fb) <= 1
    table = torch.full((m + 2, m + 2), -1, dtype=torch.long)
    k = 0
    for a in range(m + 1):
        for b in range(m + 1 - a):
            table[a, b] = k
            k += 1
    # lower triangle (i, j), (i+1, j), (i, j+1); upper (i+1, j+1), (i, j+1), (i+1, j)
    corners = [
        (torch.where(lower, i, i + 1), torch.where(lower, j, j + 1), torch.where(lower, 1 - fa - fb, fa + fb - 1)),
        (i + 1, j, torch.where(lower, fa, 1 - fb)),
        (i, j + 1, torch.where(lower, fb, 1 - fa)),
    ]
    for a, b, w in corners:
        weights.scatter_add_(0, table[a, b].clamp(min=0).unsqueeze(0), w.clamp(min=0).unsqueeze(0))
    return weights / weights.sum(0, keepdim=True).clamp(min=1e-12)  # rounding: exactly 1


def blend(anchors: AnchorSet, outputs: Tensor, u: Tensor) -> Tensor:
    """The preview at u: ``Σ_n w_n(u) · outputs[n]`` for outputs ``(N, C, H, W)``;
    per pixel when u is a map ``(A, H, W)`` of the outputs' size. Returns ``(C, H, W)``."""
    w = anchor_weights(anchors, u)
    if w.dim() == 1:
        return torch.einsum("n,nchw->chw", w, outputs)
    if tuple(w.shape[1:]) != tuple(outputs.shape[-2:]):
        raise InvalidParamsError(f"the u map is {w.shape[1]}x{w.shape[2]} but the outputs are "
                                 f"{outputs.shape[-2]}x{outputs.shape[-1]}")
    return torch.einsum("nhw,nchw->chw", w, outputs)
