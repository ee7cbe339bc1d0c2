r"""The knob space of a model: what its p means, stored in every model file.

Vocabulary (used the same way everywhere in tunableconv):

- **p**: the interactive parameters, a vector in [0, 1]^P that the network takes as input.
- **knob**: one coordinate of p, with a name and a description (``fidelity``, ``deblur``).
- **domain**: ``"simplex"`` — p mixes P objectives (Σ p = 1 is the intended use) — or
  ``"cube"`` — P independent knobs in [0, 1]^P.
- **slider**: a named 1-D path s ∈ [0, 1] ↦ p(s) = start + s·(end − start), e.g. the
  denoiser's ``strength``: p = (s, 1 − s). A slider may carry a **calibration**, a monotone
  piecewise-linear map u ↦ s that makes equal moves of the user's slider u change the image
  by about equal amounts (``tunableconv calibrate``); ``--raw`` skips it. The **main slider**
  is a model's first slider: the one ``--slider U`` (no name) moves and the app shows.
- On the cube each knob may carry its own calibration (along its axis, the other knobs at
  their defaults). On the simplex a knob's calibration is a **weight warp** c_i: the user's
  weights u (summing to 1) become p_i = c_i(u_i) / Σ_j c_j(u_j), fitted so that moving along
  each edge of the simplex (from one objective to another) changes the output evenly.
- A knob may carry an **icon**: a small picture of what it brings (the style transfer task
  stores a thumbnail of each style image), as a PNG/JPEG data URI; the web app's triangle and
  ``tunableconv sweep --grid N`` show it.

Besides the knobs, a knob space records what a runner needs: the **scale** factor (1 for
restoration at the same size, 4 for ×4 super-resolution), whether **tiled inference is
exact** (a finite receptive field; instance norm or global pooling make it inexact), the
receptive-field radius in input pixels when known, and the **colour** space.

Stored as JSON under the ``knob_space`` key of the model file's metadata (format
``tunableconv-model/2``). Files of format 1 (the first shipped denoisers) have no such key;
:meth:`KnobSpace.from_model_info` derives their knob space from the old fields (knob list,
``info["strength"]``, ``info["calibration"]``).
"""

from __future__ import annotations

import itertools
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, overload

import numpy as np
import torch
from torch import Tensor

from .errors import InputError, InvalidParamsError

DOMAINS = ("simplex", "cube")
DEFAULT_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)


def _fail(where: str, field_name: str, why: str) -> InputError:
    return InputError(f"{where}: knob_space{'.' + field_name if field_name else ''} {why}")


def interp(x: Tensor, xp: Sequence[float], fp: Sequence[float]) -> Tensor:
    """Piecewise-linear interpolation elementwise, as :func:`numpy.interp` (``xp``
    non-decreasing; values outside its range take the end values).

    Equal to :class:`Calibration` (``np.interp``) per element to float32
    rounding: the segment of ``x`` is the last one whose left end is ``<= x``.
    """
    xs = torch.tensor(list(xp), dtype=torch.float64, device=x.device)
    fs = torch.tensor(list(fp), dtype=torch.float64, device=x.device)
    if xs.numel() != fs.numel() or xs.numel() < 1:
        raise ValueError("interp needs equally long, non-empty xp and fp")
    if xs.numel() == 1:
        return torch.full_like(x, float(fs[0]))
    flat = x.reshape(-1).to(torch.float64)
    j = (torch.searchsorted(xs, flat, right=True) - 1).clamp_(0, xs.numel() - 2)
    x0, x1, f0, f1 = xs[j], xs[j + 1], fs[j], fs[j + 1]
    width = x1 - x0
    t = torch.where(width > 0, (flat - x0) / torch.where(width > 0, width, torch.ones_like(width)),
                    torch.zeros_like(flat))
    out = f0 + t.clamp(0.0, 1.0) * (f1 - f0)
    out = torch.where(flat <= xs[0], fs[0], out)
    out = torch.where(flat >= xs[-1], fs[-1], out)
    return out.reshape(x.shape).to(x.dtype)


