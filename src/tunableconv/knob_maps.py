r"""Knob maps for people: a picture that sets the knobs pixel by pixel.

The core takes a knob map ``p`` of shape ``(P, H, W)`` — one setting per pixel of the input
image (:mod:`tunableconv.nn.params`). This module builds one from an image file a user
painted, through the model's knob space (:class:`~tunableconv.knobs.KnobSpace`):

- :func:`read_knob_map` reads the file as ``(C, h, w)`` values in [0, 1]: C = 1 for a grey
  image (also an RGB file with R = G = B), 3 for colour; 16-bit files keep their precision.
  Transparency is refused (a transparent pixel has no obvious knob value); a fully opaque alpha
  channel (what a browser's canvas saves) is ignored.
- :func:`knob_map_params` turns those values into p ``(P, H, W)`` for an image of ``(H, W)``
  input pixels:

  ==============================  ===================================================
  values                          meaning
  ==============================  ===================================================
  1 channel, no target            positions u of the model's main slider (its
                                  first), through its calibration
  1 channel, target = a slider    the same along that slider
  1 channel, target = a knob      that knob's value; cube: through the knob's
                                  calibration, the other knobs at ``base``; a 2-knob
                                  simplex: the other knob is 1 - v
  one channel per knob            channel i is knob i's raw value (an RGB file for a
                                  2-knob model: blue all 0); on the simplex the channels
                                  must sum to 1 (within 2/255) and are renormalised
  ==============================  ===================================================

  The map may have any resolution with the image's aspect ratio (within 2 %, or exactly
  the image's size scaled and rounded to whole pixels): it is resized bilinearly
  (``align_corners=False``, antialiased when shrinking) to ``(H, W)`` before its values are
  interpreted.

Every problem raises a one-line :class:`~tunableconv.errors.InputError` (the file) or
:class:`~tunableconv.errors.InvalidParamsError` (the values against the model).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError, InvalidParamsError
from .io import DEFAULT_MAX_PIXELS, _decode
from .knobs import KnobSpace, Slider, interp

__all__ = [
    "ASPECT_TOLERANCE",
    "SIMPLEX_SUM_TOLERANCE",
    "read_knob_map",
    "knob_map_params",
    "knob_map_uses_base",
    "check_knob_map_size",
    "interp",
]

#: Largest relative difference between the map's and the image's aspect ratio (2 %).
ASPECT_TOLERANCE = 0.02
#: How far the channels of a simplex map may sum from 1 (8-bit rounding of every channel).
SIMPLEX_SUM_TOLERANCE = 2.0 / 255.0

_ALPHA = ("has transparent pixels: refused for a knob map (a transparent pixel has no clear knob value); "
          "save it without transparency")


# ----------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------
def read_knob_map(source: str | os.PathLike | bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Tensor:
    """Read a knob map image as float32 ``(C, h, w)`` values in [0, 1].

    Args:
        source: a path or the file's bytes (any format :func:`tunableconv.io.read_image`
            reads).
        max_pixels: refuse files with more pixels before decoding them (None: no limit).

    Returns:
        ``(C, h, w)``: C = 1 for a grey file — 8-bit divided by 255, 16-bit by 65535 — and
        for an RGB file whose three channels are equal everywhere; C = 3 for colour.

    Raises:
        InputError: (one line) the file is missing, empty, truncated or corrupt, not an
            image, has too many pixels, or has an alpha channel.
    """
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    if not isinstance(source, (str, os.PathLike, bytes)):
        raise InputError(f"a knob map is read from a path or bytes, got {type(source).__name__}")
    values, _ = _decode(source, max_pixels, refuse_alpha=_ALPHA)
    if values.shape[0] == 3 and torch.equal(values[0], values[1]) and torch.equal(values[0], values[2]):
        values = values[:1]  # a grey picture saved as RGB
    return values.contiguous()


# ----------------------------------------------------------------------------------------
# size
# ----------------------------------------------------------------------------------------
def check_knob_map_size(map_size: Sequence[int], image_size: Sequence[int]) -> None:
    """Refuse a map ``(h, w)`` whose aspect ratio differs from the image's ``(H, W)`` by more
    than :data:`ASPECT_TOLERANCE` (relative), unless it is the image's size scaled by one
    factor and rounded to whole pixels (a half-size map of an odd-sized image). A stretched
    map would put its values in the wrong places.

    Raises:
        InvalidParamsError: one line giving both sizes (width x height).
    """
    h, w = (int(v) for v in map_size)
    big_h, big_w = (int(v) for v in image_size)
    if min(h, w, big_h, big_w) < 1:
        raise InvalidParamsError(f"the knob map ({w}x{h}) and the image ({big_w}x{big_h}) must not be empty")
    ratio = (w / h) / (big_w / big_h)
    if abs(ratio - 1.0) <= ASPECT_TOLERANCE:
        return
    # one scale factor k with round(H k) = h and round(W k) = w: only rounding differs
    low = max((h - 0.5) / big_h, (w - 0.5) / big_w)
    high = min((h + 0.5) / big_h, (w + 0.5) / big_w)
    if low <= high:
        return
    raise InvalidParamsError(
        f"the knob map is {w}x{h} pixels but the image is {big_w}x{big_h} (width x height): their aspect ratios "
        f"{w / h:.3g} and {big_w / big_h:.3g} differ by more than {ASPECT_TOLERANCE:.0%} (a stretched map would put "
        "its values in the wrong places); give a map with the image's aspect ratio")


def _resize(values: Tensor, size: tuple[int, int]) -> Tensor:
    """``(C, h, w)`` -> ``(C, H, W)``: bilinear, align_corners=False, antialiased when shrinking."""
    if tuple(values.shape[-2:]) == tuple(size):
        return values
    shrink = values.shape[-2] > size[0] or values.shape[-1] > size[1]
    out = F.interpolate(values[None], size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]
    return out.clamp_(0.0, 1.0)


# ----------------------------------------------------------------------------------------
# values -> p
# ----------------------------------------------------------------------------------------
def _along_slider(slider: Slider, u: Tensor, calibrated: bool) -> Tensor:
    """p ``(P, H, W)`` along ``slider`` for positions u ``(H, W)``: :meth:`Slider.p` per pixel."""
    cal = slider.calibration
    s = interp(u, cal.slider, cal.raw) if calibrated and cal is not None else u
    start = torch.tensor(slider.start, dtype=torch.float32, device=u.device).view(-1, 1, 1)
    end = torch.tensor(slider.end, dtype=torch.float32, device=u.device).view(-1, 1, 1)
    return (start + s.unsqueeze(0) * (end - start)).clamp_(0.0, 1.0)


def _names(space: KnobSpace) -> str:
    sliders = ", ".join(s.name for s in space.sliders) or "none"
    return f"sliders: {sliders}; knobs: {', '.join(space.names)}"


def _accepted(space: KnobSpace) -> str:
    n = space.num_params
    per_knob = f"{n} channels, one per knob ({', '.join(space.names)})" if n > 1 else ""
    if n == 2:
        per_knob += ", or an RGB file with blue 0 (red, green = the two knobs)"
    one = "1 channel (grey: a slider, or one knob named with --knob-map NAME=FILE)"
    return f"{one} or {per_knob}" if per_knob else one


def knob_map_uses_base(space: KnobSpace, channels: int, target: str | None) -> bool:
    """Whether :func:`knob_map_params` reads ``base`` for a map of ``channels`` channels and
    this ``target``: only a one-channel map of one knob of a cube model with other knobs."""
    return (channels == 1 and target is not None and space.domain == "cube" and space.num_params > 1
            and not space.has_slider(target) and target in space.names)


def knob_map_params(
    space: KnobSpace,
    values: Tensor,
    size: tuple[int, int],
    *,
    target: str | None = None,
    base: Tensor | Sequence[float] | None = None,
    calibrated: bool = True,
) -> Tensor:
    """The knob map p ``(P, H, W)`` for an image of ``size = (H, W)`` input pixels.

    Args:
        space: the model's knob space.
        values: ``(C, h, w)`` (or ``(h, w)``, one channel) in [0, 1], e.g. from
            :func:`read_knob_map`; any resolution with the image's aspect ratio.
        size: ``(H, W)``, the size of the model's input image (not of its output).
        target: for a one-channel map, the slider or knob it sets (None: the main slider);
            must be None for a map with one channel per knob.
        base: a full raw p ``(P,)`` for the knobs a one-knob cube map leaves (default: the
            knob space's default).
        calibrated: pass slider and knob values through their calibrations (cube knobs along their axes,
            simplex weights through the weight warps).

    Returns:
        float32 ``(P, H, W)`` in [0, 1], on ``values``' device; on the simplex every pixel's
        p sums to 1.

    Raises:
        InvalidParamsError: (one line) a model without knobs, values that are not a finite
            map in [0, 1], an unknown target, no slider to apply a one-channel map to, one
            knob of a simplex with three or more knobs, a channel count that does not fit,
            simplex channels that do not sum to 1, or an aspect ratio that differs from the
            image's.
    """
    n = space.num_params
    if n == 0:
        raise InvalidParamsError("this model has no knobs: a knob map does not apply (drop --knob-map)")
    if not isinstance(values, Tensor):
        raise InvalidParamsError(f"a knob map must be a tensor (C, h, w), got {type(values).__name__}")
    if values.dim() == 2:
        values = values.unsqueeze(0)
    if values.dim() != 3 or values.numel() == 0:
        raise InvalidParamsError(f"a knob map must have shape (C, h, w), got {tuple(values.shape)}")
    values = values.to(torch.float32)
    if not bool(torch.isfinite(values).all()):
        raise InvalidParamsError("the knob map contains NaN or infinite values")
    if not bool(((values >= 0) & (values <= 1)).all()):
        raise InvalidParamsError(f"knob map values must lie in [0, 1], got values in "
                                 f"[{values.min().item():.4g}, {values.max().item():.4g}]")
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise InvalidParamsError(f"size must be (H, W), two positive integers, got {size!r}")
    size = (int(size[0]), int(size[1]))
    check_knob_map_size(values.shape[-2:], size)
    c = values.shape[0]

    if c == 1:
        u = _resize(values, size)[0]
        if target is None:
            slider = space.main_slider
            if slider is None:
                raise InvalidParamsError(f"this model has no slider for a grey knob map: name the knob it sets with "
                                         f"--knob-map NAME=FILE (knobs: {', '.join(space.names)})")
            return _along_slider(slider, u, calibrated).contiguous()
        if not isinstance(target, str):
            raise InvalidParamsError(f"the target of a knob map is a slider or knob name, got {target!r}")
        if space.has_slider(target):
            return _along_slider(space.slider(target), u, calibrated).contiguous()
        if target not in space.names:
            raise InvalidParamsError(f"unknown slider or knob {target!r} for the knob map; {_names(space)}")
        i = space.names.index(target)
        if space.domain == "simplex" and n >= 3:
            raise InvalidParamsError(
                f"a map of one knob ({target}) is ambiguous on a simplex of {n} knobs (the other weights would have "
                f"to change to keep the sum 1): give a map with one channel per knob ({', '.join(space.names)})"
                + (" or a slider" if space.sliders else ""))
        out = torch.empty((n, *size), dtype=torch.float32, device=u.device)
        if space.domain == "simplex":  # one knob, or two summing to 1
            out[i] = u
            if n == 2:
                out[1 - i] = 1.0 - u
            return space.simplex_weights(out, calibrated=calibrated).clamp_(0.0, 1.0)
        p0 = space.resolve(p=base) if base is not None else torch.tensor(space.default or [], dtype=torch.float32)
        out[:] = p0.to(out.device).view(-1, 1, 1)
        cal = space.knobs[i].calibration
        out[i] = interp(u, cal.slider, cal.raw) if calibrated and cal is not None else u
        return out.clamp_(0.0, 1.0)

    if not (c == n or (c == 3 and n == 2)):
        raise InvalidParamsError(f"a knob map for this model has {_accepted(space)}; this one has {c} channels")
    if target is not None:
        raise InvalidParamsError(f"a knob map with {c} channels sets every knob ({', '.join(space.names)}): "
                                 f"drop '{target}=' (a name is for a one-channel map)")
    if c == 3 and n == 2:
        if bool((values[2] > 0).any()):
            raise InvalidParamsError(f"an RGB knob map for the 2 knobs ({', '.join(space.names)}) needs its blue "
                                     f"channel all 0 (red, green = the knobs); blue reaches {values[2].max().item():.3g}")
        values = values[:2]
    if space.domain == "simplex":
        total = values.sum(0)
        err = (total - 1.0).abs()
        worst = int(err.reshape(-1).argmax())
        if float(err.reshape(-1)[worst]) > SIMPLEX_SUM_TOLERANCE + 1e-6:
            y, x = divmod(worst, values.shape[-1])
            raise InvalidParamsError(
                f"the knob map's channels ({' + '.join(space.names)}) must sum to 1 at every pixel on this simplex "
                f"model (within 2/255); pixel (x={x}, y={y}) sums to {float(total[y, x]):.4g}")
    p = _resize(values, size)
    if space.domain == "simplex":
        p = space.simplex_weights(p / p.sum(0, keepdim=True).clamp_min(1e-12), calibrated=calibrated)
    return p.clamp_(0.0, 1.0).contiguous()
