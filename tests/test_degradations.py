"""Tests of tunableconv.data.degradations (noise, blur, unsharp mask, MATLAB bicubic, JPEG)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from tunableconv.data import (
    BlurNoiseDegradation,
    JpegDegradation,
    NoiseDegradation,
    add_gaussian_noise,
    blur,
    gaussian_blur,
    gaussian_kernel2d,
    gaussian_noise,
    imresize,
    jpeg_compress,
    load_blur_kernels,
    sample_gaussian_kernels,
    sample_sigma,
    unsharp_mask,
)
from tunableconv.errors import InputError

SET5 = ("baby", "bird", "butterfly", "head", "woman")


def _data_root() -> Path | None:
    from tunableconv.paths import data_root

    try:
        return data_root()
    except InputError:
        return None


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------------- noise


def test_noise_statistics():
    x = torch.full((2, 3, 128, 128), 0.5)
    y, n = add_gaussian_noise(x, 25.0, generator=_gen(), return_noise=True)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.allclose(y - x, n, atol=1e-6)
    assert abs(n.mean().item()) < 2e-3
    assert n.std().item() == pytest.approx(25 / 255, rel=0.01)
    assert torch.equal(add_gaussian_noise(x, 0.0, generator=_gen()), x)


def test_noise_seeding_reproducible():
    x = torch.rand(4, 3, 16, 16)
    a = add_gaussian_noise(x, 15, generator=_gen(7))
    b = add_gaussian_noise(x, 15, generator=_gen(7))
    c = add_gaussian_noise(x, 15, generator=_gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(gaussian_noise(x, 15, _gen(3)), gaussian_noise(x, 15, _gen(3)))
    assert torch.equal(sample_sigma(8, 5, 50, _gen(1)), sample_sigma(8, 5, 50, _gen(1)))


def test_noise_per_sample_sigma_and_clip():
    x = torch.full((3, 1, 96, 96), 0.5, dtype=torch.float64)
    sig = torch.tensor([0.0, 10.0, 50.0])
    n = gaussian_noise(x, sig, _gen())
    stds = n.flatten(1).std(dim=1)
    assert stds[0].item() == 0.0
    assert stds[1].item() == pytest.approx(10 / 255, rel=0.03)
    assert stds[2].item() == pytest.approx(50 / 255, rel=0.03)
    # clip keeps [0, 1] and the returned noise is what was actually added
    y, nc = add_gaussian_noise(x, sig, generator=_gen(), clip=True, return_noise=True)
    assert y.min() >= 0 and y.max() <= 1 and torch.allclose(x + nc, y, atol=1e-12)
    # unbatched input
    assert add_gaussian_noise(x[0], 5.0, generator=_gen()).shape == x[0].shape
    with pytest.raises(InputError):
        gaussian_noise(x, torch.tensor([1.0, 2.0]), _gen())
    with pytest.raises(InputError):
        gaussian_noise(x, -1.0)


def test_sample_sigma_range():
    s = sample_sigma(1000, 5, 50, _gen())
    assert s.shape == (1000,) and s.dtype == torch.float32
    assert s.min() >= 5 and s.max() <= 50 and 20 < s.mean() < 35
    assert torch.equal(sample_sigma(3, 25, 25), torch.full((3,), 25.0))
    with pytest.raises(InputError):
        sample_sigma(3, 10, 5)


def test_noise_degradation_callable():
    deg = NoiseDegradation(sigma_range=(5, 50))
    x = torch.rand(4, 3, 16, 16)
    y1, info1 = deg(x, _gen(2))
    y2, info2 = deg(x, _gen(2))
    assert torch.equal(y1, y2) and torch.equal(info1["sigma"], info2["sigma"])
    assert info1["sigma"].shape == (4,)
    assert ((info1["sigma"] >= 5) & (info1["sigma"] <= 50)).all()
    y, _ = NoiseDegradation((50, 50), clip=True)(x, _gen())
    assert y.min() >= 0 and y.max() <= 1


# ---------------------------------------------------------------------------------- blur


def test_gaussian_kernel_normalised():
    k = gaussian_kernel2d(2.0)
    assert k.shape == (21, 21)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(k, k.T) and torch.allclose(k, k.flip(0))
    assert k.argmax().item() == 10 * 21 + 10
    ks = gaussian_kernel2d(torch.tensor([0.0, 0.5, 3.0]), size=15)
    assert ks.shape == (3, 15, 15)
    assert torch.allclose(ks.sum(dim=(1, 2)), torch.ones(3), atol=1e-6)
    assert ks[0, 7, 7] == 1.0 and ks[0].sum() == 1.0  # sigma 0: delta
    with pytest.raises(InputError):
        gaussian_kernel2d(1.0, size=4)


def test_blur_constant_image_stays_constant():
    x = torch.full((2, 3, 24, 30), 0.3)
    for padding in ("reflect", "replicate", "circular"):
        assert torch.allclose(gaussian_blur(x, 2.5, padding=padding), x, atol=1e-6)
    k = torch.rand(7, 5)
    assert torch.allclose(blur(x, k / k.sum()), x, atol=1e-6)
    # sigma 0 is the identity
    z = torch.rand(3, 20, 20)
    assert torch.allclose(gaussian_blur(z, 0.0), z)


def test_blur_is_true_convolution():
    x = torch.zeros(1, 1, 11, 11)
    x[..., 5, 5] = 1.0
    k = torch.arange(9.0).reshape(3, 3)
    y = blur(x, k, padding="zeros")
    assert torch.equal(y[0, 0, 4:7, 4:7], k)  # impulse response is the kernel itself
    # scipy agrees for an asymmetric kernel
    ndimage = pytest.importorskip("scipy.ndimage")
    img = torch.rand(17, 19, dtype=torch.float64)
    k = torch.rand(5, 5, dtype=torch.float64)
    ref = ndimage.convolve(img.numpy(), k.numpy(), mode="mirror")
    assert np.allclose(blur(img[None], k)[0].numpy(), ref)


def test_per_sample_kernels_equal_loop():
    g = _gen(4)
    x = torch.rand(3, 3, 20, 22, generator=g)
    ks = torch.rand(3, 9, 9, generator=g)
    ks = ks / ks.sum(dim=(1, 2), keepdim=True)
    batched = blur(x, ks)
    looped = torch.stack([blur(x[i], ks[i]) for i in range(3)])
    assert torch.allclose(batched, looped, atol=1e-6)
    sig = torch.tensor([0.5, 1.5, 3.0])
    gb = gaussian_blur(x, sig)
    assert torch.allclose(gb, torch.stack([gaussian_blur(x[i], float(sig[i])) for i in range(3)]), atol=1e-6)
    kernels, sigmas = sample_gaussian_kernels(3, (0.5, 3.0), generator=_gen())
    assert kernels.shape == (3, 21, 21) and sigmas.shape == (3,)
    with pytest.raises(InputError):
        blur(x, torch.rand(2, 9, 9))


def test_blur_noise_degradation():
    x = torch.rand(2, 3, 32, 32)
    deg = BlurNoiseDegradation(blur_sigma_range=(1, 2), noise_sigma_range=(0, 0))
    y, info = deg(x, _gen())
    assert info["kernel"].shape == (2, 21, 21)
    assert torch.allclose(y, blur(x, info["kernel"]), atol=1e-6)
    y2, _ = deg(x, _gen())
    assert torch.equal(y, y2)


def test_load_blur_kernels():
    root = _data_root()
    if root is None or not (root / "blur_kernels" / "kernels.npz").is_file():
        pytest.skip("shared data folder with blur_kernels/kernels.npz not found (set TUNABLECONV_DATA)")
    ks = load_blur_kernels()
    assert set(ks) == {f"levin09_{i}" for i in range(1, 9)} | {f"kair12_{i}" for i in range(1, 13)}
    for name, k in ks.items():
        assert k.dtype == torch.float32 and k.ndim == 2, name
        assert k.sum().item() == pytest.approx(1.0, abs=1e-5), name
    assert ks["kair12_1"].shape == (25, 25)
    x = torch.full((1, 3, 40, 40), 0.7)
    assert torch.allclose(blur(x, ks["levin09_4"]), x, atol=1e-5)
    bank = [ks[f"kair12_{i}"] for i in range(1, 13)]
    y, info = BlurNoiseDegradation(kernels=bank, noise_sigma_range=(1, 1))(torch.rand(2, 3, 40, 40), _gen())
    assert info["kernel"].shape == (2, 25, 25) and y.shape == (2, 3, 40, 40)
    with pytest.raises(InputError):
        load_blur_kernels(root / "does-not-exist.npz")


# ---------------------------------------------------------------------------------- unsharp mask


def test_unsharp_mask():
    x = torch.rand(2, 3, 24, 24)
    assert torch.allclose(unsharp_mask(x, 1.5, 0.0), x)
    y = unsharp_mask(x, 1.0, 1.0)
    assert torch.allclose(y, 2 * x - gaussian_blur(x, 1.0), atol=1e-6)
    c = torch.full((3, 16, 16), 0.4)
    assert torch.allclose(unsharp_mask(c, 2.0, 3.0), c, atol=1e-6)
    amt = torch.tensor([0.0, 2.0])
    ys = unsharp_mask(x, torch.tensor([1.0, 2.0]), amt)
    assert torch.allclose(ys[0], x[0]) and torch.allclose(ys[1], unsharp_mask(x[1], 2.0, 2.0), atol=1e-6)
    assert y.std() > x.std()  # sharpening increases contrast
    assert unsharp_mask(x, 1.0, 5.0, clip=True).max() <= 1


# ---------------------------------------------------------------------------------- imresize


def _set5_pair(name: str, root: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    hr = np.asarray(Image.open(root / "test/set5/hr" / f"{name}.png").convert("RGB"))
    lr = np.asarray(Image.open(root / "test/set5/lr_x4_matlab" / f"{name}x4.png").convert("RGB"))
    h, w = hr.shape[:2]
    return hr[: h - h % 4, : w - w % 4], lr  # crop to a multiple of 4 (a no-op on Set5)


@pytest.mark.parametrize("name", SET5)
def test_imresize_matches_matlab_set5(name):
    root = _data_root()
    if root is None or not (root / "test/set5/lr_x4_matlab").is_dir():
        pytest.skip("shared data folder with test/set5/{hr,lr_x4_matlab} not found (set TUNABLECONV_DATA)")
    hr, lr = _set5_pair(name, root)
    x = torch.from_numpy(hr.copy()).permute(2, 0, 1).float() / 255
    y = imresize(x, scale=1 / 4)
    assert y.shape == (3, *lr.shape[:2])
    out = (y.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert _psnr_u8(out, lr) >= 45.0
    # with per-pass 8-bit rounding (MATLAB's uint8 path) the result is (near) bit-exact
    q = (imresize(x, scale=1 / 4, quantize=True) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert _psnr_u8(q, lr) >= 70.0


def test_imresize_shapes():
    x = torch.rand(3, 37, 50)
    assert imresize(x, scale=0.25).shape == (3, 10, 13)  # ceil, as MATLAB
    assert imresize(x[None].expand(2, 3, 37, 50), scale=0.5).shape == (2, 3, 19, 25)
    assert imresize(x, size=(20, 30)).shape == (3, 20, 30)
    assert imresize(x, size=16).shape == (3, 16, 16)
    assert imresize(x, scale=(0.5, 2)).shape == (3, 19, 100)
    assert imresize(x, scale=3).shape == (3, 111, 150)
    # batched equals per-image
    xb = torch.rand(2, 3, 21, 18)
    yb = imresize(xb, scale=1 / 3)
    assert torch.allclose(yb[1], imresize(xb[1], scale=1 / 3))
    with pytest.raises(InputError):
        imresize(x)
    with pytest.raises(InputError):
        imresize(x, scale=2, size=10)
    with pytest.raises(InputError):
        imresize(x, scale=-1)


def test_imresize_upscale_sanity():
    # constant stays constant, scale 1 is the identity, and the x2 upscale interpolates
    c = torch.full((1, 1, 9, 11), 0.6, dtype=torch.float64)
    assert torch.allclose(imresize(c, scale=2.5), torch.full((1, 1, 23, 28), 0.6, dtype=torch.float64))
    assert torch.allclose(imresize(c, scale=0.3), torch.full((1, 1, 3, 4), 0.6, dtype=torch.float64))
    x = torch.rand(3, 16, 16, dtype=torch.float64)
    assert torch.allclose(imresize(x, scale=1), x)
    # a linear ramp is reproduced exactly by cubic interpolation away from the borders
    ramp = torch.arange(20, dtype=torch.float64).view(1, 1, 20).expand(1, 20, 20) / 20
    up = imresize(ramp, scale=2)
    u = (torch.arange(1, 41, dtype=torch.float64) / 2 + 0.25 - 1) / 20  # MATLAB mapping, 0-based
    assert torch.allclose(up[0, 10, 4:-4], u[4:-4], atol=1e-12)
    # down-then-up of a smooth image stays close; the op is differentiable
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    smooth = (0.5 + 0.3 * torch.sin(4 * xx) * torch.cos(3 * yy))[None]
    back = imresize(imresize(smooth, scale=0.5), scale=2)
    assert (back - smooth).abs()[:, 4:-4, 4:-4].max() < 0.01
    z = torch.rand(1, 3, 12, 12, requires_grad=True)
    imresize(z, scale=0.5).sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()


# ---------------------------------------------------------------------------------- JPEG


def test_jpeg_round_trip():
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    img = torch.stack([xx, yy, 0.5 + 0.4 * torch.sin(12 * xx * yy)])
    img = (img + 0.05 * torch.rand(3, 64, 64, generator=_gen())).clamp(0, 1)
    y = jpeg_compress(img, 90)
    assert y.shape == img.shape and y.dtype == img.dtype
    assert y.min() >= 0 and y.max() <= 1
    errs = [(jpeg_compress(img, q) - img).abs().mean().item() for q in (10, 50, 95)]
    assert errs[0] > errs[1] > errs[2]
    # batched, per-sample quality, grey images
    b = torch.stack([img, img])
    yb = jpeg_compress(b, [10, 95])
    assert torch.allclose(yb[0], jpeg_compress(img, 10)) and torch.allclose(yb[1], jpeg_compress(img, 95))
    assert jpeg_compress(img[:1], 50).shape == (1, 64, 64)
    yq, info = JpegDegradation((20, 30))(b, _gen())
    assert yq.shape == b.shape and ((info["quality"] >= 20) & (info["quality"] <= 30)).all()
    with pytest.raises(InputError):
        jpeg_compress(img, 0)
    with pytest.raises(InputError):
        jpeg_compress(torch.rand(2, 3, 8, 8), [10, 20, 30])