@dataclass(frozen=True)
class Calibration:
    """A monotone piecewise-linear map from the user's slider u to the raw value s (both in [0, 1])."""

    slider: tuple[float, ...]
    raw: tuple[float, ...]

    def __call__(self, u: float) -> float:
        return float(np.interp(u, self.slider, self.raw))

    def inverse(self, s: float) -> float:
        return float(np.interp(s, self.raw, self.slider))

    def to_dict(self) -> dict:
        return {"slider": list(self.slider), "raw": list(self.raw)}

    @classmethod
    def from_dict(cls, d: Any, where: str = "model file", field_name: str = "calibration") -> "Calibration":
        if not isinstance(d, Mapping) or "slider" not in d or "raw" not in d:
            raise _fail(where, field_name, "must be an object with 'slider' and 'raw' lists")
        u, s = d["slider"], d["raw"]
        ok = (isinstance(u, list) and isinstance(s, list) and len(u) == len(s) >= 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in u + s))
        if not ok:
            raise _fail(where, field_name, "must hold two equally long lists (>= 2) of finite numbers")
        if u[0] != 0 or u[-1] != 1 or any(b < a for a, b in zip(u, u[1:])) or any(b < a for a, b in zip(s, s[1:])):
            raise _fail(where, field_name, "must be non-decreasing, the slider from 0 to 1")
        if min(s) < 0 or max(s) > 1:
            raise _fail(where, field_name, "raw values must lie in [0, 1]")
        return cls(tuple(float(v) for v in u), tuple(float(v) for v in s))


#: Longest knob icon (a data URI): a 64-pixel JPEG thumbnail takes 3-5 thousand characters.
MAX_ICON_CHARS = 24_000
_ICON = re.compile(r"data:image/(png|jpeg);base64,[A-Za-z0-9+/]+={0,2}")


