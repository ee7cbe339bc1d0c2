"""Run a tunable model on images: knob handling through the model's knob space, tiling.

:class:`Restorer` wraps a loaded model and its metadata. What p means is read from the
model file's knob space only (:class:`~tunableconv.knobs.KnobSpace`, ``restorer.space``),
and every way of giving the knobs goes through :meth:`KnobSpace.resolve`:

- ``p``: the raw interactive parameters, one value per knob (``--p 0.7,0.3``); on a
  simplex model they must sum to 1 (refused otherwise, not projected);
- ``knobs``: values by knob name (``--knob fidelity=0.7``; on the cube the others stay at
  their defaults and each value goes through the knob's calibration);
- ``slider``: ``(name, u)`` — a named 1-D path of the model (``--slider strength=0.7``),
  or u alone for the model's main slider (its first: ``--slider 0.7``), through its
  calibration unless ``calibrated=False`` (``--raw``);
- nothing: the knob space's default p.

p may also be a **knob map** ``(P, H, W)`` at the input image's size, one setting per pixel
(:meth:`Restorer.knob_map` builds one from a picture's values through the knob space,
:mod:`tunableconv.knob_maps`); tiled inference crops it with the image.

Tiled inference (``tile``) needs a model whose result does not depend on the whole image
(``space.tiling_exact``); for other models it is refused unless ``force_tiling``. The
scale factor of the output comes from the knob space.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from .errors import InputError, InvalidParamsError
from .knobs import KnobSpace
from .models.files import ModelInfo


@dataclass
class Restorer:
    """A loaded model with its metadata, callable on images."""

    model: nn.Module
    info: ModelInfo
    device: torch.device = torch.device("cpu")

    @classmethod
    def load(cls, name_or_path: str, device: str = "cpu") -> "Restorer":
        """A shipped model name or a model file (formats 1 and 2), validated when opened."""
        from .models import load_model
        from .zoo import resolve

        try:
            dev = torch.device(device)
        except RuntimeError:
            raise InputError(f"unknown device {device!r} (use cpu, cuda, cuda:N or mps)") from None
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but no CUDA GPU is available")
        if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise InputError("--device mps was asked for but this machine has no usable MPS (Apple GPU) backend")
        model, info = load_model(resolve(name_or_path), device=dev)
        return cls(model, info, dev)

    # -- the knob space --------------------------------------------------------------------
    @property
    def space(self) -> KnobSpace:
        """The model's knob space (stored in format-2 files, migrated for format 1)."""
        return self.info.space

    @property
    def num_params(self) -> int:
        return self.space.num_params

    @property
    def scale(self) -> int:
        return self.space.scale

    def params(
        self,
        p: Sequence[float] | None = None,
        calibrated: bool = True,
        *,
        knobs: Mapping[str, float] | None = None,
        slider: tuple[str | None, float] | float | None = None,
    ) -> Tensor | None:
        """The p tensor for the given knob values (see the module docstring); None for a
        model without knobs. ``slider``: ``(name, u)``, or u alone for the main slider.
        Raises :class:`InvalidParamsError` (one line)."""
        if slider is not None and not isinstance(slider, (tuple, list)):
            slider = (None, slider)
        p_tensor = self.space.resolve(p, knobs=knobs, slider=slider, calibrated=calibrated)
        if self.num_params == 0:
            return None
        off = self.space.off_domain(p_tensor) if (p is not None or knobs is not None) else None
        if off:  # refused, not projected: a projection would run another p than the one asked for
            total = float(p_tensor.sum())
            example = p_tensor / total if total > 0 else torch.tensor(self.space.default or [], dtype=torch.float32)
            raise InvalidParamsError(f"{off}: refused; give values that sum to 1, e.g. "
                                     + ",".join(f"{v:.3g}" for v in example.tolist()))
        return p_tensor

    def knob_map(
        self,
        values: Tensor,
        size: tuple[int, int],
        target: str | None = None,
        base: Tensor | Sequence[float] | None = None,
        calibrated: bool = True,
    ) -> Tensor:
        """A knob map p ``(P, H, W)`` for an input image of ``size = (H, W)`` from map values
        ``(C, h, w)`` in [0, 1] (:func:`tunableconv.knob_maps.read_knob_map`), through this
        model's knob space: :func:`tunableconv.knob_maps.knob_map_params`. Raises
        :class:`InvalidParamsError` (one line)."""
        from .knob_maps import knob_map_params

        return knob_map_params(self.space, values, size, target=target, base=base, calibrated=calibrated)

    # -- running ---------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, image: Tensor, p: Tensor | None, tile: int | None = None, overlap: int = 32,
                 progress: bool = False, force_tiling: bool = False) -> Tensor:
        """Restore ``image`` (3, H, W) or (1, 3, H, W) in [0, 1]; returns (3, H·s, W·s) clamped to [0, 1].

        ``p``: ``(P,)``, or a knob map ``(P, H, W)`` at the input image's size (one setting
        per pixel; see :meth:`knob_map`). With tiles the map is cropped with the image (it
        travels as extra input channels), so tiled and untiled results agree as for a shared p.

        Raises:
            InvalidParamsError: p missing, given to a model without knobs, a knob map of the
                wrong shape or size, or a model that cannot take knob maps (its one-line reason).
            InputError: tiles asked for a model whose tiled inference is not exact (unless
                ``force_tiling``), or NaN/Inf in the output.
        """
        from .tiling import check_tile

        tile = check_tile(tile, overlap, overlap_option="overlap")  # None or 0: no tiling
        x = image.unsqueeze(0) if image.dim() == 3 else image
        x = x.to(self.device, torch.float32)
        if p is None and self.num_params:
            raise InvalidParamsError(f"this model has {self.num_params} knobs: give its p (see Restorer.params)")
        if p is not None and not self.num_params:
            raise InvalidParamsError("this model has no knobs: pass p=None")
        knob_map = isinstance(p, Tensor) and p.dim() >= 3
        if knob_map:
            assert p is not None
            if p.dim() != 3:
                raise InvalidParamsError(f"a knob map for Restorer has shape (P, H, W), got {tuple(p.shape)}")
            from .nn.params import check_params

            size = tuple(x.shape[-2:])
            if tuple(p.shape) != (self.num_params, *size):
                raise InvalidParamsError(
                    f"the knob map has shape {tuple(p.shape)} but this model and image need ({self.num_params}, "
                    f"{size[0]}, {size[1]}): {self.num_params} knob(s) at the input image's size (H, W)")
            pm = check_params(p, self.num_params, size=size, allow_map=True, device=self.device, dtype=torch.float32)
            channels = x.shape[1]
            # the map travels as extra input channels, so that tiling crops and pads it with the image
            x = torch.cat([x, pm.unsqueeze(0).expand(x.shape[0], -1, -1, -1)], dim=1)

            def run(t: Tensor) -> Tensor:
                img, tile_map = t[:, :channels], t[:, channels:]
                try:
                    return self.model(img.contiguous(memory_format=torch.channels_last), tile_map.contiguous())
                except torch.OutOfMemoryError:
                    raise
                except (InvalidParamsError, RuntimeError, ValueError, TypeError, IndexError, NotImplementedError) as exc:
                    raise InvalidParamsError(self._no_map_message(exc)) from None
        elif p is None:
            def run(t: Tensor) -> Tensor:
                return self.model(t.contiguous(memory_format=torch.channels_last))
        else:
            def run(t: Tensor) -> Tensor:
                return self.model(t.contiguous(memory_format=torch.channels_last), p.to(self.device))

        def fn(t: Tensor) -> Tensor:
            # NHWC activations: 1.4-1.7x faster convolutions on CPU (oneDNN), same values to ~1e-7
            return run(t).contiguous()

        if tile and max(x.shape[-2:]) > tile:
            self.check_tiling(force_tiling)
            from .tiling import tiled_apply

            y = tiled_apply(fn, x, tile=tile, overlap=overlap, scale=self.scale, progress=progress,
                            multiple=int(getattr(self.model, "size_multiple", 1)))  # windows stay aligned
        else:
            y = fn(x)
        if not torch.isfinite(y).all():
            state = getattr(self.model, "state_dict", dict)()
            if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
                where = f"{self.info.path}: " if self.info.path else ""
                raise InputError(f"{where}the model's weights hold NaN/Inf values: the model file is broken "
                                 "(the input is not the cause)")
            raise InputError("the model produced NaN/Inf values for this input")
        return y[0].clamp(0, 1).cpu()

    def _no_map_message(self, exc: BaseException) -> str:
        """The one-line reason a model refused a knob map (the model's own words when it
        names knob maps, else prefixed with what happened)."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, InvalidParamsError) and "knob map" in text:
            return text
        arch = getattr(self.info, "architecture", None) or type(self.model).__name__
        return f"this model ({arch}) cannot take a knob map (a p per pixel): {text}"

    def check_tiling(self, force: bool = False) -> None:
        """Refuse tiled inference for a model whose output depends on the whole image
        (``tiling_exact`` false in its knob space) unless ``force``."""
        if not self.space.tiling_exact and not force:
            raise InputError("tiled inference is not exact for this model (it has global operations such as instance "
                             "norm or pooling, so tiles would change the result): run without --tile, or pass "
                             "--force-tiling to tile anyway")
