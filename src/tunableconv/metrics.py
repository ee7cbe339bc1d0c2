r"""Image-quality metrics (PSNR, SSIM, LPIPS, DISTS, NIQE) and the evenness of a tunable network's sweep.

PSNR and SSIM are computed in float64 whatever the input dtype; LPIPS and DISTS run their networks in
float32 (as the original); NIQE works in float64 except for the MSCN coefficients, which
emulate MATLAB's single precision (see :func:`niqe`). Results are float64 tensors on the
input's device.

Shapes: images are ``(C, H, W)`` (one image) or ``(B, C, H, W)`` (a batch), C = 3 (RGB) or
1 (grey). Metrics are computed **per image**; ``reduction="none"`` returns one value per
image, shape ``(B,)``, ``reduction="mean"`` their mean (a 0-dim tensor). For an unbatched
``(C, H, W)`` input both reductions return a 0-dim tensor. Note that the batch mean of PSNR is
the mean of the per-image PSNRs (the usual convention in papers), not the PSNR of the mean MSE.

Evaluation conventions (as in the super-resolution literature, e.g. BasicSR):

- ``quantize=True`` rounds both images to 8 bits first (``round(clamp(x / R, 0, 1) * 255)``),
  the values one gets after saving outputs as 8-bit images. The functions default to
  ``quantize=False`` (they measure what they are given); evaluation scripts decide.
- ``y_channel=True`` converts RGB inputs to the luma of ITU-R BT.601 (studio range, MATLAB's
  ``rgb2ycbcr``), for inputs normalised to [0, 1]::

      Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255        in [16/255, 235/255]

  Inputs in [0, R] are divided by R first and the result multiplied back by R, so the
  peak stays ``data_range``. This is BasicSR's ``test_y_channel`` exactly: BasicSR measures
  Y on the 0-255 scale with peak 255, which gives the same PSNR and SSIM (both are invariant
  to scaling the images and the peak together). Quantisation, when asked for, happens before
  the conversion (Y itself is not rounded, as in BasicSR).
- ``crop_border=c`` drops ``c`` pixels on each side of H and W before measuring
  (SR papers crop ``scale`` pixels).

Perceptual metrics need third-party weights, looked up in the weights root of
:mod:`tunableconv.paths` (``weights_dir=`` / ``params_path=``, else ``$TUNABLECONV_WEIGHTS``,
else ``$TUNABLECONV_SHARED/weights``, else ``../shared/weights`` beside the checkout):

- :func:`lpips`: LPIPS v0.1 with AlexNet (Zhang et al. 2018), files
  ``alexnet_features.safetensors`` and ``lpips_v0.1_alex_heads.safetensors``.
- :func:`niqe`: NIQE (Mittal et al. 2013) as MATLAB's ``niqe``, file ``niqe_pris_params.npz``.
- :func:`dists`: DISTS (Ding et al. 2020), file ``vgg16_features_fp16.safetensors`` (``weights=``);
  its learned alpha/beta ship with the package (``metrics_data/dists_alpha_beta.safetensors``,
  MIT, from the PyPI package ``DISTS_pytorch`` 0.1; see the README beside it).

A missing file raises :class:`tunableconv.errors.MissingWeightsError` (a ``FileNotFoundError``).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError

__all__ = ["psnr", "ssim", "ssim_map", "lpips", "dists", "niqe", "evenness", "rgb_to_y", "quantize_8bit"]

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


def _check_pair(x: Tensor, y: Tensor) -> bool:
    """Check that x and y are tensors of one shape ``(C, H, W)`` or ``(B, C, H, W)``; True if batched."""
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError("x and y must be tensors")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dim() not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    return x.dim() == 4


def _as_batch(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, bool]:
    """Check shapes, cast to float64 and add a batch dim if missing. Returns (x, y, batched)."""
    batched = _check_pair(x, y)
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


# ----------------------------------------------------------------------------------------
# Weights of the perceptual metrics
# ----------------------------------------------------------------------------------------

LPIPS_HEADS_FILES = {"alex": "lpips_v0.1_alex_heads.safetensors", "vgg": "lpips_v0.1_vgg_heads.safetensors"}
LPIPS_BACKBONE_FILES = {"alex": "alexnet_features.safetensors", "vgg": "vgg16_features_fp16.safetensors"}
NIQE_PARAMS_FILE = "niqe_pris_params.npz"


def _weights_path(name: str, explicit: str | os.PathLike | None, option: str) -> Path:
    """``name`` in the weights root (explicit folder, else the defaults of :mod:`tunableconv.paths`)."""
    from .paths import weights_file

    return weights_file(name, explicit, option).resolve()


# ----------------------------------------------------------------------------------------
# LPIPS (Zhang et al. 2018, v0.1)
# ----------------------------------------------------------------------------------------

# The input normalisation of LPIPS v0.1 (its "scaling layer"), applied to images in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_EPS = 1e-10  # in the unit normalisation over channels: f / (||f||_2 + eps)

# Backbones as op lists: ("conv", index in torchvision's `features`, stride, padding) is
# followed by a ReLU; ("tap",) keeps the current (post-ReLU) activation; ("pool", k, s) max-pools.
_LPIPS_NETS: dict[str, tuple[tuple, ...]] = {
    "alex": (
        ("conv", 0, 4, 2), ("tap",), ("pool", 3, 2),
        ("conv", 3, 1, 2), ("tap",), ("pool", 3, 2),
        ("conv", 6, 1, 1), ("tap",),
        ("conv", 8, 1, 1), ("tap",),
        ("conv", 10, 1, 1), ("tap",),
    ),
    # VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    "vgg": (
        ("conv", 0, 1, 1), ("conv", 2, 1, 1), ("tap",), ("pool", 2, 2),
        ("conv", 5, 1, 1), ("conv", 7, 1, 1), ("tap",), ("pool", 2, 2),
        ("conv", 10, 1, 1), ("conv", 12, 1, 1), ("conv", 14, 1, 1), ("tap",), ("pool", 2, 2),
        ("conv", 17, 1, 1), ("conv", 19, 1, 1), ("conv", 21, 1, 1), ("tap",), ("pool", 2, 2),
        ("conv", 24, 1, 1), ("conv", 26, 1, 1), ("conv", 28, 1, 1), ("tap",),
    ),
}

_LPIPS_CACHE: dict[tuple[str, str, str], tuple[dict[int, tuple[Tensor, Tensor]], list[Tensor]]] = {}
_LPIPS_LOCK = threading.Lock()


def _lpips_min_size(net: str) -> int:
    """The smallest image side the backbone accepts (every layer keeps at least one pixel)."""
    def fits(n: int) -> bool:
        kernel = {0: 11, 3: 5} if net == "alex" else {}
        for op in _LPIPS_NETS[net]:
            if op[0] == "conv":
                k = kernel.get(op[1], 3)
                n = (n + 2 * op[3] - k) // op[2] + 1
            elif op[0] == "pool":
                n = (n - op[1]) // op[2] + 1
            if n < 1:
                return False
        return True

    n = 1
    while not fits(n):
        n += 1
    return n


def _load_lpips(net: str, weights_dir: str | os.PathLike | None, device: torch.device):
    """The backbone convs ``{index: (weight, bias)}`` and the 5 heads, float32 on ``device``;
    cached per (files, device)."""
    from safetensors.torch import load_file

    option = "weights_dir=<folder> to lpips()"
    backbone = _weights_path(LPIPS_BACKBONE_FILES[net], weights_dir, option)
    heads_path = _weights_path(LPIPS_HEADS_FILES[net], weights_dir, option)
    key = (str(backbone), str(heads_path), str(device))
    with _LPIPS_LOCK:
        if key in _LPIPS_CACHE:
            return _LPIPS_CACHE[key]
        from .losses.vgg import load_feature_convs

        indices = [op[1] for op in _LPIPS_NETS[net] if op[0] == "conv"]
        convs = {i: (w.to(device), b.to(device)) for i, (w, b) in
                 load_feature_convs(backbone, indices, f"the {net} backbone LPIPS expects").items()}
        hd = load_file(str(heads_path))
        heads = []
        for i in range(5):
            hk = f"lin{i}.model.1.weight"
            if hk not in hd:
                raise InputError(f"{heads_path} lacks {hk}: not the LPIPS v0.1 heads")
            heads.append(hd[hk].to(device=device, dtype=torch.float32))
        _LPIPS_CACHE[key] = (convs, heads)
        return convs, heads


def _lpips_features(x: Tensor, net: str, convs: dict[int, tuple[Tensor, Tensor]]) -> list[Tensor]:
    """The 5 tapped activations of the backbone for (already scaled) inputs."""
    feats = []
    for op in _LPIPS_NETS[net]:
        if op[0] == "conv":
            w, b = convs[op[1]]
            x = F.relu(F.conv2d(x, w, b, stride=op[2], padding=op[3]))
        elif op[0] == "pool":
            x = F.max_pool2d(x, op[1], op[2])
        else:
            feats.append(x)
    return feats


def lpips(
    x: Tensor,
    y: Tensor,
    *,
    weights_dir: str | os.PathLike | None = None,
    net: str = "alex",
    reduction: str = "mean",
) -> Tensor:
    r"""LPIPS v0.1 (Zhang et al. 2018), the learned perceptual distance; lower is closer.

    The recipe of the original implementation (``lpips.LPIPS(net="alex", version="0.1")``
    called with ``normalize=True`` on images in [0, 1]): both images are mapped to [-1, 1]
    (``2x - 1``), shifted by (-0.030, -0.088, -0.188) and divided by (0.458, 0.448, 0.450) per
    channel; the backbone's activations after the ReLU of each of its 5 stages are taken
    (AlexNet: relu1...relu5, after each conv; VGG16: relu1_2, relu2_2, relu3_3, relu4_3,
    relu5_3); each is unit-normalised over channels, ``f / (||f||_2 + 1e-10)``; the squared
    difference of the two goes through the layer's linear head (a 1x1 conv without bias, 1
    output channel), is averaged over space, and the 5 layer scores are summed.

    Identical images give exactly 0. The network runs in float32 (as the original), without
    gradients, on the inputs' device; it is loaded once per (weight files, device).

    Args:
        x, y: ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1], C = 3 (RGB) or 1 (grey: repeated to
            3 channels). H and W at least 31 for AlexNet, 16 for VGG.
        weights_dir: the folder holding ``alexnet_features.safetensors`` and
            ``lpips_v0.1_alex_heads.safetensors`` (for ``net="vgg"``:
            ``vgg16_features_fp16.safetensors`` and ``lpips_v0.1_vgg_heads.safetensors``);
            default: the weights root of :mod:`tunableconv.paths`.
        net: ``"alex"`` (the standard LPIPS, default) or ``"vgg"`` (the float16-stored VGG16
            of shared/weights; not checked against published scores).
        reduction: ``"mean"`` (0-dim) or ``"none"`` (``(B,)``).

    Returns:
        float64 tensor, 0-dim or ``(B,)``; 0-dim for an unbatched input.

    Raises:
        MissingWeightsError: a weight file is not found (the message says how to point at it).
        InputError / ValueError: wrong shapes, channels or too small images.
    """
    _check_reduction(reduction)
    if net not in _LPIPS_NETS:
        raise InputError(f"net must be one of {sorted(_LPIPS_NETS)}, not {net!r}")
    batched = _check_pair(x, y)
    if not batched:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    c, h, w = x.shape[1:]
    if c not in (1, 3):
        raise InputError(f"LPIPS needs 1 (grey) or 3 (RGB) channels, got {c}")
    min_size = _lpips_min_size(net)
    if min(h, w) < min_size:
        raise InputError(f"LPIPS-{net} needs images of at least {min_size}x{min_size}, got {h}x{w}")
    convs, heads = _load_lpips(net, weights_dir, x.device)
    shift = torch.tensor(LPIPS_SHIFT, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    scale = torch.tensor(LPIPS_SCALE, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    with torch.no_grad():
        both = torch.cat([x, y]).detach().to(torch.float32)
        if c == 1:
            both = both.expand(-1, 3, -1, -1)
        both = (2.0 * both - 1.0 - shift) / scale
        n = x.shape[0]
        total = torch.zeros(n, dtype=torch.float64, device=x.device)
        for f, head in zip(_lpips_features(both, net, convs), heads):
            f = f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + LPIPS_EPS)
            d = (f[:n] - f[n:]) ** 2
            total += F.conv2d(d, head).mean(dim=(1, 2, 3)).to(torch.float64)
    return _reduce(total, batched, reduction)


# ----------------------------------------------------------------------------------------
# DISTS (Ding et al. 2020), with the learned weights of the authors' DISTS_pytorch 0.1
# ----------------------------------------------------------------------------------------

DISTS_BACKBONE_FILE = "vgg16_features_fp16.safetensors"
DISTS_ALPHA_BETA_FILE = Path(__file__).resolve().parent / "metrics_data" / "dists_alpha_beta.safetensors"
DISTS_C1 = 1e-6  # stabilises the texture term (spatial means)
DISTS_C2 = 1e-6  # stabilises the structure term (spatial correlation)
# The 6 "layers" DISTS compares: the image itself, then VGG16 relu1_2 ... relu5_3.
DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The convs (torchvision `vgg16().features` indices, 3x3, padding 1, each followed by a ReLU) of
# each of the 5 VGG stages. DISTS replaces every max-pool between stages by an L2 pooling.
_DISTS_STAGES = ((0, 2), (5, 7), (10, 12, 14), (17, 19, 21), (24, 26, 28))
_DISTS_L2POOL_EPS = 1e-12  # inside the square root of the L2 pooling

_DISTS_CACHE: dict[tuple[str, str, str], tuple[dict[int, tuple[Tensor, Tensor]], Tensor, Tensor]] = {}
_DISTS_LOCK = threading.Lock()


def _load_dists(
    weights: str | os.PathLike | None, alpha_beta: str | os.PathLike | None, device: torch.device
) -> tuple[dict[int, tuple[Tensor, Tensor]], Tensor, Tensor]:
    """The 13 VGG16 convs ``{index: (weight, bias)}`` (float32) and alpha, beta (float64,
    ``(1475,)`` each, already divided by their joint sum) on ``device``; cached per (files, device)."""
    from safetensors.torch import load_file

    if weights is not None and Path(weights).is_file():
        backbone = Path(weights).resolve()
    else:  # a folder (explicit) or the default weights root
        backbone = _weights_path(DISTS_BACKBONE_FILE, weights, "weights=<file or folder> to dists()")
    ab_path = Path(alpha_beta if alpha_beta is not None else DISTS_ALPHA_BETA_FILE).resolve()
    if not ab_path.is_file():
        from .errors import MissingWeightsError

        raise MissingWeightsError(f"DISTS alpha/beta file {ab_path} not found; pass alpha_beta=<file> to dists()")
    key = (str(backbone), str(ab_path), str(device))
    with _DISTS_LOCK:
        if key in _DISTS_CACHE:
            return _DISTS_CACHE[key]
        from .losses.vgg import load_feature_convs

        indices = [i for stage in _DISTS_STAGES for i in stage]
        convs = {i: (w.to(device), b.to(device)) for i, (w, b) in
                 load_feature_convs(backbone, indices, "the VGG16 features DISTS expects").items()}
        ab = load_file(str(ab_path))
        n = sum(DISTS_CHANNELS)
        if set(ab) != {"alpha", "beta"} or ab["alpha"].numel() != n or ab["beta"].numel() != n:
            raise InputError(f"{ab_path} is not DISTS alpha/beta (two tensors 'alpha', 'beta' of {n} values)")
        alpha = ab["alpha"].reshape(-1).to(device=device, dtype=torch.float64)
        beta = ab["beta"].reshape(-1).to(device=device, dtype=torch.float64)
        total = alpha.sum() + beta.sum()
        _DISTS_CACHE[key] = (convs, alpha / total, beta / total)
        return _DISTS_CACHE[key]


def _l2_pool(x: Tensor) -> Tensor:
    """DISTS' replacement of max-pooling: ``sqrt(g * x^2 + 1e-12)`` with the normalised 3x3
    Hanning window ``g = [1, 2, 1]^T [1, 2, 1] / 16`` (``np.hanning(5)[1:-1]``), stride 2,
    zero padding 1, per channel. ``(B, C, H, W) -> (B, C, ceil(H/2), ceil(W/2))``."""
    c = x.shape[1]
    g1 = torch.tensor((1.0, 2.0, 1.0), dtype=x.dtype, device=x.device) / 4.0
    g = (g1[:, None] * g1[None, :]).expand(c, 1, 3, 3).contiguous()
    return torch.sqrt(F.conv2d(x * x, g, stride=2, padding=1, groups=c) + _DISTS_L2POOL_EPS)


def _dists_features(x: Tensor, convs: dict[int, tuple[Tensor, Tensor]]) -> list[Tensor]:
    """The 6 representations DISTS compares, for images ``x`` in [0, 1] (float32): ``x``
    itself (not normalised), then relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of VGG16 fed
    with the ImageNet-normalised image, an L2 pooling before each stage but the first."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    feats = [x]
    h = (x - mean) / std
    for k, stage in enumerate(_DISTS_STAGES):
        if k > 0:
            h = _l2_pool(h)
        for i in stage:
            w, b = convs[i]
            h = F.relu(F.conv2d(h, w, b, padding=1))
        feats.append(h)
    return feats


