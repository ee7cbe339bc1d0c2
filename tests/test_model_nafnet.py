"""NAFNet (plain): shapes at odd sizes, zero layer scales, LayerNorm2d, gradients, make_tunable, presets."""

import json

import pytest
import torch
import torch.nn.functional as F

from tunableconv.models.nafnet import PRESETS, LayerNorm2d, NAFBlock, NAFNet, NAFNetConfig
from tunableconv.nn import make_tunable

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kwargs) -> NAFNet:
    args = dict(width=8, enc_blocks=[1, 1], middle_blocks=1, dec_blocks=[1, 1])
    return NAFNet(**{**args, **kwargs})


def block_params(net: NAFNet, scales: bool):
    """Parameters inside NAFBlocks: the layer scales β/γ (scales=True) or everything else."""
    for module in net.modules():
        if isinstance(module, NAFBlock):
            for name, prm in module.named_parameters():
                if (name in ("beta", "gamma")) == scales:
                    yield prm


@pytest.mark.parametrize("shape,kwargs", [((1, 3, 37, 29), {}), ((2, 3, 16, 16), {}),
                                          ((2, 1, 13, 21), {"in_channels": 1, "out_channels": 1}),
                                          ((1, 3, 9, 11), {"out_channels": 1})])
def test_output_shape_equals_input_shape(shape, kwargs):
    net = tiny(layer_scale_init=0.1, **kwargs)
    with torch.no_grad():
        out = net(torch.randn(shape))
    assert out.shape == (shape[0], net.config.out_channels, *shape[2:])
    assert torch.isfinite(out).all()


def test_four_levels_at_an_odd_size_and_the_padding_is_zeros_then_crop():
    net = tiny(enc_blocks=[1, 1, 1, 1], dec_blocks=[1, 1, 1, 1], layer_scale_init=0.1).eval()
    assert net.size_multiple == 16
    x = torch.randn(1, 3, 37, 29)
    with torch.no_grad():
        out = net(x)
        padded = net(F.pad(x, (0, 3, 0, 11)))  # 48 x 32: no internal padding
    assert out.shape == x.shape
    torch.testing.assert_close(out, padded[..., :37, :29])


def test_zero_layer_scales_make_the_blocks_identities():
    net = tiny().eval()
    assert all((p == 0).all() for p in block_params(net, scales=True))
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        before = net(x)
        for prm in block_params(net, scales=False):
            prm.add_(torch.randn_like(prm))
        torch.testing.assert_close(net(x), before, atol=0, rtol=0)

    net = tiny(layer_scale_init=0.1).eval()
    assert all((p == 0.1).all() for p in block_params(net, scales=True))
    with torch.no_grad():
        before = net(x)
        for prm in block_params(net, scales=False):
            prm.add_(torch.randn_like(prm))
        assert (net(x) - before).abs().max() > 1e-3


def test_layernorm2d_matches_layer_norm_over_channels():
    ln = LayerNorm2d(6)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(6))
        ln.bias.copy_(torch.randn(6))
    x = 3 * torch.randn(2, 6, 5, 7) + 1
    ref = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, eps=ln.eps).permute(0, 3, 1, 2)
    torch.testing.assert_close(ln(x), ref, atol=1e-5, rtol=1e-5)


def test_gradients_reach_every_parameter():
    net = tiny(layer_scale_init=0.1)
    net(torch.randn(2, 3, 19, 17)).square().mean().backward()
    for name, prm in net.named_parameters():
        assert prm.grad is not None, name
        assert torch.isfinite(prm.grad).all(), name
        assert prm.grad.abs().sum() > 0, name


