r"""Image degradations for training and evaluating restoration networks, in plain torch.

Every function works on float images in ``[0, 1]`` of shape ``(C, H, W)`` (one image) or
``(B, C, H, W)`` (a batch) and returns the same shape (except :func:`imresize`), dtype and
device. Random functions take an optional :class:`torch.Generator` so that a training run
or a test set is reproducible: the same generator state gives the same output. A generator
on another device than the image is fine (the random numbers are drawn on the generator's
device and moved).

Per-sample parameters: wherever a parameter is documented as "float or ``(B,)`` tensor",
a float applies to the whole batch and a tensor of shape ``(B,)`` gives one value per image
(a ``(C, H, W)`` input counts as a batch of one).

Contents:

- additive white Gaussian noise: :func:`add_gaussian_noise`, :func:`gaussian_noise`,
  :func:`sample_sigma`. **Noise levels are on the 0-255 scale** (the convention of the
  denoising literature): ``sigma=25`` adds noise of standard deviation ``25 / 255`` to an
  image in ``[0, 1]``.
- blur: :func:`gaussian_kernel2d`, :func:`gaussian_blur`, :func:`sample_gaussian_kernels`,
  :func:`blur` (arbitrary, optionally per-sample kernels), :func:`load_blur_kernels`.
  Blur sigmas are in pixels.
- sharpening: :func:`unsharp_mask`.
- resizing: :func:`imresize`, bicubic resizing that reproduces MATLAB's ``imresize``.
- compression: :func:`jpeg_compress` (Pillow, not differentiable); saving as 8 bits:
  :func:`quantize_8bit`.
- composable callables for trainers: :class:`NoiseDegradation`,
  :class:`BlurNoiseDegradation`, :class:`JpegDegradation`, called as
  ``degraded, info = degradation(clean, generator)``.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError

__all__ = [
    "gaussian_noise",
    "add_gaussian_noise",
    "sample_sigma",
    "gaussian_kernel2d",
    "sample_gaussian_kernels",
    "gaussian_blur",
    "blur",
    "load_blur_kernels",
    "unsharp_mask",
    "imresize",
    "jpeg_compress",
    "quantize_8bit",
    "NoiseDegradation",
    "BlurNoiseDegradation",
    "JpegDegradation",
]

_PADDINGS = ("reflect", "replicate", "circular", "zeros")

ScalarOrTensor = float | int | Tensor


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------


def _as_batch(x: Tensor, name: str = "x") -> tuple[Tensor, bool]:
    """Check that ``x`` is a float image and add a batch dim if missing."""
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, not {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor in [0, 1], not {x.dtype}")
    if x.ndim == 3:
        return x.unsqueeze(0), False
    if x.ndim == 4:
        return x, True
    raise InputError(f"{name} must have shape (C, H, W) or (B, C, H, W), not {tuple(x.shape)}")


def _unbatch(x: Tensor, batched: bool) -> Tensor:
    return x if batched else x.squeeze(0)


def _per_sample(v: ScalarOrTensor, batch: int, ref: Tensor, name: str) -> Tensor:
    """A float or a ``(B,)`` / ``(1,)`` / 0-dim tensor as a ``(B,)`` tensor like ``ref``."""
    if isinstance(v, Tensor):
        t = v.to(device=ref.device, dtype=ref.dtype)
        if t.ndim == 0:
            return t.expand(batch)
        if t.ndim == 1 and t.shape[0] in (1, batch):
            return t.expand(batch)
        raise InputError(f"{name} must be a float or a tensor of shape ({batch},), not {tuple(t.shape)}")
    if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
        return torch.full((batch,), float(v), device=ref.device, dtype=ref.dtype)
    raise InputError(f"{name} must be a float or a tensor, not {type(v).__name__}")


def _randn(shape: Sequence[int], ref: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal samples of ``shape`` on ``ref``'s device/dtype, drawn with ``generator``."""
    dev = generator.device if generator is not None else ref.device
    dtype = ref.dtype if ref.dtype in (torch.float32, torch.float64) else torch.float32
    n = torch.randn(tuple(shape), generator=generator, device=dev, dtype=dtype)
    return n.to(device=ref.device, dtype=ref.dtype)


