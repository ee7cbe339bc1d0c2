"""Parameter sweeps: a model's outputs along a slider or a knob, as a labelled strip or a
GIF, and over two cube knobs as an image grid.

Used by ``tunableconv sweep``, the demo and the web app::

    from tunableconv.restore import Restorer
    from tunableconv.sweep import make_gif, make_strip, sweep_labels, sweep_outputs, sweep_values

    r = Restorer.load("denoise")
    values = sweep_values(5)                      # 0, 0.25, 0.5, 0.75, 1
    outputs = sweep_outputs(r, noisy, values)     # one (3, H, W) tensor per value
    strip = make_strip(outputs, sweep_labels(r, values))   # PIL image, panels side by side

What is swept is read from the model's knob space only:

- ``slider=NAME``: the named slider (a 1-D path p(s)) over ``values``, calibrated unless
  ``calibrated=False``;
- ``knob=NAME`` (or ``knob_index=I``): that knob over ``values``, the other knobs at
  ``base`` (a full raw p whose entry for this knob is ignored) or, without ``base``, at
  their defaults; on the cube the values go through the knob's calibration, on the simplex
  a point of the simplex through the knobs' weight warps (as ``restore --knob``);
- neither: the model's first slider, else its only knob; a model with several knobs and
  no slider needs a choice.

:func:`grid_params` / :func:`grid_outputs` / :func:`make_grid` sweep two knobs of a cube
model at once (the others at their defaults): rows follow the first knob, columns the second.

:func:`knob_settings` / :func:`settings_outputs` / :func:`contact_sheet` render *every*
setting of a cube model's knob grid at once (27 effects of three knobs at three values each),
or the barycentric triangle of a 3-knob simplex model (three styles and their blends):
the outputs come from ``model.sweep`` where the architecture has one, so a p-independent trunk
runs once for all settings. :func:`choose_setting` picks one of them by a no-reference score
(NIQE, lower is more natural)::

    settings = knob_settings(r, 3)                        # the 27 p of {0, 0.5, 1}^3
    outputs = settings_outputs(r, degraded, settings.ps)  # trunk once, 27 rests
    best, scores = choose_setting(outputs)                # lowest NIQE
    sheet = contact_sheet(outputs, settings, highlight=best)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .errors import InputError, InvalidParamsError
from .io import atomic_write
from .restore import Restorer

__all__ = [
    "MAX_STEPS",
    "MAX_GRID_STEPS",
    "SweepTarget",
    "sweep_target",
    "sweep_values",
    "sweep_params",
    "sweep_labels",
    "sweep_outputs",
    "grid_params",
    "grid_outputs",
    "knob_settings",
    "triangle_sheet",
    "settings_outputs",
    "has_shared_trunk",
    "choose_setting",
    "contact_sheet",
    "framed",
    "to_pil",
    "label_panel",
    "make_strip",
    "make_grid",
    "make_gif",
    "save_gif",
]

#: Background of the label band above each panel, and the text colour.
LABEL_BACKGROUND = (255, 255, 255)
LABEL_COLOUR = (0, 0, 0)
#: Most values of one sweep (a strip of panels), and per axis of a grid.
MAX_STEPS = 33
MAX_GRID_STEPS = 11


def sweep_values(steps: int, low: float = 0.0, high: float = 1.0, max_steps: int = MAX_STEPS) -> list[float]:
    """``steps`` evenly spaced values from ``low`` to ``high`` (both included).

    Raises:
        InputError: ``steps`` outside ``[2, max_steps]`` or a range outside [0, 1].
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= max_steps:
        raise InputError(f"steps must be a whole number in [2, {max_steps}], got {steps}")
    if not 0.0 <= low <= high <= 1.0:
        raise InputError(f"the sweep range must satisfy 0 <= low <= high <= 1, got [{low}, {high}]")
    return [float(v) for v in np.linspace(low, high, steps)]


@dataclass(frozen=True)
class SweepTarget:
    """What a sweep moves: a named slider (``kind="slider"``) or one knob (``kind="knob"``)."""

    kind: str
    name: str
    index: int | None = None  # the knob's position (knob sweeps)


