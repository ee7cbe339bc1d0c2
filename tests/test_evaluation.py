"""``tunableconv eval`` on the task layer: tiny random models of each knob space, a toy task.

Nothing in the evaluation knows a task: a toy task (registered for the test only) with two
cube knobs or three simplex knobs is evaluated with the same code as the denoiser.
"""

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image

from tunableconv import tasks as T
from tunableconv.cli import main
from tunableconv.evaluation import case_seed, evaluate, grid_lines
from tunableconv.tasks.denoise import DenoiseTask
from tunableconv.knobs import Knob, KnobSpace
from tunableconv.models import ResNet, ResNetConfig, save_model
from tunableconv.tasks import EvalCase, RunnerFacts, Sample, Task, TaskSection
from tunableconv.tasks.denoise_protocol import evaluate as evaluate_denoising_protocol
from tunableconv.tasks.denoise_protocol import noise_seed
from tunableconv.train import get_recipe

OBJECTIVES = ("identity", "invert", "dark")


@dataclass
class ToySection(TaskSection):
    name: str = "toy"
    knobs: int = 2
    domain: str = "cube"


class ToyTask(Task):
    """Light noise; objectives: the clean image, its negative, a darker copy."""

    name = "toy"
    section_class = ToySection
    rivals = ("tunable",)

    def __init__(self, recipe):
        super().__init__(recipe)

    @property
    def objective_names(self):
        return list(OBJECTIVES[: self.cfg.knobs])

    def build_loss(self):  # pragma: no cover - not trained here
        raise NotImplementedError

    def _sample(self, clean, level, g):
        x = clean + level * torch.randn(clean.shape, generator=g)
        targets = {"identity": clean, "invert": 1 - clean, "dark": 0.5 * clean}
        return Sample(x, clean, {k: targets[k] for k in self.objective_names}, torch.tensor([level]))

    def degrade(self, clean, g):  # pragma: no cover - not trained here
        return self._sample(clean, 0.05, g)

    def degrade_case(self, clean, case, g):
        return self._sample(clean, case.levels["level"], g)

    def evaluation_cases(self, levels=None):
        return [EvalCase(f"level={v:g}", {"level": float(v)}) for v in (levels or [0.05])]

    def validation_cases(self):
        return self.evaluation_cases()

    def p_knob_space(self, facts: RunnerFacts):
        return KnobSpace([Knob(n) for n in self.objective_names], self.cfg.domain)

    def validation_grid(self):
        return []

    def reference_p(self):
        return [1.0] + [0.0] * (self.cfg.knobs - 1)


def _images(folder, n=2):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        small = (rng.random((4, 5, 3)) * 255).astype(np.uint8)
        Image.fromarray(small).resize((40, 36), Image.BICUBIC).save(folder / f"im{i}.png")
    return folder


@pytest.fixture()
def toy(monkeypatch, tmp_path):
    monkeypatch.setitem(T.TASKS, "toy", ToyTask)
    return {"images": _images(tmp_path / "imgs"), "root": tmp_path}


def _toy_model(root, knobs, domain):
    torch.manual_seed(0)
    net = ResNet(ResNetConfig(channels=4, num_blocks=1, num_params=knobs, domain=domain))
    with torch.no_grad():
        for prm in net.parameters():
            prm.add_(0.05 * torch.randn_like(prm))
    recipe = get_recipe("denoise-small").to_dict()
    recipe["task"] = {"name": "toy", "knobs": knobs, "domain": domain}
    space = KnobSpace([Knob(n) for n in OBJECTIVES[:knobs]], domain)
    return save_model(net, root / f"toy-{domain}{knobs}.safetensors", knobs=[k.to_dict() for k in space.knobs],
                      info={"task": "toy", "recipe": recipe}, knob_space=space)


