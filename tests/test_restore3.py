"""The restore3 task (issue 21, first step): the JPEG round trip and the level <-> quality map,
the degradation order (blur, noise, quantisation, JPEG), the eight corner targets and their
trilinear blend, the TSNet paper's three training regimes, the condition, evaluation cases,
the 27 effects through ``model.sweep`` with a shared trunk, and 20-step trainings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from tunableconv import InputError
from tunableconv.data.degradations import add_gaussian_noise, gaussian_blur, jpeg_compress, quantize_8bit
from tunableconv.losses.multiloss import cube_corner_weights
from tunableconv.metrics import psnr
from tunableconv.tasks import EvalCase, Restore3Task, Sample, TASKS, build_task, get_task
from tunableconv.tasks.restore3 import CORNER_P, CORNERS, effect_grid, jpeg_level, jpeg_quality
from tunableconv.train import Trainer, get_recipe


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _task(recipe: str = "restore3-small", **task_fields) -> Restore3Task:
    r = get_recipe(recipe)
    for k, v in task_fields.items():
        setattr(r.task, k, v)
    return build_task(r)


def _smooth_image(h: int = 48, w: int = 48) -> torch.Tensor:
    """A smooth colour image with some texture: what JPEG codes well at high quality."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([xx, yy, 0.5 + 0.4 * torch.sin(12 * xx * yy)]).clamp(0, 1)


def _textured(h: int = 48, w: int = 48, seed: int = 0) -> torch.Tensor:
    return (0.7 * _smooth_image(h, w) + 0.3 * torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed)))


