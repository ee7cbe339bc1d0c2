"""The deblur_denoise task (issue 17): the degradation (blur, then noise, then 8-bit
quantisation), the four corner targets on hand-made images and their blend, the sampler's
mixture of single and double degradations, the multi-loss on the cube, evaluation cases,
20-step trainings of the tunable model and of CResMD conditioned on the true levels, and
``tunableconv restore`` with the two knobs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from tunableconv import InputError
from tunableconv.data.degradations import gaussian_blur, gaussian_kernel2d, quantize_8bit
from tunableconv.losses import BlendedTargetLoss, Fidelity, ParametricMultiLoss
from tunableconv.losses.multiloss import cube_corner_weights
from tunableconv.tasks import DeblurDenoiseTask, EvalCase, Sample, build_task, get_task, target_key
from tunableconv.tasks.deblur_denoise import CORNER_P, CORNERS
from tunableconv.train import Trainer, get_recipe


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _task(**task_fields) -> DeblurDenoiseTask:
    r = get_recipe("deblur-denoise-small")
    for k, v in task_fields.items():
        setattr(r.task, k, v)
    return build_task(r)


def _step_image(h: int = 40, w: int = 40) -> torch.Tensor:
    """A flat image with a vertical step edge: 0.2 on the left half, 0.8 on the right."""
    x = torch.full((3, h, w), 0.2)
    x[:, :, w // 2:] = 0.8
    return x


def _case(task: DeblurDenoiseTask, clean: torch.Tensor, noise: float, blur: float, seed: int = 0) -> Sample:
    return task.degrade_case(clean, EvalCase("x", {"noise": noise, "blur": blur}), torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ degradations
@pytest.mark.parametrize("sigma", [0.0, 0.5, 1.0, 2.5, 4.0])
def test_blur_kernel_sums_to_one(sigma):
    k = gaussian_kernel2d(sigma, 21)
    assert k.shape == (21, 21)
    assert abs(float(k.sum()) - 1.0) < 1e-6
    assert float(k[10, 10]) == float(k.max())


def test_quantize_8bit_clips_and_rounds_half_up():
    x = torch.tensor([-0.1, 0.49 / 255, 0.5 / 255, 1.49 / 255, 1.5 / 255, 200.2 / 255, 1.3])
    q = quantize_8bit(x)
    assert torch.equal(q * 255, torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 200.0, 255.0]))


def test_blur_then_noise_then_quantisation():
    task = _task()
    clean = _step_image()
    # no noise: the input is the 8-bit quantised blur (replicate padding keeps the flat borders flat)
    s = _case(task, clean, noise=0.0, blur=2.0)
    blurred = gaussian_blur(clean, 2.0, 21, padding="replicate")
    assert torch.equal(s.input, quantize_8bit(blurred))
    assert torch.allclose(s.input[:, :, 0], torch.full_like(s.input[:, :, 0], round(0.2 * 255) / 255))
    # with noise: every value a multiple of 1/255, the residual has the noise's std ...
    flat = torch.full((3, 64, 64), 0.5)
    s = _case(task, flat, noise=15.0, blur=3.0)
    codes = s.input * 255
    assert torch.equal(codes, codes.round()) and float(s.input.min()) >= 0 and float(s.input.max()) <= 1
    residual = s.input - 0.5
    assert abs(float(residual.std()) * 255 - 15.0) < 0.6
    # ... and is white: the noise came after the blur (blurred noise would be strongly correlated)
    corr = float((residual[:, :, 1:] * residual[:, :, :-1]).mean() / residual.var())
    assert abs(corr) < 0.05
    # the condition: (sigma_b / 4, sigma_n / 50), clipped to [0, 1]
    assert torch.allclose(s.condition, torch.tensor([0.75, 0.3]))
    assert torch.allclose(_case(task, flat, noise=70.0, blur=5.0).condition, torch.tensor([1.0, 1.0]))


# ------------------------------------------------------------------ targets
def test_corner_targets_on_a_step_edge():
    task = _task(beta=0.9)
    clean = _step_image()
    s = _case(task, clean, noise=15.0, blur=2.0)
    t = s.targets
    assert list(t) == list(CORNERS) == task.objective_names
    blurred = gaussian_blur(clean, 2.0, 21, padding="replicate")
    kept = 0.9 * (s.input - blurred)
    assert torch.equal(t["restored"], clean)  # (1, 1): the ground truth (no sharpening)
    assert torch.allclose(t["denoised"], blurred)  # (1, 0): noise removed, the blur kept
    assert torch.allclose(t["deblurred"], clean + kept, atol=1e-6)  # (0, 1): sharp, noise kept
    assert torch.allclose(t["degraded"], blurred + kept, atol=1e-6)  # (0, 0): both kept
    # the blur knob moves the edge only: the denoised target is smooth across it, flat away from it
    assert 0.25 < float(t["denoised"][0, 20, 19]) < 0.5 and 0.5 < float(t["denoised"][0, 20, 20]) < 0.75
    assert torch.allclose(t["denoised"][:, :, :8], torch.full((3, 40, 8), 0.2), atol=1e-6)
    # the noise knob moves the noise only: degraded - denoised == deblurred - restored
    assert torch.allclose(t["degraded"] - t["denoised"], t["deblurred"] - t["restored"], atol=1e-6)


def test_sharpening_overshoots_the_edge_and_keeps_flat_regions():
    task = _task(sharpen=1.0, sharpen_sigma=1.0)
    s = _case(task, _step_image(), noise=0.0, blur=1.0)
    sharp = s.targets["restored"]
    assert float(sharp[0, 20, 19]) < 0.2 - 0.05 and float(sharp[0, 20, 20]) > 0.8 + 0.05  # unsharp-mask halo
    assert torch.allclose(sharp[:, :, :10], torch.full((3, 40, 10), 0.2), atol=1e-6)
    assert float(sharp.min()) >= 0 and float(sharp.max()) <= 1


def test_blended_target_is_the_corner_at_each_corner_and_affine_in_between():
    task = _task(beta=0.9)
    s = _case(task, _step_image(), noise=25.0, blur=1.5)
    batch = Sample(s.input[None], s.clean[None], {k: v[None] for k, v in s.targets.items()}, s.condition[None])
    for name, p in CORNER_P.items():
        assert torch.allclose(task.blended_target(batch, torch.tensor(p))[0], s.targets[name], atol=1e-6)
    pn, pb = 0.3, 0.8
    blurred, sharp, r = s.targets["denoised"], s.targets["restored"], s.input - s.targets["denoised"]
    expected = (1 - pb) * blurred + pb * sharp + (1 - pn) * 0.9 * r
    assert torch.allclose(task.blended_target(batch, torch.tensor([pn, pb]))[0], expected, atol=1e-6)
    fixed = _task(fidelity_only=True)
    assert fixed.blended_target(batch, torch.ones(0)) is None and fixed.objective_names == ["restored"]


# ------------------------------------------------------------------ sampler
def test_half_single_half_double_degradations():
    task = _task()
    g = torch.Generator().manual_seed(1)
    levels = torch.tensor([task.draw_levels(g) for _ in range(4000)])  # (N, 2): blur, noise
    blur_only = float(((levels[:, 0] > 0) & (levels[:, 1] == 0)).float().mean())
    noise_only = float(((levels[:, 0] == 0) & (levels[:, 1] > 0)).float().mean())
    both = float(((levels[:, 0] > 0) & (levels[:, 1] > 0)).float().mean())
    assert abs(both - 0.5) < 0.03 and abs(blur_only - 0.25) < 0.025 and abs(noise_only - 0.25) < 0.025
    assert float(levels[:, 0].max()) <= 4.0 and float(levels[:, 1].max()) <= 50.0
    double = levels[(levels > 0).all(dim=1)]
    assert abs(float(double[:, 1].mean()) - 25.0) < 1.5  # uniform on [0, 50]
    # Beta(0.5, 1) levels: mean (hi - lo) / 3; no single degradation with single_share = 0
    g = torch.Generator().manual_seed(1)
    beta = torch.tensor([_task(levels="beta", single_share=0.0).draw_levels(g) for _ in range(3000)])
    assert bool((beta > 0).all())
    assert abs(float(beta[:, 1].mean()) - 50 / 3) < 1.0 and abs(float(beta[:, 0].mean()) - 4 / 3) < 0.08


def test_training_samples_are_seeded_and_carry_the_condition():
    task = _task()
    clean = torch.rand(3, 24, 24, generator=torch.Generator().manual_seed(0))
    a = task.degrade(clean, torch.Generator().manual_seed(5))
    b = task.degrade(clean, torch.Generator().manual_seed(5))
    assert torch.equal(a.input, b.input) and torch.equal(a.condition, b.condition)
    assert a.condition.shape == (2,) and bool(((a.condition >= 0) & (a.condition <= 1)).all())


# ------------------------------------------------------------------ the multi-loss on the cube
def test_cube_corner_weights():
    p = torch.tensor([[0.3, 0.8], [0.0, 0.0], [1.0, 0.0]])
    a = cube_corner_weights(p)
    assert torch.allclose(a[0], torch.tensor([0.7 * 0.2, 0.3 * 0.2, 0.7 * 0.8, 0.3 * 0.8]))
    assert torch.equal(a[1], torch.tensor([1.0, 0.0, 0.0, 0.0])) and torch.equal(a[2], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    assert torch.allclose(cube_corner_weights(torch.rand(50, 3)).sum(1), torch.ones(50))


def test_losses_on_the_cube_accept_every_corner():
    g = torch.Generator().manual_seed(0)
    batch = {target_key(n): torch.rand(2, 3, 8, 8, generator=g) for n in CORNERS}
    out = torch.rand(2, 3, 8, 8, generator=g)
    objs = [Fidelity("l1", key=target_key(n), name=n) for n in CORNERS]
    blend, mixed = BlendedTargetLoss(objs, domain="cube"), ParametricMultiLoss(objs, domain="cube")
    assert blend.num_params == mixed.num_params == 2
    for k, (name, p) in enumerate(CORNER_P.items()):  # (0, 0) included: no simplex sum to divide by
        want = float((out - batch[target_key(name)]).abs().mean())
        assert abs(float(blend(out, batch, torch.tensor(p)).total) - want) < 1e-6
        assert abs(float(mixed(out, batch, torch.tensor(p)).total) - want) < 1e-6
    p = torch.tensor([0.3, 0.8])
    a = cube_corner_weights(p)
    t = sum(a[k] * batch[target_key(n)] for k, n in enumerate(CORNERS))
    assert abs(float(blend(out, batch, p).total) - float((out - t).abs().mean())) < 1e-6
    with pytest.raises(InputError, match="2\\^P objectives"):
        ParametricMultiLoss(objs[:3], domain="cube")


# ------------------------------------------------------------------ evaluation cases
def test_evaluation_cases_default_grid_and_user_levels():
    task = _task()
    default = task.evaluation_cases()
    assert len(default) == 12 and default[0].label == "noise=0,blur=0" and default[-1].levels == {"noise": 50.0, "blur": 4.0}
    cases = task.evaluation_cases(["noise=15,blur=2", "blur=4", "noise=70,blur=5;n=5,b=0.5"])
    assert [c.levels for c in cases] == [{"noise": 15.0, "blur": 2.0}, {"noise": 0.0, "blur": 4.0},
                                         {"noise": 70.0, "blur": 5.0}, {"noise": 5.0, "blur": 0.5}]
    assert [c.label for c in task.evaluation_cases("noise=15,blur=2;noise=50")] == ["noise=15,blur=2", "noise=50,blur=0"]
    assert task.evaluation_cases([(15, 2)])[0].label == "noise=15,blur=2"
    assert [c.label for c in task.validation_cases()] == ["noise=15,blur=2", "noise=50,blur=0"]
    for bad in ([15.0], ["sigma"], ["noise=x"], ["noise=-1"], ["foo=2"], ["noise=1,noise=2"], [""]):
        with pytest.raises(InputError) as e:
            task.evaluation_cases(bad)
        assert "\n" not in str(e.value)
    r = get_recipe("deblur-denoise-small")
    r.task.val_levels = ["noise=1,colour=2"]
    with pytest.raises(InputError, match="task.val_levels"):
        r.validate()


# ------------------------------------------------------------------ training smoke runs
def _images(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        arr = (torch.rand(3, 40, 48, generator=g) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(folder / f"img{i}.png")
    return folder


def _tiny(recipe, tmp_path: Path, steps: int = 20):
    data = _images(tmp_path / "imgs")
    recipe.model.args.update(channels=8, num_blocks=1)
    recipe.data.train, recipe.data.val, recipe.data.num_workers = str(data), str(data), 0
    recipe.data.patch_size, recipe.data.val_images, recipe.data.val_crop = 24, 1, 32
    recipe.train.steps, recipe.train.batch_size, recipe.train.threads = steps, 4, 1
    recipe.train.log_every, recipe.train.ckpt_every, recipe.train.val_every, recipe.train.warmup_steps = 1, 100, 10_000, 2
    recipe.task.val_grid = [[1.0, 1.0]]
    return recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("dd")
    summary = Trainer(_tiny(get_recipe("deblur-denoise-small"), tmp), tmp / "run", progress=False).fit()
    assert summary["steps"] == 20
    return tmp / "run" / "model.safetensors"


def test_tunable_training_and_its_knob_space(trained):
    import json

    from tunableconv.models import load_model

    logs = [json.loads(line) for line in (trained.parent / "log.jsonl").read_text().splitlines()]
    losses = [rec["loss"] for rec in logs if "loss" in rec]
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    model, info = load_model(trained)
    space = info.space
    assert space.domain == "cube" and space.names == ["denoise", "deblur"]
    assert all(k.description for k in space.knobs) and space.default == [1.0, 1.0]
    assert info.info["task"] == "deblur_denoise"
    y = model(torch.rand(1, 3, 16, 16), torch.tensor([0.0, 0.0]))  # every corner is a valid setting
    assert y.shape == (1, 3, 16, 16)


def test_restore_with_two_knobs_and_bad_knobs_refused(trained, tmp_path, capsys):
    from tunableconv.cli import main
    from tunableconv.io import read_image, write_image

    src = tmp_path / "in.png"
    write_image(torch.rand(3, 20, 24, generator=torch.Generator().manual_seed(0)), src)
    out = tmp_path / "out.png"
    rc = main(["restore", str(src), str(out), "--model", str(trained), "--knob", "denoise=0.6", "--knob", "deblur=1"])
    _, err = capsys.readouterr()
    assert rc == 0, err
    assert read_image(out).shape == (3, 20, 24)
    for args, needle in ((["--knob", "sharpness=0.5"], "sharpness"), (["--p", "0.5"], "2"),
                         (["--p", "0.5,0.5,0.5"], "2"), (["--knob", "denoise=1.5"], "denoise")):
        rc = main(["restore", str(src), str(tmp_path / "bad.png"), "--model", str(trained), *args])
        _, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err and needle in lines[0], err
        assert not (tmp_path / "bad.png").exists()


def test_cresmd_conditioned_on_the_degradation_trains(tmp_path):
    from tunableconv.compare import recipe_for
    from tunableconv.models import load_model

    assert get_task("deblur_denoise").rivals[:3] == ("tunable", "fixed", "cresmd-condition")
    r = _tiny(recipe_for("cresmd-condition", "small", task="deblur_denoise"), tmp_path)
    assert r.model.arch == "cresmd" and r.model.args["condition"] == "degradation"
    trainer = Trainer(r, tmp_path / "run", progress=False)
    seen = []
    forward = trainer.model.forward
    trainer.model.forward = lambda x, c: (seen.append(c.detach().clone()), forward(x, c))[1]
    trainer.fit()
    assert len(seen) >= 20 and all(c.shape == (4, 2) for c in seen[:20])
    conds = torch.cat(seen[:20])
    assert bool(((conds >= 0) & (conds <= 1)).all()) and bool((conds == 0).any())  # single degradations
    assert trainer.model.config.reference_p == [1.0, 1.0]
    _, info = load_model(tmp_path / "run" / "model.safetensors")
    assert info.space.names == ["blur_level", "noise_level"] and info.space.domain == "cube"


def test_fixed_twin_recipes():
    small, fixed = get_recipe("deblur-denoise-small"), get_recipe("deblur-denoise-fixed-small")
    assert fixed.task.fidelity_only and fixed.model.args["num_params"] == 0
    assert fixed.train.steps == small.train.steps and fixed.data == small.data
    assert build_task(fixed).num_params == 0 and build_task(small).num_params == 2
    paper = get_recipe("deblur-denoise-paper")
    assert (paper.model.args["channels"], paper.model.args["num_blocks"]) == (64, 16)
    assert get_recipe("deblur-denoise-fixed-paper").task.fidelity_only
    from tunableconv.compare import recipe_for

    twin = recipe_for("fixed", "small", task="deblur_denoise")
    assert twin.task.fidelity_only and twin.model.args["num_params"] == 0 and twin.model.args["expansion"] == 1


def test_matched_condition_scales_each_true_level_by_its_knob():
    task = _task()
    true = torch.tensor([0.5, 0.3])  # (blur sigma / 4, noise sigma / 50)
    assert torch.equal(task.matched_condition(torch.tensor([1.0, 1.0]), true), true)
    assert torch.allclose(task.matched_condition(torch.tensor([0.5, 0.0]), true), torch.tensor([0.0, 0.15]))
    assert torch.allclose(task.matched_condition(torch.tensor([0.0, 1.0]), true), torch.tensor([0.5, 0.0]))
    assert task.matched_condition(torch.tensor([1.0]), true) is None


def test_every_named_recipe_has_a_docstring_for_train_list():
    from tunableconv.train.recipes import RECIPES

    for name, fn in RECIPES.items():
        assert (fn.__doc__ or "").strip(), f"{name} has no docstring: tunableconv train --list fails"


# ------------------------------------------------------------------ the independence measures
def test_output_measures_see_noise_and_blur_apart():
    """residual_noise sees noise and not blur; edge_sharpness sees blur and hardly noise."""
    task = _task()
    clean = _step_image(64, 64)
    s = _case(task, clean, 0.0, 0.0)
    base = task.output_measures(clean, s)
    assert base["residual_noise"] == pytest.approx(0.0, abs=1e-6) and base["edge_sharpness"] == pytest.approx(1.0)
    noisy = clean + 10 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    n = task.output_measures(noisy, s)
    blurred = gaussian_blur(clean, 2.0, size=21, padding="replicate")
    b = task.output_measures(blurred, s)
    assert 5 < n["residual_noise"] < 12  # noise of std 10 (a high-pass keeps most of it, grey averages 3 channels)
    assert b["residual_noise"] < 0.5  # blur adds no noise on flat parts
    assert b["edge_sharpness"] < 0.6 and abs(n["edge_sharpness"] - 1) < 0.3
    flat = torch.full((3, 16, 16), 0.5)
    assert task.output_measures(flat, _case(task, flat, 0, 0)) == {"residual_noise": 0.0}  # no edges: no sharpness
