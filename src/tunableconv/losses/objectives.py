r"""Objectives: modules returning one loss value per sample.

Every objective is called as ``obj(output, batch)`` where ``output`` is the network output
``(B, C, H, W)`` and ``batch`` a dict of tensors holding at least ``"clean"`` (plus
task-dependent keys, e.g. ``"noisy"``); it returns a **per-sample** loss of shape ``(B,)``.
:class:`~tunableconv.losses.multiloss.ParametricMultiLoss` mixes P of them with p.

Pixel objectives (:class:`Fidelity`, :class:`NoisePreservation`, :class:`Sharpening`) have a
pixel target and expose ``target(batch) -> (B, C, H, W)`` so validation can measure PSNR
against each objective's own target.

Distances ``d(x, y) -> (B,)`` average over every non-batch element (``N = C·H·W``):

- ``l1``:          ``(1/N) Σ |x - y|``
- ``l2``:          ``(1/N) Σ (x - y)²``   (the per-sample MSE)
- ``charbonnier``: ``(1/N) Σ sqrt((x - y)² + ε²)``   (ε = 1e-3 by default)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError

__all__ = [
    "Objective",
    "PixelObjective",
    "Distance",
    "make_distance",
    "per_sample_l1",
    "per_sample_l2",
    "per_sample_charbonnier",
    "Fidelity",
    "NoisePreservation",
    "Sharpening",
    "TotalVariation",
    "Chroma",
    "gaussian_kernel1d",
    "gaussian_blur",
    "total_variation",
    "rgb_to_yuv",
    "get_key",
]

Batch = Mapping[str, Tensor]
Distance = Callable[[Tensor, Tensor], Tensor]


# ----------------------------------------------------------------------------------------
# distances
# ----------------------------------------------------------------------------------------
def _flat(x: Tensor, y: Tensor) -> Tensor:
    if x.shape != y.shape:
        raise InputError(f"loss inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.dim() < 1:
        raise InputError("loss inputs need a batch dimension")
    return (x - y).reshape(x.shape[0], -1)


def per_sample_l1(x: Tensor, y: Tensor) -> Tensor:
    """``(1/N) Σ |x - y|`` per sample: ``(B, …) -> (B,)``."""
    return _flat(x, y).abs().mean(dim=1)


def per_sample_l2(x: Tensor, y: Tensor) -> Tensor:
    """``(1/N) Σ (x - y)²`` per sample (MSE): ``(B, …) -> (B,)``."""
    return _flat(x, y).square().mean(dim=1)


def per_sample_charbonnier(x: Tensor, y: Tensor, eps: float = 1e-3) -> Tensor:
    """``(1/N) Σ sqrt((x - y)² + eps²)`` per sample: ``(B, …) -> (B,)``."""
    return (_flat(x, y).square() + eps * eps).sqrt().mean(dim=1)


def make_distance(name: str = "l1", eps: float = 1e-3) -> Distance:
    """A per-sample distance by name: ``"l1"``, ``"l2"`` (alias ``"mse"``) or ``"charbonnier"``."""
    key = name.lower()
    if key == "l1":
        return per_sample_l1
    if key in ("l2", "mse"):
        return per_sample_l2
    if key == "charbonnier":
        e = float(eps)
        if not e > 0:
            raise InputError(f"charbonnier eps must be > 0, got {eps}")
        return lambda x, y: per_sample_charbonnier(x, y, e)
    raise InputError(f"unknown distance {name!r}; choose one of: l1, l2, charbonnier")


def get_key(batch: Batch, keys: str | Sequence[str], what: str) -> Tensor:
    """``batch[k]`` for the first key of ``keys`` present; a clear error when none is."""
    if isinstance(keys, str):
        keys = (keys,)
    for k in keys:
        if k in batch:
            return batch[k]
    raise InputError(
        f"{what} needs batch key {' or '.join(repr(k) for k in keys)}; the batch has {sorted(batch)}"
    )


# ----------------------------------------------------------------------------------------
# base classes
# ----------------------------------------------------------------------------------------
class Objective(nn.Module):
    """Base class of objectives: ``forward(output, batch) -> (B,)`` per-sample loss.

    ``name`` is used as the objective's logging key by the multi-loss (overridable per
    instance). Objectives made of parts (composites, :class:`~.style.StyleObjective`) store
    the detached per-sample value of each part of their last call in ``last_parts``.
    """

    name: str = "objective"

    def __init__(self, name: str | None = None) -> None:
        super().__init__()
        if name is not None:
            self.name = name
        self.last_parts: dict[str, Tensor] = {}

    def forward(self, output: Tensor, batch: Batch) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class PixelObjective(Objective):
    r"""An objective ``d(output, target(batch))`` with a pixel target.

    Args:
        distance: ``"l1"``, ``"l2"`` or ``"charbonnier"``.
        eps: the Charbonnier ε.
    """

    def __init__(self, distance: str = "l1", eps: float = 1e-3, name: str | None = None) -> None:
        super().__init__(name)
        self.distance_name = distance
        self.eps = float(eps)
        self.distance = make_distance(distance, eps)

    def target(self, batch: Batch) -> Tensor:  # pragma: no cover - abstract
        """The pixel target ``(B, C, H, W)`` of this objective for ``batch``."""
        raise NotImplementedError

    def forward(self, output: Tensor, batch: Batch) -> Tensor:
        with torch.no_grad():
            tgt = self.target(batch)
        return self.distance(output, tgt.to(dtype=output.dtype))

    def extra_repr(self) -> str:
        s = f"distance={self.distance_name!r}"
        return s + (f", eps={self.eps}" if self.distance_name == "charbonnier" else "")


class Fidelity(PixelObjective):
    r"""Fidelity to the clean image: ``L[b] = d(output_b, clean_b)``.

    Args:
        distance: ``"l1"`` (default), ``"l2"`` or ``"charbonnier"``.
        eps: Charbonnier ε (default 1e-3).
        key: the batch key of the reference (default ``"clean"``).
    """

    name = "fidelity"

    def __init__(self, distance: str = "l1", eps: float = 1e-3, key: str = "clean", name: str | None = None) -> None:
        super().__init__(distance, eps, name)
        self.key = key

    def target(self, batch: Batch) -> Tensor:
        return get_key(batch, self.key, "the fidelity objective")


class NoisePreservation(PixelObjective):
    r"""Keep a fraction of the noise: target ``t = clean + β (noisy - clean)``.

    ``L[b] = d(output_b, t_b)``; β = 0.9 by default (β = 0 is plain fidelity, β = 1 the
    identity). The noisy input is read from the first of ``noisy_key`` found in the batch.

    Args:
        beta: the kept noise fraction β.
        distance: ``"l1"`` (default), ``"l2"`` or ``"charbonnier"``.
        eps: Charbonnier ε.
        noisy_key: batch key(s) of the noisy input, tried in order.
    """

    name = "noise"

    def __init__(
        self,
        beta: float = 0.9,
        distance: str = "l1",
        eps: float = 1e-3,
        noisy_key: str | Sequence[str] = ("noisy", "degraded", "input"),
        clean_key: str = "clean",
        name: str | None = None,
    ) -> None:
        super().__init__(distance, eps, name)
        self.beta = float(beta)
        self.noisy_key = noisy_key
        self.clean_key = clean_key

    def target(self, batch: Batch) -> Tensor:
        clean = get_key(batch, self.clean_key, "the noise-preservation objective")
        noisy = get_key(batch, self.noisy_key, "the noise-preservation objective")
        if noisy.shape != clean.shape:
            raise InputError(f"noisy {tuple(noisy.shape)} and clean {tuple(clean.shape)} differ in shape")
        return clean + self.beta * (noisy - clean)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, " + super().extra_repr()


# ----------------------------------------------------------------------------------------
# Gaussian blur and sharpening
# ----------------------------------------------------------------------------------------
def gaussian_kernel1d(sigma: float, radius: int | None = None, *, dtype=torch.float32, device=None) -> Tensor:
    r"""Normalised 1-D Gaussian ``g[k] ∝ exp(-k² / (2σ²))``, ``k = -r…r``, ``r = ceil(3σ)``."""
    if not sigma > 0:
        raise InputError(f"gaussian sigma must be > 0, got {sigma}")
    r = int(math.ceil(3.0 * sigma)) if radius is None else int(radius)
    k = torch.arange(-r, r + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (k / sigma) ** 2)
    return (g / g.sum()).to(dtype)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    r"""Separable Gaussian blur ``G_σ * x`` of ``(B, C, H, W)``, same size.

    Borders are reflected (replicated when the image is too small to reflect), so a
    constant image stays exactly constant.
    """
    if x.dim() != 4:
        raise InputError(f"gaussian_blur expects (B, C, H, W), got {tuple(x.shape)}")
    g = gaussian_kernel1d(sigma, dtype=x.dtype, device=x.device)
    r = (g.numel() - 1) // 2
    C = x.shape[1]
    mode = "reflect" if min(x.shape[-2:]) > r else "replicate"
    y = F.pad(x, (r, r, r, r), mode=mode)
    y = F.conv2d(y, g.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    y = F.conv2d(y, g.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)
    return y


class Sharpening(PixelObjective):
    r"""Sharpen the clean image: target ``t = clean + γ (clean - G_σ * clean)`` (unsharp mask).

    γ is the maximum sharpening amount reached at this objective's vertex; σ the blur of
    the mask. The target is clamped to [0, 1] unless ``clamp=False``.

    Args:
        gamma: the amount γ (default 1.0).
        sigma: the Gaussian σ in pixels (default 1.5).
        distance, eps: as in :class:`Fidelity`.
    """

    name = "sharpen"

    def __init__(
        self,
        gamma: float = 1.0,
        sigma: float = 1.5,
        distance: str = "l1",
        eps: float = 1e-3,
        clamp: bool = True,
        key: str = "clean",
        name: str | None = None,
    ) -> None:
        super().__init__(distance, eps, name)
        if not sigma > 0:
            raise InputError(f"sharpening sigma must be > 0, got {sigma}")
        self.gamma, self.sigma, self.clamp, self.key = float(gamma), float(sigma), bool(clamp), key

    def target(self, batch: Batch) -> Tensor:
        clean = get_key(batch, self.key, "the sharpening objective")
        t = clean + self.gamma * (clean - gaussian_blur(clean, self.sigma))
        return t.clamp(0.0, 1.0) if self.clamp else t

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, sigma={self.sigma}, clamp={self.clamp}, " + super().extra_repr()


# ----------------------------------------------------------------------------------------
# total variation and chrominance
# ----------------------------------------------------------------------------------------
def total_variation(x: Tensor, power: float = 1.0) -> Tensor:
    r"""Anisotropic total variation per sample: ``(B, C, H, W) -> (B,)``.

    ``TV(x) = mean_{c,i,j} |x[c,i+1,j] - x[c,i,j]|^q + mean_{c,i,j} |x[c,i,j+1] - x[c,i,j]|^q``
    with ``q = power`` (1: L1 TV, 2: squared differences); a direction with a single
    row/column contributes 0.
    """
    if x.dim() != 4:
        raise InputError(f"total_variation expects (B, C, H, W), got {tuple(x.shape)}")
    B = x.shape[0]
    dh = x[:, :, 1:, :] - x[:, :, :-1, :]
    dw = x[:, :, :, 1:] - x[:, :, :, :-1]

    def term(d: Tensor) -> Tensor:
        if d.numel() == 0:
            return x.new_zeros(B)
        a = d.abs()
        return (a if power == 1 else a.pow(power)).reshape(B, -1).mean(dim=1)

    return term(dh) + term(dw)


# BT.601 analogue YUV: Y = .299 R + .587 G + .114 B, U = .492 (B - Y), V = .877 (R - Y).
_YUV = (
    (0.299, 0.587, 0.114),
    (-0.14713, -0.28886, 0.436),
    (0.615, -0.51499, -0.10001),
)


def rgb_to_yuv(x: Tensor) -> Tensor:
    r"""RGB ``(B, 3, H, W)`` to YUV (BT.601 analogue form), same shape.

    ``Y = 0.299 R + 0.587 G + 0.114 B``, ``U ≈ 0.492 (B - Y)``, ``V ≈ 0.877 (R - Y)``;
    a grey pixel (R = G = B) has U = V = 0.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputError(f"rgb_to_yuv expects (B, 3, H, W), got {tuple(x.shape)}")
    m = torch.tensor(_YUV, dtype=x.dtype, device=x.device)
    return torch.einsum("oc,bchw->bohw", m, x)


