"""make_tunable / TunableModel: every parameter kind, per-sample p, maps, sweep, compile, checkpoint, threads."""

import threading

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from tunableconv import InvalidParamsError, make_tunable
from tunableconv.models.window_block import WindowAttentionBlock


# -- one small module per parameter kind ----------------------------------------------------
class Scale(nn.Module):
    """A bare nn.Parameter (a NAFNet-style layer scale)."""

    def __init__(self, c=4):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(1, c, 1, 1))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, e=8, batch_first=True):
        super().__init__()
        self.attn = nn.MultiheadAttention(e, 2, batch_first=batch_first)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


def _inorm():
    m = nn.InstanceNorm2d(4, affine=True)
    with torch.no_grad():
        m.weight.normal_()
        m.bias.normal_()
    return m


def _lnorm():
    m = nn.LayerNorm(5)
    with torch.no_grad():
        m.weight.normal_()
        m.bias.normal_()
    return m


# name -> (make module, input shape (without batch), expected tunable parameter names)
KINDS = {
    "conv": (lambda: nn.Conv2d(3, 4, 3, padding=1), (3, 8, 8), {"weight", "bias"}),
    "conv_transpose": (lambda: nn.ConvTranspose2d(3, 4, 2, stride=2), (3, 5, 5), {"weight", "bias"}),
    "depthwise_conv": (lambda: nn.Conv2d(4, 4, 3, padding=1, groups=4), (4, 7, 7), {"weight", "bias"}),
    "linear": (lambda: nn.Linear(5, 3), (6, 5), {"weight", "bias"}),
    "layernorm": (_lnorm, (6, 5), {"weight", "bias"}),
    "instancenorm": (_inorm, (4, 6, 6), {"weight", "bias"}),
    "parameter": (Scale, (4, 5, 5), {"gamma"}),
    "multihead_attention": (Attention, (6, 8), {"attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias"}),
}


def _perturb(model, scale=0.3):
    with torch.no_grad():
        for _, slot in model.tunable_layers():
            for s in slot.sets.values():
                s.add_(scale * torch.randn_like(s))


@pytest.fixture(params=list(KINDS))
def kind(request):
    return request.param


@pytest.mark.parametrize("domain,expansion", [("simplex", 1), ("simplex", 2), ("cube", 1)])
def test_conversion_preserves_output_for_every_p(kind, domain, expansion):
    torch.manual_seed(0)
    make, shape, names = KINDS[kind]
    net = make().eval()
    x = torch.randn((3,) + shape)
    ref = net(x)
    model = make_tunable(net, 2, domain=domain, expansion=expansion).eval()
    assert {e.name for e in model.conversion_report().tunable} == names
    for p in ([0.0, 0.0], [1.0, 0.0], [0.3, 0.7], [1.0, 1.0], torch.rand(2)):
        torch.testing.assert_close(model(x, p), ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model(x, torch.rand(3, 2)), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("per_sample", ["vmap", "loop"])
def test_output_depends_on_p_and_per_sample_equals_loop(kind, per_sample):
    torch.manual_seed(1)
    make, shape, _ = KINDS[kind]
    model = make_tunable(make(), 2, per_sample=per_sample).eval()
    _perturb(model)
    x = torch.randn((4,) + shape)
    with torch.no_grad():
        a, b = model(x, [1.0, 0.0]), model(x, [0.0, 1.0])
        assert (a - b).abs().max() > 1e-3
        p = torch.rand(4, 2)
        out = model(x, p)
        loop = torch.cat([model(x[i : i + 1], p[i]) for i in range(4)])
    torch.testing.assert_close(out, loop, atol=1e-5, rtol=1e-5)


# small inputs: gradcheck runs the model twice per input element
GRAD_SHAPES = {"conv": (3, 4, 4), "conv_transpose": (3, 3, 3), "depthwise_conv": (4, 3, 3), "linear": (3, 5),
               "layernorm": (3, 5), "instancenorm": (4, 3, 3), "parameter": (4, 3, 3), "multihead_attention": (3, 8)}


def test_gradcheck_through_x_and_p(kind):
    torch.manual_seed(2)
    make, _, _ = KINDS[kind]
    shape = GRAD_SHAPES[kind]
    # train mode: in eval mode nn.MultiheadAttention takes its fused fast path under vmap
    # (vmap hides requires_grad from its check), which has no derivative
    model = make_tunable(make(), 2).double().train()
    _perturb(model)
    x = torch.randn((2,) + shape, dtype=torch.float64, requires_grad=True)
    for p in (torch.tensor([0.3, 0.6], dtype=torch.float64), torch.rand(2, 2, dtype=torch.float64)):
        p = p.requires_grad_(True)
        assert torch.autograd.gradcheck(lambda x_, p_: model(x_, p_), (x, p), eps=1e-6, atol=1e-5)


def test_parameter_gradients_reach_every_weight_set():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.ReLU(), Scale(4))
    model = make_tunable(net, 2, expansion=2)
    model(torch.randn(2, 3, 6, 6), torch.rand(2, 2)).square().mean().backward()
    for name, prm in model.named_parameters():
        assert prm.grad is not None and prm.grad.abs().sum() > 0, name


