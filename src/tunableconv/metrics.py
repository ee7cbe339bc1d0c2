r"""Image-quality metrics (PSNR, SSIM) and the evenness of a tunable network's sweep.

Depends on torch alone. All arithmetic is done in float64 whatever the input dtype, and
results are float64 tensors on the input's device.

Shapes: images are ``(C, H, W)`` (one image) or ``(B, C, H, W)`` (a batch). Metrics are
computed **per image**; ``reduction="none"`` returns one value per image, shape ``(B,)``,
``reduction="mean"`` their mean (a 0-dim tensor). For an unbatched ``(C, H, W)`` input both
reductions return a 0-dim tensor. Note that the batch mean of PSNR is the mean of the
per-image PSNRs (the usual convention in papers), not the PSNR of the mean MSE.

Evaluation conventions (as in the super-resolution literature, e.g. BasicSR):

- ``quantize=True`` rounds both images to 8 bits first (``round(clamp(x / R, 0, 1) * 255)``),
  the values one gets after saving outputs as 8-bit images. The functions default to
  ``quantize=False`` (they measure what they are given); evaluation scripts decide.
- ``y_channel=True`` converts RGB inputs to the luma of ITU-R BT.601 (studio range), for
  inputs normalised to [0, 1]::

      Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255        in [16/255, 235/255]

  Inputs in [0, R] are divided by R first and the result multiplied back by R, so the
  peak stays ``data_range``. Quantisation, when asked for, happens before the conversion
  (Y itself is not rounded, as in BasicSR).
- ``crop_border=c`` drops ``c`` pixels on each side of H and W before measuring
  (SR papers crop ``scale`` pixels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "ssim", "evenness", "rgb_to_y", "quantize_8bit"]

# SSIM constants of Wang et al. (2004); window as in skimage with gaussian_weights=True:
# sigma 1.5 truncated at 3.5 sigma -> radius int(3.5 * 1.5 + 0.5) = 5 -> an 11-tap window.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
SSIM_WIN_SIZE = 2 * SSIM_RADIUS + 1

_Y_WEIGHTS = (65.481, 128.553, 24.966)


def _check_reduction(reduction: str) -> None:
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', not {reduction!r}")


def _as_batch(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Check shapes, cast to float64 and add a batch dim if missing. Returns (x, y, batched)."""
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("x and y must be tensors")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    batched = x.dim() == 4
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    if not batched:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    return x, y, batched


def quantize_8bit(x: Tensor, data_range: float = 1.0) -> Tensor:
    """Round to the nearest of 256 levels in [0, data_range] (clamping first). Same shape."""
    return torch.round(torch.clamp(x / data_range, 0.0, 1.0) * 255.0) / 255.0 * data_range


def rgb_to_y(x: Tensor) -> Tensor:
    """BT.601 studio-range luma of RGB images in [0, 1].

    Args:
        x: ``(..., 3, H, W)`` RGB in [0, 1].

    Returns:
        ``(..., 1, H, W)``, ``(16 + 65.481 R + 128.553 G + 24.966 B) / 255``.
    """
    if x.shape[-3] != 3:
        raise ValueError(f"y_channel needs 3 (RGB) channels, got {x.shape[-3]}")
    r, g, b = x[..., 0:1, :, :], x[..., 1:2, :, :], x[..., 2:3, :, :]
    return (16.0 + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b) / 255.0


def _prepare(
    x: Tensor, y: Tensor, data_range: float, crop_border: int, y_channel: bool, quantize: bool
) -> tuple[Tensor, Tensor, bool]:
    """Shared preprocessing: float64 batch, optional 8-bit rounding, Y conversion, crop."""
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    x, y, batched = _as_batch(x, y)
    if quantize:
        x, y = quantize_8bit(x, data_range), quantize_8bit(y, data_range)
    if y_channel:
        x = rgb_to_y(x / data_range) * data_range
        y = rgb_to_y(y / data_range) * data_range
    if crop_border:
        h, w = x.shape[-2:]
        if 2 * crop_border >= min(h, w):
            raise ValueError(f"crop_border={crop_border} leaves nothing of a {h}x{w} image")
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
        y = y[..., crop_border:-crop_border, crop_border:-crop_border]
    return x, y, batched


