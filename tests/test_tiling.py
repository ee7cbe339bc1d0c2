"""Tests of tunableconv.tiling: tiled == untiled, no seams, odd sizes, upscaling."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from tunableconv.tiling import axis_weights, tile_starts, tiled_apply


def _net(radius: int = 3, scale: int = 1, channels: int = 3) -> nn.Module:
    """Random conv net of receptive radius `radius` (3x3 convs), optional pixel-shuffle upscaling."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Conv2d(channels, 8, 3, padding=1)]
    for _ in range(radius - 2):
        layers += [nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)]
    layers += [nn.ReLU(), nn.Conv2d(8, channels * scale * scale, 3, padding=1)]
    if scale > 1:
        layers.append(nn.PixelShuffle(scale))
    return nn.Sequential(*layers).eval()


def _core_edges(length: int, tile: int, overlap: int, scale: int = 1) -> list[int]:
    """Output coordinates of every interior core edge (first and last pixel of each core)."""
    edges = set()
    size = min(tile, length)
    for s in tile_starts(length, tile, overlap):
        for e in (s * scale, (s + size) * scale - 1):
            if 0 < e < length * scale - 1:
                edges.update({e - 1, e, e + 1})
    return sorted(e for e in edges if 0 <= e < length * scale)


@pytest.mark.parametrize("size", [(100, 77), (64, 64), (65, 33), (97, 130)])
def test_conv_net_equals_untiled_everywhere(size):
    net = _net(radius=3)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        ref = net(x)
    out = tiled_apply(net, x, tile=32, overlap=8)
    assert out.shape == ref.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_no_seams_along_tile_boundaries():
    net = _net(radius=4)
    x = torch.rand(1, 3, 90, 70)
    with torch.no_grad():
        ref = net(x)
    out = tiled_apply(net, x, tile=24, overlap=6)
    rows, cols = _core_edges(90, 24, 6), _core_edges(70, 24, 6)
    assert rows and cols
    assert (out - ref)[..., rows, :].abs().max().item() < 1e-4
    assert (out - ref)[..., :, cols].abs().max().item() < 1e-4


def test_receptive_field_larger_than_overlap():
    """Radius 3 > overlap 2: exact away from the overlaps, small and feathered at them."""
    net = _net(radius=3)
    x = torch.rand(1, 3, 80, 75)
    with torch.no_grad():
        ref = net(x)
    tile, overlap = 20, 2
    out = tiled_apply(net, x, tile=tile, overlap=overlap)
    diff = (out - ref).abs()[0].amax(0)

    def full_weight_mask(length: int) -> torch.Tensor:
        m = torch.zeros(length, dtype=torch.bool)
        size = min(tile, length)
        for s, w in axis_weights(length, tile, overlap):
            m[s : s + size] |= w == 1
        return m

    # Pixels outside every overlap zone are >= overlap from any core edge, so they see
    # >= 2 * overlap = 4 >= radius pixels of real context: exact there.
    away = full_weight_mask(80)[:, None] & full_weight_mask(75)[None, :]
    assert away.float().mean() > 0.4
    assert diff[away].max().item() < 1e-5
    assert diff.max().item() > 1e-6  # the test does probe an inexact configuration
    assert diff.max().item() < 0.5


@pytest.mark.parametrize("size", [(50, 41), (32, 32), (7, 5), (1, 1)])
def test_identity_is_exact(size):
    x = torch.rand(2, 3, *size)
    out = tiled_apply(lambda t: t, x, tile=16, overlap=5)
    assert torch.equal(out, x)


def test_small_image_single_call():
    calls = []

    def fn(t):
        calls.append(tuple(t.shape))
        return t * 2

    x = torch.rand(1, 3, 20, 30)
    out = tiled_apply(fn, x, tile=32, overlap=8)
    assert calls == [(1, 3, 20, 30)]
    assert torch.equal(out, x * 2)
    # one axis smaller than a tile, the other tiled
    calls.clear()
    out = tiled_apply(fn, torch.rand(1, 3, 20, 70), tile=32, overlap=8)
    assert len(calls) == 3 and all(c[2] == 20 for c in calls) and all(c[3] <= 32 + 16 for c in calls)


