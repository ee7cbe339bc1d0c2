"""Tests of DISTS (Ding et al. 2020), :func:`tunableconv.metrics.dists`.

The tests marked by the ``vgg16`` fixture need the shared ``vgg16_features_fp16.safetensors``
(found as the code finds it: ``$TUNABLECONV_WEIGHTS`` / ``$TUNABLECONV_SHARED`` / ``../shared``
beside the checkout) and skip with a reason when it is absent. The properties that do not
depend on trained weights (identity, symmetry, batching, grey input) also run with a random
VGG16 written to a temporary folder, and the input checks need no weights at all.

Published values: the DISTS repository (github.com/dingkeyan93/DISTS) gives 0.3347 for its
example pair ``images/r0.png`` / ``images/r1.png``, but the PyPI package ``DISTS_pytorch`` 0.1
ships neither those images nor other reference scores, and they are not in ../shared, so that
number cannot be checked here. ``REFERENCE`` below was instead computed once with the authors'
own code: ``DISTS_pytorch/DISTS_pt.py`` of that wheel (torchvision's ``vgg16`` replaced by a stub
that loads the shared ``vgg16_features_fp16.safetensors`` in float32, alpha/beta from its
``weights.pt``), on the deterministic inputs of :func:`_cases`. On those and on 256x256 Kodak
crops (blur, noise, JPEG, shift) this implementation agreed with it to 3e-7.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tunableconv.metrics as M
from tunableconv.errors import InputError, MissingWeightsError
from tunableconv.metrics import dists
from tunableconv.paths import weights_file

# The authors' DISTS_pt.py (DISTS_pytorch 0.1) on the pairs of _cases(), float32; see above.
REFERENCE = {"blur1": 0.221721, "noise0.05": 0.058122, "shift1": 0.082418, "dark": 0.098177}


def _pattern(h: int = 64, w: int = 64) -> torch.Tensor:
    """A deterministic textured RGB image in [0.05, 0.95] (closed form, no random numbers)."""
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return torch.stack([
        0.5 + 0.25 * torch.sin(xx / 5 + yy / 9) + 0.15 * torch.sin(1.7 * xx - 0.9 * yy),
        0.5 + 0.25 * torch.cos(xx / 7 - yy / 4) + 0.15 * torch.cos(1.1 * xx + 1.3 * yy),
        0.5 + 0.2 * torch.sin((xx + yy) / 3) * torch.cos(xx / 11) + 0.15 * torch.sin(2.3 * yy),
    ]).to(torch.float32)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with replicated borders of a ``(C, H, W)`` image."""
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    c = x.shape[-3]
    y = F.pad(x[None], (r, r, r, r), mode="replicate")
    y = F.conv2d(y, g.view(1, 1, 1, -1).expand(c, 1, 1, -1).contiguous(), groups=c)
    y = F.conv2d(y, g.view(1, 1, -1, 1).expand(c, 1, -1, 1).contiguous(), groups=c)
    return y[0]


def _noise(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g, dtype=x.dtype)).clamp(0, 1)


def _cases() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    x = _pattern()
    return x, {
        "blur1": _blur(x, 1.0),
        "noise0.05": _noise(x, 0.05),
        "shift1": torch.roll(x, 1, dims=2),
        "dark": x * 0.7,
    }


@pytest.fixture(scope="module")
def vgg16():
    try:
        weights_file(M.DISTS_BACKBONE_FILE)
    except MissingWeightsError as exc:
        pytest.skip(f"shared weights absent: {exc}")