def valid_icon(icon: Any) -> bool:
    """Whether ``icon`` is a knob icon a page can show as is: ``data:image/png;base64,...`` or
    ``data:image/jpeg;base64,...`` of at most :data:`MAX_ICON_CHARS` characters (nothing that
    could leave an HTML attribute or fetch from elsewhere)."""
    if not (isinstance(icon, str) and len(icon) <= MAX_ICON_CHARS and _ICON.fullmatch(icon) is not None):
        return False
    import base64
    import binascii

    try:
        base64.b64decode(icon.split(",", 1)[1], validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


@dataclass(frozen=True)
class Knob:
    """One coordinate of p."""

    name: str
    description: str = ""
    calibration: Calibration | None = None  # cube: along this knob's axis; simplex: its weight warp
    icon: str = ""  # a small picture of what the knob brings (a style image): an image data URI, or ""

    def __post_init__(self) -> None:
        if self.icon and not valid_icon(self.icon):
            raise ValueError(f"knob {self.name!r}: icon must be a base64 PNG/JPEG data URI of at most "
                             f"{MAX_ICON_CHARS} characters")

    def to_dict(self) -> dict:
        d: dict = {"name": self.name, "description": self.description}
        if self.calibration is not None:
            d["calibration"] = self.calibration.to_dict()
        if self.icon:
            d["icon"] = self.icon
        return d


@dataclass(frozen=True)
class Slider:
    """A named 1-D path through the knob space, p(s) = start + s·(end − start)."""

    name: str
    start: tuple[float, ...]
    end: tuple[float, ...]
    description: str = ""
    calibration: Calibration | None = None

    def raw(self, u: float, calibrated: bool = True) -> float:
        """The raw position s on the path for the user's slider value u."""
        return self.calibration(u) if calibrated and self.calibration is not None else float(u)

    def p(self, u: float, calibrated: bool = True) -> list[float]:
        s = self.raw(u, calibrated)
        return [min(1.0, max(0.0, a + s * (b - a))) for a, b in zip(self.start, self.end)]  # rounding stays in [0, 1]

    def formula(self) -> str:
        """The path in words, e.g. ``"p = (s, 1 - s)"`` for start (0, 1) and end (1, 0)."""
        return "p = (" + ", ".join(_coordinate(a, b) for a, b in zip(self.start, self.end)) + ")"

    def to_dict(self) -> dict:
        d: dict = {"name": self.name, "description": self.description, "start": list(self.start), "end": list(self.end)}
        if self.calibration is not None:
            d["calibration"] = self.calibration.to_dict()
        return d


@dataclass
class KnobSpace:
    """Everything a runner needs to know about a model's p (see the module docstring)."""

    knobs: list[Knob]
    domain: str = "simplex"
    default: list[float] | None = None
    sliders: list[Slider] = field(default_factory=list)
    scale: int = 1
    tiling_exact: bool = True
    receptive_field: int | None = None
    color: str = "rgb"

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {self.domain!r}")
        if self.default is None:
            n = len(self.knobs)
            self.default = [1.0 / n] * n if self.domain == "simplex" and n else [1.0] * n

    # -- facts -------------------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        return len(self.knobs)

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.knobs]

    def slider(self, name: str) -> Slider:
        for s in self.sliders:
            if s.name == name:
                return s
        have = ", ".join(s.name for s in self.sliders) or "none"
        raise InvalidParamsError(f"this model has no slider {name!r} (sliders: {have})")

    def has_slider(self, name: str) -> bool:
        return any(s.name == name for s in self.sliders)

    @property
    def main_slider(self) -> Slider | None:
        """The first named slider (the one a simple UI shows), if any."""
        return self.sliders[0] if self.sliders else None

    def require_main_slider(self) -> Slider:
        """The main slider, or a one-line :class:`InvalidParamsError` saying what to give instead."""
        if self.main_slider is not None:
            return self.main_slider
        if self.num_params == 0:
            raise InvalidParamsError("this model has no knobs, so no slider")
        raise InvalidParamsError(f"this model has no slider: give its knobs ({', '.join(self.names)}) with --p or "
                                 "--knob NAME=VALUE")

    def knob_index(self, name: str | int) -> int:
        """The position of a knob given by name (or by index, checked)."""
        if isinstance(name, int) and not isinstance(name, bool):
            if not 0 <= name < self.num_params:
                raise InvalidParamsError(f"knob index {name} out of range: this model has {self.num_params} knob(s) "
                                         f"({self.describe_names()})")
            return name
        if name not in self.names:
            raise InvalidParamsError(f"unknown knob {name!r}; knobs: {', '.join(self.names) or 'none'}")
        return self.names.index(name)

    def describe_names(self) -> str:
        """``"0=fidelity, 1=noise_preservation"``."""
        return ", ".join(f"{i}={n}" for i, n in enumerate(self.names))

    @property
    def calibrated(self) -> bool:
        """Whether any slider or knob carries a calibration."""
        return any(s.calibration is not None for s in self.sliders) or any(k.calibration is not None for k in self.knobs)

    def off_domain(self, p: Sequence[float] | Tensor) -> str | None:
        """A one-line reason when p lies off the domain the model was trained on (the simplex:
        Σ p = 1, to within 1e-3), else None. Knob values a user gives (``--p``, ``--knob``, the
        app's ``p`` and ``knobs``) are refused there (:meth:`Restorer.params`); internal paths
        such as a sweep of one simplex knob with the others fixed may leave the simplex."""
        if self.domain != "simplex" or self.num_params < 2:
            return None
        values = [float(v) for v in (p.tolist() if isinstance(p, Tensor) else p)]
        total = sum(values)
        if abs(total - 1.0) <= 1e-3:
            return None
        shown = ", ".join(f"{v:g}" for v in values)
        return (f"p = ({shown}) sums to {total:.3g}, off the simplex this model was trained on (its knobs "
                f"{', '.join(self.names)} are weights that must sum to 1)")

    # -- p from what a user gives -------------------------------------------------------------
    def resolve(
        self,
        p: Sequence[float] | None = None,
        *,
        knobs: Mapping[str, float] | None = None,
        slider: tuple[str | None, float] | None = None,
        calibrated: bool = True,
    ) -> Tensor:
        """p ``(P,)`` from raw values, named knob values, or a slider ``(name, u)`` (name None:
        the main slider) (nothing: the default).

        Named knob values: on the cube, the knobs not named stay at their defaults and each
        named one goes through its calibration unless ``calibrated`` is False; on the simplex
        the knobs are weights of one mixture summing to 1: every knob but at most one must be
        named, the one left out is 1 minus the others (``perceptual=0.7`` on a two-knob
        simplex is p = (0.3, 0.7)); when the named weights already sum to 1 the others are 0
        (``mosaic=1`` on three styles is p = (1, 0, 0)); the weights then go through the
        knobs' weight warps (:meth:`simplex_weights`) unless ``calibrated`` is False.
        Raises :class:`InvalidParamsError` (one line) on bad input.
        """
        given = sum(x is not None for x in (p, knobs, slider))
        if given > 1:
            raise InvalidParamsError("give the knobs one way: raw p, named knob values or a slider")
        if self.num_params == 0:
            if given:
                raise InvalidParamsError("this model has no knobs")
            return torch.zeros(0)
        if p is not None:
            if hasattr(p, "tolist"):  # a tensor or an array
                p = p.tolist()
            if isinstance(p, (str, bytes)) or not isinstance(p, Sequence):
                raise InvalidParamsError(f"p must be a list of {self.num_params} numbers, got {p!r}")
            values = list(p)
            if len(values) != self.num_params:
                raise InvalidParamsError(f"this model has {self.num_params} knobs ({', '.join(self.names)}), got {len(values)} value(s)")
            for name, v in zip(self.names, values):
                _unit(v, name)
            values = [float(v) for v in values]
        elif knobs is not None:
            if not isinstance(knobs, Mapping):
                raise InvalidParamsError(f"named knob values must map knob names to numbers, got {knobs!r}")
            values = list(self.default or [])
            for name, v in knobs.items():
                if name not in self.names:
                    raise InvalidParamsError(f"unknown knob {name!r}; knobs: {', '.join(self.names)}")
                _unit(v, name)
                i = self.names.index(name)
                cal = self.knobs[i].calibration
                values[i] = cal(float(v)) if calibrated and cal is not None and self.domain == "cube" else float(v)
            missing = [n for n in self.names if n not in knobs]
            if self.domain == "simplex" and len(missing) == 1:  # the weights sum to 1: the last one is implied
                rest = 1.0 - sum(float(v) for v in knobs.values())
                if not -1e-6 <= rest <= 1 + 1e-6:
                    raise InvalidParamsError(f"the knob values given sum to {1 - rest:.3g}; on the simplex they are "
                                             f"weights summing to 1, so {missing[0]} would be {rest:.3g}")
                values[self.names.index(missing[0])] = min(1.0, max(0.0, rest))
            elif self.domain == "simplex" and missing:
                total = sum(float(v) for v in knobs.values())
                if abs(total - 1.0) > 1e-6:  # weights that already sum to 1 leave the others at 0 (mosaic=1)
                    raise InvalidParamsError(f"missing knob value(s) for {', '.join(missing)}: the knobs of this model "
                                             f"are weights on the simplex, give every knob ({', '.join(self.names)}) "
                                             f"or weights that sum to 1 (these sum to {total:.3g})")
                for name in missing:
                    values[self.names.index(name)] = 0.0
            if self.domain == "simplex" and self.off_domain(values) is None:
                values = self.simplex_weights(values, calibrated=calibrated)
        elif slider is not None:
            if not (isinstance(slider, (tuple, list)) and len(slider) == 2 and isinstance(slider[0], (str, type(None)))):
                raise InvalidParamsError(f"a slider is given as (name, value), got {slider!r}")
            name, u = slider
            s = self.slider(name) if name is not None else self.require_main_slider()
            name = s.name
            _unit(u, name)
            values = s.p(float(u), calibrated)
        else:
            values = list(self.default or [])
        for name, v in zip(self.names, values):
            _unit(v, name)
        return torch.tensor(values, dtype=torch.float32)

    @overload
    def simplex_weights(self, u: Tensor, *, calibrated: bool = True) -> Tensor: ...

    @overload
    def simplex_weights(self, u: Sequence[float], *, calibrated: bool = True) -> list[float]: ...

    def simplex_weights(self, u: Sequence[float] | Tensor, *, calibrated: bool = True) -> list[float] | Tensor:
        r"""The raw p of the user's weights u on the simplex: each weight through its knob's
        weight warp c_i (its calibration; the identity for a knob without one) and the result
        renormalised,

        .. math:: p_i = \frac{c_i(u_i)}{\sum_j c_j(u_j)}.

        ``u``: P weights (-> a list), or a tensor ``(P, ...)`` (-> the same shape: per pixel, for
        knob maps). The vertices stay where they are (c_i(0) = 0, c_i(1) = 1). u is returned
        unchanged when ``calibrated`` is False, no knob is calibrated, or every warped weight is 0
        (per element for a tensor).
        """
        warps = calibrated and self.domain == "simplex" and any(k.calibration is not None for k in self.knobs)
        if isinstance(u, Tensor):
            if not warps:
                return u
            warped = torch.stack([interp(w, k.calibration.slider, k.calibration.raw) if k.calibration is not None
                                  else w for w, k in zip(u, self.knobs)])
            total = warped.sum(0, keepdim=True)
            return torch.where(total > 0, warped / total.clamp_min(1e-12), u)
        values = [float(v) for v in u]
        if not warps:
            return values
        warped = [k.calibration(v) if k.calibration is not None else v for k, v in zip(self.knobs, values)]
        total = sum(warped)
        if total <= 0:
            return values
        return [w / total for w in warped]

    def along_knob(self, knob: str | int, u: float, *, calibrated: bool = True,
                   base: Sequence[float] | None = None) -> Tensor:
        """p with one knob at ``u`` and the others at ``base`` (a full raw p whose entry for
        this knob is ignored) or, without it, at their defaults.

        On the cube ``u`` goes through the knob's calibration (unless ``calibrated`` is
        False), which was fitted along exactly this path (the others at their defaults).
        """
        i = self.knob_index(knob)
        name = self.names[i]
        _unit(u, name)
        values = [float(v) for v in self.resolve(p=base)] if base is not None else list(self.default or [])
        cal = self.knobs[i].calibration
        values[i] = cal(float(u)) if calibrated and cal is not None and self.domain == "cube" else float(u)
        return self.resolve(p=values)

    # -- derived spaces --------------------------------------------------------------------------
    def with_slider_calibration(self, name: str, calibration: Calibration | None) -> "KnobSpace":
        """A copy whose slider ``name`` carries ``calibration`` (None removes it)."""
        self.slider(name)  # raises for an unknown name
        sliders = [replace(s, calibration=calibration) if s.name == name else s for s in self.sliders]
        return replace(self, sliders=sliders, knobs=list(self.knobs), default=list(self.default or []))

    def with_knob_calibration(self, knob: str | int, calibration: Calibration | None) -> "KnobSpace":
        """A copy whose knob carries ``calibration`` (None removes it): on the cube along the
        knob's axis, on the simplex as the knob's weight warp (:meth:`simplex_weights`), which must
        map 0 to 0 and 1 to 1."""
        i = self.knob_index(knob)
        if self.domain == "simplex" and calibration is not None and (calibration.raw[0] != 0 or calibration.raw[-1] != 1):
            raise InvalidParamsError(f"the weight warp of knob {self.names[i]!r} must map 0 to 0 and 1 to 1")
        knobs = [replace(k, calibration=calibration) if j == i else k for j, k in enumerate(self.knobs)]
        return replace(self, knobs=knobs, sliders=list(self.sliders), default=list(self.default or []))

    # -- evaluation grids -------------------------------------------------------------------
    def grid(self, values: Sequence[float] = DEFAULT_GRID) -> Tensor:
        """Settings to evaluate, ``(N, P)``.

        Cube: every knob on ``values`` (the product). Simplex: the points of the simplex whose
        coordinates lie on ``values`` and sum to 1 (P = 2: (s, 1 − s) for s in ``values``, in
        that order).
        """
        vals = sorted({float(v) for v in values})
        if any(not 0 <= v <= 1 for v in vals):
            raise InvalidParamsError("grid values must lie in [0, 1]")
        if self.num_params == 0:
            return torch.zeros(1, 0)
        if self.domain == "cube":
            return torch.tensor(list(itertools.product(vals, repeat=self.num_params)), dtype=torch.float32)
        if self.num_params == 2:
            return torch.tensor([[v, 1.0 - v] for v in [float(x) for x in values]], dtype=torch.float32)
        pts = [c for c in itertools.product(vals, repeat=self.num_params) if abs(sum(c) - 1) < 1e-6]
        return torch.tensor(pts, dtype=torch.float32)

    # -- storage -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "knobs": [k.to_dict() for k in self.knobs], "domain": self.domain, "default": list(self.default or []),
            "sliders": [s.to_dict() for s in self.sliders], "scale": self.scale, "tiling_exact": self.tiling_exact,
            "receptive_field": self.receptive_field, "color": self.color,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "model file") -> "KnobSpace":
        """Validate and parse; every problem is an :class:`InputError` naming ``where`` and the field.

        Unknown fields are errors (a file written by a newer tunableconv says so rather than
        being half understood).
        """
        if not isinstance(d, Mapping):
            raise _fail(where, "", "must be a JSON object")
        _no_unknown(d, _SPACE_FIELDS, where, "")
        knobs_raw = d.get("knobs", [])
        if not isinstance(knobs_raw, list):
            raise _fail(where, "knobs", "must be a list")
        domain = d.get("domain", "simplex")
        if domain not in DOMAINS:
            raise _fail(where, "domain", f"must be one of {', '.join(DOMAINS)}, got {domain!r}")
        knobs = []
        for i, k in enumerate(knobs_raw):
            if not isinstance(k, Mapping) or not isinstance(k.get("name"), str) or not k["name"].strip():
                raise _fail(where, f"knobs[{i}]", "must be an object with a non-empty 'name'")
            _check_name(k["name"], where, f"knobs[{i}].name")
            _no_unknown(k, ("name", "description", "calibration", "icon"), where, f"knobs[{i}]")
            desc = k.get("description", "")
            if not isinstance(desc, str):
                raise _fail(where, f"knobs[{i}].description", "must be a string")
            cal = None
            if k.get("calibration") is not None:  # cube: along the knob's axis; simplex: its weight warp
                cal = Calibration.from_dict(k["calibration"], where, f"knobs[{i}].calibration")
                if domain == "simplex" and (cal.raw[0] != 0 or cal.raw[-1] != 1):
                    raise _fail(where, f"knobs[{i}].calibration", "is a weight warp on the simplex: it must map 0 to 0 "
                                                                  "and 1 to 1 (the pure objectives stay put)")
            icon = k.get("icon", "")
            if icon and not valid_icon(icon):
                raise _fail(where, f"knobs[{i}].icon", f"must be a base64 PNG/JPEG data URI of at most {MAX_ICON_CHARS} "
                                                      "characters")
            knobs.append(Knob(k["name"], desc, cal, icon))
        if len({k.name for k in knobs}) != len(knobs):
            raise _fail(where, "knobs", "has duplicate names")
        n = len(knobs)
        default = d.get("default")
        if default is not None and not _unit_vector(default, n):
            raise _fail(where, "default", f"must be a list of {n} numbers in [0, 1]")
        sliders_raw = d.get("sliders", [])
        if sliders_raw is None:
            sliders_raw = []
        if not isinstance(sliders_raw, list):
            raise _fail(where, "sliders", "must be a list")
        sliders = []
        for i, s in enumerate(sliders_raw):
            if not isinstance(s, Mapping) or not isinstance(s.get("name"), str) or not s["name"].strip():
                raise _fail(where, f"sliders[{i}]", "must be an object with a non-empty 'name'")
            _check_name(s["name"], where, f"sliders[{i}].name")
            _no_unknown(s, ("name", "description", "start", "end", "calibration"), where, f"sliders[{i}]")
            for end in ("start", "end"):
                if not _unit_vector(s.get(end), n):
                    raise _fail(where, f"sliders[{i}].{end}", f"must be a list of {n} numbers in [0, 1]")
            desc = s.get("description", "")
            if not isinstance(desc, str):
                raise _fail(where, f"sliders[{i}].description", "must be a string")
            cal = Calibration.from_dict(s["calibration"], where, f"sliders[{i}].calibration") if s.get("calibration") is not None else None
            sliders.append(Slider(s["name"], tuple(map(float, s["start"])), tuple(map(float, s["end"])), desc, cal))
        if len({s.name for s in sliders}) != len(sliders):
            raise _fail(where, "sliders", "has duplicate names")
        scale = d.get("scale", 1)
        if not isinstance(scale, int) or isinstance(scale, bool) or scale not in SCALES:
            raise _fail(where, "scale", f"must be 1, 2, 3, 4 or 8, got {scale!r}")
        exact = d.get("tiling_exact", True)
        if not isinstance(exact, bool):
            raise _fail(where, "tiling_exact", "must be true or false")
        rf = d.get("receptive_field")
        if rf is not None and (not isinstance(rf, int) or isinstance(rf, bool) or rf < 0):
            raise _fail(where, "receptive_field", "must be a non-negative integer or null")
        color = d.get("color", "rgb")
        if color not in ("rgb", "gray"):
            raise _fail(where, "color", f"must be 'rgb' or 'gray', got {color!r}")
        return cls(knobs, domain, [float(v) for v in default] if default is not None else None, sliders, scale, exact, rf, color)

    @classmethod
    def from_model_info(cls, info: Any) -> "KnobSpace":
        """The knob space of a loaded file's :class:`~tunableconv.models.files.ModelInfo`.

        Format 2 files store it; format 1 files (the first shipped denoisers) are migrated:
        their knob list, the domain of their architecture arguments (``"simplex"`` when they
        have none), the ``strength`` slider p = (s, 1 − s) when ``info["strength"]`` is set
        (two knobs), and its ``info["calibration"]``; the scale is the ``upscale`` argument.
        """
        cached = getattr(info, "_space", None)  # validated when the file was opened
        if isinstance(cached, KnobSpace):
            return cached
        where = str(getattr(info, "path", None) or "model file")
        stored = getattr(info, "knob_space", None)
        if stored is not None:
            return cls.from_dict(stored, where)
        extra = getattr(info, "info", {}) or {}
        if not isinstance(extra, Mapping):
            raise InputError(f"{where}: info must be a JSON object")
        raw_knobs = info.knobs if isinstance(info.knobs, list) else []
        knobs = [Knob(str(k.get("name", f"p{i}")), str(k.get("description", ""))) if isinstance(k, Mapping) else Knob(f"p{i}")
                 for i, k in enumerate(raw_knobs)]
        if len(knobs) != info.num_params:
            knobs = [Knob(f"p{i}") for i in range(info.num_params)]
        args = getattr(info, "arguments", {}) or {}
        domain = args.get("domain", "simplex") if isinstance(args, Mapping) else "simplex"
        if domain not in DOMAINS:
            raise InputError(f"{where}: arguments.domain must be one of {', '.join(DOMAINS)}, got {domain!r}")
        sliders = []
        if extra.get("strength") and info.num_params == 2:
            cal = extra.get("calibration")
            sliders.append(Slider("strength", (0.0, 1.0), (1.0, 0.0),  # format 1's one slider, in its knobs' words
                                  f"1: all {knobs[0].name}; 0: all {knobs[1].name}",
                                  Calibration.from_dict(cal, where, "calibration (format 1)") if cal else None))
        up = args.get("upscale", 1) if isinstance(args, Mapping) else 1
        scale = up if isinstance(up, int) and not isinstance(up, bool) and up in SCALES else 1
        default = [1.0, 0.0] if sliders else None
        return cls(knobs, domain, default, sliders, scale, True, None, "rgb")