# -- the report, selection, buffers --------------------------------------------------------
class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.scale = Scale(4)
        self.tail = nn.Conv2d(4, 3, 3, padding=1)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.index = nn.Parameter(torch.arange(4), requires_grad=False)  # an integer parameter

    def forward(self, x):
        return self.tail(self.scale(self.bn(self.head(x))))


def test_report_lists_what_stays_fixed_and_why():
    model = make_tunable(Mixed(), 2, exclude=["tail", "*.bias"])
    report = {e.name: e for e in model.conversion_report()}
    assert report["head.weight"].tunable and report["scale.gamma"].tunable and report["bn.weight"].tunable
    assert not report["head.bias"].tunable and report["head.bias"].reason == "excluded"
    assert not report["tail.weight"].tunable and report["tail.weight"].reason == "excluded"
    assert report["index"].reason.startswith("not floating point")
    assert "bn.running_mean" not in report  # buffers are not parameters: they stay shared
    text = str(model.conversion_report())
    assert "fixed: excluded" in text and "of 8 parameters tunable" in text
    include = make_tunable(Mixed(), 2, include=[nn.Conv2d]).conversion_report()
    assert {e.name for e in include.tunable} == {"head.weight", "head.bias", "tail.weight", "tail.bias"}
    assert {e.reason for e in include.fixed} == {"not selected by include", "not floating point (torch.int64)"}
    with pytest.raises(ValueError, match="no parameter"):
        make_tunable(nn.Sequential(nn.ReLU()), 2)


def test_buffers_stay_shared_and_state_dict_roundtrip():
    model = make_tunable(Mixed(), 2)
    model.train()
    model(torch.randn(4, 3, 6, 6), [0.5, 0.5])
    assert model.module.bn.num_batches_tracked.item() == 1  # running statistics updated in place
    _perturb(model)
    other = make_tunable(Mixed(), 2)
    other.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(other.eval()(x, [0.2, 0.8]), model.eval()(x, [0.2, 0.8]))


def test_shared_and_tied_parameters_share_weight_sets():
    lin = nn.Linear(4, 4)
    net = nn.Sequential(lin, nn.ReLU(), lin)
    tied = nn.Linear(4, 4)
    net2 = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), tied)
    net2[0].weight = tied.weight  # the same Parameter in two layers
    for n in (net, net2):
        model = make_tunable(n, 2)
        _perturb(model)
        x = torch.randn(3, 4)
        frozen = model.freeze([0.4, 0.6])
        torch.testing.assert_close(frozen(x), model(x, [0.4, 0.6]))
    report = make_tunable(net2, 2).conversion_report()
    assert any(e.reason == "" and e.name == "2.weight" for e in report)  # tied: shares the sets of 0.weight


def test_freeze_gives_plain_module_with_same_output():
    model = make_tunable(Mixed(), 2).eval()
    _perturb(model)
    x = torch.randn(2, 3, 6, 6)
    frozen = model.freeze([0.25, 0.75])
    assert all(isinstance(q, nn.Parameter) for q in [frozen.head.weight, frozen.scale.gamma])
    torch.testing.assert_close(frozen(x), model(x, [0.25, 0.75]))


def test_model_call_validates_p():
    model = make_tunable(nn.Conv2d(3, 3, 3, padding=1), 2)
    x = torch.randn(2, 3, 8, 8)
    for p, msg in [([0.5], "expected 2"), ([0.5, float("nan")], "NaN"), (torch.rand(3, 2), "rows"),
                   ([0.5, 1.5], r"\[0, 1\]"), (torch.rand(2, 4, 4), "knob map is 4x4"),
                   (torch.rand(3, 2, 8, 8), "rows"), (torch.rand(1, 1, 2, 8, 8), "shape")]:
        with pytest.raises(InvalidParamsError, match=msg):
            model(x, p)


