"""SwinIR (tunableconv.models.swinir): shapes, shifted-window mask, receptive field, tiling,
gradients, make_tunable conversion (per-sample p through the window partition), presets."""

import json
import math

import pytest
import torch
from torch import Tensor, nn

from tunableconv.models import swinir
from tunableconv.models.swinir import PRESETS, SwinIR, SwinIRConfig, shifted_window_mask
from tunableconv.nn import make_tunable
from tunableconv.tiling import tiled_apply

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(**kwargs) -> SwinIR:
    """One RSTB of two Swin layers (regular, shifted), window 4: receptive field 2·3 + 4 = 10."""
    args = dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4, num_feat=8)
    return SwinIR(**{**args, **kwargs})


def lively(net: nn.Module) -> nn.Module:
    """Random weights large enough that attention is far from uniform (the official
    initialisation makes q·k tiny), so that window effects show in the output."""
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "relative_position_bias_table" in name:
                p.normal_(0.0, 1.0)
            elif p.dim() == 2:  # linear weights
                p.normal_(0.0, p.shape[1] ** -0.5)
            elif p.dim() == 1:
                p.normal_(1.0 if name.endswith("norm1.weight") or name.endswith("norm2.weight") else 0.0, 0.2)
    return net


# -- 1. shapes ---------------------------------------------------------------------------------
@pytest.mark.parametrize("upsampler,upscale", [("", 1), ("pixelshuffle", 4), ("pixelshuffledirect", 4),
                                               ("pixelshuffle", 3), ("pixelshuffle", 2), ("pixelshuffledirect", 3)])
def test_shapes_at_odd_sizes(upsampler, upscale):
    net = tiny(upsampler=upsampler, upscale=upscale)
    for shape in [(1, 3, 19, 13), (2, 3, 4, 4), (1, 3, 5, 3), (1, 3, 1, 2)]:
        b, c, h, w = shape
        y = net(torch.rand(shape))
        assert y.shape == (b, 3, h * upscale, w * upscale)
        assert torch.isfinite(y).all()


def test_channels_and_config_round_trip():
    net = tiny(in_channels=1, out_channels=1)
    assert net(torch.rand(1, 1, 9, 7)).shape == (1, 1, 9, 7)
    sr = tiny(in_channels=1, out_channels=3, upsampler="pixelshuffledirect", upscale=2)
    assert sr(torch.rand(1, 1, 9, 7)).shape == (1, 3, 18, 14)
    args = json.loads(json.dumps(sr.arguments()))
    assert args["depths"] == [2] and args["upsampler"] == "pixelshuffledirect"
    assert SwinIR(SwinIRConfig(**args)).state_dict().keys() == sr.state_dict().keys()
    over = SwinIR(PRESETS["swinir-small"], embed_dim=24, depths=(1,), num_heads=(3,))  # kwargs override
    assert over.config.embed_dim == 24 and over.config.depths == [1] and over.config.window_size == 8
    assert PRESETS["swinir-small"].embed_dim == 48  # the preset is untouched
    assert net.size_multiple == 4 and SwinIR.tiling_exact is True and net.architecture == "swinir"


@pytest.mark.parametrize("kwargs,match", [
    (dict(embed_dim=12, num_heads=[5]), "divisible"),
    (dict(depths=[2, 2], num_heads=[2]), "one entry per RSTB"),
    (dict(depths=[]), "non-empty"),
    (dict(depths=[0]), "positive integers"),
    (dict(upsampler="nearest+conv"), "upsampler must be"),
    (dict(upscale=5, upsampler="pixelshuffle"), "upscale must be"),
    (dict(upscale=4), "needs an upsampler"),
    (dict(upsampler="pixelshuffle", upscale=1), "super-resolution"),
    (dict(in_channels=1, out_channels=3), "must equal"),
    (dict(window_size=1), "window_size"),
    (dict(mlp_ratio=0.0), "mlp_ratio"),
    (dict(embed_dim=0), "embed_dim"),
])
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kwargs)


