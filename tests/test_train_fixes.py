"""Training fixes of issue 14 item 6: EMA warm-up, group-p seeding, the discriminator's own optimiser."""

import json
import math
from math import comb
from pathlib import Path

import pytest
import torch
from torch import nn

from tunableconv import InputError
from tunableconv.train import Recipe, Trainer, load_checkpoint
from tunableconv.train.trainer import EMA, StepBatches

from test_train import _weights, tiny_recipe


# --- 1. EMA warm-up ------------------------------------------------------------------------
def _scalar_model(value: float) -> nn.Module:
    m = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        m.weight.fill_(value)
    return m


def test_ema_forgets_the_initialisation():
    """Weights jump once, from their initial value 0 to 1, then stay: the share of the
    initialisation left in the EMA after N updates is Π d_n = 1 / C(N + 9, 9) during the
    warm-up (a plain EMA at 0.999 keeps 0.999^1000 = 37% of it after 1000 steps)."""
    model = _scalar_model(0.0)
    ema = EMA(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    for n in range(1, 1001):
        ema.update(model)
        init_share = 1.0 - float(ema.shadow["weight"])
        if n in (1, 2, 5, 10, 20):
            assert init_share == pytest.approx(1 / comb(n + 9, 9), rel=1e-9), n
        assert init_share <= 0.999**n + 1e-15  # never slower than the plain EMA
    assert init_share < 1e-6
    assert ema.updates == 1000


def test_ema_fraction_of_init_weights_after_1000_steps_is_small():
    """A real layer: after 1000 updates at 0.999 towards new weights, the exported weights
    are (almost) free of the random initialisation."""
    torch.manual_seed(0)
    model = nn.Conv2d(3, 8, 3)
    w0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ema = EMA(model, decay=0.999)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(1.0)  # the trained weights: init + 1
    for _ in range(1000):
        ema.update(model)
    for k, v in ema.shadow.items():
        frac_init = (model.state_dict()[k] - v) / (model.state_dict()[k] - w0[k])  # 1: still init, 0: new weights
        assert float(frac_init.abs().max()) < 1e-3, k


def test_ema_after_a_jump_later_in_training_is_within_the_bound():
    """θ = a for 50 updates, then b: after m more updates the share of a is Π_{n=50}^{49+m} d_n
    (exactly, in float64), between the warm-up-free decay^m of a fully warmed-up EMA and 1."""
    decay = 0.9
    model = _scalar_model(3.0)
    ema = EMA(model, decay=decay)
    for _ in range(50):
        ema.update(model)
    assert float(ema.shadow["weight"]) == pytest.approx(3.0)
    with torch.no_grad():
        model.weight.fill_(-1.0)
    share = 1.0
    for m in range(1, 60):
        share *= min(decay, (1 + 49 + m) / (10 + 49 + m))
        ema.update(model)
        got = (float(ema.shadow["weight"]) - (-1.0)) / (3.0 - (-1.0))
        assert got == pytest.approx(share, rel=1e-9, abs=1e-15)
        assert got <= decay**m + 1e-12


def test_ema_update_count_is_saved_and_resume_is_bit_identical(tmp_path):
    full = Trainer(tiny_recipe(tmp_path, steps=8, ema=0.999, lr=1e-2), tmp_path / "full", progress=False)
    full.fit()
    assert full.ema.updates == 8
    out = tmp_path / "stopped"
    Trainer(tiny_recipe(tmp_path, steps=8, ema=0.999, lr=1e-2), out, progress=False).fit(stop_at=3)
    assert load_checkpoint(out / "latest.safetensors")["ema_updates"] == 3
    resumed = Trainer(tiny_recipe(tmp_path, steps=8, ema=0.999, lr=1e-2), out, progress=False)
    resumed.fit(resume=True)
    assert resumed.ema.updates == 8
    a, b = _weights(tmp_path / "full" / "model.safetensors"), _weights(out / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the exported EMA weights are far from the initialisation after these few steps (they would
    # be 99% init without the warm-up at 0.999)
    torch.manual_seed(0)
    init = full.task.build_model(full.recipe).state_dict()
    raw = full.model.state_dict()
    k = next(k for k in a if a[k].is_floating_point() and a[k].numel() > 1 and not torch.equal(raw[k].cpu(), init[k]))
    frac_init = ((a[k] - raw[k].cpu()).norm() / (init[k] - raw[k].cpu()).norm()).item()
    assert frac_init < 0.5, frac_init


def test_ema_resume_from_a_checkpoint_without_update_count(tmp_path):
    """Checkpoints written before the warm-up have no ``ema_updates``: the count is the step."""
    out = tmp_path / "old"
    t = Trainer(tiny_recipe(tmp_path, steps=8, ema=0.9), out, progress=False)
    t.fit(stop_at=4)
    from tunableconv.train import save_checkpoint

    st = load_checkpoint(out / "latest.safetensors")
    del st["ema_updates"]
    save_checkpoint(st, out / "latest.safetensors")
    r = Trainer(tiny_recipe(tmp_path, steps=8, ema=0.9), out, progress=False)
    r.load(out / "latest.safetensors")
    assert r.ema.updates == 4


# --- 2. group granularity follows train.seed ------------------------------------------------
def _group_p(tmp_path: Path, seed: int, granularity: str = "group:2", steps=(0, 1, 5)) -> torch.Tensor:
    r = tiny_recipe(tmp_path, steps=1)
    r.task.p_granularity = granularity
    r.train.seed = seed
    from tunableconv.tasks import build_task

    task = build_task(r)
    batches = StepBatches(task.train_images(r), task, batch_size=8, seed=seed)
    return torch.stack([batches[s]["p"] for s in steps])


def test_group_p_depends_on_the_seed(tmp_path):
    a, a2, b = _group_p(tmp_path, 0), _group_p(tmp_path, 0), _group_p(tmp_path, 1)
    assert torch.equal(a, a2)  # same seed, same p
    assert not torch.equal(a, b)  # another seed, other p
    for p in (a, b):  # groups of 2 share p, groups differ from each other
        assert torch.equal(p[:, 0::2], p[:, 1::2])
        assert len(torch.unique(p[:, 0::2, 0])) == p[:, 0::2, 0].numel()
    # group p is not the step's shared p nor any sample's own p
    per_batch = _group_p(tmp_path, 0, "batch")
    assert not torch.equal(a[:, :1], per_batch[:, :1])


# --- 3. the discriminator's own optimiser ---------------------------------------------------
@pytest.fixture
def gan_task(monkeypatch):
    """The denoise task with an adversarial term on the fidelity objective (a small discriminator)."""
    from tunableconv.losses import AdversarialObjective, CompositeObjective, Fidelity, NoisePreservation, ParametricMultiLoss
    from tunableconv.tasks import DenoiseTask

    def build_loss(self):
        adv = AdversarialObjective(base_channels=4, num_downs=1, scales=(1,))
        fid = CompositeObjective([(Fidelity(), 1.0), (adv, 0.01)], name="fidelity")
        return ParametricMultiLoss([fid, NoisePreservation(beta=self.cfg.beta)])

    monkeypatch.setattr(DenoiseTask, "build_loss", build_loss)


def test_disc_section_defaults_roundtrip_and_overrides(tmp_path):
    r = tiny_recipe(tmp_path)
    d = r.train.disc
    assert (d.optimizer, d.lr, d.betas, d.weight_decay, d.schedule) == ("adam", 1e-4, [0.9, 0.99], 0.0, "generator")
    r.override("train.disc.lr=3e-4").override("train.disc.betas=[0.5, 0.9]").override("train.disc.schedule=step")
    assert r.train.disc.lr == 3e-4 and r.train.disc.betas == [0.5, 0.9] and r.train.disc.schedule == "step"
    for suffix in (".yaml", ".json"):
        r.save(tmp_path / f"r{suffix}")
        back = Recipe.load(tmp_path / f"r{suffix}")
        assert back.to_dict() == r.to_dict() and back.train.disc.lr == 3e-4
    assert r.copy().train.disc is not r.train.disc
    with pytest.raises(InputError, match="no field"):
        r.override("train.disc.learning_rate=1")
    with pytest.raises(InputError, match="number"):
        r.override("train.disc.lr=fast")
    with pytest.raises(InputError, match="no field"):
        r.override("train.lr.x=1")
    bad = r.to_dict()
    bad["train"]["disc"]["nope"] = 1
    with pytest.raises(InputError, match="train.disc"):
        Recipe.from_dict(bad)
    # a recipe saved before the section existed loads with the defaults
    old = r.to_dict()
    del old["train"]["disc"]
    assert Recipe.from_dict(old).train.disc.lr == 1e-4


def test_discriminator_gets_its_own_lr_and_betas(tmp_path, gan_task):
    r = tiny_recipe(tmp_path, steps=2, lr=1e-3, betas=[0.9, 0.999], weight_decay=0.0)
    r.override("train.disc.lr=2e-4").override("train.disc.betas=[0.5, 0.99]").override("train.disc.weight_decay=1e-5")
    t = Trainer(r, tmp_path / "run", progress=False)
    assert len(t.disc_optimizers) == 1
    g = t.disc_optimizers[0].param_groups[0]
    assert (g["lr"], g["betas"], g["weight_decay"]) == (2e-4, (0.5, 0.99), 1e-5)
    gen = t.optimizer.param_groups[0]
    assert (gen["lr"], gen["betas"]) == (1e-3, (0.9, 0.999))
    disc_params = {id(p) for p in t.loss.discriminators()[0].parameters()}
    assert {id(p) for p in g["params"]} == disc_params
    assert not disc_params & {id(p) for p in t.optimizer.param_groups[0]["params"]}
    r.override("train.disc.optimizer=sgd")
    with pytest.raises(InputError, match="train.disc.optimizer"):
        Trainer(r, tmp_path / "bad", progress=False)
    r.override("train.disc.optimizer=adam").override("train.disc.schedule=linear")
    with pytest.raises(InputError, match="train.disc.schedule"):
        Trainer(r, tmp_path / "bad2", progress=False)


def _disc_lrs(t: Trainer, monkeypatch) -> list[float]:
    """The LR of the discriminator's optimiser at each of its steps."""
    seen = []
    opt = t.disc_optimizers[0]
    real_step = opt.step

    def spy(*a, **kw):
        seen.append(opt.param_groups[0]["lr"])
        return real_step(*a, **kw)

    monkeypatch.setattr(opt, "step", spy)
    return seen


def test_discriminator_lr_follows_its_own_schedule(tmp_path, gan_task, monkeypatch):
    r = tiny_recipe(tmp_path, steps=6, lr=1e-3)  # generator: warm-up 2 then cosine
    r.override("train.disc.schedule=step").override("train.disc.milestones=[2, 4]").override("train.disc.gamma=0.1")
    t = Trainer(r, tmp_path / "step", progress=False)
    seen = _disc_lrs(t, monkeypatch)
    t.fit()
    assert seen == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6])
    logs = [json.loads(l) for l in (tmp_path / "step" / "log.jsonl").read_text().splitlines() if '"loss"' in l]
    assert [l["disc_lr"] for l in logs] == pytest.approx(seen)
    # its own cosine with its own warm-up, over train.steps
    r = tiny_recipe(tmp_path, steps=6, lr=1e-3)
    r.override("train.disc.schedule=cosine").override("train.disc.warmup_steps=3").override("train.disc.min_lr_ratio=0")
    t = Trainer(r, tmp_path / "cos", progress=False)
    seen = _disc_lrs(t, monkeypatch)
    t.fit()
    want = [1e-4 / 3, 2e-4 / 3, 1e-4] + [1e-4 * 0.5 * (1 + math.cos(math.pi * (s - 3) / 3)) for s in (3, 4, 5)]
    assert seen == pytest.approx(want)  # warm-up steps 0-2, then cosine from step 3 to the end
    # default: the generator's factor (warm-up 2, cosine over 6 steps), times the discriminator's lr
    t = Trainer(tiny_recipe(tmp_path, steps=6, lr=1e-3), tmp_path / "gen", progress=False)
    seen = _disc_lrs(t, monkeypatch)
    gen_lrs = []
    real = t.optimizer.step
    monkeypatch.setattr(t.optimizer, "step", lambda *a, **kw: (gen_lrs.append(t.optimizer.param_groups[0]["lr"]), real(*a, **kw))[1])
    t.fit()
    assert seen == pytest.approx([1e-4 * g / 1e-3 for g in gen_lrs])
    assert len(set(seen)) > 3


def test_gan_resume_restores_the_discriminator_and_its_schedule(tmp_path, gan_task):
    def recipe():
        r = tiny_recipe(tmp_path, steps=8, lr=1e-3)
        r.override("train.disc.schedule=step").override("train.disc.milestones=[5]").override("train.disc.gamma=0.1")
        return r

    full = Trainer(recipe(), tmp_path / "full", progress=False)
    full.fit()
    out = tmp_path / "stopped"
    Trainer(recipe(), out, progress=False).fit(stop_at=3)
    resumed = Trainer(recipe(), out, progress=False)
    resumed.fit(resume=True)
    a, b = _weights(tmp_path / "full" / "model.safetensors"), _weights(out / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    for x, y in zip(full.loss.discriminators()[0].state_dict().values(), resumed.loss.discriminators()[0].state_dict().values()):
        assert torch.equal(x, y)
    sa, sb = full.disc_optimizers[0].state_dict(), resumed.disc_optimizers[0].state_dict()
    assert sa["param_groups"][0]["lr"] == sb["param_groups"][0]["lr"] == pytest.approx(1e-5)
    for i in sa["state"]:
        assert torch.equal(sa["state"][i]["exp_avg"], sb["state"][i]["exp_avg"])