class TotalVariation(Objective):
    """Total variation of the output, :func:`total_variation` (no target)."""

    name = "tv"

    def __init__(self, power: float = 1.0, name: str | None = None) -> None:
        super().__init__(name)
        self.power = float(power)

    def forward(self, output: Tensor, batch: Batch) -> Tensor:
        return total_variation(output, self.power)


class Chroma(Objective):
    r"""Chrominance distance to the input: ``d(UV(output), UV(content))``.

    Compares only the U and V channels of :func:`rgb_to_yuv`, so the output may change
    luminance (texture) freely but should keep the input's colours.

    Args:
        distance: ``"l2"`` (default), ``"l1"`` or ``"charbonnier"``.
        key: batch key(s) of the reference, tried in order (default ``"content"`` then ``"clean"``).
    """

    name = "chroma"

    def __init__(
        self, distance: str = "l2", eps: float = 1e-3, key: str | Sequence[str] = ("content", "clean"),
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        self.distance_name = distance
        self.distance = make_distance(distance, eps)
        self.key = key

    def forward(self, output: Tensor, batch: Batch) -> Tensor:
        ref = get_key(batch, self.key, "the chroma objective").to(dtype=output.dtype)
        return self.distance(rgb_to_yuv(output)[:, 1:], rgb_to_yuv(ref)[:, 1:])
