"""Numerical identities of the tunable layers (kornia-style test matrix)."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tunableconv import InvalidParamsError
from tunableconv.nn import (
    ParamMap,
    TunableConv2d,
    TunableConvTranspose2d,
    TunableLinear,
    TunableParameter,
    functional as TF,
)

CONV_CASES = [
    dict(kernel_size=3, stride=1, padding=1, dilation=1, groups=1, padding_mode="zeros"),
    dict(kernel_size=3, stride=2, padding=0, dilation=1, groups=1, padding_mode="zeros"),
    dict(kernel_size=5, stride=1, padding="same", dilation=2, groups=1, padding_mode="zeros"),
    dict(kernel_size=(3, 1), stride=1, padding="same", dilation=1, groups=2, padding_mode="reflect"),
    dict(kernel_size=3, stride=1, padding=1, dilation=1, groups=8, padding_mode="zeros"),  # depthwise
    dict(kernel_size=4, stride=1, padding="same", dilation=1, groups=1, padding_mode="circular"),  # even kernel
    dict(kernel_size=1, stride=1, padding=0, dilation=1, groups=4, padding_mode="replicate"),
]


def _plain_conv(layer: TunableConv2d, k: int) -> nn.Conv2d:
    conv = nn.Conv2d(
        layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
        layer.dilation, layer.groups, layer.bias is not None, layer.padding_mode,
    )
    with torch.no_grad():
        conv.weight.copy_(layer.weight[k])
        conv.bias.copy_(layer.bias[k])
    return conv


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("num_params", [1, 2, 3])
def test_conv_one_hot_identity_equals_plain_conv(case, num_params):
    layer = TunableConv2d(8, 8, num_params=num_params, mapping="identity", **case)
    x = torch.randn(2, 8, 11, 13)
    for k in range(num_params):
        p = F.one_hot(torch.tensor(k), num_params).float()
        torch.testing.assert_close(layer(x, p), _plain_conv(layer, k)(x), atol=1e-5, rtol=1e-5)
        # per-sample path, same p for every sample
        torch.testing.assert_close(layer(x, p.expand(2, -1)), _plain_conv(layer, k)(x), atol=1e-5, rtol=1e-5)


def test_conv_transpose_one_hot_identity_equals_plain():
    for stride, output_padding, groups in [(2, 1, 1), (2, 0, 2), (1, 0, 1), (3, 2, 4)]:
        layer = TunableConvTranspose2d(8, 4, 3, num_params=2, stride=stride, padding=1,
                                       output_padding=output_padding, groups=groups, mapping="identity")
        x = torch.randn(3, 8, 7, 5)
        for k in range(2):
            ref = nn.ConvTranspose2d(8, 4, 3, stride, 1, output_padding, groups)
            with torch.no_grad():
                ref.weight.copy_(layer.weight[k])
                ref.bias.copy_(layer.bias[k])
            p = F.one_hot(torch.tensor(k), 2).float()
            torch.testing.assert_close(layer(x, p), ref(x), atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(layer(x, p.expand(3, -1)), ref(x), atol=1e-5, rtol=1e-5)


def test_linear_one_hot_identity_equals_plain():
    layer = TunableLinear(6, 5, num_params=3, mapping="identity")
    x = torch.randn(4, 7, 6)
    for k in range(3):
        ref = nn.Linear(6, 5)
        with torch.no_grad():
            ref.weight.copy_(layer.weight[k])
            ref.bias.copy_(layer.bias[k])
        p = F.one_hot(torch.tensor(k), 3).float()
        torch.testing.assert_close(layer(x, p), ref(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(layer(x, p.expand(4, -1)), ref(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mapping,expansion", [("identity", 1), ("affine", 1), ("affine", 2)])
def test_output_is_affine_in_aggregation_weights(mapping, expansion):
    layer = TunableConv2d(4, 6, 3, num_params=2, padding=1, mapping=mapping, expansion=expansion)
    x = torch.randn(1, 4, 9, 9)
    k = layer.num_weight_sets
    w1, w2 = torch.rand(k), torch.rand(k)
    f = lambda w: TF.tunable_conv2d(x, layer.weight, layer.bias, w, padding=1)
    for a in (0.0, 0.3, 1.0, 1.7):
        torch.testing.assert_close(f(a * w1 + (1 - a) * w2), a * f(w1) + (1 - a) * f(w2), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "layer_fn,shape",
    [
        (lambda: TunableConv2d(4, 6, 3, num_params=3, padding=1, expansion=2), (5, 4, 8, 8)),  # stacked path
        (lambda: TunableConv2d(4, 12, 3, num_params=3, padding=1, expansion=2), (5, 4, 8, 8)),  # batch as groups
        (lambda: TunableConv2d(4, 3, 3, num_params=2, stride=2, padding=1, domain="cube"), (5, 4, 9, 9)),
        (lambda: TunableConv2d(4, 4, 3, num_params=2, padding="same", groups=4, padding_mode="reflect"), (5, 4, 8, 8)),
        (lambda: TunableConvTranspose2d(4, 6, 2, num_params=3, stride=2), (5, 4, 8, 8)),
        (lambda: TunableLinear(4, 6, num_params=3), (5, 7, 4)),
    ],
)
def test_per_sample_path_equals_loop_of_shared_calls(layer_fn, shape):
    layer = layer_fn()
    x = torch.randn(*shape)
    p = torch.rand(shape[0], layer.num_params)
    per_sample = layer(x, p)
    loop = torch.cat([layer(x[b : b + 1], p[b]) for b in range(shape[0])])
    torch.testing.assert_close(per_sample, loop, atol=1e-5, rtol=1e-5)


def test_init_matches_torch_layer_statistics():
    torch.manual_seed(1)
    layer = TunableConv2d(64, 64, 3, num_params=4)
    ref = nn.Conv2d(64, 64, 3)
    bound_ref = ref.weight.abs().max().item()
    for k in range(4):  # each set uses the fan-in of one kernel: same bound as nn.Conv2d
        assert abs(layer.weight[k].abs().max().item() - bound_ref) < 0.02 * bound_ref
    assert not torch.equal(layer.weight[0], layer.weight[1])
    tlayer = TunableConvTranspose2d(16, 32, 4, num_params=2, stride=2)
    tref = nn.ConvTranspose2d(16, 32, 4, 2)
    assert abs(tlayer.weight[1].abs().max().item() - tref.weight.abs().max().item()) < 0.05 * tref.weight.abs().max().item()


def test_affine_map_init_sums_to_one_and_is_identity_on_simplex():
    for P, E in itertools.product([1, 2, 3], [1, 2, 3]):
        m = ParamMap(P, E, "affine")
        p = torch.rand(50, P)
        torch.testing.assert_close(m(p).sum(-1), torch.ones(50))
        if E == 1:
            simplex = p / p.sum(-1, keepdim=True)
            torch.testing.assert_close(m(simplex), simplex)
        if P * E > 1:  # rows differ: no symmetry trap when the weight sets start equal
            assert torch.unique(m.weight, dim=0).shape[0] == P * E


def test_gradcheck_float64_reaches_every_weight_set_and_the_map():
    layer = TunableConv2d(2, 3, 3, num_params=2, padding=1, expansion=2).double()
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    p = torch.rand(2, 2, dtype=torch.float64)

    def f(x, w, b, a, c):
        agg = F.linear(p, a, c)
        return TF.tunable_conv2d(x, w, b, agg, padding=1)

    inputs = (x, layer.weight.detach().clone().requires_grad_(), layer.bias.detach().clone().requires_grad_(),
              layer.param_map.weight.detach().clone().requires_grad_(), layer.param_map.bias.detach().clone().requires_grad_())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5)
    # shared path
    assert torch.autograd.gradcheck(lambda x, w, b: TF.tunable_conv2d(x, w, b, torch.tensor([0.2, 0.5, 0.1, 0.7], dtype=torch.float64), padding=1),
                                    inputs[:3], eps=1e-6, atol=1e-5)
    # every weight set and the map get a non-zero gradient through the module
    layer(x, p).square().sum().backward()
    for k in range(layer.num_weight_sets):
        assert layer.weight.grad[k].abs().sum() > 0
    assert layer.param_map.weight.grad.abs().sum() > 0


def test_gradcheck_linear_and_transpose():
    p = torch.rand(3, 2, dtype=torch.float64)
    w = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 5, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: TF.tunable_linear(x, w, b, p), (x, w, b))
    wt = torch.randn(2, 3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
    bt = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    xt = torch.randn(3, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: TF.tunable_conv_transpose2d(x, w, b, p, stride=2), (xt, wt, bt))


def test_tunable_parameter_shared_and_per_sample():
    tp = TunableParameter(torch.ones(4), num_params=2, mapping="identity")
    with torch.no_grad():
        tp.weight[1].fill_(3.0)
    torch.testing.assert_close(tp(torch.tensor([0.5, 0.5])), torch.full((4,), 2.0))
    out = tp(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert out.shape == (2, 4)
    torch.testing.assert_close(out[1], torch.full((4,), 3.0))
    assert TunableParameter((3, 5), num_params=2).shape == (3, 5)


@pytest.mark.parametrize(
    "p,msg",
    [
        ([0.5], "expected 2"),
        ([[0.5, 0.5, 0.1]], "expected 2"),
        (torch.rand(3, 2), "3 rows"),
        (torch.rand(2, 2, 2, 2, 2), "shape"),
        (torch.rand(3, 2, 4, 4), "3 rows"),
        ([0.5, 1.5], r"\[0, 1\]"),
        ([-0.1, 0.5], r"\[0, 1\]"),
        ([float("nan"), 0.5], "NaN"),
        (["a", "b"], "numbers"),
    ],
)
def test_bad_params_raise_clear_errors(p, msg):
    layer = TunableConv2d(3, 3, 3, num_params=2)
    with pytest.raises(InvalidParamsError, match=msg):
        layer(torch.randn(2, 3, 8, 8), p)


def test_missing_params_error():
    with pytest.raises(InvalidParamsError, match=r"layer\(x, p\)"):
        TunableConv2d(3, 3, 3, num_params=2)(torch.randn(1, 3, 8, 8), None)


def test_invalid_construction():
    with pytest.raises(ValueError, match="identity"):
        TunableConv2d(3, 3, 3, num_params=2, mapping="identity", expansion=2)
    with pytest.raises(ValueError, match="divisible"):
        TunableConv2d(3, 4, 3, num_params=2, groups=2)
    with pytest.raises(ValueError, match="mapping"):
        TunableLinear(3, 4, num_params=2, mapping="mlp")


def test_to_plain_matches_layer():
    layer = TunableConv2d(4, 4, 3, num_params=2, padding="same", padding_mode="reflect", expansion=2)
    x = torch.randn(1, 4, 7, 7)
    p = torch.tensor([0.3, 0.6])
    torch.testing.assert_close(layer.to_plain(p)(x), layer(x, p), atol=1e-5, rtol=1e-5)


# -- knob domains -------------------------------------------------------------------------
@pytest.mark.parametrize("mapping", ["identity", "affine"])
def test_cube_starts_p_independent_and_each_knob_has_its_own_direction(mapping):
    layer = TunableConv2d(3, 4, 3, num_params=2, padding=1, mapping=mapping, domain="cube")
    assert layer.weight.shape[0] == 3  # base + one direction per knob
    assert torch.count_nonzero(layer.weight[1:]) == 0
    x = torch.randn(2, 3, 6, 6)
    corners = [[0.0, 0.0], [1.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    ref = layer(x, corners[0])
    for c in corners[1:]:
        torch.testing.assert_close(layer(x, c), ref)
    with torch.no_grad():
        layer.weight[1:].normal_()
    outs = [layer(x, c) for c in corners]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert (outs[i] - outs[j]).abs().max() > 1e-3
    # W(p) = W_0 + sum_i p_i dW_i for the identity map
    if mapping == "identity":
        w = layer.weight[0] + 0.3 * layer.weight[1] + 0.8 * layer.weight[2]
        bias = layer.bias[0] + 0.3 * layer.bias[1] + 0.8 * layer.bias[2]
        torch.testing.assert_close(layer(x, [0.3, 0.8]), F.conv2d(x, w, bias, padding=1), atol=1e-5, rtol=1e-5)


def test_simplex_affine_init_sums_to_one_and_cube_map_starts_at_one_p():
    pm = ParamMap(3, 2, "affine", "simplex")
    p = torch.rand(5, 3)
    torch.testing.assert_close(pm(p).sum(-1), torch.ones(5))
    cube = ParamMap(2, 1, "affine", "cube")
    torch.testing.assert_close(cube(torch.tensor([0.3, 0.9])), torch.tensor([1.0, 0.3, 0.9]))
    with pytest.raises(ValueError, match="domain"):
        ParamMap(2, 1, "affine", "sphere")


# -- knob maps per pixel ----------------------------------------------------------------------
@pytest.mark.parametrize("layer", [
    TunableConv2d(3, 4, 3, num_params=2, padding=1, expansion=2),
    TunableConv2d(3, 4, 3, num_params=2, stride=2, padding=1, domain="cube"),
    TunableConvTranspose2d(3, 4, 2, num_params=2, stride=2),
], ids=["conv", "strided-cube", "transposed"])
def test_layer_map_constant_equals_shared_and_pixels_follow_their_p(layer):
    torch.manual_seed(0)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    x = torch.randn(2, 3, 8, 8)
    pa, pb = torch.tensor([0.9, 0.2]), torch.tensor([0.1, 0.6])
    torch.testing.assert_close(layer(x, pa[:, None, None].expand(2, 8, 8)), layer(x, pa), atol=1e-5, rtol=1e-5)
    # per-sample maps: each sample follows its own constant map
    pm = torch.stack([pa[:, None, None].expand(2, 8, 8), pb[:, None, None].expand(2, 8, 8)])
    y = layer(x, pm)
    torch.testing.assert_close(y[1:], layer(x[1:], pb), atol=1e-5, rtol=1e-5)


def test_linear_map_channels_last():
    lin = TunableLinear(5, 3, num_params=2)
    with torch.no_grad():
        lin.weight.normal_()
    x = torch.randn(2, 4, 6, 5)
    pa = torch.tensor([0.7, 0.3])
    torch.testing.assert_close(lin(x, pa[:, None, None].expand(2, 4, 6)), lin(x, pa), atol=1e-5, rtol=1e-5)


def test_tunable_parameter_refuses_maps():
    tp = TunableParameter((4,), num_params=2)
    with pytest.raises(InvalidParamsError, match="shape"):
        tp(torch.rand(2, 3, 3))


def test_inference_cache_of_the_shared_mix_follows_p_and_weight_updates():
    layer = TunableConv2d(3, 4, 3, num_params=2, padding=1)
    x = torch.randn(1, 3, 6, 6)
    p = torch.tensor([0.3, 0.7])
    with torch.no_grad():
        a = layer(x, p)
        torch.testing.assert_close(layer(x, p), a)  # cached
        b = layer(x, torch.tensor([0.9, 0.1]))      # another p: mixed again
        assert not torch.allclose(a, b)
        layer.weight[0].add_(1.0)                     # in-place update: the cache is stale
        c = layer(x, p)
    torch.testing.assert_close(c, layer(x, p))        # the grad path agrees with the refreshed cache
    assert not torch.allclose(a, c)
    with torch.no_grad(), pytest.raises(InvalidParamsError, match="NaN"):
        layer(x, torch.tensor([float("nan"), 0.5]))   # never cached: validated
    with torch.no_grad(), pytest.raises(InvalidParamsError, match="expected 2"):
        layer(x, torch.tensor([0.5]))