def _reduce(values: Tensor, batched: bool, reduction: str) -> Tensor:
    if not batched:
        return values[0]
    return values.mean() if reduction == "mean" else values


def psnr(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    reduction: str = "mean",
    crop_border: int = 0,
    y_channel: bool = False,
    quantize: bool = False,
) -> Tensor:
    r"""Peak signal-to-noise ratio in dB, ``10 log10(R^2 / MSE)``, per image.

    The MSE is the mean over all channels and pixels of one image. Identical images give
    ``inf``. Matches ``skimage.metrics.peak_signal_noise_ratio(a, b, data_range=R)`` per image.

    Args:
        x, y: ``(C, H, W)`` or ``(B, C, H, W)``, values in [0, data_range] (order irrelevant).
        data_range: the peak value R (1.0 for images in [0, 1], 255 for 8-bit ranges).
        reduction: ``"mean"`` (0-dim, mean of per-image PSNRs) or ``"none"`` (``(B,)``).
        crop_border: pixels dropped on each side of H and W before measuring.
        y_channel: measure the BT.601 luma of RGB inputs instead (see module notes).
        quantize: round both to 8 bits first (default False: measure the values given).

    Returns:
        float64 tensor, 0-dim or ``(B,)``; 0-dim for an unbatched input.
    """
    _check_reduction(reduction)
    x, y, batched = _prepare(x, y, data_range, crop_border, y_channel, quantize)
    mse = (x - y).pow(2).flatten(1).mean(dim=1)
    values = 10.0 * torch.log10(float(data_range) ** 2 / mse)  # mse == 0 -> inf
    return _reduce(values, batched, reduction)


def _gaussian_window_1d(device: torch.device) -> Tensor:
    """The 11-tap normalised Gaussian (sigma 1.5) of scipy.ndimage, float64, shape (11,)."""
    t = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    g = torch.exp(-0.5 * (t / SSIM_SIGMA) ** 2)
    return g / g.sum()


def ssim_map(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    r"""Per-pixel SSIM of Wang et al. over the valid region, per channel.

    Local statistics use the 11x11 Gaussian window (sigma 1.5) and population (co)variances.
    Only windows that lie fully inside the image are kept, which is what skimage averages
    (it filters the whole image, then crops ``(11 - 1) // 2 = 5`` pixels on each side), so the
    border handling of the filter never matters.

    Args:
        x, y: ``(B, C, H, W)``, any float dtype; H and W must be at least 11.
        data_range: the peak value R; ``C1 = (0.01 R)^2``, ``C2 = (0.03 R)^2``.

    Returns:
        float64 ``(B, C, H - 10, W - 10)``.
    """
    if x.dim() != 4 or x.shape != y.shape:
        raise ValueError("ssim_map needs two (B, C, H, W) tensors of the same shape")
    b, c, h, w = x.shape
    if min(h, w) < SSIM_WIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE}, got {h}x{w}")
    x = x.to(torch.float64)
    y = y.to(torch.float64)
    g = _gaussian_window_1d(x.device)
    # Separable depthwise filter: (C, 1, 1, 11) along W, then (C, 1, 11, 1) along H.
    kw = g.view(1, 1, 1, -1).expand(c, 1, 1, SSIM_WIN_SIZE).contiguous()
    kh = g.view(1, 1, -1, 1).expand(c, 1, SSIM_WIN_SIZE, 1).contiguous()

    def filt(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, kw, groups=c), kh, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    e_xx, e_yy, e_xy = filt(x * x), filt(y * y), filt(x * y)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    reduction: str = "mean",
    crop_border: int = 0,
    y_channel: bool = False,
    quantize: bool = False,
) -> Tensor:
    r"""Structural similarity (Wang et al. 2004), per image, averaged over channels.

    Equivalent to ``skimage.metrics.structural_similarity(a, b, channel_axis=0,
    data_range=R, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``
    per image: 11x11 Gaussian window, K1 = 0.01, K2 = 0.03, the SSIM map averaged over the
    pixels whose window fits inside the image and over channels (see :func:`ssim_map`).

    Args:
        x, y: ``(C, H, W)`` or ``(B, C, H, W)``; H and W (after cropping) at least 11.
        data_range: the peak value R.
        reduction: ``"mean"`` (0-dim) or ``"none"`` (``(B,)``).
        crop_border, y_channel, quantize: as in :func:`psnr`.

    Returns:
        float64 tensor, 0-dim or ``(B,)``; 0-dim for an unbatched input. Identical images
        give 1.
    """
    _check_reduction(reduction)
    x, y, batched = _prepare(x, y, data_range, crop_border, y_channel, quantize)
    values = ssim_map(x, y, data_range).flatten(1).mean(dim=1)
    return _reduce(values, batched, reduction)