def test_make_tunable_preserves_output_and_per_sample_equals_loop():
    net = tiny(layer_scale_init=0.1).eval()
    x = torch.randn(3, 3, 13, 11)
    with torch.no_grad():
        ref = net(x)
    t = make_tunable(net, 2).eval()
    with torch.no_grad():
        for p in (torch.tensor([0.3, 0.7]), torch.tensor([1.0, 0.0])):
            torch.testing.assert_close(t(x, p), ref, atol=1e-5, rtol=1e-5)

    report = t.conversion_report()
    assert not report.fixed
    names = {e.name for e in report.tunable}
    assert names == {n for n, _ in net.named_parameters()}
    for expected in ("intro.weight", "intro.bias", "ending.weight", "downs.0.weight", "ups.0.0.weight",
                     "encoders.0.0.conv2.weight", "encoders.0.0.sca.1.bias", "middle_blks.0.norm1.weight",
                     "decoders.1.0.norm2.bias", "decoders.1.0.beta", "encoders.1.0.gamma"):
        assert expected in names

    with torch.no_grad():
        for _, slot in t.tunable_layers():
            for s in slot.sets.values():
                s.add_(0.1 * torch.randn_like(s))
        a, b = t(x, [1.0, 0.0]), t(x, [0.0, 1.0])
        assert (a - b).abs().max() > 1e-3
        p = torch.rand(3, 2)
        out = t(x, p)
        loop = torch.cat([t(x[i : i + 1], p[i]) for i in range(3)])
    torch.testing.assert_close(out, loop, atol=1e-5, rtol=1e-5)


def official_count(width: int, enc: list[int], middle: int, dec: list[int], img: int = 3) -> int:
    """Parameters of the official NAFNet_arch.NAFNet, counted from its layer definitions."""

    def block(c):  # conv1 c→2c, dw 3×3 2c, conv3 c→c, sca c→c, conv4 c→2c, conv5 c→c, 2 LN, β, γ
        return (2 * c * c + 2 * c) + (18 * c + 2 * c) + 3 * (c * c + c) + (2 * c * c + 2 * c) + 4 * c + 2 * c

    n = (9 * img * width + width) + (9 * width * img + img)  # intro, ending
    c = width
    for b in enc:
        n += b * block(c) + (4 * c * 2 * c + 2 * c)  # blocks, 2×2 stride-2 down conv
        c *= 2
    n += middle * block(c)
    for b in dec:
        n += 2 * c * c  # 1×1 up conv without bias
        c //= 2
        n += b * block(c)
    return n


def test_presets_build_and_match_the_official_parameter_counts():
    small = NAFNet(PRESETS["nafnet-small"]).eval()
    x = torch.randn(1, 3, 21, 18)
    with torch.no_grad():
        assert small(x).shape == x.shape
    counts = {}
    with torch.device("meta"):  # count without allocating or initialising the big ones
        for name, cfg in PRESETS.items():
            counts[name] = sum(p.numel() for p in NAFNet(cfg).parameters())
            official = official_count(cfg.width, cfg.enc_blocks, cfg.middle_blocks, cfg.dec_blocks)
            assert abs(counts[name] - official) <= 0.02 * official, name
        # the paper's 17.1M NAFNet-width32 is the GoPro configuration (the SIDD one has 29.2M)
        gopro = NAFNet(width=32, enc_blocks=[1, 1, 1, 28], middle_blocks=1, dec_blocks=[1, 1, 1, 1])
        assert abs(sum(p.numel() for p in gopro.parameters()) - 17.1e6) < 0.01 * 17.1e6
    assert counts == {"nafnet-small": 1_137_203, "nafnet-width32": 29_159_715, "nafnet-width64": 115_982_915}


def test_config_arguments_and_kwargs_override():
    net = NAFNet(PRESETS["nafnet-small"], width=8, enc_blocks=(1, 2), dec_blocks=(2, 1))  # kwargs override
    assert net.config == NAFNetConfig(width=8, enc_blocks=[1, 2], dec_blocks=[2, 1])
    assert net.size_multiple == 4
    args = NAFNet(NAFNetConfig(width=8, enc_blocks=[1, 2], dec_blocks=[2, 1])).arguments()
    assert json.loads(json.dumps(args)) == args
    assert NAFNet(**args).config == NAFNetConfig(**args)
    assert PRESETS["nafnet-small"].width == 16  # presets are not modified
    assert NAFNet.architecture == "nafnet" and NAFNet.tiling_exact is False


@pytest.mark.parametrize("kwargs,match", [
    ({"width": 0}, "width must be a positive integer"),
    ({"in_channels": 2.5}, "in_channels must be a positive integer"),
    ({"enc_blocks": [1, 1], "dec_blocks": [1]}, "same length"),
    ({"enc_blocks": [1, -1], "dec_blocks": [1, 1]}, "enc_blocks must be a list of non-negative"),
    ({"middle_blocks": -1}, "middle_blocks"),
    ({"width": 3, "dw_expand": 1}, "must be even"),
    ({"layer_scale_init": float("nan")}, "layer_scale_init"),
])
def test_bad_configs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NAFNet(**kwargs)
