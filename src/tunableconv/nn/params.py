"""The interactive parameters p: accepted shapes, validation, knob domains.

p is always an explicit argument (``layer(x, p)``, ``model(x, p)``); nothing is carried in
global or thread state. Four shapes are accepted:

===================  ==========================  ==========================================
shape                name                        meaning
===================  ==========================  ==========================================
``(P,)``             shared                      one setting for the whole batch (inference)
``(B, P)``           per sample                  one setting per sample (training)
``(P, H, W)``        knob map, shared            one setting per pixel, same for the batch
``(B, P, H, W)``     knob map, per sample        one setting per pixel and sample
===================  ==========================  ==========================================

Knob domains (stored with a model): ``"simplex"`` — p is a mixture of P objectives
(Σ p = 1 is the intended use; any p in [0, 1]^P is accepted); ``"cube"`` — P independent
knobs in [0, 1]^P.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from ..errors import InvalidParamsError

ParamsLike = Tensor | Sequence[float] | float
Domain = Literal["simplex", "cube"]
DOMAINS: tuple[str, ...] = ("simplex", "cube")
ParamsKind = Literal["shared", "per_sample", "map"]


def check_domain(domain: str) -> str:
    """Return ``domain`` if it is a known knob domain, else raise ``ValueError``."""
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {', '.join(DOMAINS)}; got {domain!r}")
    return domain


def _is_symbolic(t: Tensor) -> bool:
    """True while tracing/exporting/compiling or under vmap, where data-dependent checks are impossible."""
    if type(t) is not Tensor and not isinstance(t, torch.nn.Parameter):  # FakeTensor, FunctionalTensor, ...
        return True
    if torch.jit.is_tracing() or torch.compiler.is_compiling() or _is_exporting():
        return True
    return torch._C._functorch.is_batchedtensor(t)


_is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)


def as_params(p: ParamsLike, *, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Turn a float, a (nested) sequence of floats or a tensor into a floating tensor."""
    if isinstance(p, Tensor):
        t = p
        if not t.is_floating_point():
            t = t.float()
    else:
        try:
            t = torch.as_tensor(p, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InvalidParamsError(f"interactive parameters must be numbers, got {p!r}") from exc
        if t.dim() == 0:
            t = t.reshape(1)
    if device is not None or dtype is not None:
        t = t.to(device=device or t.device, dtype=dtype or t.dtype)
    return t


def params_kind(p: Tensor) -> ParamsKind:
    """``"shared"`` for ``(P,)``, ``"per_sample"`` for ``(B, P)``, ``"map"`` for ``(P, H, W)`` / ``(B, P, H, W)``."""
    return {1: "shared", 2: "per_sample", 3: "map", 4: "map"}[p.dim()]  # type: ignore[return-value]


def check_params(
    p: ParamsLike,
    num_params: int | None = None,
    batch_size: int | None = None,
    *,
    size: tuple[int, int] | None = None,
    allow_map: bool = False,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Validate interactive parameters and return them as a tensor.

    Args:
        p: ``(P,)`` shared, ``(B, P)`` per sample, or (with ``allow_map``) a knob map
            ``(P, H, W)`` / ``(B, P, H, W)``; floats or a sequence for the shared form.
        num_params: expected P, if known.
        batch_size: expected B for the per-sample forms, if known.
        size: expected ``(H, W)`` of a knob map, if known (the input image's size).
        allow_map: accept knob maps.

    Raises:
        InvalidParamsError: wrong number of dimensions, wrong P, B or map size, a NaN, or a
        value outside [0, 1]. Value checks are skipped while tracing, exporting or under vmap.
    """
    t = as_params(p, device=device, dtype=dtype)
    dims = (1, 2, 3, 4) if allow_map else (1, 2)
    if t.dim() not in dims:
        forms = "(P,), (B, P), (P, H, W) or (B, P, H, W)" if allow_map else "(P,) or (B, P)"
        raise InvalidParamsError(f"p must have shape {forms}, got {tuple(t.shape)}")
    p_dim = {1: 0, 2: 1, 3: 0, 4: 1}[t.dim()]
    if num_params is not None and t.shape[p_dim] != num_params:
        raise InvalidParamsError(f"expected {num_params} interactive parameter(s), got {t.shape[p_dim]} (p of shape {tuple(t.shape)})")
    if t.dim() in (2, 4) and batch_size is not None and t.shape[0] != batch_size:
        raise InvalidParamsError(f"per-sample p has {t.shape[0]} rows but the batch has {batch_size} samples")
    if t.dim() >= 3 and size is not None and tuple(t.shape[-2:]) != tuple(size):
        raise InvalidParamsError(f"the knob map is {t.shape[-2]}x{t.shape[-1]} but the image is {size[0]}x{size[1]}")
    if not _is_symbolic(t) and t.numel() and not bool(((t >= 0) & (t <= 1)).all()):  # one pass; NaN fails both
        if torch.isnan(t).any():
            raise InvalidParamsError("p contains NaN")
        raise InvalidParamsError(f"p must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]")
    return t


def map_to_channels_last(p: Tensor) -> Tensor:
    """A knob map ``(B, P, H, W)`` as ``(B, H, W, P)`` (for applying a p -> w map per pixel)."""
    return p.permute(0, 2, 3, 1)


def resample_map(agg: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Resample a per-pixel map ``(B, C, h, w)`` to ``size`` (bilinear, align_corners=False).

    The identity when the size already matches. Bilinear weights sum to one, so resampling
    commutes with the affine p -> w maps: resampling p or w gives the same result.
    """
    if tuple(agg.shape[-2:]) == tuple(size):
        return agg
    return torch.nn.functional.interpolate(agg, size=tuple(size), mode="bilinear", align_corners=False)
