"""Parameter sweeps: a model's outputs over a knob's range, as a labelled strip or a GIF.

Used by ``tunableconv sweep``, the demo and the web app::

    from tunableconv.restore import Restorer
    from tunableconv.sweep import make_gif, make_strip, sweep_outputs, sweep_values

    r = Restorer.load("denoise")
    values = sweep_values(5)                      # 0, 0.25, 0.5, 0.75, 1
    outputs = sweep_outputs(r, noisy, values)     # one (3, H, W) tensor per value
    strip = make_strip(outputs, sweep_labels(r, values))   # PIL image, panels side by side

What is swept:

- a model with a strength slider (the denoiser, p = (s, 1 - s)) and no ``knob_index``: the
  strength s over ``values`` (calibrated unless ``calibrated=False``);
- otherwise knob ``knob_index`` (0 when the model has a single knob) over ``values``; the
  other knobs are held at ``base`` (their values from a full p vector), or, without
  ``base``, share the remaining weight ``1 - v`` equally (so p stays on the simplex, which
  for two knobs is exactly the raw strength).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from .io import atomic_write

from .errors import InputError, InvalidParamsError
from .restore import Restorer

__all__ = [
    "sweep_values",
    "sweep_params",
    "sweep_labels",
    "sweep_outputs",
    "to_pil",
    "label_panel",
    "make_strip",
    "make_gif",
    "save_gif",
]

#: Background of the label band above each panel, and the text colour.
LABEL_BACKGROUND = (255, 255, 255)
LABEL_COLOUR = (0, 0, 0)


def sweep_values(steps: int, low: float = 0.0, high: float = 1.0) -> list[float]:
    """``steps`` evenly spaced values from ``low`` to ``high`` (both included).

    Raises:
        InputError: ``steps < 2`` or a range outside [0, 1].
    """
    if steps < 2:
        raise InputError(f"steps must be at least 2, got {steps}")
    if not 0.0 <= low <= high <= 1.0:
        raise InputError(f"the sweep range must satisfy 0 <= low <= high <= 1, got [{low}, {high}]")
    return [float(v) for v in np.linspace(low, high, steps)]


def _check_knob_index(restorer: Restorer, knob_index: int | None) -> int | None:
    """The knob to sweep, or None for the strength slider."""
    n = restorer.num_params
    if n == 0:
        raise InvalidParamsError("this model has no knobs: there is nothing to sweep")
    if knob_index is None:
        if restorer.has_strength or n == 1:
            return None if restorer.has_strength else 0
        names = ", ".join(f"{i}={name}" for i, name in enumerate(restorer.info.knob_names))
        raise InvalidParamsError(f"this model has {n} knobs: choose one with --knob-index ({names})")
    if not 0 <= knob_index < n:
        names = ", ".join(f"{i}={name}" for i, name in enumerate(restorer.info.knob_names))
        raise InvalidParamsError(f"knob index {knob_index} out of range: this model has {n} knob(s) ({names})")
    return knob_index


def sweep_params(
    restorer: Restorer,
    values: Sequence[float],
    *,
    knob_index: int | None = None,
    base: Sequence[float] | None = None,
    calibrated: bool = True,
) -> list[Tensor]:
    """The p vector for each sweep value (see the module docstring for what is swept).

    Args:
        restorer: the loaded model.
        values: slider or knob values in [0, 1].
        knob_index: the knob to sweep; None sweeps the strength slider of models that have
            one (or the only knob of a one-knob model).
        base: a full p vector giving the values of the knobs that are not swept.
        calibrated: pass the strength through the model's calibration (ignored for knobs).

    Raises:
        InvalidParamsError: no knobs, a bad knob index, values or base outside [0, 1].
    """
    from .nn import check_params

    index = _check_knob_index(restorer, knob_index)
    n = restorer.num_params
    if index is None and base is not None:
        raise InvalidParamsError("base values apply to a knob sweep: choose the knob with --knob-index")
    base_t = check_params(list(base), n).to(torch.float32) if base is not None else None
    out = []
    for v in values:
        v = float(v)
        if not (np.isfinite(v) and 0.0 <= v <= 1.0):
            raise InvalidParamsError(f"sweep values must lie in [0, 1], got {v}")
        if index is None:
            out.append(restorer.strength_to_p(v, calibrated))
            continue
        if base_t is not None:
            p = base_t.clone()
        else:
            p = torch.full((n,), (1.0 - v) / (n - 1) if n > 1 else 0.0)
        p[index] = v
        out.append(check_params(p, n))
    return out


def sweep_labels(restorer: Restorer, values: Sequence[float], *, knob_index: int | None = None,
                 calibrated: bool = True) -> list[str]:
    """Panel labels: ``"s=0.25"`` for the strength slider (``"raw s=0.25"`` uncalibrated
    when the model has a calibration), ``"NAME=0.25"`` for a knob."""
    index = _check_knob_index(restorer, knob_index)
    if index is None:
        prefix = "raw s" if (not calibrated and restorer.calibration) else "s"
    else:
        names = restorer.info.knob_names
        prefix = names[index] if index < len(names) else f"p{index}"
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
) -> list[Tensor]:
    """Run ``restorer`` on ``image`` ``(3, H, W)`` at each sweep value.

    Returns one ``(3, H', W')`` tensor in [0, 1] per value, in order. See
    :func:`sweep_params` for the arguments.
    """
    params = sweep_params(restorer, values, knob_index=knob_index, base=base, calibrated=calibrated)
    return [restorer(image, p, tile=tile, overlap=overlap) for p in params]


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