def test_windows_bounded_and_last_tile_shifted():
    seen = []

    def fn(t):
        seen.append(tuple(t.shape[-2:]))
        return t

    tiled_apply(fn, torch.rand(1, 1, 101, 67), tile=30, overlap=6)
    assert max(h for h, _ in seen) <= 30 + 2 * 6 and max(w for _, w in seen) <= 30 + 2 * 6
    assert tile_starts(101, 30, 6) == [0, 24, 48, 71]
    assert tile_starts(30, 30, 6) == [0] and tile_starts(12, 30, 6) == [0]


@pytest.mark.parametrize("size", [(45, 38), (20, 70)])
def test_scale2_pixel_shuffle(size):
    net = _net(radius=3, scale=2)
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        ref = net(x)
    out = tiled_apply(net, x, tile=16, overlap=5, scale=2)
    assert out.shape == (1, 3, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    rows, cols = _core_edges(size[0], 16, 5, 2), _core_edges(size[1], 16, 5, 2)
    if rows:
        assert (out - ref)[..., rows, :].abs().max().item() < 1e-4
    assert (out - ref)[..., :, cols].abs().max().item() < 1e-4
    # identity upscaler: nearest-neighbour repeat is reproduced exactly
    up = lambda t: t.repeat_interleave(2, -2).repeat_interleave(2, -1)  # noqa: E731
    assert torch.equal(tiled_apply(up, x, tile=16, overlap=5, scale=2), up(x))


def test_batch_tiles_and_channels_change():
    net = nn.Conv2d(3, 5, 5, padding=2).eval()  # radius 2, 3 -> 5 channels
    x = torch.rand(1, 3, 70, 90)
    with torch.no_grad():
        ref = net(x)
    batches = []

    def fn(t):
        batches.append(t.shape[0])
        return net(t)

    out = tiled_apply(fn, x, tile=20, overlap=4, batch_tiles=4)
    assert out.shape == (1, 5, 70, 90)
    assert max(batches) > 1 and max(batches) <= 4
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_float64_and_progress():
    x = torch.rand(1, 2, 40, 40, dtype=torch.float64)
    out = tiled_apply(lambda t: t + 1, x, tile=16, overlap=4, progress=True)
    assert out.dtype == torch.float64
    assert torch.equal(out, x + 1)


def test_weights_positive_and_partition_of_unity():
    for length, tile, overlap, scale in [(100, 32, 8, 1), (101, 30, 6, 2), (40, 16, 0, 1), (17, 10, 4, 1)]:
        total = torch.zeros(length * scale, dtype=torch.float64)
        size = min(tile, length)
        for s, w in axis_weights(length, tile, overlap, scale):
            assert w.shape == (size * scale,) and (w > 0).all() and (w <= 1).all()
            total[s * scale : (s + size) * scale] += w
        assert (total > 0).all()  # every pixel covered with positive weight
        if length != 17:  # (17, 10, 4): the shifted last tile also meets the first, sum > 1 there
            torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-12)


def test_bad_arguments():
    x = torch.rand(1, 3, 40, 40)
    with pytest.raises(ValueError):
        tiled_apply(lambda t: t, x, tile=16, overlap=16)
    with pytest.raises(ValueError):
        tiled_apply(lambda t: t, x[0], tile=16, overlap=4)
    with pytest.raises(ValueError):
        tiled_apply(lambda t: t[..., :-1], x, tile=16, overlap=4)
    with pytest.raises(ValueError):
        tiled_apply(lambda t: t, x, tile=16, overlap=4, scale=2)


_MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, torch
    from tunableconv.tiling import tiled_apply
    torch.set_num_threads(2)
    x = torch.rand(1, 3, 4000, 6000)  # 24 megapixels, 288 MB
    out = tiled_apply(lambda t: t * 0.5, x, tile=1024, overlap=32)
    assert out.shape == x.shape
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss in KiB on Linux only")
def test_24_megapixels_peak_memory():
    """Input + float32 accumulator + weight map + one tile: well under 4 GB (about 1 GB here)."""
    res = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    peak_mib = int(res.stdout.split()[-1]) / 1024
    assert peak_mib < 2048, f"peak RSS {peak_mib:.0f} MiB"