@pytest.mark.parametrize("knobs,domain,picture_lines", [(2, "cube", 2), (3, "simplex", 3), (2, "simplex", 1)])
def test_every_knob_space_is_evaluated_by_the_same_code(toy, knobs, domain, picture_lines):
    path = _toy_model(toy["root"], knobs, domain)
    out = toy["root"] / f"out-{domain}{knobs}"
    assert main(["eval", "--model", str(path), "--data", str(toy["images"]), "--levels", "0.05",
                 "--p-grid", "0,0.5,1", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "toy" and res["format"] == "tunableconv-eval/2"
    ps = [s["p"] for s in res["settings"]]
    expected = KnobSpace([Knob(n) for n in OBJECTIVES[:knobs]], domain).grid([0, 0.5, 1]).tolist()
    assert ps == expected
    case = res["datasets"]["imgs"]["cases"]["level=0.05"]
    assert set(case["model"]) >= {"psnr", "ssim"} | {f"psnr_{n}" for n in OBJECTIVES[:knobs]}
    assert all(len(v) == len(ps) for v in case["model"].values())
    assert ("psnr_blend" in case["model"]) == (domain == "simplex")  # the cube has no blended target
    assert len(case["evenness"]) == picture_lines  # one per knob axis (cube) / edge (simplex)
    assert list(out.glob("knobs_*.png")) and (out / "results.md").read_text().count("|") > 10


def test_denoiser_numbers_equal_the_denoising_protocol(tmp_path):
    images = _images(tmp_path / "imgs", 2)
    torch.manual_seed(1)
    net = ResNet(ResNetConfig(channels=4, num_blocks=1, num_params=2))
    path = save_model(net, tmp_path / "d.safetensors", knobs=T.NOISE_KNOBS,
                      info={"task": "denoise", "strength": "p = (s, 1 - s)", "beta": 0.9,
                            "recipe": get_recipe("denoise-small").to_dict()})
    new = evaluate(str(path), str(images), levels=[25], grid=[0, 0.5, 1], progress=False)
    old = evaluate_denoising_protocol(str(path), str(images), [25], [0, 0.5, 1], progress=False, compute_ssim=False)
    a = new["datasets"]["imgs"]["cases"]["sigma=25"]
    b = old["datasets"]["imgs"]["sigma"]["25"]["model"]
    assert a["model"]["psnr"] == b["psnr_gt"] and a["model"]["psnr_noise"] == b["psnr_target"]
    assert a["evenness"]["slider"] == pytest.approx(b["evenness"])
    # at s = 1 the blend is the clean image; at s = 0 the noise-preservation target
    assert a["model"]["psnr_blend"][-1] == a["model"]["psnr"][-1]
    assert a["model"]["psnr_blend"][0] == a["model"]["psnr_noise"][0]
    assert case_seed(0, "imgs", 1, DenoiseTask.case(25.0)) == noise_seed(0, "imgs", 1, 25.0)
    other = case_seed(0, "imgs", 1, EvalCase("x", {"sigma": 25.0}))  # no seed_key: the generic key
    assert other != noise_seed(0, "imgs", 1, 25.0) and other == case_seed(0, "imgs", 1, EvalCase("y", {"sigma": 25.0}))


def test_grid_lines_per_domain():
    cube = KnobSpace([Knob("a"), Knob("b")], "cube")
    g = cube.grid([0, 0.5, 1])
    lines = grid_lines(cube, list(g), [None] * len(g))
    assert [name for name, _, _ in lines] == ["a", "b"]
    for _, idx, pos in lines:
        assert pos == [0.0, 0.5, 1.0] and len(idx) == 3
    tri = KnobSpace([Knob("x"), Knob("y"), Knob("z")], "simplex")
    g = tri.grid([0, 0.5, 1])
    assert len(grid_lines(tri, list(g), [None] * len(g))) == 3


@pytest.mark.parametrize("args,msg", [
    (["--metrics", "psnr,fid"], "unknown metric"),
    (["--p-grid", "0,2"], "[0, 1]"),
    (["--levels", "a"], "levels must be comma-separated numbers"),
    (["--data", "no-such-set"], "no-such-set"),
])
def test_bad_inputs_give_one_line_errors(toy, capsys, args, msg):
    path = _toy_model(toy["root"], 2, "cube")
    argv = ["eval", "--no-progress", "--model", str(path), "--data", str(toy["images"]), "--out", str(toy["root"] / "o")]
    for k, v in zip(args[::2], args[1::2]):
        argv += [f"{k}={v}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and msg in err[0]
    assert not (toy["root"] / "o").exists()


def test_a_task_with_several_levels_takes_named_cases(tmp_path):
    """deblur_denoise: cases typed 'noise=15,blur=1;noise=0,blur=2', a heat map per metric on the cube."""
    from tunableconv.tasks import build_task

    images = _images(tmp_path / "imgs", 1)
    recipe = get_recipe("deblur-denoise-small")
    task = build_task(recipe)
    torch.manual_seed(0)
    net = ResNet(ResNetConfig(channels=4, num_blocks=1, num_params=2, domain="cube"))
    space = task.knob_space(net)
    path = save_model(net, tmp_path / "dd.safetensors", knobs=task.knobs(net),
                      info={"task": "deblur_denoise", "recipe": recipe.to_dict()}, knob_space=space)
    out = tmp_path / "e"
    assert main(["eval", "--model", str(path), "--data", str(images), "--levels", "noise=15,blur=1;noise=0,blur=2",
                 "--p-grid", "0,1", "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["datasets"]["imgs"]["cases"]) == ["noise=15,blur=1", "noise=0,blur=2"]
    assert [s["p"] for s in res["settings"]] == [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]  # (p_n, p_b)
    case = res["datasets"]["imgs"]["cases"]["noise=15,blur=1"]["model"]
    # the blend at each corner is that corner's target
    for k, name in enumerate(["degraded", "deblurred", "denoised", "restored"]):
        assert case["psnr_blend"][k] == pytest.approx(case[f"psnr_{name}"][k])
    # the task's measures in every row, and each knob's effect on each metric
    assert {"residual_noise", "edge_sharpness"} <= set(case)
    effects = res["datasets"]["imgs"]["cases"]["noise=15,blur=1"]["effects"]
    assert set(effects) == {"denoise", "deblur"}
    assert effects["denoise"]["psnr_blend"] == pytest.approx(
        (case["psnr_blend"][2] - case["psnr_blend"][0] + case["psnr_blend"][3] - case["psnr_blend"][1]) / 2)
    assert "Knob effects" in (out / "results.md").read_text()
    assert len(list(out.glob("knobs_*.png"))) == 2
    assert main(["eval", "--model", str(path), "--data", str(images), "--levels", "noise=15;;", "--out", str(out)]) == 2