def sweep_target(restorer: Restorer, *, slider: str | None = None, knob: str | None = None,
                 knob_index: int | None = None) -> SweepTarget:
    """The slider or knob to sweep (see the module docstring).

    Raises:
        InvalidParamsError: no knobs, an unknown slider or knob, more than one choice, or a
            choice needed (several knobs, no slider).
    """
    space = restorer.space
    if space.num_params == 0:
        raise InvalidParamsError("this model has no knobs: there is nothing to sweep")
    chosen = [n for n, v in (("--slider", slider), ("--knob", knob), ("--knob-index", knob_index)) if v is not None]
    if len(chosen) > 1:
        raise InvalidParamsError(f"sweep one thing: {' or '.join(chosen)}, not both")
    if slider is not None:
        return SweepTarget("slider", space.slider(slider).name)
    if knob is not None or knob_index is not None:
        i = space.knob_index(knob if knob is not None else int(knob_index))
        return SweepTarget("knob", space.names[i], i)
    if space.main_slider is not None:
        return SweepTarget("slider", space.main_slider.name)
    if space.num_params == 1:
        return SweepTarget("knob", space.names[0], 0)
    raise InvalidParamsError(f"this model has {space.num_params} knobs and no slider: choose what to sweep with "
                             f"--knob NAME or --knob-index I ({space.describe_names()})")


def sweep_params(
    restorer: Restorer,
    values: Sequence[float],
    *,
    knob_index: int | None = None,
    base: Sequence[float] | None = None,
    calibrated: bool = True,
    slider: str | None = None,
    knob: str | None = None,
) -> list[Tensor]:
    """The p vector for each sweep value (see the module docstring for what is swept).

    Args:
        restorer: the loaded model.
        values: slider or knob values in [0, 1].
        knob_index, knob: the knob to sweep (by position or name).
        base: a full raw p giving the values of the knobs that are not swept (knob sweeps).
        calibrated: pass the values through the slider's or (cube) knob's calibration, or (a
            point on the simplex) the knobs' weight warps.
        slider: the named slider to sweep.

    Raises:
        InvalidParamsError: no knobs, a bad choice, values or base outside [0, 1].
    """
    target = sweep_target(restorer, slider=slider, knob=knob, knob_index=knob_index)
    space = restorer.space
    if target.kind == "slider" and base is not None:
        raise InvalidParamsError("--base (the other knobs' values) applies to a knob sweep: choose the knob with --knob")
    if base is not None:
        try:
            space.resolve(p=base)
        except InvalidParamsError as exc:
            raise InvalidParamsError(f"--base: {exc}") from None
    out = []
    for v in values:
        v = float(v)
        if not (np.isfinite(v) and 0.0 <= v <= 1.0):
            raise InvalidParamsError(f"sweep values must lie in [0, 1], got {v}")
        if target.kind == "slider":
            out.append(space.resolve(slider=(target.name, v), calibrated=calibrated))
        else:
            p = space.along_knob(target.name, v, calibrated=calibrated, base=base)
            if space.domain == "simplex" and space.off_domain(p.tolist()) is None:
                p = space.simplex_weights(p, calibrated=calibrated)  # weights on the simplex: through the warps, as --knob
            out.append(p)
    return out


def sweep_labels(restorer: Restorer, values: Sequence[float], *, knob_index: int | None = None,
                 calibrated: bool = True, slider: str | None = None, knob: str | None = None) -> list[str]:
    """Panel labels ``"NAME=0.25"`` (the slider's or knob's name); ``"raw NAME=0.25"`` for
    values used uncalibrated where the model has a calibration for them."""
    target = sweep_target(restorer, slider=slider, knob=knob, knob_index=knob_index)
    space = restorer.space
    if target.kind == "slider":
        has_cal = space.slider(target.name).calibration is not None
    else:
        cube = space.domain == "cube" and space.knobs[target.index].calibration is not None
        has_cal = cube or (space.domain == "simplex" and any(k.calibration is not None for k in space.knobs))
    prefix = f"raw {target.name}" if (has_cal and not calibrated) else target.name
    return [f"{prefix}={float(v):.2f}" for v in values]