def dists(
    x: Tensor,
    y: Tensor,
    *,
    weights: str | os.PathLike | None = None,
    alpha_beta: str | os.PathLike | None = None,
    reduction: str = "mean",
) -> Tensor:
    r"""DISTS (Ding et al. 2020), the deep image structure and texture similarity, as a
    distance in [0, 1]; lower is closer.

    The recipe of the authors' ``DISTS_pytorch`` 0.1 (``DISTS()(x, y)`` on images in [0, 1]).
    Six representations of each image are compared: the image itself and the VGG16 activations
    relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 of the ImageNet-normalised image (mean
    (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)), where each max-pool of VGG16 is replaced
    by an L2 pooling (3x3 Hanning window, stride 2; see :func:`_l2_pool`). Per channel j of
    representation k, with spatial means :math:`\mu`, population variances :math:`\sigma^2`
    and covariance :math:`\sigma_{xy}`, the texture term l and the structure term s are

    .. math::
        l_{kj} = \frac{2\mu_x\mu_y + c_1}{\mu_x^2 + \mu_y^2 + c_1}, \quad
        s_{kj} = \frac{2\sigma_{xy} + c_2}{\sigma_x^2 + \sigma_y^2 + c_2}, \quad
        D = 1 - \sum_{k,j} (\alpha_{kj} l_{kj} + \beta_{kj} s_{kj})

    (the paper's names: global means summarise texture, correlations structure) with
    :math:`c_1 = c_2 = 10^{-6}` and the learned :math:`\alpha, \beta \ge 0` (1475 each)
    divided by :math:`\sum \alpha + \sum \beta`. The network runs in float32 (as the
    original), the statistics and the sum in float64, without gradients, on the inputs'
    device; it is loaded once per (weight files, device). Identical images give 0 (up to
    ~1e-12); D is symmetric in x and y.

    Args:
        x, y: ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1], C = 3 (RGB) or 1 (grey: repeated to
            3 channels). Any size (each pooling halves, rounding up).
        weights: the folder holding ``vgg16_features_fp16.safetensors`` (torchvision's
            ImageNet VGG16 features), or that file itself; default: the weights root of
            :mod:`tunableconv.paths`.
        alpha_beta: a safetensors file with ``alpha`` and ``beta`` (1475 values each); default:
            the one shipped in ``tunableconv/metrics_data`` (the authors' weights).
        reduction: ``"mean"`` (0-dim) or ``"none"`` (``(B,)``).

    Returns:
        float64 tensor, 0-dim or ``(B,)``; 0-dim for an unbatched input.

    Raises:
        MissingWeightsError: a weight file is not found (the message says how to point at it).
        InputError / ValueError: wrong shapes or channels, values outside [0, 1] or NaN.
    """
    _check_reduction(reduction)
    batched = _check_pair(x, y)
    if not batched:
        x, y = x.unsqueeze(0), y.unsqueeze(0)
    c, h, w = x.shape[1:]
    if c not in (1, 3):
        raise InputError(f"DISTS needs 1 (grey) or 3 (RGB) channels, got {c}")
    if h < 1 or w < 1 or x.shape[0] < 1:
        raise InputError(f"DISTS needs non-empty images, got shape {tuple(x.shape)}")
    for name, t in (("x", x), ("y", y)):
        if not bool(((t >= 0) & (t <= 1)).all()):
            raise InputError(
                f"DISTS needs images in [0, 1]; {name} has values in "
                f"[{float(t.min()):.4g}, {float(t.max()):.4g}]{' and NaN' if bool(t.isnan().any()) else ''}"
            )
    convs, alpha, beta = _load_dists(weights, alpha_beta, x.device)
    with torch.no_grad():
        both = torch.cat([x, y]).detach().to(torch.float32)
        if c == 1:
            both = both.expand(-1, 3, -1, -1)
        n = x.shape[0]
        texture = torch.zeros(n, dtype=torch.float64, device=x.device)  # sum of alpha * l
        structure = torch.zeros(n, dtype=torch.float64, device=x.device)  # sum of beta * s
        start = 0
        for f, ch in zip(_dists_features(both, convs), DISTS_CHANNELS):
            f = f.to(torch.float64).flatten(2)  # (2n, ch, HW)
            fx, fy = f[:n], f[n:]
            mx, my = fx.mean(dim=2), fy.mean(dim=2)  # (n, ch)
            vx = (fx - mx[..., None]).pow(2).mean(dim=2)
            vy = (fy - my[..., None]).pow(2).mean(dim=2)
            cxy = (fx * fy).mean(dim=2) - mx * my
            l_sim = (2 * mx * my + DISTS_C1) / (mx * mx + my * my + DISTS_C1)
            s_sim = (2 * cxy + DISTS_C2) / (vx + vy + DISTS_C2)
            texture += l_sim @ alpha[start:start + ch]
            structure += s_sim @ beta[start:start + ch]
            start += ch
        values = 1.0 - (texture + structure)
    return _reduce(values, batched, reduction)