@pytest.fixture(scope="module")
def random_vgg(tmp_path_factory):
    """A folder holding a random VGG16 ``features`` in the shared file's layout (float16)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(1)
    sd, cin = {}, 3
    for stage, cout in zip(M._DISTS_STAGES, (64, 128, 256, 512, 512)):
        for i in stage:
            std = (2.0 / (9 * cin)) ** 0.5
            sd[f"features.{i}.weight"] = (torch.randn(cout, cin, 3, 3, generator=g) * std).half()
            sd[f"features.{i}.bias"] = (torch.randn(cout, generator=g) * 0.01).half()
            cin = cout
    folder = tmp_path_factory.mktemp("random_vgg16")
    save_file(sd, str(folder / M.DISTS_BACKBONE_FILE))
    return folder


# ---------------------------------------------------------------------------------------------
# The shipped alpha/beta
# ---------------------------------------------------------------------------------------------


def test_shipped_alpha_beta():
    from safetensors.torch import load_file

    ab = load_file(str(M.DISTS_ALPHA_BETA_FILE))
    assert set(ab) == {"alpha", "beta"}
    n = sum(M.DISTS_CHANNELS)
    assert n == 1475
    for v in ab.values():
        assert v.shape == (n,) and v.dtype == torch.float32 and bool((v >= 0).all())
    assert float(ab["alpha"].sum() + ab["beta"].sum()) == pytest.approx(1.0, abs=1e-4)
    assert (M.DISTS_ALPHA_BETA_FILE.parent / "README.md").is_file()


# ---------------------------------------------------------------------------------------------
# Input checks and missing weights (no weights needed)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b",
    [
        (torch.zeros(3, 16, 16), torch.zeros(3, 16, 17)),  # shapes differ
        (torch.zeros(16, 16), torch.zeros(16, 16)),  # no channel dim
        (torch.zeros(1, 1, 3, 16, 16), torch.zeros(1, 1, 3, 16, 16)),  # 5-D
        (torch.zeros(2, 4, 16, 16), torch.zeros(2, 4, 16, 16)),  # 4 channels
        (torch.zeros(3, 0, 16), torch.zeros(3, 0, 16)),  # empty
        (torch.full((3, 16, 16), 1.5), torch.zeros(3, 16, 16)),  # out of [0, 1]
        (torch.zeros(3, 16, 16), torch.full((3, 16, 16), -0.1)),
        (torch.full((3, 16, 16), float("nan")), torch.zeros(3, 16, 16)),
    ],
)
def test_bad_inputs_one_line(a, b, tmp_path):
    with pytest.raises(ValueError) as exc:  # InputError is a ValueError
        dists(a, b, weights=tmp_path)  # checked before any weights are looked for
    assert "\n" not in str(exc.value) and str(exc.value)


def test_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        dists(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8), reduction="sum")


def test_missing_vgg16_weights(tmp_path, monkeypatch):
    x = torch.rand(3, 16, 16)
    with pytest.raises(MissingWeightsError) as exc:
        dists(x, x, weights=tmp_path)
    msg = str(exc.value)
    assert "\n" not in msg and M.DISTS_BACKBONE_FILE in msg and str(tmp_path) in msg and "weights=" in msg
    monkeypatch.setenv("TUNABLECONV_WEIGHTS", str(tmp_path))  # the default lookup, pointed at nothing
    with pytest.raises(MissingWeightsError, match="TUNABLECONV_WEIGHTS"):
        dists(x, x)


def test_missing_alpha_beta(random_vgg, tmp_path):
    x = torch.rand(3, 16, 16)
    with pytest.raises(MissingWeightsError, match="alpha_beta="):
        dists(x, x, weights=random_vgg, alpha_beta=tmp_path / "nope.safetensors")


def test_not_a_vgg16_file(tmp_path):
    from safetensors.torch import save_file

    save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(tmp_path / M.DISTS_BACKBONE_FILE))
    with pytest.raises(InputError, match="lacks features"):
        dists(torch.rand(3, 16, 16), torch.rand(3, 16, 16), weights=tmp_path)


# ---------------------------------------------------------------------------------------------
# Properties that hold for any backbone (random VGG16)
# ---------------------------------------------------------------------------------------------


def test_random_backbone_properties(random_vgg):
    x, cases = _cases()
    y = cases["noise0.05"]
    d_id = dists(x, x, weights=random_vgg)
    assert d_id.shape == () and d_id.dtype == torch.float64 and abs(float(d_id)) < 1e-9
    d = dists(x, y, weights=random_vgg)
    assert 0 < float(d) < 1
    assert float(dists(y, x, weights=random_vgg)) == pytest.approx(float(d), abs=1e-6)
    # reduction="mean" (the default) of a batch is the mean of the per-image values
    a, b = torch.stack([x, y])[..., :24, :24], torch.stack([y, y])[..., :24, :24]
    per_image = dists(a, b, weights=random_vgg, reduction="none")
    assert per_image.shape == (2,) and abs(float(per_image[1])) < 1e-9
    mean = dists(a, b, weights=random_vgg)
    assert mean.shape == () and float(mean) == pytest.approx(float(per_image.mean()), abs=1e-12)
    # the file itself may be given instead of its folder
    assert float(dists(x, y, weights=random_vgg / M.DISTS_BACKBONE_FILE)) == pytest.approx(float(d), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# With the shared (trained) VGG16
# ---------------------------------------------------------------------------------------------


def test_identity_is_zero(vgg16):
    x, cases = _cases()
    d = dists(torch.stack([x, cases["blur1"]]), torch.stack([x, cases["blur1"]]), reduction="none")
    assert d.shape == (2,) and d.dtype == torch.float64
    assert float(d.abs().max()) < 1e-9


def test_reference_values(vgg16):
    """Against the authors' DISTS_pt.py run once on the same inputs (see the module notes)."""
    x, cases = _cases()
    ys = torch.stack([cases[name] for name in REFERENCE])
    got = dists(x.expand_as(ys), ys, reduction="none")
    for name, ref, value in zip(REFERENCE, REFERENCE.values(), got.tolist()):
        assert value == pytest.approx(ref, abs=2e-5), name


def test_monotonic_in_blur_and_noise(vgg16):
    x = _pattern()
    blurred = torch.stack([_blur(x, s) for s in (0.5, 1.0, 2.0, 4.0)])
    noisy = torch.stack([_noise(x, s) for s in (0.02, 0.05, 0.1, 0.2)])
    for distorted in (blurred, noisy):
        d = dists(x.expand_as(distorted), distorted, reduction="none")
        assert bool((d[1:] > d[:-1]).all()), d.tolist()
        assert bool((d > 0).all()) and bool((d < 1).all())


def test_batched_equals_per_image_and_symmetric(vgg16):
    x, cases = _cases()
    ys = torch.stack(list(cases.values()))
    xs = x.expand_as(ys)
    batch = dists(xs, ys, reduction="none")
    single = torch.stack([dists(a, b) for a, b in zip(xs, ys)])
    assert batch.shape == (len(cases),)
    torch.testing.assert_close(batch, single, atol=1e-6, rtol=0)
    torch.testing.assert_close(dists(ys, xs, reduction="none"), batch, atol=1e-6, rtol=0)


def test_grey_is_repeated_rgb(vgg16):
    x, cases = _cases()
    gx, gy = x.mean(0, keepdim=True), cases["blur1"].mean(0, keepdim=True)
    assert float(dists(gx, gy)) == pytest.approx(float(dists(gx.expand(3, -1, -1), gy.expand(3, -1, -1))), abs=1e-9)


def test_odd_sizes(vgg16):
    x = _pattern(37, 50)
    assert 0 < float(dists(x, _blur(x, 1.0))) < 1