# -- cube domain ----------------------------------------------------------------------------
def test_cube_corners_distinct_after_training_two_independent_objectives():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
    model = make_tunable(net, 2, domain="cube")
    x = torch.rand(8, 3, 12, 12)
    probe = torch.rand(2, 3, 12, 12)
    corners = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]]
    with torch.no_grad():
        start = [model(probe, c) for c in corners]
    assert all(torch.equal(start[0], s) for s in start)  # no p-dependence at conversion
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):  # knob 0 brightens, knob 1 inverts: independent objectives
        p = torch.rand(8, 2)
        target = (x + 0.5 * p[:, :1, None, None]) * (1 - p[:, 1:, None, None]) + (1 - x) * p[:, 1:, None, None]
        loss = (model(x, p) - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        outs = [model(probe, c) for c in corners]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert (outs[i] - outs[j]).abs().mean() > 0.02, (corners[i], corners[j])


# -- window attention: per-sample p through a batch reshape -----------------------------------
def WindowBlock():
    return WindowAttentionBlock(channels=8, heads=2, window=4)


def test_window_attention_per_sample_equals_loop_and_trains():
    torch.manual_seed(0)
    model = make_tunable(WindowBlock(), 2)
    names = {e.name for e in model.conversion_report().tunable}
    assert {"qkv.weight", "proj.weight", "rel_bias", "norm1.weight", "mlp.0.weight"} <= names
    _perturb(model, 0.1)
    x = torch.randn(3, 8, 8, 8)
    p = torch.rand(3, 2)
    out = model(x, p)
    loop = torch.cat([model(x[i : i + 1], p[i]) for i in range(3)])
    torch.testing.assert_close(out, loop, atol=1e-5, rtol=1e-5)
    out.square().mean().backward()
    assert model.tunable["/"].sets["rel_bias"].grad.abs().sum() > 0  # "/": parameters of the root module


class SequenceFirst(nn.Module):
    """Moves the batch to dim 1 inside (nn.MultiheadAttention's default layout)."""

    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(8, 2)

    def forward(self, x):  # (B, L, E)
        t = x.transpose(0, 1)
        return self.attn(t, t, t, need_weights=False)[0].transpose(0, 1)


def test_sequence_first_attention_per_sample():
    torch.manual_seed(0)
    model = make_tunable(SequenceFirst(), 2).eval()
    _perturb(model, 0.2)
    x = torch.randn(3, 5, 8)
    p = torch.rand(3, 2)
    with torch.no_grad():
        out = model(x, p)
        loop = torch.cat([model(x[i : i + 1], p[i]) for i in range(3)])
    torch.testing.assert_close(out, loop, atol=1e-5, rtol=1e-5)


# -- knob maps ------------------------------------------------------------------------------
def _cnn(norm=True):
    """Full and half resolution; GroupNorm (global statistics) only when ``norm``."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1),
                         nn.GroupNorm(2, 8) if norm else nn.Identity(), nn.ReLU(),
                         nn.ConvTranspose2d(8, 8, 2, stride=2), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))


def test_constant_map_equals_shared_p_and_halves_match_away_from_seam():
    torch.manual_seed(0)
    model = make_tunable(_cnn(), 2, expansion=2).eval()
    _perturb(model, 0.2)
    x = torch.randn(2, 3, 32, 32)
    pa, pb = torch.tensor([0.9, 0.1]), torch.tensor([0.2, 0.7])
    with torch.no_grad():
        const = pa[:, None, None].expand(2, 32, 32)
        torch.testing.assert_close(model(x, const), model(x, pa), atol=1e-5, rtol=1e-5)
        single = make_tunable(nn.Conv2d(3, 4, 3, padding=1), 2)  # the root module itself tunable
        _perturb(single)
        torch.testing.assert_close(single(x, const), single(x, pa), atol=1e-5, rtol=1e-5)
    model = make_tunable(_cnn(norm=False), 2, expansion=2).eval()  # finite receptive field
    _perturb(model, 0.2)
    with torch.no_grad():
        half = torch.cat([pa[:, None, None].expand(2, 32, 16), pb[:, None, None].expand(2, 32, 16)], dim=2)
        y, ya, yb = model(x, half), model(x, pa), model(x, pb)
    # receptive field of the stack ~ 10 pixels; the map is resampled at half resolution too
    torch.testing.assert_close(y[..., :4], ya[..., :4], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[..., -4:], yb[..., -4:], atol=1e-5, rtol=1e-5)
    assert (y[..., 14:18] - ya[..., 14:18]).abs().max() > 1e-4  # the seam is a blend


def test_map_per_sample_and_gradients():
    model = make_tunable(_cnn(), 2)
    _perturb(model, 0.2)
    x = torch.randn(2, 3, 16, 16)
    pmap = torch.rand(2, 2, 16, 16)
    y = model(x, pmap)
    y.square().mean().backward()
    with torch.no_grad():
        torch.testing.assert_close(y[1:], model(x[1:], pmap[1:]), atol=1e-5, rtol=1e-5)
    assert all(q.grad is not None for q in model.parameters())


def test_map_refused_where_undefined():
    model = make_tunable(WindowBlock(), 2)
    with pytest.raises(InvalidParamsError, match="leaf"):
        model(torch.randn(1, 8, 8, 8), torch.rand(2, 8, 8))
    attn = make_tunable(nn.Sequential(nn.Linear(8, 8), Attention()), 2, include=["1"])
    with pytest.raises(InvalidParamsError, match="leaf"):
        attn(torch.randn(1, 5, 8), torch.rand(2, 5, 8))
    lin = make_tunable(nn.Linear(8, 8), 2)
    with pytest.raises(InvalidParamsError, match=r"\(B, C, H, W\)"):
        lin(torch.randn(2, 5, 8), torch.rand(2, 2, 5, 8))


# -- sweep with a declared trunk ---------------------------------------------------------------
class TrunkNet(nn.Module):
    trunk_modules = ("stem",)

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))

    def trunk(self, x):
        return self.stem(x), x

    def rest(self, state):
        h, x = state
        return x + self.body(h)

    def forward(self, x):
        return self.rest(self.trunk(x))


@pytest.mark.parametrize("chunk", [1, 4, 27])
def test_sweep_equals_separate_calls(chunk):
    torch.manual_seed(0)
    model = make_tunable(TrunkNet(), 3).eval()
    assert model.has_trunk
    report = {e.name: e for e in model.conversion_report()}
    assert report["stem.0.weight"].reason == "in the declared p-independent trunk"
    _perturb(model)
    x = torch.randn(2, 3, 10, 10)
    grid = torch.tensor([[a, b, c] for a in (0, 0.5, 1) for b in (0, 0.5, 1) for c in (0, 0.5, 1)])
    with torch.no_grad():
        out = model.sweep(x, grid, chunk=chunk)
        ref = torch.stack([model(x, g) for g in grid])
    assert out.shape == (27, 2, 3, 10, 10)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    plain = make_tunable(_cnn(), 3).eval()  # no trunk: N batched passes
    with torch.no_grad():
        torch.testing.assert_close(plain.sweep(x[:1], grid[:5], chunk=chunk),
                                   torch.stack([plain(x[:1], g) for g in grid[:5]]), atol=1e-5, rtol=1e-5)
    with pytest.raises(InvalidParamsError, match=r"\(N, P\)"):
        model.sweep(x, torch.rand(3))


# -- compile, checkpoint, threads, export ------------------------------------------------------
def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    model = make_tunable(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1)), 2).eval()
    _perturb(model)
    x = torch.randn(2, 3, 12, 12)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        for p in (torch.tensor([0.3, 0.7]), torch.rand(2, 2)):
            torch.testing.assert_close(compiled(x, p), model(x, p), atol=1e-5, rtol=1e-5)


class Checkpointed(nn.Module):
    def __init__(self, use_checkpoint):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.LayerNorm([8, 8, 8]), nn.Conv2d(8, 3, 3, padding=1))

    def forward(self, x):
        h = self.head(x)
        return checkpoint(self.block, h, use_reentrant=False) if self.use_checkpoint else self.block(h)


@pytest.mark.parametrize("per_sample_p", [False, True])
def test_activation_checkpointing_gives_the_same_gradients(per_sample_p):
    torch.manual_seed(0)
    ref = make_tunable(Checkpointed(False), 2, per_sample="loop")
    _perturb(ref)
    ck = make_tunable(Checkpointed(True), 2, per_sample="loop")
    ck.load_state_dict(ref.state_dict())
    x = torch.rand(4, 3, 8, 8)
    p = torch.rand(4, 2) if per_sample_p else torch.tensor([0.3, 0.7])
    grads = []
    for m in (ref, ck):
        m.zero_grad()
        (m(x, p) - x).abs().mean().backward()
        grads.append({n: q.grad.clone() for n, q in m.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6, rtol=1e-5)


def test_two_threads_different_p_do_not_mix():
    torch.manual_seed(0)
    model = make_tunable(WindowBlock(), 2)
    _perturb(model, 0.2)
    x = torch.randn(1, 8, 8, 8)
    settings = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
    with torch.no_grad():
        expected = [model(x, p) for p in settings]
    assert not torch.allclose(expected[0], expected[1])
    errors, barrier = [], threading.Barrier(2)

    def worker(i):
        try:
            barrier.wait()
            for _ in range(30):
                with torch.no_grad():
                    y = model(x, settings[i])
                if not torch.allclose(y, expected[i], atol=1e-6):
                    errors.append(f"thread {i} got mixed parameters")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_batch_coupled_layers_with_per_sample_p_say_what_to_do():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    model = make_tunable(net, 2).train()
    x, p = torch.rand(4, 3, 8, 8), torch.rand(4, 2)
    with pytest.raises(RuntimeError, match="per_sample='loop'"):
        model(x, p)
    looped = make_tunable(net, 2, per_sample="loop").train()
    assert looped(x, p).shape == (4, 4, 6, 6)  # one shared-p call per setting: BatchNorm per sub-batch