# ----------------------------------------------------------------------------------------
# NIQE (Mittal et al. 2013), as MATLAB's niqe with the official pristine model
# ----------------------------------------------------------------------------------------

NIQE_BLOCK = 96
# MATLAB rgb2gray: the luma row of the inverse of the NTSC (YIQ) matrix.
_GRAY_WEIGHTS = (0.298936021293775, 0.587043074451121, 0.114020904255103)

_NIQE_CACHE: dict[tuple[str, str], tuple[Tensor, Tensor, Tensor]] = {}
_NIQE_LOCK = threading.Lock()


def _load_niqe_params(params_path: str | os.PathLike | None, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(mu (36,), cov (36, 36), window (7, 7))`` float64 on ``device``; cached per (file, device)."""
    import numpy as np

    if params_path is not None and Path(params_path).is_file():
        path = Path(params_path).resolve()
    else:  # a folder (explicit) or the default weights root
        path = _weights_path(NIQE_PARAMS_FILE, params_path, "params_path=<file or folder> to niqe()")
    key = (str(path), str(device))
    with _NIQE_LOCK:
        if key not in _NIQE_CACHE:
            with np.load(path) as z:
                missing = {"mu_pris_param", "cov_pris_param", "gaussian_window"} - set(z.files)
                if missing:
                    raise InputError(f"{path} lacks {sorted(missing)}: not NIQE pristine parameters")
                mu = torch.from_numpy(np.asarray(z["mu_pris_param"], dtype=np.float64).reshape(-1))
                cov = torch.from_numpy(np.asarray(z["cov_pris_param"], dtype=np.float64))
                win = torch.from_numpy(np.asarray(z["gaussian_window"], dtype=np.float64))
            _NIQE_CACHE[key] = (mu.to(device), cov.to(device), win.to(device))
        return _NIQE_CACHE[key]


def _niqe_gamma_table(device: torch.device) -> tuple[Tensor, Tensor]:
    """MATLAB's ``gam = 0.2:0.001:10`` and ``r(gam) = Gamma(2/g)^2 / (Gamma(1/g) Gamma(3/g))``."""
    gam = 0.2 + 0.001 * torch.arange(9801, dtype=torch.float64, device=device)
    r = torch.exp(2 * torch.lgamma(2 / gam) - torch.lgamma(1 / gam) - torch.lgamma(3 / gam))
    return gam, r


def _aggd(v: Tensor, gam: Tensor, r_gam: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Asymmetric generalised Gaussian fit (moment matching on MATLAB's grid) of each row of
    ``v`` ``(N, M)``: ``(alpha, beta_l, beta_r)``, each ``(N,)``. Rows without negative (or
    positive) values give NaN betas, as MATLAB's mean of an empty set."""
    neg, pos = (v < 0).to(v.dtype), (v > 0).to(v.dtype)
    sq = v * v
    left = torch.sqrt((sq * neg).sum(1) / neg.sum(1))
    right = torch.sqrt((sq * pos).sum(1) / pos.sum(1))
    gammahat = left / right
    rhat = v.abs().mean(1) ** 2 / sq.mean(1)
    rhatnorm = rhat * (gammahat**3 + 1) * (gammahat + 1) / (gammahat**2 + 1) ** 2
    err = (r_gam[None, :] - rhatnorm[:, None]) ** 2
    idx = torch.argmin(torch.nan_to_num(err, nan=math.inf), dim=1)  # first minimum, as MATLAB's min
    alpha = gam[idx]
    f = torch.exp(0.5 * (torch.lgamma(1 / alpha) - torch.lgamma(3 / alpha)))
    return alpha, left * f, right * f


def _niqe_block_features(blocks: Tensor, gam: Tensor, r_gam: Tensor) -> Tensor:
    """The 18 NIQE features of each MSCN block ``(N, b, b)`` -> ``(N, 18)``."""
    n = blocks.shape[0]
    alpha, bl, br = _aggd(blocks.reshape(n, -1), gam, r_gam)
    feats = [alpha, (bl + br) / 2]
    # products of neighbours: horizontal, vertical, the two diagonals (circular within a block,
    # MATLAB's circshift by [0 1; 1 0; 1 1; -1 1])
    for shift in ((0, 1), (1, 0), (1, 1), (-1, 1)):
        pair = blocks * torch.roll(blocks, shifts=shift, dims=(1, 2))
        alpha, bl, br = _aggd(pair.reshape(n, -1), gam, r_gam)
        mean = (br - bl) * torch.exp(torch.lgamma(2 / alpha) - torch.lgamma(1 / alpha))
        feats += [alpha, mean, bl, br]
    return torch.stack(feats, dim=1)


def _mscn(img: Tensor, window: Tensor) -> Tensor:
    """Mean-subtracted contrast-normalised coefficients ``(I - mu) / (sigma + 1)`` of ``(H, W)``,
    with the local mean and std of the Gaussian window and replicated borders, in MATLAB's
    single precision.

    MATLAB's ``niqe`` works on ``single`` images, and ``imfilter`` on a ``single`` image
    accumulates in double and rounds its result to single; the rest of the MSCN arithmetic
    is single. This is emulated exactly (float64 filtering, results rounded to float32, float32
    elementwise arithmetic, which is deterministic on every device). It matters: the variance
    ``E[I^2] - mu^2`` of a single-precision filter output loses about 3 digits, which moves a
    few generalised-Gaussian shape estimates by one step of MATLAB's 0.001 grid. On baboon.png
    the float64 MSCN gives 5.72996, this gives 5.7295757 against MATLAB's 5.72957338.
    Returns float64 (holding float32 values).
    """
    r = window.shape[-1] // 2
    k = torch.flip(window, (0, 1)).to(torch.float64)[None, None]  # convolution, as scipy/MATLAB

    def filt(a: Tensor) -> Tensor:  # imfilter(a, window, 'replicate') of a single image
        a = a.to(torch.float64)[None, None]
        return F.conv2d(F.pad(a, (r, r, r, r), mode="replicate"), k)[0, 0].to(torch.float32)

    im = img.to(torch.float32)
    mu = filt(im)
    sigma = torch.sqrt(torch.abs(filt(im * im) - mu * mu))
    return ((im - mu) / (sigma + 1)).to(torch.float64)


def _niqe_one(img: Tensor, mu_p: Tensor, cov_p: Tensor, window: Tensor) -> Tensor:
    """NIQE of one ``(H, W)`` float64 image on the 0-255 scale (already rounded)."""
    from .data.degradations import imresize

    nh, nw = img.shape[0] // NIQE_BLOCK, img.shape[1] // NIQE_BLOCK
    img = img[: nh * NIQE_BLOCK, : nw * NIQE_BLOCK]
    gam, r_gam = _niqe_gamma_table(img.device)
    feats = []
    for scale in (1, 2):
        b = NIQE_BLOCK // scale
        blocks = _mscn(img, window).reshape(nh, b, nw, b).permute(0, 2, 1, 3).reshape(-1, b, b)
        feats.append(_niqe_block_features(blocks, gam, r_gam))
        if scale == 1:  # MATLAB imresize(im, 0.5): bicubic, antialiased, on doubles
            img = imresize(img[None] / 255.0, scale=0.5, antialias=True)[0] * 255.0
    dist = torch.cat(feats, dim=1)  # (blocks, 36)
    mu_d = torch.nanmean(dist, dim=0)
    complete = dist[~torch.isnan(dist).any(dim=1)]  # MATLAB nancov drops rows with a NaN
    if complete.shape[0] >= 2:
        cov_d = torch.cov(complete.T)  # unbiased (N - 1), as MATLAB cov
    else:  # one block: the sample covariance is undefined (MATLAB returns zeros for one row)
        cov_d = torch.zeros_like(cov_p)
    diff = (mu_p - mu_d)[None, :]
    inv = torch.linalg.pinv((cov_p + cov_d) / 2, rtol=1e-15)
    return torch.sqrt(diff @ inv @ diff.T).reshape(())


def niqe(
    x: Tensor,
    crop_border: int = 0,
    *,
    params_path: str | os.PathLike | None = None,
    convert_to: str = "y",
    reduction: str = "mean",
) -> Tensor:
    r"""NIQE, the no-reference "naturalness" score of Mittal et al. (2013); lower is more natural.

    Faithful to MATLAB's ``niqe`` with the official pristine model (the BasicSR convention for
    colour images): RGB is converted to the Y channel of MATLAB's ``rgb2ycbcr`` on the 0-255
    scale (``16 + 65.481 R + 128.553 G + 24.966 B``; grey images are used as they are, times
    255), ``crop_border`` pixels are dropped on each side and the values rounded to integers
    (MATLAB works on ``uint8``). The image is cut to whole 96x96 blocks (from the top left);
    at two scales (the image, then MATLAB's bicubic ``imresize(im, 0.5)``, 48x48 blocks) the
    MSCN coefficients ``(I - mu) / (sigma + 1)`` (local mean and std with the 7x7 Gaussian
    window of the model, replicated borders) give 18 features per block: the generalised
    Gaussian fit of the coefficients (shape, scale) and the asymmetric fits (shape, mean,
    left and right scale) of the products of horizontal, vertical and both diagonal
    neighbours. The score is the distance between the pristine Gaussian model (mu_p, S_p) and
    the blocks' mean and covariance (mu, S):
    ``sqrt((mu_p - mu)^T pinv((S_p + S) / 2) (mu_p - mu))`` (rows holding a NaN feature are
    left out of S, as MATLAB's ``nancov``).

    As MATLAB, the MSCN coefficients are computed in single precision (emulated exactly, see
    :func:`_mscn`); the features and the distance in float64. On
    ``shared/data/test/niqe_reference/baboon.png`` this gives 5.7295757, MATLAB R2021a's
    5.72957338 to 3e-6 (BasicSR's float32 port: 5.7295763). An image of a single block has
    no sample covariance; it is taken as zero. Images without texture (constant) give NaN.

    Args:
        x: ``(C, H, W)`` or ``(B, C, H, W)`` in [0, 1] (clamped), C = 3 (RGB) or 1 (grey);
            H and W after cropping at least 96.
        crop_border: pixels dropped on each side of H and W first.
        params_path: ``niqe_pris_params.npz`` or the folder holding it; default: the weights
            root of :mod:`tunableconv.paths`.
        convert_to: ``"y"`` (default, BT.601 Y as above) or ``"gray"`` (MATLAB's ``rgb2gray``,
            what MATLAB's ``niqe`` itself does on colour input) for RGB images.
        reduction: ``"mean"`` (0-dim) or ``"none"`` (``(B,)``).

    Returns:
        float64 tensor, 0-dim or ``(B,)``; 0-dim for an unbatched input.

    Raises:
        MissingWeightsError: the parameter file is not found.
        InputError / ValueError: wrong shapes or channels, an image smaller than one block.
    """
    _check_reduction(reduction)
    if convert_to not in ("y", "gray"):
        raise InputError(f"convert_to must be 'y' or 'gray', not {convert_to!r}")
    if not isinstance(x, Tensor):
        raise TypeError("x must be a tensor")
    if x.dim() not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (B, C, H, W), got shape {tuple(x.shape)}")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    batched = x.dim() == 4
    xb = (x if batched else x.unsqueeze(0)).detach().to(torch.float64).clamp(0.0, 1.0)
    c, h, w = xb.shape[1:]
    if c == 3:
        wts = _Y_WEIGHTS if convert_to == "y" else tuple(255.0 * v for v in _GRAY_WEIGHTS)
        lum = (16.0 if convert_to == "y" else 0.0) + sum(wts[i] * xb[:, i] for i in range(3))
    elif c == 1:
        lum = 255.0 * xb[:, 0]
    else:
        raise InputError(f"NIQE needs 1 (grey) or 3 (RGB) channels, got {c}")
    if crop_border:
        lum = lum[:, crop_border : h - crop_border, crop_border : w - crop_border]
    hc, wc = lum.shape[-2:]
    if min(hc, wc) < NIQE_BLOCK:
        crop = f" after cropping {crop_border} pixels per side" if crop_border else ""
        raise InputError(
            f"NIQE needs images of at least {NIQE_BLOCK}x{NIQE_BLOCK} (one block){crop}, got {max(hc, 0)}x{max(wc, 0)}"
        )
    lum = torch.floor(lum + 0.5)  # MATLAB's rounding to uint8 (half away from zero; lum >= 0)
    mu_p, cov_p, window = _load_niqe_params(params_path, xb.device)
    values = torch.stack([_niqe_one(img, mu_p, cov_p, window) for img in lum])
    return _reduce(values, batched, reduction)
