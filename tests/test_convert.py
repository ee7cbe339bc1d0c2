"""make_tunable / TunableModel: conversion, fine-tuning, threads."""

import threading

import pytest
import torch
from torch import nn

from tunableconv import InvalidParamsError, TunableConv2d, TunableLinear, make_tunable
from tunableconv.nn import TunableConvTranspose2d


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x):
        return x + self.body(x)


class Net(nn.Module):
    """Nested containers, a shared submodule, a transposed conv, a linear head, attention."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        shared = Block(8)
        self.blocks = nn.ModuleList([shared, Block(8), shared])
        self.stages = nn.ModuleDict({"down": nn.Conv2d(8, 8, 3, stride=2, padding=1), "up": nn.ConvTranspose2d(8, 8, 2, stride=2)})
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.tail = nn.Conv2d(8, 3, 3, padding=1, padding_mode="reflect")
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        h = self.head(x)
        for b in self.blocks:
            h = b(h)
        h = self.stages["up"](self.stages["down"](h))
        t = h.flatten(2).transpose(1, 2)
        t, _ = self.attn(t, t, t)
        return self.tail(h), self.fc(t.mean(1))


def _outputs_equal(a, b, atol=1e-5):
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, atol=atol, rtol=1e-5)


def test_conversion_preserves_outputs_for_every_p():
    net = Net().eval()
    x = torch.randn(3, 3, 16, 16)
    ref = net(x)
    model = make_tunable(net, num_params=3, expansion=2).eval()
    for p in ([0, 0, 0], [1, 0, 0], [0.2, 0.9, 0.4], [1, 1, 1]):
        _outputs_equal(model(x, p), ref)
    _outputs_equal(model(x, torch.rand(3, 3)), ref)
    # the original was deep-copied, not touched
    assert type(net.head) is nn.Conv2d


def test_conversion_structure_shared_and_attention():
    model = make_tunable(Net(), num_params=2)
    inner = model.module
    assert isinstance(inner.head, TunableConv2d)
    assert isinstance(inner.stages["up"], TunableConvTranspose2d)
    assert isinstance(inner.fc, TunableLinear)
    assert inner.blocks[0] is inner.blocks[2]  # shared module stays shared
    assert inner.blocks[0].body[0] is inner.blocks[2].body[0]
    assert type(inner.attn.out_proj) is not TunableLinear  # read directly by MHA: left alone
    names = [n for n, _ in model.tunable_layers()]
    assert "head" in names and "fc" in names


def test_include_exclude():
    model = make_tunable(Net(), 2, include=["blocks"], exclude=["blocks.1.body.2"])
    inner = model.module
    assert isinstance(inner.blocks[1].body[0], TunableConv2d)
    assert type(inner.blocks[1].body[2]) is nn.Conv2d
    assert type(inner.head) is nn.Conv2d
    model = make_tunable(Net(), 2, include=[nn.Linear])
    assert isinstance(model.module.fc, TunableLinear) and type(model.module.head) is nn.Conv2d
    model = make_tunable(Net(), 2, exclude=lambda name, m: name.startswith("stages"))
    assert type(model.module.stages["down"]) is nn.Conv2d
    with pytest.raises(ValueError, match="no Conv2d"):
        make_tunable(nn.Sequential(nn.ReLU()), 2)


def test_identity_mapping_preserves_on_simplex_only():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1))
    x = torch.randn(2, 3, 8, 8)
    model = make_tunable(net, 2, mapping="identity")
    torch.testing.assert_close(model(x, [0.3, 0.7]), net(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model(x, [1.0, 1.0]), net(x), atol=1e-3)


def test_finetuning_two_objectives_makes_knobs_differ():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 3, 3, padding=1))
    model = make_tunable(net, num_params=2)
    x = torch.rand(8, 3, 16, 16)
    targets = (x, 1.0 - x)  # two conflicting objectives
    x_probe = torch.rand(2, 3, 16, 16)
    gap0 = (model(x_probe, [1, 0]) - model(x_probe, [0, 1])).abs().max().item()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(60):
        p = torch.distributions.Dirichlet(torch.ones(2)).sample((8,))
        out = model(x, p)
        loss = sum((p[:, i] * (out - t).abs().mean((1, 2, 3))).mean() for i, t in enumerate(targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        a, b = model(x_probe, [1, 0]), model(x_probe, [0, 1])
    assert gap0 == 0.0
    assert (a - b).abs().mean() > 0.1
    # and each end moved toward its own objective
    assert (a - x_probe).abs().mean() < (b - x_probe).abs().mean()
    assert (b - (1 - x_probe)).abs().mean() < (a - (1 - x_probe)).abs().mean()


def test_two_threads_different_p_do_not_mix():
    torch.manual_seed(0)
    model = make_tunable(Net(), 2)
    with torch.no_grad():  # make the knobs matter
        for _, layer in model.tunable_layers():
            layer.weight.add_(0.05 * torch.randn_like(layer.weight))
    x = torch.randn(1, 3, 16, 16)
    settings = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
    with torch.no_grad():
        expected = [model(x, p)[0] for p in settings]
    assert not torch.allclose(expected[0], expected[1])
    errors, barrier = [], threading.Barrier(2)

    def worker(i):
        try:
            barrier.wait()
            for _ in range(20):
                with torch.no_grad():
                    y = model(x, settings[i])[0]
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


def test_model_call_validates_p():
    model = make_tunable(nn.Conv2d(3, 3, 3), 2)
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(InvalidParamsError, match="expected 2"):
        model(x, [0.5])
    with pytest.raises(InvalidParamsError, match="NaN"):
        model(x, [0.5, float("nan")])
    with pytest.raises(InvalidParamsError, match="rows"):
        model(x, torch.rand(3, 2))


def test_freeze_gives_plain_model_with_same_output():
    model = make_tunable(Net(), 2)
    with torch.no_grad():
        for _, layer in model.tunable_layers():
            layer.weight.add_(0.05 * torch.randn_like(layer.weight))
    x = torch.randn(2, 3, 16, 16)
    frozen = model.freeze([0.25, 0.75])
    assert not any(isinstance(m, (TunableConv2d, TunableLinear)) for m in frozen.modules())
    _outputs_equal(frozen(x), model(x, [0.25, 0.75]))
    assert frozen.blocks[0] is frozen.blocks[2]