def sweep_outputs(
    restorer: Restorer,
    image: Tensor,
    values: Sequence[float],
    *,
    knob_index: int | None = None,
    base: Sequence[float] | None = None,
    calibrated: bool = True,
    tile: int | None = None,
    overlap: int = 32,
    slider: str | None = None,
    knob: str | None = None,
    force_tiling: bool = False,
) -> list[Tensor]:
    """Run ``restorer`` on ``image`` ``(3, H, W)`` at each sweep value.

    Returns one ``(3, H', W')`` tensor in [0, 1] per value, in order. See
    :func:`sweep_params` for the arguments.
    """
    params = sweep_params(restorer, values, knob_index=knob_index, base=base, calibrated=calibrated,
                          slider=slider, knob=knob)
    return [restorer(image, p, tile=tile, overlap=overlap, force_tiling=force_tiling) for p in params]


def grid_params(restorer: Restorer, knobs: Sequence[str], values: Sequence[float], *,
                calibrated: bool = True) -> list[list[Tensor]]:
    """p for a grid over two knobs of a cube model: ``[row][column]``, rows the first knob,
    columns the second, every other knob at its default; values through each knob's
    calibration unless ``calibrated`` is False.

    Raises:
        InvalidParamsError: not a cube model, not two different knobs, values outside [0, 1].
    """
    space = restorer.space
    if space.domain != "cube":
        raise InvalidParamsError("a grid sweeps two independent knobs of a cube model; this model's knobs are weights "
                                 "on the simplex (sweep a slider or one knob instead)")
    if len(knobs) != 2:
        raise InvalidParamsError(f"a grid needs two knob names, got {len(knobs)}")
    rows_i, cols_i = (space.knob_index(k) for k in knobs)
    if rows_i == cols_i:
        raise InvalidParamsError(f"a grid needs two different knobs, got {knobs[0]!r} twice")
    grid = []
    for a in values:
        row = []
        for b in values:
            for name, v in ((knobs[0], a), (knobs[1], b)):
                if not (np.isfinite(float(v)) and 0.0 <= float(v) <= 1.0):
                    raise InvalidParamsError(f"sweep values must lie in [0, 1], got {v}")
            p = space.along_knob(rows_i, float(a), calibrated=calibrated)
            p = space.along_knob(cols_i, float(b), calibrated=calibrated, base=p.tolist())
            row.append(p)
        grid.append(row)
    return grid


def grid_outputs(restorer: Restorer, image: Tensor, knobs: Sequence[str], values: Sequence[float], *,
                 calibrated: bool = True, tile: int | None = None, overlap: int = 32,
                 force_tiling: bool = False) -> list[list[Tensor]]:
    """The outputs of :func:`grid_params`'s settings on ``image``, ``[row][column]``."""
    return [[restorer(image, p, tile=tile, overlap=overlap, force_tiling=force_tiling) for p in row]
            for row in grid_params(restorer, knobs, values, calibrated=calibrated)]


