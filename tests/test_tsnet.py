"""TSNet and TA+TSNet (tunableconv.models.baselines.tsnet): the straight-through binary gate,
the agreement statistic and the shared prefix, the FLOP count (by hand and against
FlopCounterMode), pruned inference = the gated dense network, the shared-layer sweep = separate
calls, a 20-step search + fine-tune through the trainer, model files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from tunableconv.models import load_model, save_model
from tunableconv.models.baselines.tsnet import (TATSNet, TATSNetConfig, TSNet, TSNetConfig, agreement, binary_gate,
                                                conv_flops, shared_prefix)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

SMALL = dict(channels=8, num_blocks=2, num_params=3, domain="cube")


def build(cls=TSNet, cfg=TSNetConfig, **kw) -> TSNet:
    return cls(cfg(**{**SMALL, **kw})).eval()


def scramble(m: TSNet, closed_module: int | None = None) -> TSNet:
    """Random weights, scales and controllers (gates differ per task, some modules mostly closed);
    ``closed_module``: every gate of that module closed (an empty layer)."""
    with torch.no_grad():
        for q in m.parameters():
            q.add_(0.2 * torch.randn_like(q))
        for c in m.controllers:
            c.net[-1].bias.normal_(0.0, 1.0)
        if closed_module is not None:
            m.controllers[closed_module].net[-1].bias.fill_(-100.0)
    return m


def share(m: TSNet, modules: int) -> TSNet:
    """Make the first ``modules`` CS modules task-agnostic with a random consensus."""
    with torch.no_grad():
        m.shared.zero_()
        m.shared[:modules] = 1.0
        m.preference.normal_()
    return m


# ------------------------------------------------------------------ the gate (Eq. 5)
def test_gate_is_binary_forward_with_the_sigmoid_slope_backward():
    a = torch.randn(50, requires_grad=True)
    g = binary_gate(a)
    assert torch.equal(g, (a >= 0).float())
    g.mul(torch.arange(50.0)).sum().backward()
    s = torch.sigmoid(a.detach())
    torch.testing.assert_close(a.grad, torch.arange(50.0) * s * (1 - s))


def test_model_gates_are_binary_and_the_loss_reaches_the_controllers():
    m = scramble(build()).train()
    x, c = torch.rand(3, 3, 10, 10), torch.rand(3, 3)
    y = m(x, c)
    logits, gates, size = m._last
    assert set(gates.unique().tolist()) <= {0.0, 1.0} and 0 < gates.mean() < 1 and size == (10, 10)
    (y - x).abs().mean().backward()  # the restoration loss alone: through the gates' straight-through slope
    for ctrl in m.controllers:
        assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in ctrl.parameters())


# ------------------------------------------------------------------ agreement and sharing (Eqs. 7-10)
def test_agreement_on_a_toy_batch():
    consensus = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])  # (M=3, C=2): gates (1,0), (1,1), (0,1)
    logits = torch.tensor([  # (N=4, M, C)
        [[2.0, -3.0], [1.0, 1.0], [-1.0, 1.0]],
        [[0.5, -0.1], [1.0, -1.0], [1.0, -1.0]],   # module 1: one channel off; module 2: both off
        [[0.1, -9.0], [1.0, 1.0], [-1.0, 1.0]],
        [[3.0, -0.2], [2.0, 0.0], [1.0, -1.0]],   # a logit of exactly 0 gates 1 (g(0) = 1)
    ])
    torch.testing.assert_close(agreement(logits, consensus), torch.tensor([1.0, 7 / 8, 0.5]))
    assert shared_prefix(torch.tensor([0.9, 0.6, 0.2, 0.95]), 0.5).tolist() == [1.0, 1.0, 0.0, 0.0]
    assert shared_prefix(torch.tensor([0.4, 0.9]), 0.5).tolist() == [0.0, 0.0]  # not a prefix: nothing shared


def test_statistics_update_decides_the_shared_prefix():
    m = build(TATSNet, TATSNetConfig, ema_decay=0.0, agreement=0.75).train()
    n_mod, c = m.num_modules, 8
    logits = torch.ones(4, n_mod, c)  # every gate open ...
    logits[0, 2, :3] = -1.0  # ... except: module 2, one task closes 3 of 8 channels (β > 0; agreement 29/32 >= 0.75)
    logits[:2, 4] = -1.0  # module 4: half the tasks close everything (β = 0 gates 1; agreement 1/2 < 0.75)
    m._update_statistics(logits)
    torch.testing.assert_close(m.preference, logits.mean(0))  # γ = 0: β is the batch's mean preference (Eq. 7)
    assert m.agree_ema.tolist()[:5] == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert m.shared_modules() == [True] * 4 + [False] * (n_mod - 4)  # the prefix before module 4 (Eq. 10)
    assert m.shared_steps() == 3  # head, block 0's conv1 and conv2 (modules 0, 2, 3); block 1's conv1 writes module 5
    plain = build(ema_decay=0.0, agreement=0.75).train()  # TSNet: the statistics, never the decision
    plain._update_statistics(logits)
    assert plain.agree_ema[0] == 1.0 and not any(plain.shared_modules())


def test_agnostic_warmup_gathers_statistics_but_shares_nothing_until_it_ends():
    m = build(TATSNet, TATSNetConfig, ema_decay=0.0, agreement=0.75, agnostic_warmup_steps=2).train()
    logits = torch.ones(4, m.num_modules, 8)  # every task agrees everywhere
    for _ in range(2):
        m._update_statistics(logits)
        assert m.agree_ema.eq(1.0).all() and not any(m.shared_modules())  # gathered, not decided
        m._last = (logits.requires_grad_(), binary_gate(logits), (8, 8))
        assert "agnostic" not in m.regularisation()[1]  # R_TA off during the warm-up
    m._update_statistics(logits)  # the third search step decides
    assert m.is_sharing and all(m.shared_modules()) and m.search_updates.item() == 3
    m._last = (logits, binary_gate(logits), (8, 8))
    assert m.regularisation()[1]["agnostic"] == 0.0
    assert [s.steps for s in m.training_stages(100)] == [50, 50]  # the same stages (optimiser, schedule)
    with pytest.raises(ValueError, match="shorter than the search"):
        build(TATSNet, TATSNetConfig, agnostic_warmup_steps=50).training_stages(100)
    with pytest.raises(ValueError, match="agnostic_warmup_steps"):
        build(TATSNet, TATSNetConfig, agnostic_warmup_steps=-1)
    assert build(TATSNet, TATSNetConfig).is_sharing  # no warm-up: decide from the first step


def test_files_from_before_the_warmup_load_deciding(tmp_path):
    m = share(scramble(build(TATSNet, TATSNetConfig, agnostic_warmup_steps=5)), 2)
    state = {k: v for k, v in m.state_dict().items() if k not in ("sharing", "search_updates")}  # an older file
    fresh = build(TATSNet, TATSNetConfig, agnostic_warmup_steps=5)
    assert not fresh.is_sharing
    fresh.load_state_dict(state)
    assert fresh.is_sharing and fresh.shared_modules() == m.shared_modules()
    # a model file of then (no such tensors) opens the same way
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_model(m, tmp_path / "new.safetensors", info=m.file_info())
    with safe_open(str(path), "pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys() if k not in ("sharing", "search_updates")}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=meta)
    old, _ = load_model(tmp_path / "old.safetensors")
    assert old.is_sharing and old.shared_modules() == m.shared_modules()


def test_agnostic_regulariser_is_the_disagreement_after_the_shared_prefix():
    m = build(TATSNet, TATSNetConfig)
    with torch.no_grad():
        m.preference.fill_(1.0)  # consensus: every gate open
        m.shared[:2] = 1.0
    logits = torch.ones(4, m.num_modules, 8, requires_grad=True)
    with torch.no_grad():
        logits[0, 2, :4] = -1.0  # module 2 (after the prefix): 4 of 32 pairs disagree
        logits[1, 1, :2] = -1.0  # module 1 (shared, d_0 = 1): 2 of 32 disagree
        logits[2, 5, :] = -1.0  # module 5: d_4 = 0, not counted
    r = m.regulariser_agnostic(logits)
    assert r.item() == pytest.approx(4 / 32 + 2 / 32)
    r.backward()
    assert logits.grad[0, 2, :4].lt(0).all() and logits.grad[1, 1, :2].lt(0).all()  # descent opens them: agreement
    assert logits.grad[2, 5].eq(0).all() and logits.grad[0, 0].eq(0).all()


# ------------------------------------------------------------------ FLOPs
def test_flop_counter_against_a_hand_count_on_a_tiny_conv_net():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 5, padding=2))
    with FlopCounterMode(display=False) as fc:
        net(torch.rand(2, 3, 5, 7))
    by_hand = 2 * 2 * 5 * 7 * (3 * 4 * 9 + 4 * 2 * 25)  # 2 FLOPs per multiply-add, batch 2, 5x7 outputs
    assert fc.get_total_flops() == by_hand == 2 * (conv_flops(3, 4, 3, 5, 7) + conv_flops(4, 2, 5, 5, 7))


@pytest.mark.parametrize("upscale", [1, 2])
def test_dense_count_and_the_regulariser_with_every_gate_open(upscale):
    m = build(gate_init=5.0, upscale=upscale)  # every gate open at every task vector
    x, c = torch.rand(1, 3, 9, 11), torch.rand(3)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m.forward_dense(x, c)
    count = m.count_flops(c[None], (9, 11))
    assert count["total"] == fc.get_total_flops()  # convs + the controllers + CResMD's scales
    cfg = m.config
    controllers = m.num_modules * 2 * (3 * 32 + 32 * 32 + 32 * 8)
    assert count["dense_per_effect"] == m.dense_conv_flops((9, 11)) + 2 * 3 * 8 * (cfg.num_blocks + 1)
    assert count["total"] == count["dense_per_effect"] + controllers
    gates = torch.ones(4, m.num_modules, 8)
    r = m.regulariser_flops(gates, (9, 11))
    assert r.item() == pytest.approx(1.0) and r.item() * m.dense_conv_flops((9, 11)) == pytest.approx(
        fc.get_total_flops() - controllers - 2 * 3 * 8 * (cfg.num_blocks + 1))
    logits = torch.full((4, m.num_modules, 8), 30.0)  # the expected FLOPs of certain gates
    assert m.regulariser_flops(gates, (9, 11), expected=True, logits=logits).item() == pytest.approx(1.0)
    if upscale == 1:  # every gate at probability 1/2: each gated side of a conv at half its channels
        halves = (3 * 4 + 4 * (4 * 4) + 4 * 4 + 4 * 3) / (3 * 8 + 4 * 64 + 64 + 8 * 3)
        assert m.regulariser_flops(gates * 0, (9, 11), expected=True, logits=logits * 0).item() == pytest.approx(halves)


@pytest.mark.parametrize("cls,cfg,shared", [(TSNet, TSNetConfig, 0), (TATSNet, TATSNetConfig, 5)])
def test_pruned_sweep_flops_match_the_counter_and_the_regulariser(cls, cfg, shared):
    m = share(scramble(build(cls, cfg)), shared)
    x, conds = torch.rand(2, 3, 8, 10), torch.rand(6, 3)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m.sweep(x, conds)
    count = m.count_flops(conds, (8, 10), batch=2)
    assert count["total"] == fc.get_total_flops() and (count["shared"] > 0) == (shared > 0)
    assert count["ratio"] < 1
    # the regulariser at T = 6 effects is the same count (convs only), per effect, over the dense network's
    m.config.effects = 6
    gates = m.gates(m.task_logits(conds))
    conv_total = count["total"] - 6 * _aux(m)  # the sweep's convs on 2 images: F_shared once, F_specific per task
    expected = conv_total / 2 / 6 / m.dense_conv_flops((8, 10))
    assert m.regulariser_flops(gates, (8, 10)).item() == pytest.approx(expected, rel=1e-5)


def _aux(m: TSNet) -> int:
    """The per-task controller and scale FLOPs of :meth:`TSNet.count_flops`."""
    d = m.shared_modules()
    h, c, k, n = m.config.controller_hidden, m.config.channels, m.config.num_params, m.config.num_blocks
    blocks = sum(not d[m.block_modules(i)[2]] for i in range(n)) + (not d[3 * n + 2])
    return 2 * (k * h + h * h + h * c) * sum(not v for v in d) + 2 * k * c * blocks


# ------------------------------------------------------------------ pruned inference and the sweep
@pytest.mark.parametrize("closed", [None, 0, 1, 2, 3, 7, 8, 9])
def test_pruned_inference_equals_the_gated_dense_forward(closed):
    m = scramble(build(upscale=2 if closed == 9 else 1), closed)
    x, c = torch.rand(4, 3, 9, 9), torch.rand(4, 3)
    c[2] = c[0]  # two samples share a task vector: one pruned network for both
    with torch.no_grad():
        dense = m.forward_dense(x, c)
        pruned = m(x, c)  # eval mode, no gradients: the pruned path
        torch.testing.assert_close(pruned, m.forward_pruned(x, c))
        torch.testing.assert_close(pruned, dense, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(m(x[1:2], c[1]), dense[1:2], atol=1e-5, rtol=1e-5)
    plan = m.plans(c[:1])[0]
    if closed is not None:
        assert plan.keep[closed].numel() == 0
    assert any(k is not None and 0 < k.numel() < 8 for k in plan.keep)  # really pruned: sliced weights


@pytest.mark.parametrize("shared", [0, 1, 2, 4, 5, 9, 10])
def test_shared_layer_sweep_equals_separate_calls(shared):
    m = share(scramble(build(TATSNet, TATSNetConfig)), shared)
    x, conds = torch.rand(2, 3, 10, 8), torch.rand(5, 3)
    with torch.no_grad():
        swept = m.sweep(x, conds)
        each = torch.stack([m(x, c) for c in conds])
        dense = torch.stack([m.forward_dense(x, c) for c in conds])
    assert swept.shape == (5, 2, 3, 10, 8)
    torch.testing.assert_close(swept, each, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(swept, dense, atol=1e-5, rtol=1e-5)
    arch = m.searched_architecture(conds, size=(10, 8))
    assert arch["shared_modules"] == m.module_names[:shared] and len(arch["effects"]) == 5
    layers = {0: 0, 1: 1, 2: 1, 4: 3, 5: 3, 9: 6, 10: 7}[shared]  # head, conv1/conv2 x 2, body_tail, tail
    assert len(arch["shared_layers"]) == layers == m.shared_steps()
    assert all(e["kept"][:shared] == arch["effects"][0]["kept"][:shared] for e in arch["effects"])


def test_default_effects_are_the_27_effect_grid():
    from tunableconv.tasks.restore3 import effect_grid

    assert torch.equal(build().default_effects(), effect_grid())
    assert build(num_params=2, domain="simplex").default_effects().tolist() == [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]


# ------------------------------------------------------------------ training
def _tiny(arch: str, tmp_path: Path, steps: int = 20, **args):
    from tunableconv.compare import recipe_for

    data = tmp_path / "imgs"
    data.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        arr = (torch.rand(3, 40, 48, generator=g) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(data / f"img{i}.png")
    r = recipe_for(arch, "small", task="restore3")
    r.model.args.update(channels=8, num_blocks=2, controller_hidden=8, **args)
    r.data.train, r.data.val, r.data.num_workers = str(data), str(data), 0
    r.data.patch_size, r.data.val_images, r.data.val_crop = 24, 1, 32
    r.train.steps, r.train.batch_size, r.train.threads = steps, 4, 1
    r.train.log_every, r.train.ckpt_every, r.train.val_every, r.train.warmup_steps = 1, 100, 10_000, 2
    r.task.val_levels = ["blur=1,noise=10,jpeg=50"]
    r.task.val_grid = [[1.0, 1.0, 1.0]]
    return r


@pytest.mark.parametrize("arch,args", [("tsnet", {}),
                                       ("ta-tsnet", dict(gate_init=0.5, ema_decay=0.5, share_threshold=0.3)),
                                       ("ta-tsnet", dict(gate_init=0.5, ema_decay=0.5, share_threshold=0.3,
                                                         agnostic_warmup_steps=4))])
def test_20_step_search_and_fine_tune(arch, args, tmp_path):
    from tunableconv.train import Trainer
    from tunableconv.train.checkpoint import load_checkpoint

    recipe = _tiny(arch, tmp_path, **args)
    run = tmp_path / "run"
    if args.get("agnostic_warmup_steps"):  # stop inside the warm-up: the resumed run must go on counting
        assert Trainer(recipe, run, progress=False).fit(stop_at=2).get("stopped")
        state = load_checkpoint(run / "latest.safetensors")["model"]
        assert state["search_updates"].item() == 2 and state["sharing"].item() == 0
        assert Trainer(recipe, run, progress=False).fit(resume=True, stop_at=10).get("stopped")
    else:
        assert Trainer(recipe, run, progress=False).fit(stop_at=10).get("stopped")  # the end of the search
    searched = load_checkpoint_controllers(run / "latest.safetensors")
    summary = Trainer(recipe, run, progress=False).fit(resume=True)
    assert summary["steps"] == 20
    logs = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    steps = [rec for rec in logs if "loss" in rec]
    assert len(steps) == 20 and all(math.isfinite(rec["loss"]) and 0 < rec["loss_flops"] <= 1.5 for rec in steps)
    assert [rec["stage"] for rec in steps] == [0] * 10 + [1] * 10
    warmup = args.get("agnostic_warmup_steps", 0)  # the first search steps gather only
    model, info = load_model(run / "model.safetensors")
    assert type(model).architecture == arch and model.is_frozen and info.space.names == ["deblur", "denoise", "dejpeg"]
    for k, v in model.controllers.state_dict().items():  # fine-tuning left the architecture alone
        assert torch.equal(v, searched[k]), k
    arch_info = info.info["searched_architecture"]
    assert arch_info["frozen"] and len(arch_info["effects"]) == 27 and arch_info["flops_at"] == [720, 1280]
    if arch == "ta-tsnet":  # a dense start agrees at once: sharing is decided within the first steps
        assert arch_info["shared_modules"] and "loss_agnostic" in steps[warmup]
        assert not any("loss_agnostic" in rec for rec in steps[:warmup])
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.sweep(x, model.default_effects()[:4]),
                                   torch.stack([model(x, p) for p in model.default_effects()[:4]]), atol=1e-5, rtol=1e-5)


def load_checkpoint_controllers(path: Path) -> dict[str, torch.Tensor]:
    from tunableconv.train.checkpoint import load_checkpoint

    state = load_checkpoint(path)["model"]
    return {k[len("controllers."):]: v for k, v in state.items() if k.startswith("controllers.")}


def test_compare_hosts_both_methods():
    from tunableconv.compare import methods_for, recipe_for
    from tunableconv.tasks import build_task

    assert {"tsnet", "ta-tsnet"} <= set(methods_for("restore3"))
    for name, cls in (("tsnet", TSNet), ("ta-tsnet", TATSNet)):
        r = recipe_for(name, "small", task="restore3")
        model = build_task(r).build_model()
        assert type(model) is cls and model.num_params == 3 and model.domain == "cube"
        assert model.config.task_agnostic == (name == "ta-tsnet") and model.conditioned_on == "p"
        assert [s.steps for s in model.training_stages(r.train.steps)] == [r.train.steps // 2] * 2


# ------------------------------------------------------------------ files
def test_save_load_round_trip_keeps_the_searched_architecture(tmp_path):
    m = share(scramble(build(TATSNet, TATSNetConfig)), 4)
    m.freeze_architecture()
    path = save_model(m, tmp_path / "ta.safetensors", info=m.file_info())
    loaded, info = load_model(path)
    assert type(loaded) is TATSNet and loaded.arguments() == m.arguments() and loaded.is_frozen
    assert loaded.shared_modules() == m.shared_modules() and loaded.searched_architecture() == m.searched_architecture()
    assert info.info["searched_architecture"]["shared_modules"] == m.module_names[:4]
    x, conds = torch.rand(1, 3, 8, 8), torch.rand(3, 3)
    with torch.no_grad():
        assert torch.equal(loaded.sweep(x, conds), m.sweep(x, conds))
