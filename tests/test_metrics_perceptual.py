"""Tests of the perceptual metrics: LPIPS (v0.1, AlexNet) and NIQE.

The tests that need the third-party weights (``alexnet_features.safetensors``,
``lpips_v0.1_alex_heads.safetensors``, ``niqe_pris_params.npz``) or the NIQE reference image
find them exactly as the code does (:mod:`tunableconv.paths`: ``$TUNABLECONV_WEIGHTS`` /
``$TUNABLECONV_SHARED`` / ``../shared`` beside the checkout) and skip with a reason when they
are absent. Everything else runs with random weights written to a temporary folder.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tunableconv.metrics as M
from tunableconv.errors import InputError, MissingWeightsError
from tunableconv.metrics import lpips, niqe
from tunableconv.paths import data_root, weights_file

# MATLAB R2021a niqe on the Y channel of baboon.png (rounded, no crop); see shared/README.md.
NIQE_BABOON_MATLAB = 5.72957338


def _weights_or_skip(*names: str) -> None:
    for name in names:
        try:
            weights_file(name)
        except MissingWeightsError as exc:
            pytest.skip(f"shared weights absent: {exc}")


@pytest.fixture(scope="module")
def lpips_weights():
    _weights_or_skip(M.LPIPS_BACKBONE_FILES["alex"], M.LPIPS_HEADS_FILES["alex"])


@pytest.fixture(scope="module")
def niqe_params():
    _weights_or_skip(M.NIQE_PARAMS_FILE)


@pytest.fixture(scope="module")
def baboon(niqe_params):
    from PIL import Image

    try:
        path = data_root() / "test" / "niqe_reference" / "baboon.png"
    except InputError as exc:
        pytest.skip(f"shared data absent: {exc}")
    if not path.is_file():
        pytest.skip(f"NIQE reference image absent: {path}")
    with Image.open(path) as im:
        arr = np.array(im.convert("RGB"))
    return torch.from_numpy(arr).permute(2, 0, 1).to(torch.float64) / 255  # (3, 480, 492)


def _pattern(h: int = 64, w: int = 64) -> torch.Tensor:
    """A deterministic textured RGB image in [0.1, 0.9] (closed form, no random numbers)."""
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([
        0.5 + 0.25 * torch.sin(xx / 5 + yy / 9) + 0.15 * torch.sin(1.7 * xx - 0.9 * yy),
        0.5 + 0.25 * torch.cos(xx / 7 - yy / 4) + 0.15 * torch.cos(1.1 * xx + 1.3 * yy),
        0.5 + 0.2 * torch.sin((xx + yy) / 3) * torch.cos(xx / 11) + 0.15 * torch.sin(2.3 * yy),
    ])


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with replicated borders, ``(C, H, W)``."""
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    c = x.shape[-3]
    y = F.pad(x[None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.conv2d(y, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return y[0]


def _random_lpips_weights(folder, seed: int = 0) -> None:
    """Random AlexNet convs and heads with the shapes and keys of the shared files."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    shapes = {0: (64, 3, 11, 11), 3: (192, 64, 5, 5), 6: (384, 192, 3, 3), 8: (256, 384, 3, 3), 10: (256, 256, 3, 3)}
    backbone = {}
    for i, s in shapes.items():
        fan_in = s[1] * s[2] * s[3]
        backbone[f"features.{i}.weight"] = torch.randn(s, generator=g) / math.sqrt(fan_in)
        backbone[f"features.{i}.bias"] = 0.01 * torch.randn(s[0], generator=g)
    heads = {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate((64, 192, 384, 256, 256))}
    save_file(backbone, str(folder / M.LPIPS_BACKBONE_FILES["alex"]))
    save_file(heads, str(folder / M.LPIPS_HEADS_FILES["alex"]))


# ----------------------------------------------------------------------------------------
# LPIPS with the real weights
# ----------------------------------------------------------------------------------------

# LPIPS-alex between _pattern() and four deterministic distortions of it. Computed once with
# tunableconv.metrics.lpips (the recipe of shared/README.md, checked step by step against the
# original richzhang/PerceptualSimilarity code: 2x - 1, scaling layer, relu1..relu5, unit
# normalisation with eps 1e-10, 1x1 heads, spatial mean, sum) in float32, and recomputed in
# float64 through the same layers: equal to 1e-6. They are regression values, not published
# scores: the published reference pairs (imgs/ex_ref.png, ex_p0.png, ex_p1.png) are binary
# files that could not be obtained here.
LPIPS_REFERENCE = {
    "contrast": 0.024437,  # 0.5 + 0.6 (x - 0.5)
    "stripes": 0.017998,  # x + 0.08 (-1)^column, clamped
    "shift": 0.023217,  # rolled 2 pixels to the right
    "box3": 0.313313,  # 3x3 box filter, replicated borders
}


def _distortions(ref: torch.Tensor) -> dict[str, torch.Tensor]:
    w = ref.shape[-1]
    sign = torch.tensor([(-1.0) ** j for j in range(w)], dtype=ref.dtype)
    return {
        "contrast": 0.5 + 0.6 * (ref - 0.5),
        "stripes": (ref + 0.08 * sign).clamp(0, 1),
        "shift": torch.roll(ref, 2, dims=-1),
        "box3": F.avg_pool2d(F.pad(ref[None], (1, 1, 1, 1), mode="replicate"), 3, 1)[0],
    }


def test_lpips_identity_is_zero(lpips_weights):
    ref = _pattern()
    assert lpips(ref, ref).item() == 0.0
    batch = torch.stack([ref, ref.flip(-1), 1 - ref])
    out = lpips(batch, batch, reduction="none")
    assert out.shape == (3,) and out.dtype == torch.float64
    assert torch.all(out == 0)


def test_lpips_reference_values(lpips_weights):
    ref = _pattern()
    dist = _distortions(ref)
    for name, expected in LPIPS_REFERENCE.items():
        assert lpips(ref, dist[name]).item() == pytest.approx(expected, abs=1e-4), name
        assert lpips(dist[name], ref).item() == pytest.approx(expected, abs=1e-4), name  # symmetric
    # the same in one batch, and the batch mean
    batch = torch.stack(list(dist.values()))
    per = lpips(ref.expand_as(batch), batch, reduction="none")
    torch.testing.assert_close(per, torch.tensor(list(LPIPS_REFERENCE.values()), dtype=torch.float64), rtol=0, atol=1e-4)
    assert lpips(ref.expand_as(batch), batch).item() == pytest.approx(per.mean().item(), abs=1e-12)


def test_lpips_monotonic_in_blur_and_noise(lpips_weights):
    ref = _pattern()
    blur = [lpips(ref, _blur(ref, s)).item() for s in (0.5, 1.0, 1.5, 2.0, 3.0)]
    assert all(a < b for a, b in zip(blur, blur[1:])), blur
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noisy = [lpips(ref, (ref + s * noise).clamp(0, 1)).item() for s in (0.02, 0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(noisy, noisy[1:])), noisy
    assert blur[0] > 0 and noisy[0] > 0


def test_lpips_batched_grey_odd_sizes(lpips_weights):
    a = _pattern(45, 67)  # odd sizes
    b = _blur(a, 1.0)
    per = lpips(torch.stack([a, b]), torch.stack([b, 1 - a]), reduction="none")
    singles = torch.stack([lpips(a, b), lpips(b, 1 - a)])
    torch.testing.assert_close(per, singles, rtol=0, atol=1e-6)
    # grey: the channel is repeated to RGB
    g, h = a[:1], b[:1]
    assert lpips(g, h).item() == pytest.approx(lpips(g.expand(3, -1, -1), h.expand(3, -1, -1)).item(), abs=1e-6)
    assert lpips(g[None], h[None], reduction="none").shape == (1,)
    # float32 input, same value
    assert lpips(a.float(), b.float()).item() == pytest.approx(lpips(a, b).item(), abs=1e-6)


def test_lpips_vgg_variant():
    _weights_or_skip(M.LPIPS_BACKBONE_FILES["vgg"], M.LPIPS_HEADS_FILES["vgg"])
    ref = _pattern()
    assert lpips(ref, ref, net="vgg").item() == 0.0
    blur = [lpips(ref, _blur(ref, s), net="vgg").item() for s in (0.5, 1.0, 2.0)]
    assert 0 < blur[0] < blur[1] < blur[2], blur


# ----------------------------------------------------------------------------------------
# LPIPS without the shared files: errors, the path option, caching
# ----------------------------------------------------------------------------------------


def test_lpips_input_errors(tmp_path):
    _random_lpips_weights(tmp_path)
    x = torch.rand(3, 40, 40)
    with pytest.raises(InputError, match="at least 31x31"):
        lpips(x[:, :30], x[:, :30], weights_dir=tmp_path)
    with pytest.raises(InputError, match="channels"):
        lpips(torch.rand(2, 40, 40), torch.rand(2, 40, 40), weights_dir=tmp_path)
    with pytest.raises(ValueError):
        lpips(x, x[:, :-1], weights_dir=tmp_path)
    with pytest.raises(ValueError):
        lpips(x, x, weights_dir=tmp_path, reduction="sum")
    with pytest.raises(InputError):
        lpips(x, x, weights_dir=tmp_path, net="squeeze")
    # the smallest accepted size works
    assert lpips(x[:, :31, :31], x[:, :31, :31].flip(-1), weights_dir=tmp_path).item() > 0


def test_lpips_missing_weights_error(tmp_path, monkeypatch):
    x = torch.rand(3, 32, 32)
    with pytest.raises(MissingWeightsError) as exc:
        lpips(x, x, weights_dir=tmp_path)  # an empty folder
    msg = str(exc.value)
    assert "alexnet_features.safetensors" in msg and str(tmp_path) in msg
    assert "TUNABLECONV_WEIGHTS" in msg and "weights_dir" in msg and "\n" not in msg
    assert isinstance(exc.value, FileNotFoundError)
    # the env var is the default when no folder is given
    monkeypatch.setenv("TUNABLECONV_WEIGHTS", str(tmp_path / "nowhere"))
    with pytest.raises(MissingWeightsError, match="alexnet_features"):
        lpips(x, x)
    # no weights folder at all on the machine
    import tunableconv.paths as paths

    monkeypatch.delenv("TUNABLECONV_WEIGHTS")
    monkeypatch.delenv("TUNABLECONV_SHARED", raising=False)
    monkeypatch.setattr(paths, "_shared_candidates", lambda: [])
    with pytest.raises(MissingWeightsError, match="no weights folder.*TUNABLECONV_WEIGHTS"):
        lpips(x, x)
    with pytest.raises(MissingWeightsError, match="niqe_pris_params.npz"):
        niqe(torch.rand(3, 96, 96))


def test_lpips_explicit_dir_env_var_and_cache(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _random_lpips_weights(a, seed=0)
    _random_lpips_weights(b, seed=1)
    x, y = _pattern(48, 40), _blur(_pattern(48, 40), 1.0)
    va = lpips(x, y, weights_dir=a).item()
    vb = lpips(x, y, weights_dir=b).item()
    assert va > 0 and vb > 0 and va != vb
    assert lpips(x, x, weights_dir=a).item() == 0.0
    monkeypatch.setenv("TUNABLECONV_WEIGHTS", str(b))
    assert lpips(x, y).item() == vb  # from the env var
    assert lpips(x, y, weights_dir=a).item() == va  # an explicit folder wins
    # loaded once per (files, device)
    key = (str((a / M.LPIPS_BACKBONE_FILES["alex"]).resolve()), str((a / M.LPIPS_HEADS_FILES["alex"]).resolve()), "cpu")
    assert key in M._LPIPS_CACHE
    first = M._LPIPS_CACHE[key]
    lpips(x, y, weights_dir=a)
    assert M._LPIPS_CACHE[key] is first


# ----------------------------------------------------------------------------------------
# NIQE
# ----------------------------------------------------------------------------------------


def test_niqe_baboon_matches_matlab(baboon):
    value = niqe(baboon).item()  # Y channel, rounded, no crop
    assert abs(value - NIQE_BABOON_MATLAB) < 1e-3
    # tighter: the single-precision MSCN of MATLAB is emulated (float64 MSCN gives 5.72996)
    assert abs(value - NIQE_BABOON_MATLAB) < 1e-4, value
    assert niqe(baboon.float()).item() == pytest.approx(value, abs=1e-9)


def test_niqe_grey_crop_batch_odd_sizes(baboon):
    # grey input is taken as the luminance itself: the rounded Y channel as a grey image
    # gives the same score as the RGB image
    y = 16 + 65.481 * baboon[0] + 128.553 * baboon[1] + 24.966 * baboon[2]
    grey = (torch.floor(y + 0.5) / 255)[None]
    crop = (slice(None), slice(0, 193), slice(7, 208))  # 193 x 201: odd, 2 x 2 blocks
    a, g = baboon[crop], grey[crop]
    va = niqe(a).item()
    assert math.isfinite(va)
    assert niqe(g).item() == pytest.approx(va, abs=1e-9)
    # crop_border = the pre-cropped image
    assert niqe(a, crop_border=5).item() == pytest.approx(niqe(a[:, 5:-5, 5:-5]).item(), abs=1e-12)
    # batched == one by one
    b = baboon[:, 200:393, 250:451]
    per = niqe(torch.stack([a, b]), reduction="none")
    assert per.shape == (2,)
    torch.testing.assert_close(per, torch.stack([niqe(a), niqe(b)]), rtol=0, atol=1e-12)
    assert niqe(torch.stack([a, b])).item() == pytest.approx(per.mean().item(), abs=1e-12)
    # MATLAB's rgb2gray instead of Y: a different, finite score
    assert math.isfinite(niqe(a, convert_to="gray").item())
    with pytest.raises(InputError):
        niqe(a, convert_to="lab")


def test_niqe_increases_with_noise_and_strong_blur(baboon):
    # (a light blur, sigma 1, *lowers* baboon's NIQE to 4.70: its fur scores as less natural
    # than slightly smoothed fur; sigma 2 and 3 give 7.28 and 9.49)
    clean = niqe(baboon).item()
    noise = torch.randn(baboon.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    noisy = [niqe((baboon + s * noise).clamp(0, 1)).item() for s in (0.05, 0.2)]  # 7.55, 13.46
    assert clean + 1 < noisy[0] < noisy[1] - 1, noisy
    assert niqe(_blur(baboon, 3.0)).item() > clean + 2


def test_niqe_too_small_is_a_clear_error(tmp_path):
    # raised before any parameter file is needed
    with pytest.raises(InputError, match="at least 96x96"):
        niqe(torch.rand(3, 95, 200), params_path=tmp_path)
    with pytest.raises(InputError, match="after cropping 4 pixels"):
        niqe(torch.rand(1, 100, 100), crop_border=4, params_path=tmp_path)
    with pytest.raises(InputError, match="channels"):
        niqe(torch.rand(2, 100, 100), params_path=tmp_path)
    with pytest.raises(ValueError):
        niqe(torch.rand(100, 100))


def test_niqe_params_path_and_missing_file(tmp_path):
    with pytest.raises(MissingWeightsError) as exc:
        niqe(torch.rand(3, 96, 96), params_path=tmp_path)
    msg = str(exc.value)
    assert "niqe_pris_params.npz" in msg and "params_path" in msg and "\n" not in msg
    # a file or the folder holding it; a Gaussian model of made-up parameters
    t = np.arange(-3, 4)
    win = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * (7 / 6) ** 2))
    np.savez(tmp_path / "niqe_pris_params.npz", mu_pris_param=np.ones((1, 36)), cov_pris_param=np.eye(36),
             gaussian_window=win / win.sum())
    x = _pattern(100, 100)
    v_file = niqe(x, params_path=tmp_path / "niqe_pris_params.npz").item()
    v_dir = niqe(x, params_path=tmp_path).item()
    assert math.isfinite(v_file) and v_file == v_dir