def _case(task: Restore3Task, clean: torch.Tensor, text: str, seed: int = 0) -> Sample:
    return task.degrade_case(clean, task.evaluation_cases(text)[0], torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------ JPEG
def test_jpeg_level_quality_map():
    assert jpeg_quality(0.0) is None  # level 0: no JPEG at all
    assert [jpeg_quality(u) for u in (1.0, 0.5, 1 / 90, 1e-4)] == [10, 55, 99, 100]
    assert [jpeg_level(q) for q in (None, 100, 55, 10)] == [0.0, 0.0, 0.5, 1.0]
    assert jpeg_level(5) == 1.0 and jpeg_level(1) == 1.0  # stronger than training: the largest level
    for u in torch.linspace(0.01, 1, 40).tolist():
        assert abs(jpeg_level(jpeg_quality(u)) - u) <= 0.5 / 90 + 1e-9  # the integer quality's level
    for bad in (-0.1, 1.5, math.nan, "x", True):
        with pytest.raises(InputError):
            jpeg_quality(bad)


def test_jpeg_round_trip_8bit_quality_and_per_sample():
    x = _smooth_image()
    y100, y55, y10 = (jpeg_compress(x, q) for q in (100, 55, 10))
    for y in (y100, y55, y10):
        assert y.shape == x.shape and y.dtype == x.dtype
        codes = y * 255
        assert torch.allclose(codes, codes.round(), atol=1e-4) and float(y.min()) >= 0 and float(y.max()) <= 1
    scores = [float(psnr(y, x)) for y in (y100, y55, y10)]
    assert scores[0] > 38 and scores[0] > scores[1] > scores[2]  # 100: near identity; lower quality, lower PSNR
    # quantised to 8 bits first (as a saved image): the same result from the 8-bit image
    assert torch.equal(jpeg_compress(quantize_8bit(x), 55), y55)
    # per-sample qualities in a batch (a list or a (B,) tensor), and a grey image
    batch = torch.stack([x, x.flip(-1)])
    yb = jpeg_compress(batch, [10, 100])
    assert torch.equal(yb[0], y10) and torch.equal(yb[1], jpeg_compress(x.flip(-1), 100))
    assert torch.equal(jpeg_compress(batch, torch.tensor([10, 100])), yb)
    assert torch.equal(jpeg_compress(batch, 55.0)[0], y55)  # an integral float is an integer
    assert jpeg_compress(x[:1], 30).shape == (1, 48, 48)


@pytest.mark.parametrize("quality", [0, 101, 50.5, math.nan, True, "50", [10, 20, 30], torch.tensor([[50]])])
def test_jpeg_bad_quality_is_one_line(quality):
    with pytest.raises(InputError) as e:
        jpeg_compress(torch.rand(2, 3, 8, 8), quality)
    assert "\n" not in str(e.value) and "quality" in str(e.value)


# ------------------------------------------------------------------ degradation order and condition
def test_blur_then_noise_then_quantisation_then_jpeg():
    task = _task()
    clean = _textured()
    s = _case(task, clean, "blur=2,noise=25,jpeg=30", seed=3)
    blurred = gaussian_blur(clean, 2.0, 21, padding="replicate")
    noisy = add_gaussian_noise(blurred, 25.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s.input, jpeg_compress(quantize_8bit(noisy), 30))  # exactly this order
    assert not torch.equal(s.input, quantize_8bit(add_gaussian_noise(jpeg_compress(blurred, 30), 25.0,
                                                                     generator=torch.Generator().manual_seed(3))))
    # without JPEG: the quantised blur + noise of deblur_denoise (every value k / 255)
    s = _case(task, clean, "blur=2,noise=25", seed=3)
    assert torch.equal(s.input, quantize_8bit(noisy))
    # the noise is added after the blur: white on a flat image
    flat = torch.full((3, 64, 64), 0.5)
    r = _case(task, flat, "blur=3,noise=15").input - 0.5
    assert abs(float(r.std()) * 255 - 15.0) < 0.6
    assert abs(float((r[:, :, 1:] * r[:, :, :-1]).mean() / r.var())) < 0.05


def test_condition_vector():
    task = _task()
    clean = _textured(24, 24)
    s = _case(task, clean, "blur=2,noise=25,jpeg=30")
    assert s.condition.shape == (3,)
    assert torch.allclose(s.condition, torch.tensor([0.5, 0.5, 70 / 90]))
    assert torch.allclose(_case(task, clean, "noise=10").condition, torch.tensor([0.0, 0.2, 0.0]))  # no JPEG: 0
    assert torch.equal(_case(task, clean, "blur=6,noise=70,jpeg=5").condition, torch.ones(3))  # clipped to [0, 1]
    batched = task.degrade_case(clean.expand(2, -1, -1, -1), EvalCase("x", {"blur": 1.0, "noise": 5.0, "jpeg": 100.0}),
                                torch.Generator().manual_seed(0))
    assert batched.input.shape == (2, 3, 24, 24)
    assert torch.allclose(batched.condition, torch.tensor([[0.25, 0.1, 0.0]] * 2))
    true = torch.tensor([0.5, 0.3, 0.8])
    assert torch.equal(task.matched_condition(torch.ones(3), true), true)
    assert torch.allclose(task.matched_condition(torch.tensor([0.5, 0.0, 1.0]), true), torch.tensor([0.25, 0.0, 0.8]))
    assert task.matched_condition(torch.ones(2), true) is None


# ------------------------------------------------------------------ targets
def test_corner_targets_and_the_residual_split():
    task = _task()
    assert task.objective_names == list(CORNERS) and len(CORNERS) == 8
    assert [CORNER_P[n] for n in CORNERS] == [(k & 1, (k >> 1) & 1, (k >> 2) & 1) for k in range(8)]
    clean = _textured()
    s = _case(task, clean, "blur=1.5,noise=20,jpeg=40", seed=1)
    t = s.targets
    b = gaussian_blur(clean, 1.5, 21, padding="replicate")
    jb = jpeg_compress(b, 40)
    r_j, r_n = jb - b, s.input - jb  # the codec on the noise-free blur; the noise as the input shows it
    expect = {"degraded": b + 0.9 * r_n + r_j, "deblurred": clean + 0.9 * r_n + r_j, "denoised": jb,
              "deblurred_denoised": clean + r_j, "dejpegged": b + 0.9 * r_n, "deblurred_dejpegged": clean + 0.9 * r_n,
              "denoised_dejpegged": b, "restored": clean}
    assert list(t) == list(CORNERS)
    for name, want in expect.items():
        assert torch.allclose(t[name], want, atol=1e-6), name
    assert torch.equal(t["restored"], clean)
    # each knob moves its own residual whatever the others: opposite faces differ by one residual
    assert torch.allclose(t["degraded"] - t["denoised"], 0.9 * r_n, atol=1e-6)
    assert torch.allclose(t["deblurred_dejpegged"] - t["restored"], 0.9 * r_n, atol=1e-6)
    assert torch.allclose(t["deblurred"] - t["degraded"], clean - b, atol=1e-6)
    assert torch.allclose(t["dejpegged"] - t["denoised_dejpegged"], 0.9 * r_n, atol=1e-6)
    assert torch.allclose(t["denoised"] - t["denoised_dejpegged"], r_j, atol=1e-6)
    # jpeg_beta scales the JPEG residual; without JPEG it is 0 (the dejpeg knob does nothing)
    half = _case(_task(jpeg_beta=0.5), clean, "blur=1.5,noise=20,jpeg=40", seed=1).targets
    assert torch.allclose(half["denoised"], b + 0.5 * r_j, atol=1e-6)
    plain = _case(task, clean, "blur=1.5,noise=20", seed=1).targets
    assert torch.equal(plain["degraded"], plain["dejpegged"]) and torch.equal(plain["denoised"], plain["denoised_dejpegged"])
    # fixed twin: the ground truth alone
    fixed = _task("restore3-fixed-small")
    assert fixed.objective_names == ["restored"] and list(_case(fixed, clean, "noise=5").targets) == ["restored"]


def test_blended_target_is_the_trilinear_blend_and_the_affine_formula():
    task = _task()
    clean = _textured(32, 32)
    s = _case(task, clean, "blur=2,noise=30,jpeg=20", seed=2)
    batch = Sample(s.input[None], s.clean[None], {k: v[None] for k, v in s.targets.items()}, s.condition[None])
    for name, p in CORNER_P.items():
        assert torch.allclose(task.blended_target(batch, torch.tensor(p))[0], s.targets[name], atol=1e-6)
    b = s.targets["denoised_dejpegged"]
    r_j = s.targets["denoised"] - b
    r_n = (s.targets["dejpegged"] - b) / 0.9
    ps = torch.rand(5, 3, generator=torch.Generator().manual_seed(0))
    for p in ps:
        pb, pn, pj = p.tolist()
        affine = (1 - pb) * b + pb * clean + (1 - pn) * 0.9 * r_n + (1 - pj) * r_j
        a = cube_corner_weights(p)
        trilinear = sum(a[k] * s.targets[n] for k, n in enumerate(CORNERS))
        got = task.blended_target(batch, p)[0]
        assert torch.allclose(got, affine, atol=1e-5) and torch.allclose(got, trilinear, atol=1e-6)
    # per-sample p: one blend per sample
    two = Sample(batch.input.expand(2, -1, -1, -1), batch.clean.expand(2, -1, -1, -1),
                 {k: v.expand(2, -1, -1, -1) for k, v in batch.targets.items()}, batch.condition.expand(2, -1))
    got = task.blended_target(two, ps[:2])
    assert torch.allclose(got[1], task.blended_target(batch, ps[1])[0], atol=1e-6)
    assert _task("restore3-fixed-small").blended_target(batch, torch.ones(0)) is None


# ------------------------------------------------------------------ the training regimes
_STRONGEST = (4.0, 50.0, 10)  # blur sigma, noise sigma, JPEG quality


def _present(lv) -> list[bool]:
    return [v not in (0.0, None) for v in lv]


def _extreme(lv) -> bool:
    """Every type absent or at its strongest level (the binary regime)."""
    return all(not on or v == top for on, v, top in zip(_present(lv), lv, _STRONGEST))


def test_three_regimes_in_equal_thirds():
    task = _task()
    g = torch.Generator().manual_seed(1)
    levels = [task.draw_levels(g) for _ in range(6000)]
    binary = [lv for lv in levels if _extreme(lv)]
    single = [lv for lv in levels if not _extreme(lv) and sum(_present(lv)) == 1]
    full = [lv for lv in levels if not _extreme(lv) and sum(_present(lv)) == 3]
    assert len(binary) + len(single) + len(full) == len(levels)  # nothing else
    for part in (binary, single, full):
        assert abs(len(part) / len(levels) - 1 / 3) < 0.025
    # single: each type a third of the time; binary: each type present half the time, 1/8 clean images
    for i in range(3):
        assert abs(sum(_present(lv)[i] for lv in single) / len(single) - 1 / 3) < 0.04
        assert abs(sum(_present(lv)[i] for lv in binary) / len(binary) - 1 / 2) < 0.04
    assert abs(sum(lv == (0.0, 0.0, None) for lv in binary) / len(binary) - 1 / 8) < 0.03
    # ranges: blur in [0, 4], noise in [0, 50], integer qualities in [10, 100]; uniform levels
    assert all(0 <= b <= 4 and 0 <= n <= 50 and (q is None or (isinstance(q, int) and 10 <= q <= 100))
               for b, n, q in levels)
    mean = [sum(lv[i] for lv in full) / len(full) for i in range(3)]
    assert abs(mean[0] - 2) < 0.15 and abs(mean[1] - 25) < 1.5 and abs(mean[2] - 55) < 3
    # seeded, and eight draws per sample whatever the regime
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert [task.draw_levels(g1) for _ in range(50)] == [task.draw_levels(g2) for _ in range(50)]
    for seed in range(20):
        g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        task.draw_levels(g1)
        torch.rand(8, generator=g2)
        assert torch.equal(g1.get_state(), g2.get_state())


def test_binary_regime_with_uniform_levels_and_other_shares():
    g = torch.Generator().manual_seed(2)
    uniform = _task(binary_levels="uniform")
    counts = [sum(v not in (0.0, None) for v in uniform.draw_levels(g)) for _ in range(6000)]
    share = [counts.count(k) / len(counts) for k in range(4)]
    # single 1/3 + binary with presence Bernoulli(1/2) x 3 at uniform levels + all 1/3
    want = [1 / 24, 1 / 3 + 1 / 8, 1 / 8, 1 / 3 + 1 / 24]
    assert all(abs(a - b) < 0.025 for a, b in zip(share, want)), share
    only_single = _task(regime_shares=[1.0, 0.0, 0.0])
    assert all(sum(v not in (0.0, None) for v in only_single.draw_levels(g)) == 1 for _ in range(300))


def test_training_samples_are_seeded_and_carry_the_condition():
    task = _task()
    clean = _textured(24, 24)
    a, b = (task.degrade(clean, torch.Generator().manual_seed(5)) for _ in range(2))
    assert torch.equal(a.input, b.input) and torch.equal(a.condition, b.condition)
    assert a.condition.shape == (3,) and bool(((a.condition >= 0) & (a.condition <= 1)).all())
    assert list(a.targets) == list(CORNERS)


# ------------------------------------------------------------------ cases and the recipe section
def test_evaluation_cases_default_grid_and_user_cases():
    task = _task()
    default = task.evaluation_cases()
    labels = [c.label for c in default]
    assert len(default) == 26 and len(set(labels)) == 26 and "blur=0,noise=0" not in labels  # no clean case
    assert labels[0] == "blur=2,noise=0" and labels[-1] == "blur=4,noise=50,jpeg=10" and "blur=0,noise=25,jpeg=55" in labels
    cases = task.evaluation_cases(["blur=2,noise=25,jpeg=30", "jpeg=10", "noise=15;b=1,n=5,q=90", "quality=100,sigma=5"])
    assert [c.levels for c in cases] == [{"blur": 2.0, "noise": 25.0, "jpeg": 30.0}, {"blur": 0.0, "noise": 0.0, "jpeg": 10.0},
                                         {"blur": 0.0, "noise": 15.0}, {"blur": 1.0, "noise": 5.0, "jpeg": 90.0},
                                         {"blur": 0.0, "noise": 5.0, "jpeg": 100.0}]
    assert [c.label for c in cases[:3]] == ["blur=2,noise=25,jpeg=30", "blur=0,noise=0,jpeg=10", "blur=0,noise=15"]
    assert task.evaluation_cases([(1, 2, None), {"jpeg": 20}])[1].label == "blur=0,noise=0,jpeg=20"
    assert [c.label for c in task.validation_cases()] == ["blur=2,noise=25,jpeg=30", "blur=0,noise=0,jpeg=10"]
    for bad in ([15.0], ["jpeg"], ["blur=x"], ["noise=-1"], ["jpeg=0"], ["jpeg=101"], ["jpeg=50.5"], ["colour=2"],
                ["blur=1,b=2"], [""], [(1, 2)], [{"blur": 1, "sharp": 2}]):
        with pytest.raises(InputError) as e:
            task.evaluation_cases(bad)
        assert "\n" not in str(e.value), bad
    with pytest.raises(InputError):
        task.degrade_case(torch.rand(3, 8, 8), EvalCase("x", {"sigma": 5.0}), torch.Generator())


@pytest.mark.parametrize("field,value", [("val_levels", ["blur=1,colour=2"]), ("regime_shares", [0.5, 0.5, 0.5]),
                                         ("regime_shares", [1.0, 0.0]), ("jpeg_quality", [50, 20]),
                                         ("jpeg_quality", [0, 100]), ("jpeg_quality", [10.5, 100]),
                                         ("binary_levels", "max"), ("jpeg_beta", 1.5), ("blur_sigma", [0, 5]),
                                         ("val_grid", [[0.5, 0.5]]), ("kernel_size", 20)])
def test_bad_section_values_are_one_line_naming_the_field(field, value):
    r = get_recipe("restore3-small")
    setattr(r.task, field, value)
    with pytest.raises(InputError) as e:
        r.validate()
    assert f"task.{field}" in str(e.value) and "\n" not in str(e.value)


def test_recipes_registered_and_sized():
    assert TASKS["restore3"] is Restore3Task and get_task("restore3").budgets == {"small": "restore3-small",
                                                                                  "paper": "restore3-paper"}
    small, trunk = get_recipe("restore3-small"), get_recipe("restore3-trunk-small")
    fixed, paper = get_recipe("restore3-fixed-small"), get_recipe("restore3-paper")
    deblur_denoise = get_recipe("deblur-denoise-small")
    for k in ("channels", "num_blocks", "expansion", "domain"):
        assert small.model.args[k] == deblur_denoise.model.args[k]
    assert small.model.args["num_params"] == 3 and small.model.args.get("trunk_blocks", 0) == 0
    assert trunk.model.args["trunk_blocks"] == small.model.args["num_blocks"] // 2
    assert {k: v for k, v in trunk.model.args.items() if k != "trunk_blocks"} == small.model.args
    assert trunk.task == small.task and trunk.train == small.train and trunk.data == small.data
    trunk.override("model.args.trunk_blocks=5")
    assert build_task(trunk).build_model().config.trunk_blocks == 5
    assert fixed.task.fidelity_only and fixed.model.args["num_params"] == 0 and fixed.train.steps == small.train.steps
    assert (paper.model.args["channels"], paper.model.args["num_blocks"], paper.train.device) == (64, 16, "cuda")
    for r in (small, fixed, paper):
        r.validate()


# ------------------------------------------------------------------ the 27 effects and the shared trunk
def test_effect_grid():
    grid = effect_grid()
    assert grid.shape == (27, 3) and len({tuple(p) for p in grid.tolist()}) == 27
    assert set(grid.flatten().tolist()) == {0.0, 0.5, 1.0}
    corners = [tuple(p) for p in grid.tolist() if 0.5 not in p]
    assert corners == [CORNER_P[n] for n in CORNERS]  # the corners in objective order
    assert torch.equal(grid[1], torch.tensor([0.5, 0.0, 0.0]))  # p_b varies fastest
    assert torch.equal(_task().effects(), grid) and _task("restore3-fixed-small").effects().shape == (0, 3)


@pytest.mark.parametrize("recipe,trunk", [("restore3-trunk-small", 1), ("restore3-small", 0)])
def test_sweep_of_the_27_effects_equals_27_calls(recipe, trunk):
    r = get_recipe(recipe)
    r.model.args.update(channels=8, num_blocks=2)
    if trunk:
        r.model.args["trunk_blocks"] = trunk
    model = build_task(r).build_model().eval()
    assert model.config.trunk_blocks == trunk and model.num_params == 3
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    grid = effect_grid()
    with torch.no_grad():
        swept = model.sweep(x, grid)
        each = torch.stack([model(x, p) for p in grid])
    assert swept.shape == (27, 2, 3, 12, 12)
    torch.testing.assert_close(swept, each, atol=1e-5, rtol=1e-5)


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
    recipe.model.args.update(channels=8, num_blocks=2)
    if recipe.model.args.get("trunk_blocks"):
        recipe.model.args["trunk_blocks"] = 1
    recipe.data.train, recipe.data.val, recipe.data.num_workers = str(data), str(data), 0
    recipe.data.patch_size, recipe.data.val_images, recipe.data.val_crop = 24, 1, 32
    recipe.train.steps, recipe.train.batch_size, recipe.train.threads = steps, 4, 1
    recipe.train.log_every, recipe.train.ckpt_every, recipe.train.val_every, recipe.train.warmup_steps = 1, 100, 10_000, 2
    recipe.task.val_levels = ["blur=1,noise=10,jpeg=50"]
    recipe.task.val_grid = [[1.0, 1.0, 1.0]]
    return recipe


@pytest.mark.parametrize("name,trunk", [("restore3-small", 0), ("restore3-trunk-small", 1)])
def test_20_step_training(name, trunk, tmp_path):
    from tunableconv.models import load_model

    summary = Trainer(_tiny(get_recipe(name), tmp_path), tmp_path / "run", progress=False).fit()
    assert summary["steps"] == 20
    logs = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    losses = [rec["loss"] for rec in logs if "loss" in rec]
    assert len(losses) == 20 and all(math.isfinite(v) for v in losses)
    assert all(f"loss_{n}" in logs[0] for n in CORNERS)
    model, info = load_model(tmp_path / "run" / "model.safetensors")
    assert info.space.domain == "cube" and info.space.names == ["deblur", "denoise", "dejpeg"]
    assert info.space.default == [1.0, 1.0, 1.0] and all(k.description for k in info.space.knobs)
    assert info.info["task"] == "restore3" and model.config.trunk_blocks == trunk
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.sweep(x, effect_grid()[:4]), torch.stack([model(x, p) for p in effect_grid()[:4]]),
                                   atol=1e-5, rtol=1e-5)


def test_rivals_take_the_three_level_condition():
    from tunableconv.compare import recipe_for

    assert get_task("restore3").rivals == ("tunable", "fixed", "cresmd-condition", "cresmd", "tsnet", "ta-tsnet")
    r = recipe_for("cresmd-condition", "small", task="restore3")
    assert r.model.arch == "cresmd" and r.model.args["condition"] == "degradation"
    model = build_task(r).build_model()
    assert model.config.num_params == 3 and model.config.reference_p == [1.0, 1.0, 1.0]
    assert build_task(r).knob_space(model).names == ["blur_level", "noise_level", "jpeg_level"]
    twin = recipe_for("fixed", "small", task="restore3")
    assert twin.task.fidelity_only and twin.model.args["num_params"] == 0 and twin.model.args["expansion"] == 1