def evenness(outputs: Sequence[Tensor], s_values: Sequence[float] | Tensor) -> dict[str, Tensor]:
    r"""How evenly a network's output moves along a knob sweep.

    For outputs :math:`o_{s_0}, \dots, o_{s_n}` at knob values :math:`s_0 < \dots < s_n`,
    the normalised distance travelled is

    .. math:: d(s) = \frac{\lVert o_s - o_{s_0} \rVert_2}{\lVert o_{s_n} - o_{s_0} \rVert_2}

    (L2 norm over all channels and pixels of one image, in float64) and the evenness error is
    :math:`\max_s |d(s) - t(s)|` with :math:`t(s) = (s - s_0) / (s_n - s_0)`, which is just
    ``s`` for the usual grid from 0 to 1. A perfectly even (linear) sweep has error 0; e.g.
    :math:`o_s = o_0 + s^2 (o_1 - o_0)` gives :math:`d(s) = s^2` and error
    :math:`\max_s |s^2 - s|` (1/4 at s = 1/2).

    If :math:`o_{s_n} = o_{s_0}` for an image (the knob does nothing), d and the error of that
    image are NaN, and so is ``mean_error`` (NaN propagates; it is not skipped).

    Args:
        outputs: n + 1 >= 2 tensors, all ``(C, H, W)`` or all ``(B, C, H, W)``, in knob order.
        s_values: the n + 1 knob values, strictly increasing.

    Returns:
        dict of float64 tensors:
        ``"s"``: ``(n+1,)`` normalised knob positions t(s);
        ``"d"``: ``(B, n+1)`` (``(n+1,)`` unbatched);
        ``"error"``: ``(B,)`` (0-dim unbatched), the max deviation per image;
        ``"mean_error"``: 0-dim, the mean of ``"error"`` over the batch.
    """
    if len(outputs) < 2:
        raise ValueError("evenness needs at least two outputs")
    s = torch.as_tensor(s_values, dtype=torch.float64).flatten().cpu()
    if s.numel() != len(outputs):
        raise ValueError(f"{len(outputs)} outputs but {s.numel()} knob values")
    if not bool((s[1:] > s[:-1]).all()):
        raise ValueError("s_values must be strictly increasing")
    shape = outputs[0].shape
    if any(o.shape != shape for o in outputs):
        raise ValueError("all outputs must have the same shape")
    if len(shape) not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (B, C, H, W) outputs, got shape {tuple(shape)}")
    batched = len(shape) == 4
    t = (s - s[0]) / (s[-1] - s[0])

    def flat(o: Tensor) -> Tensor:
        o = o.detach().to(torch.float64)
        return o.reshape(o.shape[0], -1) if batched else o.reshape(1, -1)

    o0 = flat(outputs[0])
    # One output at a time, so only two float64 copies are alive at once.
    dist = torch.stack([torch.linalg.vector_norm(flat(o) - o0, dim=1) for o in outputs], dim=1).cpu()
    total = dist[:, -1:]
    d = torch.where(total > 0, dist / total.clamp_min(torch.finfo(torch.float64).tiny), math.nan)
    error = (d - t).abs().amax(dim=1)  # NaN rows stay NaN
    mean_error = error.mean()
    if not batched:
        d, error = d[0], error[0]
    return {"s": t, "d": d, "error": error, "mean_error": mean_error}
