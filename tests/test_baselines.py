"""The rival controllable networks in tunableconv.models.baselines: endpoints, per-sample p,
training stages (freezing), model files."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tunableconv.models
from tunableconv.errors import InvalidParamsError
from tunableconv.models import ResNet, ResNetConfig, load_model, save_model
from tunableconv.models.baselines import BASELINES, Stage, count_parameters
from tunableconv.models.baselines._backbone import run_resnet
from tunableconv.models.baselines.adafm import AdaFMLayer

SMALL = dict(channels=8, num_blocks=2)
NAMES = list(BASELINES)
SEARCHED = ["tsnet", "ta-tsnet"]  # search, then fine-tune (tests/test_tsnet.py)
TWO_STAGE = [n for n in NAMES if n != "cresmd" and n not in SEARCHED]
# which submodules each stage trains
STAGE_MODULES = {
    "dni": (["net_a"], ["net_b"]),
    "adafm": (["main"], ["adafm"]),
    "cfsnet": (["main"], ["tuning", "control"]),
    "dynamicnet": (["main"], ["tuning"]),
    "ftn": (["main"], ["ftn"]),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def build(name: str, **kw):
    cls, cfg = BASELINES[name]
    return cls(cfg(**{**SMALL, **kw})).eval()


def perturb(module: torch.nn.Module, scale: float = 0.05) -> None:
    """Move every parameter away from its (often identity/zero) initialisation."""
    with torch.no_grad():
        for q in module.parameters():
            q.add_(scale * torch.randn_like(q))


def plain_from(model: torch.nn.Module, prefix: str) -> ResNet:
    """A fresh plain ResNet holding the tensors of ``model`` under ``prefix``."""
    net = ResNet(ResNetConfig(**SMALL, num_params=0))
    state = {k[len(prefix):]: v for k, v in model.state_dict().items() if k.startswith(prefix)}
    net.load_state_dict(state)  # strict: prefix holds exactly a plain ResNet
    return net.eval()


def x_batch(b: int = 3) -> torch.Tensor:
    return torch.rand(b, 3, 12, 12)


def at(alpha: float) -> torch.Tensor:
    return torch.tensor([1.0 - alpha, alpha])


# ------------------------------------------------------------------ common contract
@pytest.mark.parametrize("name", NAMES)
def test_contract_shapes_and_validation(name):
    m = build(name)
    x = x_batch()
    assert m.architecture == name and m.num_params == 2
    assert m(x, at(0.3)).shape == x.shape
    assert m(x, [0.5, 0.5]).shape == x.shape
    assert m(x, torch.tensor([[1.0, 0.0], [0.2, 0.8], [0.0, 1.0]])).shape == x.shape
    for bad in (None, [0.5], [[0.5, 0.5]] * 2, [1.5, -0.5], [float("nan"), 1.0]):
        with pytest.raises(InvalidParamsError):
            m(x, bad)
    assert m.arguments()["channels"] == 8 and count_parameters(m) == sum(q.numel() for q in m.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_per_sample_p_equals_loop_of_shared_calls(name):
    m = build(name)
    perturb(m)
    x = x_batch(4)
    p = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.0, 1.0], [0.3, 0.7]])
    with torch.no_grad():
        batched = m(x, p)
        looped = torch.cat([m(x[i:i + 1], p[i]) for i in range(4)])
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(batched[0], m(x[:1], at(1.0))[0])  # alpha really matters


@pytest.mark.parametrize("name", NAMES)
def test_gradients_flow_through_per_sample_path(name):
    m = build(name)
    perturb(m)
    m(x_batch(2), torch.tensor([[0.6, 0.4], [0.1, 0.9]])).square().mean().backward()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in m.parameters())


def test_backbone_topology_matches_resnet():
    net = ResNet(ResNetConfig(**SMALL, num_params=0)).eval()
    x = x_batch()
    assert torch.equal(run_resnet(net, x, net.body), net(x))


# ------------------------------------------------------------------ defining identities
@torch.no_grad()
def test_dni_endpoints_are_networks_a_and_b():
    m = build("dni")
    perturb(m.net_b, 0.2)  # B != A
    x = x_batch()
    net_a, net_b = plain_from(m, "net_a."), plain_from(m, "net_b.")
    assert torch.equal(m(x, at(0.0)), net_a(x))
    assert torch.equal(m(x, at(1.0)), net_b(x))
    assert not torch.allclose(net_a(x), net_b(x))
    mid = ResNet(ResNetConfig(**SMALL, num_params=0)).eval()
    mid.load_state_dict({k: 0.75 * v + 0.25 * net_b.state_dict()[k] for k, v in net_a.state_dict().items()})
    torch.testing.assert_close(m(x, at(0.25)), mid(x))


@torch.no_grad()
def test_adafm_at_zero_is_basic_network_and_identity_layers_change_nothing():
    m = build("adafm", adafm_kernel_size=5)
    perturb(m.main)
    x = x_batch()
    basic = plain_from(m, "main.")
    for a in (0.0, 0.4, 1.0):  # identity-initialised AdaFM layers: the basic network at every alpha
        assert torch.equal(m(x, at(a)), basic(x))
    perturb(m.adafm, 0.2)
    assert torch.equal(m(x, at(0.0)), basic(x))
    assert not torch.allclose(m(x, at(1.0)), basic(x))


@torch.no_grad()
def test_adafm_layer_is_the_interpolated_filter():
    layer = AdaFMLayer(4, 3)
    perturb(layer, 0.3)
    x = torch.rand(2, 4, 9, 9)
    eye = torch.zeros_like(layer.weight)
    eye[:, 0, 1, 1] = 1.0
    for a in (0.0, 0.35, 1.0):
        ref = F.conv2d(x, eye + a * (layer.weight - eye), a * layer.bias, padding=1, groups=4)
        torch.testing.assert_close(layer(x, torch.tensor(a)), ref)


@torch.no_grad()
def test_cfsnet_at_zero_is_main_branch():
    m = build("cfsnet")
    perturb(m)
    x = x_batch(3)
    main = plain_from(m, "main.")
    assert torch.equal(m(x, at(0.0)), main(x))  # shortcut path
    assert torch.equal(m.coefficients(torch.zeros(5)), torch.zeros(5, 2, 8))
    # the coupling path with a = 0 for one sample (the other samples force the full computation)
    out = m(x, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    assert torch.equal(out[0], main(x)[0])
    assert not torch.allclose(out[2], main(x)[2])


@torch.no_grad()
def test_cfsnet_fresh_control_is_linear_and_one_is_the_tuning_branch():
    m = build("cfsnet")
    assert torch.allclose(m.coefficients(torch.tensor(0.3)), torch.full((2, 8), 0.3))
    x = x_batch()
    tuned = ResNet(ResNetConfig(**SMALL, num_params=0)).eval()  # main with its blocks swapped for tuning blocks
    state = {k[5:]: v for k, v in m.state_dict().items() if k.startswith("main.")}
    state.update({f"body.{k[7:]}": v for k, v in m.state_dict().items() if k.startswith("tuning.")})
    tuned.load_state_dict(state)
    torch.testing.assert_close(m(x, at(1.0)), tuned(x))


@torch.no_grad()
def test_dynamicnet_at_zero_is_main_network():
    m = build("dynamicnet", tuning_every=1)
    assert sorted(m.tuning) == ["0", "1"] and list(build("dynamicnet").tuning) == ["1"]
    perturb(m.main)
    x = x_batch()
    main = plain_from(m, "main.")
    for a in (0.0, 0.5, 1.0):  # zero-initialised tuning blocks: the main network at every alpha
        assert torch.equal(m(x, at(a)), main(x))
    perturb(m.tuning, 0.2)
    assert torch.equal(m(x, at(0.0)), main(x))
    out = m(x, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))  # non-shortcut path
    assert torch.equal(out[0], main(x)[0])
    assert not torch.allclose(out[2], main(x)[2])


@torch.no_grad()
def test_cresmd_scales_per_sample_and_fresh_model_is_plain_resnet():
    m = build("cresmd")
    x = x_batch(2)
    main = plain_from(m, "main.")
    for p in ([1.0, 0.0], [0.25, 0.75]):  # s(p) = p0 + p1 = 1 at init
        torch.testing.assert_close(m(x, torch.tensor(p)), main(x))
    perturb(m.scales, 0.5)
    perturb(m.global_scale, 0.5)
    s = m.scales[0](torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert s.shape == (2, 8) and not torch.allclose(s[0], s[1])
    y = m(x[:1].expand(2, -1, -1, -1), torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert not torch.allclose(y[0], y[1])  # same image, different p -> different output


@torch.no_grad()
def test_ftn_at_zero_is_main_network_and_identity_ftn_changes_nothing():
    m = build("ftn", ftn_groups=4)
    perturb(m.main)
    x = x_batch()
    main = plain_from(m, "main.")
    for a in (0.0, 0.6, 1.0):  # zero-initialised last 1x1 conv: FTN(W) = W, the main network at every alpha
        assert torch.equal(m(x, at(a)), main(x))
    perturb(m.ftn, 0.2)
    assert torch.equal(m(x, at(0.0)), main(x))
    assert not torch.allclose(m(x, at(1.0)), main(x))
    w = m.main.head.weight
    torch.testing.assert_close(m.kernels(torch.tensor(1.0))["head.weight"], m.ftn["head"](w))
    torch.testing.assert_close(m.kernels(torch.tensor(0.3))["head.weight"], 0.7 * w + 0.3 * m.ftn["head"](w))
    assert m.ftn["body_0_conv1"].conv1.groups == 4 and m.ftn["head"].conv1.groups == 1


# ------------------------------------------------------------------ training stages
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("total", [2, 7, 1000])
def test_training_stage_steps_sum_to_total(name, total):
    stages = build(name).training_stages(total)
    assert all(isinstance(s, Stage) for s in stages)
    assert sum(s.steps for s in stages) == total
    if name in TWO_STAGE:
        assert [s.p for s in stages] == [(1.0, 0.0), (0.0, 1.0)]
        assert abs(stages[0].steps - stages[1].steps) <= 1
    elif name in SEARCHED:
        assert [s.name for s in stages] == ["search", "fine-tune"] and [s.p for s in stages] == [None, None]
    else:
        assert len(stages) == 1 and stages[0].p is None
    with pytest.raises(ValueError):
        build(name).training_stages(0)


def _param_ids(model, names):
    return {id(q) for n in names for q in getattr(model, n).parameters()}


@pytest.mark.parametrize("name", TWO_STAGE)
def test_second_stage_trains_only_its_parameters(name):
    m = build(name).train()
    perturb(m, 0.1)  # so zero-initialised layers pass gradients everywhere
    first, second = m.training_stages(10)
    ids1, ids2 = _param_ids(m, STAGE_MODULES[name][0]), _param_ids(m, STAGE_MODULES[name][1])
    assert {id(q) for q in first.begin(m)} == ids1
    assert all(q.requires_grad == (id(q) in ids1) for q in m.parameters())

    params = second.begin(m)
    assert {id(q) for q in params} == ids2 and ids1.isdisjoint(ids2)
    assert all(q.requires_grad == (id(q) in ids2) for q in m.parameters())
    if name == "dni":  # on_start copied A into B
        assert all(torch.equal(a, b) for a, b in zip(m.net_a.parameters(), m.net_b.parameters()))
    before = {id(q): q.detach().clone() for q in m.parameters()}
    opt = torch.optim.SGD(params, lr=0.1)
    x = x_batch(2)
    p = torch.tensor(second.p).expand(2, 2)
    F.mse_loss(m(x, p), torch.rand_like(x)).backward()
    opt.step()
    for q in m.parameters():
        changed = not torch.equal(q, before[id(q)])
        assert changed == (id(q) in ids2), (name, q.shape)


def test_cresmd_single_stage_trains_everything():
    m = build("cresmd")
    (stage,) = m.training_stages(5)
    assert len(stage.begin(m)) == len(list(m.parameters()))
    assert all(q.requires_grad for q in m.parameters())


# ------------------------------------------------------------------ files and costs
@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path, monkeypatch):
    for n, entry in BASELINES.items():
        monkeypatch.setitem(tunableconv.models.ARCHITECTURES, n, entry)
    extra = {"adafm": dict(adafm_kernel_size=5), "dynamicnet": dict(tuning_every=1), "ftn": dict(ftn_groups=2)}
    m = build(name, **extra.get(name, {}))
    perturb(m)
    path = save_model(m, tmp_path / f"{name}.safetensors", info={"task": "test"})
    loaded, info = load_model(path)
    assert type(loaded) is type(m) and info.architecture == name and info.num_params == 2
    assert loaded.arguments() == m.arguments()
    x, p = x_batch(2), torch.tensor([[0.7, 0.3], [0.2, 0.8]])
    with torch.no_grad():
        assert torch.equal(loaded(x, p), m(x, p))


def test_count_parameters():
    plain = count_parameters(ResNet(ResNetConfig(**SMALL, num_params=0)))
    m = build("dni")
    assert count_parameters(m) == 2 * plain
    m.training_stages(4)[1].begin(m)
    assert count_parameters(m, trainable_only=True) == plain
    assert all(count_parameters(build(n)) > plain for n in NAMES)


# ------------------------------------------------------------------ the task's knob space, SR backbones
@pytest.mark.parametrize("name", ["dni", "adafm", "cfsnet", "dynamicnet", "ftn"])
def test_one_control_value_methods_on_a_one_knob_cube(name):
    cls, cfg = BASELINES[name]
    m = cls(cfg(channels=8, num_blocks=2, num_params=1, domain="cube")).eval()
    assert [s.p for s in m.training_stages(4)] == [(0.0,), (1.0,)]
    with torch.no_grad():
        for q in m.parameters():
            q.add_(0.05 * torch.randn_like(q))
    x = torch.rand(2, 3, 12, 12)
    p = torch.tensor([[0.0], [1.0]])
    two = cls(cfg(channels=8, num_blocks=2))  # the same weights on the 2-simplex: alpha = p[..., 1]
    two.load_state_dict(m.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(m(x, p), two.eval()(x, torch.tensor([[1.0, 0.0], [0.0, 1.0]])))
    with pytest.raises(ValueError, match="one control value"):
        cls(cfg(channels=8, num_blocks=2, num_params=3))


@pytest.mark.parametrize("name", ["dni", "adafm", "cfsnet", "dynamicnet", "cresmd", "ftn"])
def test_baselines_keep_the_upsampler_of_a_x2_backbone(name):
    plain = ResNet(ResNetConfig(channels=8, num_blocks=2, num_params=0, upscale=2)).eval()
    x = torch.rand(2, 3, 10, 12)
    assert torch.equal(run_resnet(plain, x, plain.body), plain(x))
    cls, cfg = BASELINES[name]
    m = cls(cfg(channels=8, num_blocks=2, upscale=2)).eval()
    with torch.no_grad():
        y = m(x, torch.tensor([0.5, 0.5]))
        assert y.shape == (2, 3, 20, 24)
        main = m.net_a if name == "dni" else m.main
        torch.testing.assert_close(m(x, torch.tensor([1.0, 0.0])), main(x))  # the objective-1 end is the main network


@torch.no_grad()
def test_cresmd_on_the_cube_and_conditioned_on_the_degradation():
    x = x_batch(2)
    cube = build("cresmd", num_params=2, domain="cube")  # s = W p + b starts at W = 0, b = 1: s = 1 for every p
    main = plain_from(cube, "main.")
    torch.testing.assert_close(cube(x, torch.tensor([0.3, 0.9])), main(x))
    assert cube.conditioned_on == "p" and cube.training_stages(3)[0].p is None
    deg = build("cresmd", condition="degradation", num_params=1, domain="cube", reference_p=[1.0, 0.0])
    assert deg.conditioned_on == "condition" and deg.num_params == 1 and deg.domain == "cube"
    assert deg.scales[0].in_features == 1 and deg.training_stages(3)[0].p == (1.0, 0.0)  # the loss's fixed p
    torch.testing.assert_close(deg(x, torch.tensor([[0.1], [0.2]])), plain_from(deg, "main.")(x))
    perturb(deg, 0.3)
    assert not torch.allclose(deg(x[:1], torch.tensor([0.05])), deg(x[:1], torch.tensor([0.2])))  # the level matters
    with pytest.raises(ValueError, match="reference_p"):
        build("cresmd", condition="degradation", num_params=1, domain="cube")
    with pytest.raises(ValueError, match="cube"):
        build("cresmd", condition="degradation", num_params=1, reference_p=[1.0, 0.0])
    with pytest.raises(ValueError, match="condition must be"):
        build("cresmd", condition="sigma")
