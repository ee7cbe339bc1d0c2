"""Tests of tunableconv.metrics against scikit-image and closed-form values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tunableconv.metrics import evenness, psnr, quantize_8bit, rgb_to_y, ssim

skm = pytest.importorskip("skimage.metrics")


def _pair(shape, noise=0.1, seed=0, smooth=False):
    g = torch.Generator().manual_seed(seed)
    if smooth:
        c, h, w = shape
        yy, xx = torch.meshgrid(
            torch.linspace(0, 1, h, dtype=torch.float64), torch.linspace(0, 1, w, dtype=torch.float64), indexing="ij"
        )
        a = torch.stack([0.5 + 0.4 * torch.sin(3 * (k + 1) * xx + 2 * yy) * torch.cos(2 * yy) for k in range(c)])
    else:
        a = torch.rand(shape, generator=g, dtype=torch.float64)
    b = (a + noise * torch.randn(shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return a, b


def _sk_ssim(a: torch.Tensor, b: torch.Tensor, data_range=1.0) -> float:
    return skm.structural_similarity(
        a.numpy(), b.numpy(), channel_axis=0, data_range=data_range,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )


@pytest.mark.parametrize("shape,seed", [((3, 32, 32), 0), ((1, 37, 53), 1), ((3, 64, 48), 2)])
def test_psnr_matches_skimage(shape, seed):
    a, b = _pair(shape, seed=seed)
    ref = skm.peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0)
    assert abs(psnr(a, b).item() - ref) < 1e-6
    ref255 = skm.peak_signal_noise_ratio(255 * a.numpy(), 255 * b.numpy(), data_range=255.0)
    assert abs(psnr(255 * a, 255 * b, data_range=255.0).item() - ref255) < 1e-6


def test_psnr_known_values():
    x = torch.full((3, 16, 16), 0.5, dtype=torch.float64)
    assert psnr(x, x + 0.1).item() == pytest.approx(20.0, abs=1e-6)
    assert psnr(x, x - 0.01).item() == pytest.approx(40.0, abs=1e-6)
    assert psnr(x, x).item() == math.inf
    assert psnr(x, x).dtype == torch.float64


def test_psnr_options():
    a, b = _pair((3, 40, 40))
    # crop_border
    assert psnr(a, b, crop_border=4).item() == pytest.approx(psnr(a[:, 4:-4, 4:-4], b[:, 4:-4, 4:-4]).item(), abs=1e-12)
    # y channel: BT.601 studio range, in [16/255, 235/255]
    white, black = torch.ones(3, 1, 1), torch.zeros(3, 1, 1)
    assert rgb_to_y(white).item() == pytest.approx(235 / 255, abs=1e-6)
    assert rgb_to_y(black).item() == pytest.approx(16 / 255, abs=1e-6)
    ya, yb = rgb_to_y(a), rgb_to_y(b)
    assert psnr(a, b, y_channel=True).item() == pytest.approx(psnr(ya, yb).item(), abs=1e-12)
    with pytest.raises(ValueError):
        psnr(a[:1], b[:1], y_channel=True)
    # quantize: both rounded to 8 bit
    qa, qb = quantize_8bit(a), quantize_8bit(b)
    torch.testing.assert_close(torch.round(qa * 255), qa * 255, rtol=0, atol=1e-9)
    assert psnr(a, b, quantize=True).item() == pytest.approx(psnr(qa, qb).item(), abs=1e-12)
    with pytest.raises(ValueError):
        psnr(a, b, reduction="sum")
    with pytest.raises(ValueError):
        psnr(a, b[:, :-1])


@pytest.mark.parametrize(
    "shape,seed,smooth,noise",
    [((3, 37, 53), 0, False, 0.1), ((1, 37, 53), 1, False, 0.3), ((3, 41, 29), 2, True, 0.05), ((2, 11, 11), 3, True, 0.02)],
)
def test_ssim_matches_skimage(shape, seed, smooth, noise):
    a, b = _pair(shape, noise=noise, seed=seed, smooth=smooth)
    assert abs(ssim(a, b).item() - _sk_ssim(a, b)) < 1e-4
    # data_range other than 1 and float32 inputs
    assert abs(ssim(255 * a, 255 * b, data_range=255.0).item() - _sk_ssim(255 * a, 255 * b, 255.0)) < 1e-4
    assert abs(ssim(a.float(), b.float()).item() - _sk_ssim(a, b)) < 1e-4


def test_identical_images():
    a, _ = _pair((3, 20, 24))
    assert ssim(a, a).item() == pytest.approx(1.0, abs=1e-12)
    assert psnr(a, a).item() == math.inf
    with pytest.raises(ValueError):
        ssim(a[:, :10], a[:, :10])  # smaller than the 11x11 window


def test_batched_equals_loop():
    a, b = _pair((4, 3, 24, 30))
    for fn in (psnr, ssim):
        per = fn(a, b, reduction="none")
        assert per.shape == (4,)
        loop = torch.stack([fn(a[i], b[i]) for i in range(4)])
        torch.testing.assert_close(per, loop, rtol=0, atol=1e-12)
        assert fn(a, b).shape == ()
        torch.testing.assert_close(fn(a, b), loop.mean(), rtol=0, atol=1e-12)
        assert fn(a[0], b[0], reduction="none").shape == ()


def test_evenness_quadratic_and_linear():
    g = torch.Generator().manual_seed(0)
    o0 = torch.rand(2, 3, 8, 8, generator=g)
    o1 = torch.rand(2, 3, 8, 8, generator=g)
    s = [i / 10 for i in range(11)]
    st = torch.tensor(s, dtype=torch.float64)

    quad = evenness([o0 + si**2 * (o1 - o0) for si in s], s)
    assert quad["d"].shape == (2, 11) and quad["error"].shape == (2,)
    torch.testing.assert_close(quad["d"], (st**2).expand(2, 11), rtol=0, atol=1e-6)
    expected = (st**2 - st).abs().max()  # 0.25 at s = 0.5
    torch.testing.assert_close(quad["error"], expected.expand(2), rtol=0, atol=1e-6)
    assert quad["mean_error"].item() == pytest.approx(0.25, abs=1e-6)

    lin = evenness([o0[0] + si * (o1[0] - o0[0]) for si in s], s)  # unbatched
    assert lin["d"].shape == (11,) and lin["error"].shape == ()
    assert lin["error"].item() < 1e-6
    torch.testing.assert_close(lin["s"], st)


def test_evenness_degenerate_and_errors():
    o = torch.rand(1, 3, 4, 4)
    other = torch.rand(1, 3, 4, 4)
    res = evenness([o, other, o], [0.0, 0.5, 1.0])  # o_1 == o_0
    assert torch.isnan(res["d"]).all() and torch.isnan(res["error"]).all() and math.isnan(res["mean_error"].item())
    with pytest.raises(ValueError):
        evenness([o, o], [0.0, 0.5, 1.0])
    with pytest.raises(ValueError):
        evenness([o, o, o], [0.0, 1.0, 0.5])
    # a knob grid not spanning [0, 1] is normalised
    res = evenness([o, o + 1, o + 2], [2.0, 3.0, 4.0])
    torch.testing.assert_close(res["s"], torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert res["error"].item() < 1e-6


# --- Y channel (BT.601, MATLAB rgb2ycbcr) and crop border, against hand-computed values ---


def _const_pair_with_frame(border=3, size=24):
    """x: constant RGB (0.2, 0.4, 0.6); y: x + (0.1, -0.05, 0.2) inside, 1 - x on a frame of
    ``border`` pixels (a large error that crop_border must remove)."""
    x = torch.tensor([0.2, 0.4, 0.6], dtype=torch.float64).view(3, 1, 1).expand(3, size, size).clone()
    y = x + torch.tensor([0.1, -0.05, 0.2], dtype=torch.float64).view(3, 1, 1)
    frame = torch.ones(size, size, dtype=torch.bool)
    frame[border:-border, border:-border] = False
    y[:, frame] = 1 - x[:, frame]
    return x, y


def test_y_psnr_crop_border_hand_computed():
    x, y = _const_pair_with_frame(border=3)
    # Inside the frame, on the 0-255 scale (BasicSR): dY = 65.481 * 0.1 + 128.553 * (-0.05)
    # + 24.966 * 0.2 = 6.5481 - 6.42765 + 4.9932 = 5.11365, so PSNR = 20 log10(255 / 5.11365).
    expected = 20 * math.log10(255 / 5.11365)  # 33.9555 dB
    assert psnr(x, y, y_channel=True, crop_border=3).item() == pytest.approx(expected, abs=1e-9)
    assert psnr(255 * x, 255 * y, data_range=255.0, y_channel=True, crop_border=3).item() == pytest.approx(expected, abs=1e-9)
    assert psnr(x, y, y_channel=True, crop_border=5).item() == pytest.approx(expected, abs=1e-9)
    # without the crop the frame counts: much lower
    assert psnr(x, y, y_channel=True).item() < expected - 5
    assert psnr(x, y, y_channel=True, crop_border=2).item() < expected - 5
    # RGB PSNR of the inside: MSE = (0.1^2 + 0.05^2 + 0.2^2) / 3
    assert psnr(x, y, crop_border=3).item() == pytest.approx(-10 * math.log10((0.01 + 0.0025 + 0.04) / 3), abs=1e-9)
    with pytest.raises(ValueError):
        psnr(x, y, crop_border=12)  # nothing left
    with pytest.raises(ValueError):
        psnr(x, y, crop_border=-1)


def test_y_ssim_crop_border_hand_computed():
    x, y = _const_pair_with_frame(border=3)
    # Constant images: the variances vanish and SSIM = (2 a b + C1) / (a^2 + b^2 + C1), on the
    # 0-255 scale a = 16 + 65.481 * 0.2 + 128.553 * 0.4 + 24.966 * 0.6 = 95.497,
    # b = a + 5.11365 = 100.61065 and C1 = (0.01 * 255)^2.
    a, b, c1 = 95.497, 100.61065, (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)  # 0.99864
    assert ssim(x, y, y_channel=True, crop_border=3).item() == pytest.approx(expected, abs=1e-9)
    assert ssim(255 * x, 255 * y, data_range=255.0, y_channel=True, crop_border=3).item() == pytest.approx(expected, abs=1e-9)
    assert ssim(x, y, y_channel=True).item() < expected - 0.01


def test_y_ssim_psnr_match_skimage_on_luma():
    a, b = _pair((2, 3, 40, 44), noise=0.05, seed=4)
    c = 4

    def luma(t):  # MATLAB rgb2ycbcr's Y, on the 0-255 scale, cropped
        t = 16 + 65.481 * t[:, 0] + 128.553 * t[:, 1] + 24.966 * t[:, 2]
        return t[:, c:-c, c:-c]

    ya, yb = luma(a), luma(b)
    per_ssim = ssim(a, b, y_channel=True, crop_border=c, reduction="none")
    per_psnr = psnr(a, b, y_channel=True, crop_border=c, reduction="none")
    for i in range(2):
        ref = skm.structural_similarity(
            ya[i].numpy(), yb[i].numpy(), data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert abs(per_ssim[i].item() - ref) < 1e-6
        ref_p = skm.peak_signal_noise_ratio(ya[i].numpy(), yb[i].numpy(), data_range=255.0)
        assert abs(per_psnr[i].item() - ref_p) < 1e-9