# -- 2. the shifted-window mask and the receptive field ----------------------------------------
@pytest.mark.parametrize("h,w,window,shift", [(8, 8, 4, 2), (8, 12, 4, 2), (4, 4, 4, 2), (12, 6, 3, 1)])
def test_mask_separates_tokens_from_opposite_borders(h, w, window, shift):
    mask = shifted_window_mask(h, w, window, shift)
    n_w = (h // window) * (w // window)
    assert mask.shape == (n_w, window**2, window**2)
    # independently: the original position of every token of every rolled window
    rows = (torch.arange(h) + shift) % h
    cols = (torch.arange(w) + shift) % w
    pos = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), -1)  # (H, W, 2), original (row, col)
    pos = pos.view(h // window, window, w // window, window, 2).permute(0, 2, 1, 3, 4).reshape(n_w, window**2, 2)
    # the shifted windows of the image itself, without wrapping: [k·window + shift, (k+1)·window + shift),
    # cut at the borders (the pixels before the first one form a partial window of their own)
    cell = torch.div(pos - shift, window, rounding_mode="floor")
    neighbours = (cell[:, :, None] == cell[:, None, :]).all(-1)
    assert torch.equal(mask == 0, neighbours)
    assert (mask[~neighbours] <= -100).all()
    assert (~neighbours).any()  # the last windows are wrapped


def test_receptive_field_formula():
    assert tiny().receptive_field() == 2 * 3 + 4  # conv_first, RSTB conv, conv_after_body, conv_last
    assert tiny(upsampler="pixelshuffle", upscale=4).receptive_field() == 6 + 3 + 4  # + before, 2 up convs
    assert tiny(upsampler="pixelshuffledirect", upscale=4).receptive_field() == 6 + 3 + 1
    assert SwinIR(PRESETS["swinir-m"], embed_dim=6).receptive_field() == 36 * 7 + 9  # 36 layers, window 8, 9 convs


def _changed(net: nn.Module, x: Tensor, i: int, j: int) -> Tensor:
    with torch.no_grad():
        x2 = x.clone()
        x2[..., i, j] += 1.0
        return (net(x2) - net(x)).abs().amax(1)[0]  # (H, W)



@pytest.mark.parametrize("size,i,j", [(40, 20, 21), (16, 0, 0), (16, 15, 15), (20, 9, 2)])
def test_one_pixel_changes_the_output_only_within_the_receptive_field(size, i, j):
    net = lively(tiny()).double()
    rf = net.receptive_field()
    x = torch.rand(1, 3, size, size, dtype=torch.float64)
    diff = _changed(net, x, i, j)
    r = torch.arange(size)
    dist = torch.maximum((r[:, None] - i).abs(), (r[None, :] - j).abs())
    assert diff[dist > rf].max() <= 1e-12
    assert diff[dist <= rf].max() > 1e-3
    assert diff[dist > 4].max() > 1e-6  # the shifted windows carry it beyond the pixel's own window


def test_no_attention_across_the_wrapped_border(monkeypatch):
    """A pixel at the top-left corner: the cyclic shift puts it in one window with the
    bottom-right corner, which must not see it (it is 15 px away, beyond the receptive field)."""
    net = lively(tiny()).double()
    x = torch.rand(1, 3, 16, 16, dtype=torch.float64)
    assert _changed(net, x, 0, 0)[12:, 12:].max() <= 1e-12
    unmasked = lambda h, w, window, shift, **kw: torch.zeros_like(shifted_window_mask(h, w, window, shift, **kw))
    monkeypatch.setattr(swinir, "shifted_window_mask", unmasked)  # without the mask it would leak
    assert _changed(net, x, 0, 0)[12:, 12:].max() > 1e-4


# -- 3. window-aligned tiling ------------------------------------------------------------------
def test_window_aligned_crop_matches_the_full_output():
    net = lively(tiny()).double()
    rf = net.receptive_field()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        full = net(x)
        core = (slice(16, 20), slice(16, 20))
        # aligned origin 4, crop ends at 30 (padded inside): >= rf around the core everywhere
        assert 16 - 4 >= rf and 30 - 20 >= rf
        crop = net(x[..., 4:30, 4:30])
        assert torch.allclose(crop[..., 12:16, 12:16], full[..., core[0], core[1]], atol=1e-5, rtol=0)
        # the same context from an origin off the window grid: other windows, other output
        assert 16 - 2 >= rf
        off = net(x[..., 2:30, 2:30])
        assert (off[..., 14:18, 14:18] - full[..., core[0], core[1]]).abs().max() > 1e-3


@pytest.mark.parametrize("upsampler,upscale", [("", 1), ("pixelshuffledirect", 2)])
def test_tiled_apply_with_window_multiple_is_exact(upsampler, upscale):
    net = lively(tiny(upsampler=upsampler, upscale=upscale))
    x = torch.rand(1, 3, 37, 29)
    with torch.no_grad():
        full = net(x)
    tiled = tiled_apply(net, x, tile=16, overlap=net.receptive_field(), scale=upscale, multiple=net.size_multiple)
    assert tiled.shape == full.shape
    assert torch.allclose(tiled, full, atol=1e-5, rtol=0)


# -- 4. gradients ------------------------------------------------------------------------------
def test_gradients_reach_every_parameter():
    net = tiny(upsampler="pixelshuffle", upscale=2)
    net(torch.rand(2, 3, 9, 10)).square().mean().backward()
    names = [n for n, _ in net.named_parameters()]
    assert any("relative_position_bias_table" in n for n in names)
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, name


# -- 5. make_tunable ---------------------------------------------------------------------------
def _spread(t) -> None:
    """Make the weight sets differ, so that different p give different networks."""
    with torch.no_grad():
        for _, slot in t.tunable_layers():
            for s in slot.sets.values():
                s.add_(0.05 * torch.randn_like(s))


@pytest.mark.parametrize("upsampler,upscale", [("", 1), ("pixelshuffle", 2)])
def test_make_tunable_preserves_and_runs_per_sample(upsampler, upscale):
    net = tiny(depths=[2, 2], num_heads=[2, 3], upsampler=upsampler, upscale=upscale)
    x = torch.rand(2, 3, 11, 9)
    t = make_tunable(net, 2)
    with torch.no_grad():
        assert torch.allclose(t(x, torch.tensor([0.3, 0.7])), net(x), atol=1e-5)
        _spread(t)
        p = torch.tensor([[0.3, 0.7], [0.9, 0.1]])
        batched = t(x, p)  # torch.func.vmap over the batch, through the window partition
        looped = torch.cat([t(x[i : i + 1], p[i]) for i in range(2)])
        assert torch.allclose(batched, looped, atol=1e-5, rtol=0)
        assert (batched[0] - t(x[:1], p[1])[0]).abs().max() > 1e-4  # the settings do differ


def test_conversion_report_everything_tunable():
    net = tiny(upsampler="pixelshuffle", upscale=2)
    report = make_tunable(net, 2).conversion_report()
    names = {n for n, _ in net.named_parameters()}
    assert {e.name for e in report} == names and not report.fixed
    assert all(e.tunable for e in report)
    modules = dict(net.named_modules())
    kinds = {type(modules[e.name.rsplit(".", 1)[0]]) for e in report}  # the owner of each parameter
    assert {nn.Conv2d, nn.Linear, nn.LayerNorm, swinir.WindowAttention} <= kinds
    block = "layers.0.residual_group.blocks.1."
    for part in ("attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.bias",
                 "norm1.weight", "norm2.bias", "attn.relative_position_bias_table"):
        assert block + part in names
    for part in ("conv_first.weight", "patch_embed.norm.weight", "layers.0.conv.weight", "norm.bias",
                 "conv_after_body.weight", "conv_before_upsample.0.weight", "upsample.0.weight", "conv_last.bias"):
        assert part in names


def test_conversion_excluding_layernorm_keeps_exactly_the_norms_fixed():
    net = tiny(depths=[2, 2], num_heads=[2, 2])
    report = make_tunable(net, 2, exclude=[nn.LayerNorm]).conversion_report()
    norms = {f"{n}.{k}" for n, m in net.named_modules() if isinstance(m, nn.LayerNorm) for k, _ in m.named_parameters()}
    assert len(norms) == 2 * (2 + 2 * 2 * 2)  # patch norm, final norm, two per Swin layer
    assert {e.name for e in report.fixed} == norms
    assert all(e.reason == "excluded" for e in report.fixed)
    assert len(report.tunable) == len(report) - len(norms)


# -- 6. presets --------------------------------------------------------------------------------
def _official_count(c: int, depths: list[int], heads: list[int], window: int, mlp: float, upsampler: str = "",
                    upscale: int = 1, cin: int = 3, cout: int = 3, num_feat: int = 64) -> int:
    """The parameter count of the official network_swinir.SwinIR (resi_connection "1conv",
    patch_norm True), written out from its layers."""
    def conv(i: int, o: int) -> int:
        return 9 * i * o + o

    hidden = int(c * mlp)

    def layer(h: int) -> int:  # norm1, qkv, bias table, proj, norm2, fc1, fc2
        return 2 * c + (3 * c * c + 3 * c) + (2 * window - 1) ** 2 * h + (c * c + c) + 2 * c \
            + (c * hidden + hidden) + (hidden * c + c)

    total = conv(cin, c) + 2 * c + sum(d * layer(h) + conv(c, c) for d, h in zip(depths, heads)) + 2 * c + conv(c, c)
    if upsampler == "pixelshuffle":
        stages = [(9, 1)] if upscale == 3 else [(4, int(math.log2(upscale)))]
        ups = [conv(num_feat, k * num_feat) * n for k, n in stages]
        return total + conv(c, num_feat) + sum(ups) + conv(num_feat, cout)
    if upsampler == "pixelshuffledirect":
        return total + conv(c, cout * upscale**2)
    return total + conv(c, cout)


def _count(cfg: SwinIRConfig) -> tuple[int, int]:
    net = SwinIR(cfg)  # built, not run (on the meta device the first build imports for seconds)
    total = sum(p.numel() for p in net.parameters())
    tables = sum(p.numel() for n, p in net.named_parameters() if n.endswith("relative_position_bias_table"))
    return total, total - tables


def test_swinir_small_runs():
    net = SwinIR(PRESETS["swinir-small"])
    with torch.no_grad():
        y = net(torch.rand(1, 3, 16, 16))
    assert y.shape == (1, 3, 16, 16) and torch.isfinite(y).all()


@pytest.mark.parametrize("name,expected", [("swinir-small", 224_067), ("swinir-m", 11_504_163),
                                           ("swinir-light-x4", 929_628), ("swinir-m-x4", 11_900_199)])
def test_preset_parameter_counts(name, expected):
    cfg = PRESETS[name]
    total, without_tables = _count(cfg)
    assert total == expected
    assert total == _official_count(cfg.embed_dim, cfg.depths, cfg.num_heads, cfg.window_size, cfg.mlp_ratio,
                                    cfg.upsampler, cfg.upscale, num_feat=cfg.num_feat)
    # the paper's counts leave the relative position bias tables out
    paper = {"swinir-light-x4": 897e3, "swinir-m": 11.5e6, "swinir-m-x4": 11.8e6}.get(name)
    if paper:
        assert abs(without_tables - paper) / paper < 0.02