_SPACE_FIELDS = ("knobs", "domain", "default", "sliders", "scale", "tiling_exact", "receptive_field", "color")
SCALES = (1, 2, 3, 4, 8)


def _no_unknown(d: Mapping, known: Sequence[str], where: str, field_name: str) -> None:
    unknown = [str(k) for k in d if k not in known]
    if unknown:
        raise _fail(where, f"{field_name}" if field_name else "", f"has unknown field(s) {', '.join(sorted(unknown))} "
                    f"(known: {', '.join(known)}; written by a newer tunableconv?)")


def _check_name(name: str, where: str, field_name: str) -> None:
    """Knob and slider names are typed on command lines (``--knob NAME=VALUE``): no ``=``,
    ``,``, control characters or surrounding spaces, at most 64 characters."""
    if (len(name) > 64 or name != name.strip() or any(c in name for c in "=,") or
            any(not c.isprintable() for c in name)):
        raise _fail(where, field_name, f"must be a short printable name without '=', ',' or surrounding spaces, "
                                       f"got {name[:70]!r}")


def _coordinate(a: float, b: float) -> str:
    """One coordinate of a slider path a + s·(b − a), in words."""
    if a == b:
        return f"{a:g}"
    if (a, b) == (0.0, 1.0):
        return "s"
    if (a, b) == (1.0, 0.0):
        return "1 - s"
    d = b - a
    return f"{a:g} {'+' if d > 0 else '-'} {abs(d):g}s" if a else f"{d:g}s"


def _unit(v: Any, name: str) -> None:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise InvalidParamsError(f"{name} must be a number in [0, 1], got {v!r}")
    if math.isnan(v):
        raise InvalidParamsError(f"{name} must be a number in [0, 1], got NaN")
    if not 0 <= v <= 1:
        raise InvalidParamsError(f"{name} must be a number in [0, 1], got {v:g}")


def _unit_vector(v: Any, n: int) -> bool:
    return (isinstance(v, list) and len(v) == n
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and 0 <= x <= 1 for x in v))