def _rand(n: int, generator: torch.Generator | None, device: torch.device | str | None) -> Tensor:
    dev = generator.device if generator is not None else (device or "cpu")
    u = torch.rand(n, generator=generator, device=dev, dtype=torch.float64)
    return u.to(device=device or dev, dtype=torch.float32)


def _check_range(r: Sequence[float], name: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a pair (low, high), not {r!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise InputError(f"{name} must be a finite pair with low <= high, not {r!r}")
    return lo, hi


# ----------------------------------------------------------------------------------------
# Gaussian noise
# ----------------------------------------------------------------------------------------


def sample_sigma(
    batch: int,
    low: float,
    high: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""One value per sample, drawn uniformly in ``[low, high]``.

    Used for noise levels (0-255 scale) and blur widths (pixels) alike.

    Args:
        batch: number of samples B.
        low, high: the range; ``low == high`` gives a constant.
        generator: random generator (seeding); the global one if ``None``.
        device: device of the result (the generator's device by default).

    Returns:
        float32 tensor of shape ``(B,)``.
    """
    lo, hi = _check_range((low, high), "the sigma range")
    if int(batch) < 0:
        raise InputError(f"batch must be >= 0, not {batch}")
    return lo + (hi - lo) * _rand(int(batch), generator, device)


def gaussian_noise(x: Tensor, sigma: ScalarOrTensor, generator: torch.Generator | None = None) -> Tensor:
    r"""White Gaussian noise shaped like ``x``: :math:`n \sim \mathcal{N}(0, (\sigma/255)^2)`.

    Args:
        x: reference image ``(C, H, W)`` or ``(B, C, H, W)`` (only its shape, dtype and
            device are used).
        sigma: noise standard deviation **on the 0-255 scale**, a float or a ``(B,)`` tensor
            (one level per image). Must be >= 0.
        generator: random generator (seeding).

    Returns:
        the noise, same shape, dtype and device as ``x``.
    """
    xb, batched = _as_batch(x)
    s = _per_sample(sigma, xb.shape[0], xb, "sigma")
    if bool((s < 0).any()) or not bool(torch.isfinite(s).all()):
        raise InputError("sigma must be finite and >= 0")
    n = _randn(xb.shape, xb, generator) * (s / 255.0).view(-1, 1, 1, 1)
    return _unbatch(n, batched)


def add_gaussian_noise(
    x: Tensor,
    sigma: ScalarOrTensor,
    generator: torch.Generator | None = None,
    clip: bool = False,
    return_noise: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""Add white Gaussian noise: :math:`y = x + n`, :math:`n \sim \mathcal{N}(0, (\sigma/255)^2)`.

    Args:
        x: clean image in ``[0, 1]``, ``(C, H, W)`` or ``(B, C, H, W)``.
        sigma: noise standard deviation **on the 0-255 scale** (``25`` means ``25/255``), a
            float or a ``(B,)`` tensor (one level per image).
        generator: random generator (seeding): the same seed gives the same noise.
        clip: clamp the result to ``[0, 1]`` (the usual AWGN benchmarks do not clip).
        return_noise: also return the noise actually added, ``y - x`` (after clipping when
            ``clip`` is set).

    Returns:
        ``y`` with the shape of ``x``, or ``(y, noise)`` when ``return_noise``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(4, 3, 32, 32)
        >>> y = add_gaussian_noise(x, sample_sigma(4, 5, 50, g), generator=g)
    """
    n = gaussian_noise(x, sigma, generator)
    y = x + n
    if clip:
        y = y.clamp(0.0, 1.0)
        n = y - x
    return (y, n) if return_noise else y


# ----------------------------------------------------------------------------------------
# blur
# ----------------------------------------------------------------------------------------


def gaussian_kernel2d(
    sigma: ScalarOrTensor,
    size: int = 21,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Isotropic 2-D Gaussian kernel(s), normalised to sum 1.

    .. math::
        k(i, j) \propto \exp\!\left(-\frac{(i - c)^2 + (j - c)^2}{2\sigma^2}\right),
        \quad c = (\text{size} - 1)/2

    ``sigma = 0`` gives a discrete delta (the identity blur).

    Args:
        sigma: standard deviation in pixels, a float (one kernel) or a ``(B,)`` tensor.
        size: kernel side (odd, so the kernel is centred).
        dtype, device: of the result (``device`` defaults to ``sigma``'s when a tensor).

    Returns:
        ``(size, size)`` for a float sigma, ``(B, size, size)`` for a tensor sigma.
    """
    size = int(size)
    if size < 1 or size % 2 == 0:
        raise InputError(f"the kernel size must be a positive odd number, not {size}")
    single = not isinstance(sigma, Tensor) or sigma.ndim == 0
    if isinstance(sigma, Tensor):
        s = sigma.detach().to(dtype=torch.float64, device=device or sigma.device).reshape(-1)
    else:
        s = torch.tensor([float(sigma)], dtype=torch.float64, device=device)
    if bool((s < 0).any()) or not bool(torch.isfinite(s).all()):
        raise InputError("the blur sigma must be finite and >= 0")
    r = torch.arange(size, dtype=torch.float64, device=s.device) - (size - 1) / 2
    d2 = (r.view(1, -1, 1) ** 2 + r.view(1, 1, -1) ** 2)  # (1, size, size)
    s2 = (2 * s.clamp_min(1e-12) ** 2).view(-1, 1, 1)
    k = torch.exp(-d2 / s2)
    k = k / k.sum(dim=(-2, -1), keepdim=True)
    delta = (d2 == 0).to(k.dtype).expand_as(k)
    k = torch.where((s == 0).view(-1, 1, 1), delta, k)
    k = k.to(dtype)
    return k[0] if single else k


def sample_gaussian_kernels(
    batch: int,
    sigma_range: Sequence[float] = (0.2, 4.0),
    size: int = 21,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Draw one isotropic Gaussian kernel per sample, sigma uniform in ``sigma_range`` (pixels).

    Returns:
        ``(kernels, sigmas)`` of shapes ``(B, size, size)`` and ``(B,)`` (float32).
    """
    lo, hi = _check_range(sigma_range, "sigma_range")
    sig = sample_sigma(batch, lo, hi, generator, device)
    return gaussian_kernel2d(sig, size, device=sig.device), sig


def _pad(x: Tensor, pads: tuple[int, int, int, int], padding: str) -> Tensor:
    if padding not in _PADDINGS:
        raise InputError(f"padding must be one of {', '.join(_PADDINGS)}, not {padding!r}")
    if padding == "zeros":
        return F.pad(x, pads)
    if padding == "reflect" and (max(pads[:2]) >= x.shape[-1] or max(pads[2:]) >= x.shape[-2]):
        raise InputError(
            f"reflect padding of {max(pads)} pixels needs an image larger than the kernel "
            f"radius, got {tuple(x.shape[-2:])}: use padding='replicate'"
        )
    return F.pad(x, pads, mode=padding)


def blur(x: Tensor, kernel: Tensor, padding: str = "reflect") -> Tensor:
    r"""Convolve images with a blur kernel (one for all, or one per sample), keeping the size.

    True convolution (the kernel is flipped, as in the degradation model
    :math:`y = k \ast x`), with the kernel origin at index ``(kh // 2, kw // 2)``:

    .. math::
        y(i, j) = \sum_{u, v} k(u, v)\, x(i - u + kh/\!/2,\; j - v + kw/\!/2)

    The borders are extended by ``padding`` so the output has the input's size. Per-sample
    kernels use one grouped convolution. Differentiable in ``x`` and ``kernel``.

    Args:
        x: images ``(C, H, W)`` or ``(B, C, H, W)``.
        kernel: ``(kh, kw)`` (shared), ``(B, kh, kw)`` or ``(B, 1, kh, kw)`` (one per sample),
            or ``(B, C, kh, kw)`` (one per sample and channel). Not normalised here.
        padding: ``"reflect"`` (default), ``"replicate"``, ``"circular"`` or ``"zeros"``.

    Returns:
        blurred images, same shape as ``x``.
    """
    xb, batched = _as_batch(x)
    if not isinstance(kernel, Tensor) or kernel.ndim not in (2, 3, 4):
        raise InputError("kernel must be a tensor of shape (kh, kw), (B, kh, kw) or (B, C, kh, kw)")
    b, c, h, w = xb.shape
    k = kernel.to(device=xb.device, dtype=xb.dtype)
    kh, kw = k.shape[-2:]
    if kh < 1 or kw < 1:
        raise InputError("kernel must not be empty")
    pads = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)  # left, right, top, bottom
    xp = _pad(xb, pads, padding)
    k = torch.flip(k, dims=(-2, -1))
    if k.ndim == 2:
        wgt = k.expand(c, 1, kh, kw)
        return _unbatch(F.conv2d(xp, wgt, groups=c), batched)
    if k.ndim == 3:
        k = k.unsqueeze(1)
    if k.shape[0] not in (1, b) or k.shape[1] not in (1, c):
        raise InputError(f"kernel of shape {tuple(kernel.shape)} does not fit images of shape {tuple(xb.shape)}")
    wgt = k.expand(b, c, kh, kw).reshape(b * c, 1, kh, kw)
    out = F.conv2d(xp.reshape(1, b * c, *xp.shape[-2:]), wgt, groups=b * c)
    return _unbatch(out.reshape(b, c, h, w), batched)


def gaussian_blur(x: Tensor, sigma: ScalarOrTensor, size: int = 21, padding: str = "reflect") -> Tensor:
    r"""Isotropic Gaussian blur :math:`y = G_\sigma \ast x` with a ``size x size`` kernel.

    Args:
        x: images ``(C, H, W)`` or ``(B, C, H, W)``.
        sigma: standard deviation in pixels, a float or a ``(B,)`` tensor (one per image,
            e.g. from :func:`sample_sigma`). ``0`` is the identity.
        size: kernel side (odd), 21 by default.
        padding: border handling, see :func:`blur`.

    Returns:
        blurred images, same shape as ``x``.
    """
    if isinstance(sigma, Tensor) and sigma.ndim > 0 and sigma.numel() > 1:
        k = gaussian_kernel2d(sigma, size, dtype=x.dtype, device=x.device)
    else:
        s = float(sigma.reshape(-1)[0]) if isinstance(sigma, Tensor) else sigma
        k = gaussian_kernel2d(s, size, dtype=x.dtype, device=x.device)
    return blur(x, k, padding)


def load_blur_kernels(path: str | os.PathLike | None = None) -> dict[str, Tensor]:
    r"""The benchmark blur kernels, as a dict name -> float32 ``(kh, kw)`` tensor summing to 1.

    The file is a NumPy ``.npz`` archive with the arrays ``levin09_1`` .. ``levin09_8`` (the
    eight motion kernels of Levin et al. 2009) and ``kair12_1`` .. ``kair12_12`` (the twelve
    25x25 kernels used by KAIR/USRNet). Kernels are renormalised to sum exactly 1.

    Args:
        path: the ``.npz`` file, or a folder holding ``kernels.npz``; by default
            ``data_root() / "blur_kernels/kernels.npz"``.
    """
    if path is None:
        from ..paths import data_root

        p = data_root() / "blur_kernels" / "kernels.npz"
    else:
        p = Path(path)
        if p.is_dir():
            p = p / "kernels.npz"
    if not p.is_file():
        raise InputError(f"blur kernel file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {name: np.asarray(z[name], dtype=np.float32) for name in z.files}
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read blur kernels from {p}: {e}") from None
    out: dict[str, Tensor] = {}
    for name, a in arrays.items():
        if a.ndim != 2 or a.sum() <= 0:
            raise InputError(f"{p}: array {name!r} is not a 2-D kernel with a positive sum")
        t = torch.from_numpy(a.astype(np.float64))
        out[name] = (t / t.sum()).to(torch.float32)
    return out


# ----------------------------------------------------------------------------------------
# sharpening
# ----------------------------------------------------------------------------------------


def unsharp_mask(
    x: Tensor,
    sigma: ScalarOrTensor = 1.0,
    amount: ScalarOrTensor = 1.0,
    size: int = 21,
    padding: str = "reflect",
    clip: bool = False,
) -> Tensor:
    r"""Unsharp masking: :math:`y = x + a\,(x - G_\sigma \ast x)`.

    Args:
        x: images ``(C, H, W)`` or ``(B, C, H, W)``.
        sigma: width of the Gaussian (pixels), a float or ``(B,)`` tensor.
        amount: sharpening strength :math:`a`, a float or ``(B,)`` tensor (``0`` is the
            identity).
        size: Gaussian kernel side (odd).
        padding: border handling, see :func:`blur`.
        clip: clamp the result to ``[0, 1]``.

    Returns:
        sharpened images, same shape as ``x``.
    """
    xb, batched = _as_batch(x)
    a = _per_sample(amount, xb.shape[0], xb, "amount").view(-1, 1, 1, 1)
    sig = sigma.reshape(-1) if isinstance(sigma, Tensor) else sigma
    y = xb + a * (xb - gaussian_blur(xb, sig, size, padding))
    if clip:
        y = y.clamp(0.0, 1.0)
    return _unbatch(y, batched)


# ----------------------------------------------------------------------------------------
# MATLAB-compatible bicubic resizing
# ----------------------------------------------------------------------------------------


def _cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5, as MATLAB)."""
    t = np.abs(t)
    t2, t3 = t * t, t * t * t
    inner = (a + 2) * t3 - (a + 3) * t2 + 1
    outer = a * t3 - 5 * a * t2 + 8 * a * t - 4 * a
    return np.where(t <= 1, inner, np.where(t <= 2, outer, 0.0))


@lru_cache(maxsize=64)
def _resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool) -> Tensor:
    """The ``(out_len, in_len)`` float64 matrix of one 1-D MATLAB bicubic resize pass."""
    width = 4.0  # support of the cubic kernel
    if scale < 1 and antialias:
        # stretch the kernel by 1/scale (a low-pass filter matched to the new sampling rate)
        def h(t: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * t)

        width = width / scale
    else:
        h = _cubic
    # output pixel x (1-based) sits at input coordinate u (1-based)
    xo = np.arange(1, out_len + 1, dtype=np.float64)
    u = xo / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based
    wts = h(u[:, None] - idx)
    wts = wts / wts.sum(axis=1, keepdims=True)
    # symmetric boundary: indices outside [1, in_len] are mirrored (edge pixel repeated)
    period = 2 * in_len
    m = np.mod(idx.astype(np.int64) - 1, period)
    src = np.where(m < in_len, m, period - 1 - m)  # 0-based
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), taps)
    np.add.at(mat, (rows, src.reshape(-1)), wts.reshape(-1))
    return torch.from_numpy(mat)


def _pair(v, name: str) -> tuple:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise InputError(f"{name} must be a number or a pair (h, w), not {v!r}")
        return tuple(v)
    return (v, v)


def imresize(
    x: Tensor,
    scale: float | Sequence[float] | None = None,
    size: int | Sequence[int] | None = None,
    antialias: bool = True,
    quantize: bool = False,
) -> Tensor:
    r"""Bicubic resizing that reproduces MATLAB's ``imresize(x, scale)`` / ``imresize(x, [h w])``.

    Each axis is resampled by a matrix product with a precomputed ``(out, in)`` weight matrix
    (two separable 1-D passes), so the function is fast and differentiable. For output pixel
    :math:`x = 1..N_\text{out}` (1-based, as MATLAB) the input coordinate is

    .. math::
        u = \frac{x}{s} + \frac{1}{2}\left(1 - \frac{1}{s}\right)

    and the weights are :math:`w_j \propto h(u - j)` over the integer taps :math:`j` within
    the kernel support, normalised to sum 1, with Keys' cubic kernel
    (:math:`a = -0.5`). When downscaling (:math:`s < 1`) with ``antialias``, the kernel is
    stretched: :math:`h(t) = s\,\mathrm{cubic}(s t)` with support :math:`4/s`. Taps outside
    the image are mirrored symmetrically (``... 2 1 | 1 2 ... N | N N-1 ...``). As in MATLAB,
    the axis with the smaller scale is resized first (height first on ties).

    By default the output is **not** clamped (bicubic overshoots slightly) and the passes are
    computed in the input dtype (float64 gives the closest match to MATLAB on ``double``
    images). MATLAB on ``uint8`` images works on the 0-255 scale and rounds to 8 bits after
    *each* pass; ``quantize=True`` emulates that (the input is rounded to 8 bits, each pass
    runs on the 0-255 scale and is saturated and rounded half away from zero, the result is
    divided by 255). It reproduces MATLAB's x4 Set5 images bit-exactly but is not
    differentiable. Without it, rounded outputs differ from MATLAB's ``uint8`` results by at
    most one level on some pixels (about 58 dB PSNR on Set5 x4).

    Args:
        x: images ``(C, H, W)`` or ``(B, C, H, W)``.
        scale: scale factor (``0.25`` downscales x4), a float or a pair ``(s_h, s_w)``. The
            output size is ``ceil(s * in)`` per axis, as MATLAB.
        size: output size ``(h, w)`` (or an int for both), instead of ``scale``; the scale
            of each axis is then ``out / in``.
        antialias: low-pass the kernel when downscaling (MATLAB's default).
        quantize: emulate MATLAB on ``uint8`` images (8-bit input, rounding after each
            pass); the output is then a multiple of 1/255 in ``[0, 1]``.

    Returns:
        ``(C, h, w)`` or ``(B, C, h, w)``.

    Example:
        >>> lr = imresize(hr, scale=1 / 4)   # hr: (3, 256, 256) -> (3, 64, 64)
    """
    xb, batched = _as_batch(x)
    in_h, in_w = xb.shape[-2:]
    if (scale is None) == (size is None):
        raise InputError("imresize needs exactly one of scale or size")
    if size is not None:
        oh, ow = (int(v) for v in _pair(size, "size"))
        if oh < 1 or ow < 1:
            raise InputError(f"size must be positive, not {size!r}")
        sh, sw = oh / in_h, ow / in_w
    else:
        sh, sw = (float(v) for v in _pair(scale, "scale"))
        if not (sh > 0 and sw > 0 and math.isfinite(sh) and math.isfinite(sw)):
            raise InputError(f"scale must be positive and finite, not {scale!r}")
        oh, ow = math.ceil(sh * in_h), math.ceil(sw * in_w)
    dims = [(sh, 0), (sw, 1)]
    dims.sort(key=lambda t: t[0])  # stable: height first on ties
    # with quantize, work on the 0-255 integer scale, as MATLAB does on uint8 images
    out = _quantize_8bit(xb) if quantize else xb
    for s, axis in dims:
        if axis == 0:
            if s == 1.0 and oh == in_h:
                continue
            m = _resize_matrix(in_h, oh, s, antialias).to(device=xb.device, dtype=xb.dtype)
            out = torch.matmul(m, out)  # (oh, H) @ (B, C, H, W') -> (B, C, oh, W')
        else:
            if s == 1.0 and ow == in_w:
                continue
            m = _resize_matrix(in_w, ow, s, antialias).to(device=xb.device, dtype=xb.dtype)
            out = torch.matmul(out, m.T)  # (B, C, H', W) @ (W, ow)
        if quantize:
            out = _quantize_8bit(out, scaled=True)
    if quantize:
        out = out / 255
    return _unbatch(out, batched)


def _quantize_8bit(x: Tensor, scaled: bool = False) -> Tensor:
    """MATLAB's conversion to uint8 (saturate, round half away from zero), as floats in
    [0, 255]; ``scaled`` says whether ``x`` is already on the 0-255 scale."""
    return torch.floor((x if scaled else x * 255).clamp(0, 255) + 0.5)


def quantize_8bit(x: Tensor) -> Tensor:
    r"""``x`` as a saved 8-bit image would hold it: clipped to [0, 1], rounded to the nearest
    of the 256 levels (half up, MATLAB's uint8 conversion), back in [0, 1]:

    .. math:: Q(x) = \lfloor 255\,\mathrm{clip}(x, 0, 1) + 1/2 \rfloor / 255

    Args:
        x: images ``(C, H, W)`` or ``(B, C, H, W)`` (any float tensor).

    Returns:
        same shape, dtype and device; every value is ``k / 255`` for an integer k in [0, 255].
        Not differentiable (the gradient is zero almost everywhere).
    """
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise InputError(f"quantize_8bit needs a floating-point tensor, got {type(x).__name__}")
    return _quantize_8bit(x) / 255.0


# ----------------------------------------------------------------------------------------
# JPEG
# ----------------------------------------------------------------------------------------


def _jpeg_qualities(quality: int | Sequence[int] | Tensor, batch: int) -> list[int]:
    """``quality`` as one integer in [1, 100] per image (a one-line :class:`InputError` otherwise)."""
    if isinstance(quality, Tensor):
        if quality.is_complex() or quality.dtype == torch.bool or quality.ndim > 1:
            raise InputError(f"JPEG quality must be an integer or a (B,) tensor of integers, got a "
                             f"{quality.dtype} tensor of shape {tuple(quality.shape)}")
        values = quality.reshape(-1).tolist()
    elif isinstance(quality, (list, tuple)):
        values = list(quality)
    else:
        values = [quality]
    out = []
    for v in values:
        ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        if not (ok and math.isfinite(float(v)) and float(v) == int(v)):
            raise InputError(f"JPEG quality must be an integer in [1, 100], got {v!r}")
        out.append(int(v))
    if len(out) == 1:
        out = out * batch
    if len(out) != batch:
        raise InputError(f"quality must be an int or one value per image ({batch}), got {len(out)}")
    bad = [v for v in out if not 1 <= v <= 100]
    if bad:
        raise InputError(f"JPEG quality must be an integer in [1, 100], got {bad[0]}")
    return out


def jpeg_compress(x: Tensor, quality: int | Sequence[int] | Tensor) -> Tensor:
    r"""A JPEG round trip: quantise to 8 bits, encode and decode with Pillow, in memory.

    The image is first quantised as a saved 8-bit image is (:func:`quantize_8bit`: clip to
    [0, 1], ``floor(255 x + 1/2)``), then encoded with Pillow's default JPEG settings at the
    given quality (baseline, 4:2:0 chroma subsampling for RGB, so even quality 100 is not
    lossless on colour detail) and decoded back. Not differentiable (the result carries no
    gradient). An image that is already 8-bit (every value ``k / 255``) goes in unchanged.

    Args:
        x: images in ``[0, 1]``, ``(C, H, W)`` or ``(N, C, H, W)`` with C = 1 (grey) or 3 (RGB).
        quality: the JPEG quality, an integer in ``[1, 100]`` (100: the mildest) for every
            image, or one per image (a sequence of N integers or an ``(N,)`` tensor). Integral
            floats (``50.0``) are accepted; anything else (``50.5``, NaN, a bool, a value out of
            range, the wrong count) is a one-line :class:`InputError`.

    Returns:
        the decoded images, every value ``k / 255`` in ``[0, 1]``; same shape, dtype and device
        as ``x``.
    """
    from PIL import Image

    xb, batched = _as_batch(x)
    b, c = xb.shape[:2]
    if c not in (1, 3):
        raise InputError(f"jpeg_compress needs 1 or 3 channels, not {c}")
    q = _jpeg_qualities(quality, b)
    u8 = _quantize_8bit(xb.detach()).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    outs = []
    for i in range(b):
        arr = u8[i, :, :, 0] if c == 1 else u8[i]
        buf = io.BytesIO()
        Image.fromarray(arr, mode="L" if c == 1 else "RGB").save(buf, format="JPEG", quality=q[i])
        buf.seek(0)
        dec = np.array(Image.open(buf).convert("L" if c == 1 else "RGB"))
        outs.append(dec.reshape(dec.shape[0], dec.shape[1], c))
    y = torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).to(device=xb.device, dtype=xb.dtype) / 255.0
    return _unbatch(y, batched)


# ----------------------------------------------------------------------------------------
# composable degradations for trainers
# ----------------------------------------------------------------------------------------


@dataclass
class NoiseDegradation:
    r"""Additive white Gaussian noise with a per-image level drawn uniformly in ``sigma_range``.

    ``sigma_range`` is on the 0-255 scale; ``(25, 25)`` gives a fixed level.

    Call: ``noisy, info = NoiseDegradation()(clean, generator)`` with ``clean`` of shape
    ``(B, C, H, W)`` (or ``(C, H, W)``); ``info = {"sigma": (B,) tensor}`` (0-255 scale).
    """

    sigma_range: tuple[float, float] = (5.0, 50.0)
    clip: bool = False

    def __post_init__(self) -> None:
        lo, hi = _check_range(self.sigma_range, "sigma_range")
        if lo < 0:
            raise InputError(f"sigma_range must be >= 0, not {self.sigma_range!r}")

    def __call__(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        xb, _ = _as_batch(clean, "clean")
        sigma = sample_sigma(xb.shape[0], *self.sigma_range, generator=generator, device=clean.device)
        noisy = add_gaussian_noise(clean, sigma.to(clean.dtype), generator=generator, clip=self.clip)
        return noisy, {"sigma": sigma}


@dataclass
class BlurNoiseDegradation:
    r"""Gaussian blur then noise: :math:`y = G_{\sigma_b} \ast x + n`, :math:`n \sim \mathcal{N}(0, (\sigma_n/255)^2)`.

    Per image, the blur width :math:`\sigma_b` (pixels) is drawn uniformly in
    ``blur_sigma_range`` and the noise level :math:`\sigma_n` (0-255 scale) in
    ``noise_sigma_range``. With ``kernels`` (e.g. ``list(load_blur_kernels().values())``),
    each image is instead blurred by one of those kernels chosen at random (the kernels must
    share one size; ``blur_sigma`` is then NaN in ``info``).

    Call: ``degraded, info = deg(clean, generator)``; ``info`` holds ``"kernel"``
    ``(B, k, k)``, ``"blur_sigma"`` ``(B,)`` and ``"sigma"`` ``(B,)`` (noise level).
    """

    blur_sigma_range: tuple[float, float] = (0.2, 4.0)
    noise_sigma_range: tuple[float, float] = (0.0, 10.0)
    kernel_size: int = 21
    kernels: Sequence[Tensor] | None = None
    padding: str = "reflect"
    clip: bool = False

    def __post_init__(self) -> None:
        _check_range(self.blur_sigma_range, "blur_sigma_range")
        lo, _ = _check_range(self.noise_sigma_range, "noise_sigma_range")
        if lo < 0 or self.blur_sigma_range[0] < 0:
            raise InputError("blur and noise sigma ranges must be >= 0")
        if self.kernels is not None:
            ks = list(self.kernels.values()) if isinstance(self.kernels, dict) else list(self.kernels)
            if not ks or len({tuple(k.shape) for k in ks}) != 1 or ks[0].ndim != 2:
                raise InputError("kernels must be a non-empty list of 2-D kernels of one size")
            self._bank = torch.stack([k.to(torch.float32) for k in ks])
        else:
            self._bank = None

    def __call__(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        xb, batched = _as_batch(clean, "clean")
        b = xb.shape[0]
        if self._bank is None:
            k, bs = sample_gaussian_kernels(b, self.blur_sigma_range, self.kernel_size, generator, clean.device)
        else:
            dev = generator.device if generator is not None else "cpu"
            idx = torch.randint(len(self._bank), (b,), generator=generator, device=dev).cpu()
            k = self._bank[idx].to(clean.device)
            bs = torch.full((b,), float("nan"), device=clean.device)
        blurred = blur(xb, k.to(xb.dtype), self.padding)
        sigma = sample_sigma(b, *self.noise_sigma_range, generator=generator, device=clean.device)
        y = add_gaussian_noise(blurred, sigma.to(xb.dtype), generator=generator, clip=self.clip)
        return _unbatch(y, batched), {"kernel": k, "blur_sigma": bs, "sigma": sigma}


@dataclass
class JpegDegradation:
    r"""JPEG compression with a per-image integer quality drawn uniformly in ``quality_range``
    (inclusive). Call: ``degraded, info = deg(clean, generator)``; ``info = {"quality": (B,)}``."""

    quality_range: tuple[int, int] = (10, 90)

    def __post_init__(self) -> None:
        lo, hi = _check_range(self.quality_range, "quality_range")
        if lo < 1 or hi > 100:
            raise InputError(f"quality_range must lie in [1, 100], not {self.quality_range!r}")

    def __call__(self, clean: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        xb, _ = _as_batch(clean, "clean")
        lo, hi = (int(v) for v in self.quality_range)
        dev = generator.device if generator is not None else "cpu"
        q = torch.randint(lo, hi + 1, (xb.shape[0],), generator=generator, device=dev).cpu()
        return jpeg_compress(clean, q), {"quality": q}
