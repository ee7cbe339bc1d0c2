"""NAFNet and SwinIR as model-file architectures: plain or converted by make_tunable, saved,
loaded, warm-started from the plain twin, tiled, and trained by the recipes."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tunableconv.errors import InputError
from tunableconv.models import ARCHITECTURES, load_model, save_model
from tunableconv.models.converted import TunableNAFNet, TunableSwinIR
from tunableconv.restore import Restorer
from tunableconv.tasks import runner_facts
from tunableconv.train import Trainer, get_recipe
from tunableconv.train.recipes import RECIPES

from test_train import _cli, tiny_recipe

pytestmark = pytest.mark.usefixtures("one_thread")

NAF = dict(width=8, enc_blocks=[1, 1], middle_blocks=1, dec_blocks=[1, 1], layer_scale_init=0.1)
SWIN = dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4, mlp_ratio=2.0)


def _build(cls, args, **kw):
    torch.manual_seed(0)
    return cls(**args, **kw).eval()


@pytest.mark.parametrize("cls,args", [(TunableNAFNet, NAF), (TunableSwinIR, SWIN)], ids=["nafnet", "swinir"])
def test_registered_and_the_plain_twin_takes_no_p(cls, args):
    assert ARCHITECTURES[cls.architecture][0] is cls
    plain = _build(cls, args)
    x = torch.rand(1, 3, 19, 13)
    assert plain(x).shape == x.shape
    with pytest.raises(ValueError, match="takes no p"):
        plain(x, torch.tensor([0.5, 0.5]))
    tunable = _build(cls, args, num_params=2)
    with pytest.raises(Exception, match=r"model\(x, p\)"):
        tunable(x)
    assert set(tunable.arguments()) == set(plain.arguments()) and tunable.arguments()["num_params"] == 2


@pytest.mark.parametrize("cls,args", [(TunableNAFNet, NAF), (TunableSwinIR, SWIN)], ids=["nafnet", "swinir"])
def test_warm_start_from_the_plain_twin_computes_it_at_every_p(cls, args):
    plain = _build(cls, args)
    for prm in plain.parameters():  # a "trained" plain network, far from any initialisation
        prm.data.add_(0.05 * torch.randn_like(prm))
    tunable = _build(cls, args, num_params=2, expansion=2)
    tunable.load_plain_weights(plain.state_dict())
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        want = plain(x)
        for p in ([1.0, 0.0], [0.3, 0.7], [0.0, 1.0]):
            torch.testing.assert_close(tunable(x, torch.tensor(p)), want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(tunable(x, torch.tensor([[0.9, 0.1], [0.2, 0.8]])), want, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="do not fit"):
        tunable.load_plain_weights({"net.nope": torch.zeros(1)})


def test_tunable_norms_false_keeps_exactly_the_norms_fixed():
    full = _build(TunableSwinIR, SWIN, num_params=2).conversion_report()
    assert not full.fixed, [e.name for e in full.fixed]
    kept = _build(TunableSwinIR, SWIN, num_params=2, tunable_norms=False).conversion_report()
    assert kept.fixed and all("norm" in e.name for e in kept.fixed), [e.name for e in kept.fixed]
    assert {e.name for e in kept.tunable} == {e.name for e in full.tunable} - {e.name for e in kept.fixed}
    naf = _build(TunableNAFNet, NAF, num_params=2, tunable_norms=False).conversion_report()
    assert naf.fixed and all("norm" in e.name for e in naf.fixed), [e.name for e in naf.fixed]


@pytest.mark.parametrize("cls,args", [(TunableNAFNet, NAF), (TunableSwinIR, SWIN)], ids=["nafnet", "swinir"])
def test_model_file_round_trip_keeps_outputs_and_tiling_facts(cls, args, tmp_path):
    model = _build(cls, args, num_params=2, expansion=2)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.02 * torch.randn_like(prm))
    path = save_model(model, tmp_path / "m.safetensors", knobs=[{"name": "fidelity", "description": ""},
                                                               {"name": "noise", "description": ""}])
    loaded, info = load_model(path)
    x, p = torch.rand(1, 3, 20, 20), torch.tensor([0.4, 0.6])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, p), model(x, p))
    assert info.architecture == cls.architecture
    assert info.space.tiling_exact is (cls is TunableSwinIR)  # NAFNet's channel attention pools globally
    if cls is TunableSwinIR:
        assert info.space.receptive_field == model.receptive_field() > 0
    else:
        assert info.space.receptive_field is None


def test_runner_facts_read_the_declared_tiling():
    assert runner_facts(_build(TunableSwinIR, SWIN)).tiling_exact  # LayerNorm is per token, windows align
    assert not runner_facts(_build(TunableNAFNet, NAF)).tiling_exact


def test_swinir_tiles_aligned_to_the_window_equal_the_untiled_result(tmp_path):
    from tunableconv.tiling import tiled_apply

    model = _build(TunableSwinIR, SWIN, num_params=2)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    path = save_model(model, tmp_path / "s.safetensors")
    restorer = Restorer.load(str(path))
    x, p = torch.rand(3, 45, 38), torch.tensor([0.5, 0.5])
    rf = model.receptive_field()
    overlap = 4 * (-(-rf // 4))  # covers the receptive field, on the window grid
    full = restorer(x, p)
    tiled = restorer(x, p, tile=overlap + 8, overlap=overlap)  # several tiles per axis
    torch.testing.assert_close(tiled, full, atol=1e-5, rtol=0)
    # the alignment is what makes it exact: tiles off the window grid change the result
    with torch.no_grad():
        off = tiled_apply(lambda t: model(t, p), x[None], tile=overlap + 6, overlap=overlap - 1)
    assert (off[0].clamp(0, 1) - full).abs().max() > 1e-3


def test_nafnet_refuses_tiles_unless_forced(tmp_path):
    path = save_model(_build(TunableNAFNet, NAF, num_params=2), tmp_path / "n.safetensors")
    restorer = Restorer.load(str(path))
    x, p = torch.rand(3, 40, 40), torch.tensor([0.5, 0.5])
    with pytest.raises(InputError, match="not exact"):
        restorer(x, p, tile=16, overlap=4)
    assert restorer(x, p, tile=16, overlap=4, force_tiling=True).shape == x.shape


@pytest.mark.parametrize("arch,args", [("nafnet", NAF), ("swinir", SWIN)])
def test_recipes_train_20_steps_and_warm_start_from_the_fixed_twin(arch, args, tmp_path):
    assert {f"denoise-{arch}-small", f"denoise-{arch}-fixed-small", f"denoise-{arch}-paper"} <= set(RECIPES)
    assert get_recipe(f"denoise-{arch}-small").train.steps > 0
    fixed = tiny_recipe(tmp_path)
    fixed.model = get_recipe(f"denoise-{arch}-fixed-small").model
    fixed.model.args.update(args)
    fixed.task.fidelity_only = True
    Trainer(fixed, tmp_path / "fixed", progress=False).fit()
    plain, _ = load_model(tmp_path / "fixed" / "model.safetensors")

    tunable = tiny_recipe(tmp_path)
    tunable.model = get_recipe(f"denoise-{arch}-small").model
    tunable.model.args.update(args)
    tunable.model.init = str(tmp_path / "fixed" / "model.safetensors")
    trainer = Trainer(tunable, tmp_path / "tunable", progress=False)
    trainer.warm_start(tunable.model.init)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(trainer.model.eval()(x, torch.tensor([0.2, 0.8])), plain(x), atol=1e-5, rtol=1e-4)
    trainer.model.train()
    summary = trainer.fit()
    assert summary["steps"] == 20 and (tmp_path / "tunable" / "model.safetensors").is_file()


def test_cli_init_from_a_bare_state_dict_and_bad_files(tmp_path):
    plain = _build(TunableNAFNet, NAF)
    bare = tmp_path / "user.safetensors"
    save_file({k[4:]: v.contiguous() for k, v in plain.state_dict().items()}, str(bare))  # the user's own keys
    recipe = tiny_recipe(tmp_path, steps=2)
    recipe.model = get_recipe("denoise-nafnet-small").model
    recipe.model.args.update(NAF)
    recipe.save(tmp_path / "r.yaml")
    ok = _cli("train", "--recipe", str(tmp_path / "r.yaml"), "--init-from", str(bare), "--out", str(tmp_path / "run"),
              "--no-progress")
    assert ok.returncode == 0, ok.stderr
    junk = tmp_path / "junk.safetensors"
    save_file({"x": torch.zeros(2)}, str(junk))
    bad = _cli("train", "--recipe", str(tmp_path / "r.yaml"), "--init-from", str(junk), "--out", str(tmp_path / "run2"),
               "--no-progress")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr and "init" in bad.stderr, bad.stderr
    missing = _cli("train", "--recipe", str(tmp_path / "r.yaml"), "--init-from", str(tmp_path / "none.safetensors"),
                   "--out", str(tmp_path / "run3"))
    assert missing.returncode != 0 and "no file" in missing.stderr