def to_pil(image: Tensor | Image.Image) -> Image.Image:
    """A ``(3, H, W)`` / ``(1, 3, H, W)`` float tensor in [0, 1] (or a PIL image) -> RGB PIL image."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    from .io import to_uint8_array

    array = to_uint8_array(image)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return Image.fromarray(array)


def _font(panel_width: int = 256) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled default font, scaled to the panel (a bitmap font on old Pillow)."""
    size = int(min(28, max(11, panel_width // 14)))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _label_height(font) -> int:
    left, top, right, bottom = font.getbbox("Ag=0.123")
    return int(bottom) + 6


def label_panel(image: Tensor | Image.Image, label: str, band: int | None = None, font=None) -> Image.Image:
    """``image`` with a white band above it holding ``label`` (Pillow's default font),
    centred and cut to the panel width if it is too long."""
    panel = to_pil(image)
    font = font or _font(panel.width)
    band = band if band is not None else _label_height(font)
    out = Image.new("RGB", (panel.width, panel.height + band), LABEL_BACKGROUND)
    out.paste(panel, (0, band))
    draw = ImageDraw.Draw(out)
    text = label
    while text and draw.textlength(text, font=font) > panel.width - 2:
        text = text[:-1]
    width = draw.textlength(text, font=font)
    draw.text((max(1, (panel.width - width) / 2), 3), text, fill=LABEL_COLOUR, font=font)
    return out


def _labelled(images: Sequence[Tensor | Image.Image], labels: Sequence[str]) -> list[Image.Image]:
    """Each image with its label, one label size (that of the narrowest panel) for all."""
    pil = [to_pil(im) for im in images]
    font = _font(min(p.width for p in pil))
    band = _label_height(font)
    return [label_panel(p, lab, band, font) for p, lab in zip(pil, labels)]


def make_strip(images: Sequence[Tensor | Image.Image], labels: Sequence[str] | None = None,
               gap: int = 4) -> Image.Image:
    """Panels side by side, each with its label in a band above it.

    Args:
        images: tensors ``(3, H, W)`` in [0, 1] or PIL images; panels of different heights
            are top-aligned.
        labels: one per image (None: no label band).
        gap: white pixels between panels.

    Returns:
        An RGB image of width ``sum(panel widths) + gap * (len(images) - 1)`` and height
        ``max(panel heights)`` plus the label band.
    """
    if not images:
        raise InputError("make_strip needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise InputError(f"{len(labels)} labels for {len(images)} images")
    if gap < 0:
        raise InputError(f"gap must be >= 0, got {gap}")
    if labels is None:
        panels = [to_pil(im) for im in images]
    else:
        panels = _labelled(images, labels)
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    height = max(p.height for p in panels)
    strip = Image.new("RGB", (width, height), LABEL_BACKGROUND)
    x = 0
    for p in panels:
        strip.paste(p, (x, 0))
        x += p.width + gap
    return strip


def knob_settings(restorer: Restorer, steps: int = 3, *, calibrated: bool = True):
    """Every setting of a model's knob grid: an :class:`~tunableconv.preview.AnchorSet` whose
    ``points`` are the knob values u ``(N, P)`` and ``ps`` the raw p.

    - a cube model: ``steps`` values per knob, ``steps ** P`` settings (at most 27), row-major
      with the first knob slowest; u goes through each knob's calibration unless
      ``calibrated`` is False (layout ``"grid"``);
    - a 3-knob simplex model: the barycentric lattice with ``steps`` points per edge, step
      1 / (steps − 1) (``steps = 5``: the 15 blends of step 0.25), in the order of
      :func:`~tunableconv.preview.anchor_set` (layout ``"triangle"``).

    Raises:
        InvalidParamsError: no knobs, a simplex of other than 3 knobs, ``steps`` < 2, too many
            settings.
    """
    from .preview import anchor_set

    space = restorer.space
    if space.num_params == 0 or (space.domain != "cube" and space.num_params != 3):
        raise InvalidParamsError("--grid N renders every setting of a cube model's knobs, or the triangle of a 3-knob "
                                 "simplex; this model has " + ("no knobs" if space.num_params == 0 else
                                                               f"{space.num_params} weights on the simplex (sweep a "
                                                               "slider or one knob instead)"))
    return anchor_set(space, "knobs", calibrated=calibrated, steps=steps)


def has_shared_trunk(restorer: Restorer) -> bool:
    """Whether the model declares layers that do not depend on p, which :func:`settings_outputs`
    then runs once for all settings (the ResNet's ``trunk_blocks``, a converted network's
    ``trunk``/``rest``)."""
    model = restorer.model
    for owner in (model, getattr(model, "net", None)):
        flag = getattr(owner, "has_trunk", None)
        if isinstance(flag, bool):
            return flag
    return bool(getattr(getattr(model, "config", None), "trunk_blocks", 0))


def settings_outputs(restorer: Restorer, image: Tensor, ps: Tensor, *, tile: int | None = None, overlap: int = 32,
                     force_tiling: bool = False) -> list[Tensor]:
    """The outputs ``(3, H', W')`` in [0, 1] of one image ``(3, H, W)`` (or ``(1, 3, H, W)``)
    at each raw setting ``ps (N, P)``: through ``model.sweep`` (a p-independent trunk computed
    once) when the architecture has one and no tiling is asked for, else one call per
    setting. Used by ``tunableconv sweep --grid N`` and the web app's anchors.

    Raises:
        InputError: the model produced NaN/Inf values.
    """
    import torch

    x = image if image.dim() == 4 else image.unsqueeze(0)
    sweep = getattr(restorer.model, "sweep", None)
    if callable(sweep) and not tile:
        with torch.no_grad():
            try:  # NHWC activations, as Restorer: 1.4-1.7x faster convolutions on CPU (oneDNN)
                ys = sweep(x.to(restorer.device, torch.float32).contiguous(memory_format=torch.channels_last),
                           ps.to(restorer.device))
            except (NotImplementedError, AttributeError):
                ys = None
        if ys is not None:
            if not torch.isfinite(ys).all():
                raise InputError("the model produced NaN/Inf values for this input")
            return [y[0].clamp(0, 1).cpu() for y in ys]
    return [restorer(x[0], p, tile=tile, overlap=overlap, force_tiling=force_tiling) for p in ps]


def choose_setting(outputs: Sequence[Tensor], *, params_path: str | os.PathLike | None = None
                   ) -> tuple[int, list[float]]:
    """The automatic choice among outputs of one image: the index of the lowest NIQE (the
    no-reference naturalness score of :func:`tunableconv.metrics.niqe`; lower is more natural)
    and every output's score. NaN scores (a textureless output) are never chosen.

    Raises:
        MissingWeightsError: the NIQE parameters are not found (``params_path`` or the weights root).
        InputError: outputs smaller than NIQE's 96x96 block, or no output with a finite score.
    """
    import math

    import torch

    from .metrics import NIQE_BLOCK, niqe

    if not outputs:
        raise InputError("no outputs to choose from")
    h, w = outputs[0].shape[-2:]
    if min(h, w) < NIQE_BLOCK:
        raise InputError(f"the automatic choice scores outputs by NIQE, which needs at least {NIQE_BLOCK}x{NIQE_BLOCK} "
                         f"pixels; these are {w}x{h}")
    scores = [float(v) for v in niqe(torch.stack([o.reshape(o.shape[-3:]) for o in outputs]), reduction="none",
                                      params_path=params_path)]
    finite = [i for i, v in enumerate(scores) if math.isfinite(v)]
    if not finite:
        raise InputError("no output has a finite NIQE (textureless images): nothing to choose by")
    return min(finite, key=lambda i: scores[i]), scores


def framed(image: Tensor | Image.Image) -> Image.Image:
    """A copy of the panel ``image`` framed in red (the automatic choice)."""
    out = to_pil(image).copy()
    ImageDraw.Draw(out).rectangle([0, 0, out.width - 1, out.height - 1], outline=(220, 0, 0), width=max(3, out.width // 64))
    return out


def _value(v: float) -> str:
    return f"{v:g}" if abs(v * 100 - round(v * 100)) < 1e-6 else f"{v:.2f}"


def contact_sheet(outputs: Sequence[Tensor | Image.Image], settings, *, highlight: int | None = None,
                  notes: Sequence[str] | None = None, corner_images: Sequence[Tensor | Image.Image] | None = None,
                  gap: int = 4) -> Image.Image:
    """All outputs of :func:`knob_settings`' settings as one labelled sheet. A cube grid: rows
    follow the first ``P // 2`` knobs, columns the others (three knobs at three values: 3 rows
    of 9), each axis labelled ``name=value`` (knob values u, before calibration). A triangle:
    :func:`triangle_sheet`. ``highlight``: the index of one setting framed in red (the
    automatic choice); ``notes``: one short line per setting printed under its panel's column
    label (e.g. its score); ``corner_images``: a triangle's three corner pictures (the knobs'
    icons)."""
    n, k = int(settings.points.shape[0]), len(settings.axes)
    if len(outputs) != n:
        raise InputError(f"{len(outputs)} outputs for {n} settings")
    if highlight is not None and not 0 <= highlight < n:
        raise InputError(f"highlight must be a setting index in [0, {n}), got {highlight}")
    panels = [to_pil(o) for o in outputs]
    if notes is not None:
        if len(notes) != n:
            raise InputError(f"{len(notes)} notes for {n} settings")
        panels = [label_panel(pnl, note) for pnl, note in zip(panels, notes)]
    if highlight is not None:
        panels[highlight] = framed(panels[highlight])
    if settings.layout == "triangle":
        return triangle_sheet(panels, [tuple(float(v) for v in pt) for pt in settings.points], settings.axes,
                              corner_images=corner_images, gap=gap)
    m = len(settings.values)
    rows_axes = k // 2
    n_cols = m ** (k - rows_axes)
    n_rows = n // n_cols

    def label(i: int, axes: range) -> str:
        return ", ".join(f"{settings.axes[a]}={_value(float(settings.points[i, a]))}" for a in axes)

    grid = [[panels[r * n_cols + c] for c in range(n_cols)] for r in range(n_rows)]
    row_labels = [label(r * n_cols, range(rows_axes)) or " " for r in range(n_rows)]
    column_labels = [label(c, range(rows_axes, k)) for c in range(n_cols)]
    return make_grid(grid, row_labels, column_labels, gap=gap)


def triangle_sheet(images: Sequence[Tensor | Image.Image], points: Sequence[Sequence[float]], names: Sequence[str],
                   *, corner_images: Sequence[Tensor | Image.Image] | None = None, gap: int = 4) -> Image.Image:
    """Panels at the points of a barycentric lattice on three knobs, laid out as a triangle:
    knob 0 at the top, knob 1 bottom left, knob 2 bottom right (the web app's picker); the
    row of a panel is fixed by its knob-0 weight, its place in the row by the knob-2 weight.
    Each panel is labelled with its weights ``a/b/c``; a title names the knobs in that order.

    Args:
        images: one panel per point, tensors ``(3, H, W)`` in [0, 1] or PIL images.
        points: the weights ``(a, b, c)`` of each panel, on a lattice of step 1 / m (any order).
        names: the three knob names.
        corner_images: optional three small pictures (e.g. the style images), shown in a
            labelled legend above the triangle in place of the title.
        gap: white pixels between panels.
    """
    if len(images) != len(points) or not images:
        raise InputError(f"{len(images)} images for {len(points)} points")
    if len(names) != 3 or any(len(pt) != 3 for pt in points):
        raise InputError("a triangle sheet needs three knobs and points of three weights")
    m = round((math.sqrt(8 * len(points) + 1) - 3) / 2)  # a lattice of step 1/m has (m + 1)(m + 2)/2 points
    if m < 1 or (m + 1) * (m + 2) // 2 != len(points):
        raise InputError(f"{len(points)} points do not fill a barycentric lattice (3, 6, 10, 15, ... points)")
    cells: dict[tuple[int, int], Image.Image] = {}
    for image, (a, _, c) in zip(images, points):
        row, col = m - round(a * m), round(c * m)
        if not (0 <= col <= row <= m) or (row, col) in cells:
            raise InputError(f"the points do not form a barycentric lattice of step 1/{m}")
        cells[(row, col)] = image
    font = _font(min(to_pil(im).width for im in images))
    band = _label_height(font)
    panels = {rc: label_panel(im, "/".join(_value(v) for v in _weights(rc, m)), band, font) for rc, im in cells.items()}
    cell_w = max(p.width for p in panels.values())
    cell_h = max(p.height for p in panels.values())
    title = "weights " + "/".join(names)
    width = (m + 1) * cell_w + m * gap
    sheet = Image.new("RGB", (width, band + (m + 1) * cell_h + m * gap), LABEL_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    text = title
    while text and draw.textlength(text, font=font) > width - 4:
        text = text[:-1]
    draw.text((2, 3), text, fill=LABEL_COLOUR, font=font)
    for (row, col), panel in panels.items():
        x = (width - ((row + 1) * cell_w + row * gap)) // 2 + col * (cell_w + gap)
        sheet.paste(panel, (x, band + row * (cell_h + gap)))
    if corner_images is not None:  # a legend above: the three corners' pictures, labelled
        if len(corner_images) != 3:
            raise InputError(f"corner_images needs three pictures, got {len(corner_images)}")
        side = max(32, cell_w * 2 // 3)
        thumbs = [to_pil(im) for im in corner_images]
        thumbs = [t.resize((side, max(1, round(t.height * side / t.width)))) for t in thumbs]
        legend = make_strip(thumbs, list(names), gap=gap * 4)  # in knob order: top, bottom left, bottom right
        out = Image.new("RGB", (max(width, legend.width), legend.height + gap * 2 + sheet.height - band),
                        LABEL_BACKGROUND)
        out.paste(legend, ((out.width - legend.width) // 2, 0))
        out.paste(sheet.crop((0, band, sheet.width, sheet.height)), ((out.width - width) // 2, legend.height + gap * 2))
        return out
    return sheet


def _weights(cell: tuple[int, int], m: int) -> tuple[float, float, float]:
    row, col = cell
    return (m - row) / m, (row - col) / m, col / m


def make_grid(images: Sequence[Sequence[Tensor | Image.Image]], row_labels: Sequence[str],
              column_labels: Sequence[str], gap: int = 4) -> Image.Image:
    """Panels in rows and columns, the column labels in a band above the first row and the row
    labels in a column left of the panels (a knob's value per axis: readable at any panel size).

    Args:
        images: ``[row][column]`` tensors ``(3, H, W)`` in [0, 1] or PIL images, all rows of
            equal length.
        row_labels, column_labels: one per row / column, e.g. ``"deblur=0.50"``.
        gap: white pixels between panels.
    """
    if not images or not images[0]:
        raise InputError("make_grid needs at least one image")
    if any(len(row) != len(images[0]) for row in images):
        raise InputError("make_grid needs rows of equal length")
    if len(row_labels) != len(images) or len(column_labels) != len(images[0]):
        raise InputError(f"{len(row_labels)} row and {len(column_labels)} column labels for a "
                         f"{len(images)}x{len(images[0])} grid")
    if gap < 0:
        raise InputError(f"gap must be >= 0, got {gap}")
    panels = [[to_pil(im) for im in row] for row in images]
    cell_w = max(p.width for row in panels for p in row)
    cell_h = max(p.height for row in panels for p in row)
    font = _font(max(cell_w, 160))
    band = _label_height(font)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = int(max(measure.textlength(t, font=font) for t in row_labels)) + 8
    head_w = max(cell_w, int(max(measure.textlength(t, font=font) for t in column_labels)) + 4)
    rows, cols = len(panels), len(panels[0])
    grid = Image.new("RGB", (left + cols * head_w + gap * (cols - 1), band + rows * cell_h + gap * (rows - 1)),
                     LABEL_BACKGROUND)
    draw = ImageDraw.Draw(grid)
    for c, text in enumerate(column_labels):
        x0 = left + c * (head_w + gap)
        draw.text((x0 + (head_w - draw.textlength(text, font=font)) / 2, 3), text, fill=LABEL_COLOUR, font=font)
    for r, text in enumerate(row_labels):
        y0 = band + r * (cell_h + gap)
        draw.text((2, y0 + cell_h / 2 - band / 2), text, fill=LABEL_COLOUR, font=font)
        for c, panel in enumerate(panels[r]):
            grid.paste(panel, (left + c * (head_w + gap) + (head_w - panel.width) // 2, y0))
    return grid


def make_gif(images: Sequence[Tensor | Image.Image], labels: Sequence[str] | None = None,
             bounce: bool = True) -> list[Image.Image]:
    """The frames of a sweep animation: each image with its label; with ``bounce`` the
    sequence goes there and back (0, 1, ..., n-1, n-2, ..., 1) so a looping GIF is smooth."""
    if not images:
        raise InputError("make_gif needs at least one image")
    if labels is not None and len(labels) != len(images):
        raise InputError(f"{len(labels)} labels for {len(images)} images")
    if labels is None:
        frames = [to_pil(im) for im in images]
    else:
        frames = _labelled(images, labels)
    if bounce and len(frames) > 2:
        frames = frames + frames[-2:0:-1]
    return frames


def save_gif(frames: Sequence[Image.Image], path: str | os.PathLike, duration_ms: int = 300) -> Path:
    """Write ``frames`` as an animated GIF that loops forever, atomically (temporary file in
    the destination folder, then :func:`os.replace`: no partial file on failure).

    Raises:
        InputError: no frames, a name not ending in ``.gif``, a missing folder or an OS error.
    """
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise InputError(f"cannot write {path}: an animation must be a .gif file")
    if not frames:
        raise InputError("no frames to write")
    if duration_ms < 10:
        raise InputError(f"frame duration must be at least 10 ms, got {duration_ms}")
    first, *rest = [f.convert("RGB") for f in frames]
    atomic_write(path, lambda file: first.save(file, format="GIF", save_all=True, append_images=rest, loop=0,
                                               duration=int(duration_ms), disposal=1))
    return path
