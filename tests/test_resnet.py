"""The ResNet backbone with explicit p: domains, per-sample p, knob maps, the trunk and sweep."""

import pytest
import torch

from tunableconv import InvalidParamsError
from tunableconv.models import ResNet, ResNetConfig
from tunableconv.nn import TunableConv2d


def _net(**kw):
    torch.manual_seed(0)
    cfg = dict(channels=8, num_blocks=4, num_params=2, expansion=2)
    cfg.update(kw)
    net = ResNet(ResNetConfig(**cfg)).eval()
    with torch.no_grad():  # make every weight set differ, so p matters everywhere
        for m in net.modules():
            if isinstance(m, TunableConv2d):
                m.weight.add_(0.05 * torch.randn_like(m.weight))
    return net


@pytest.mark.parametrize("domain", ["simplex", "cube"])
def test_per_sample_equals_loop(domain):
    net = _net(domain=domain)
    x = torch.rand(3, 3, 16, 16)
    p = torch.rand(3, 2)
    with torch.no_grad():
        out = net(x, p)
        loop = torch.cat([net(x[i : i + 1], p[i]) for i in range(3)])
    torch.testing.assert_close(out, loop, atol=1e-5, rtol=1e-5)


def test_cube_resnet_starts_independent_of_p():
    torch.manual_seed(0)
    net = ResNet(ResNetConfig(channels=8, num_blocks=2, num_params=2, domain="cube")).eval()
    x = torch.rand(1, 3, 12, 12)
    with torch.no_grad():
        ref = net(x, [0.0, 0.0])
        for c in ([1.0, 1.0], [0.5, 0.5], [1.0, 0.0]):
            torch.testing.assert_close(net(x, c), ref)


def test_knob_map_constant_equals_shared_and_halves_follow_their_p():
    net = _net(num_blocks=2)
    x = torch.rand(1, 3, 24, 48)
    pa, pb = torch.tensor([0.9, 0.1]), torch.tensor([0.2, 0.8])
    with torch.no_grad():
        torch.testing.assert_close(net(x, pa[:, None, None].expand(2, 24, 48)), net(x, pa), atol=1e-5, rtol=1e-5)
        half = torch.cat([pa[:, None, None].expand(2, 24, 24), pb[:, None, None].expand(2, 24, 24)], dim=2)
        y, ya, yb = net(x, half), net(x, pa), net(x, pb)
    rf = 2 * 2 + 3  # 7 convs of 3x3: radius 7
    torch.testing.assert_close(y[..., : 24 - rf], ya[..., : 24 - rf], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[..., 24 + rf :], yb[..., 24 + rf :], atol=1e-5, rtol=1e-5)
    with pytest.raises(InvalidParamsError, match="knob map is 12x12"):
        net(x, torch.rand(2, 12, 12))


@pytest.mark.parametrize("chunk", [1, 5])
def test_trunk_sweep_equals_separate_calls(chunk):
    net = _net(num_params=3, domain="cube", trunk_blocks=2)
    assert type(net.head) is torch.nn.Conv2d and type(net.body[1].conv1) is torch.nn.Conv2d
    assert isinstance(net.body[2].conv1, TunableConv2d)
    x = torch.rand(2, 3, 12, 12)
    grid = torch.tensor([[a, b, c] for a in (0, 0.5, 1) for b in (0, 1) for c in (0, 1)])
    with torch.no_grad():
        out = net.sweep(x, grid, chunk=chunk)
        ref = torch.stack([net(x, g) for g in grid])
    assert out.shape == (12, 2, 3, 12, 12)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    no_trunk = _net()
    with torch.no_grad():
        torch.testing.assert_close(no_trunk.sweep(x, grid[:3, :2], chunk=chunk),
                                   torch.stack([no_trunk(x, g) for g in grid[:3, :2]]), atol=1e-5, rtol=1e-5)


def test_bad_configs_and_calls():
    with pytest.raises(ValueError, match="trunk_blocks"):
        ResNet(ResNetConfig(channels=4, num_blocks=2, trunk_blocks=3))
    with pytest.raises(ValueError, match="domain"):
        ResNet(ResNetConfig(channels=4, num_blocks=2, domain="ball"))
    net = _net()
    with pytest.raises(InvalidParamsError, match="model\\(x, p\\)"):
        net(torch.rand(1, 3, 8, 8))
    with pytest.raises(InvalidParamsError, match=r"\(N, P\)"):
        net.sweep(torch.rand(1, 3, 8, 8), torch.rand(2))
