"""Style transfer (issue 19, first step): the style network plain and converted, the VGG16
extractor, the Gram maths, the two ways of mixing styles with p, the p sampler, the ``style``
task and 20-step training runs of ``style3-small`` and a single-style twin; the product on
the 20-step model: the style thumbnails in the model file, restore with three knobs (and its
refusals), the sweep's triangle and the web app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tunableconv.errors import InputError, MissingWeightsError
from tunableconv.losses import ParametricMultiLoss, StyleMixLoss, StyleObjective, gram_matrix, make_sampler
from tunableconv.losses.vgg import VGG16_FILE, VGG16_LAYERS, VGG16Features, load_feature_convs
from tunableconv.models import ARCHITECTURES, TunableStyleNet, load_model, save_model
from tunableconv.models.stylenet import PRESETS, StyleNet
from tunableconv.tasks import TASKS, StyleTask, build_task, runner_facts
from tunableconv.train import Trainer, get_recipe
from tunableconv.train.recipes import RECIPES

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(width=4, blocks=[1, 1, 1])
LAYERS = {"relu1_2": 1.0, "relu2_2": 1.0, "relu3_3": 1.0, "relu4_3": 1.0}
STYLES = ("mosaic", "edtaonisl", "kandinsky")


def _perturbed(model: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(scale * torch.randn(prm.shape, generator=g))
    return model.eval()


def _vgg() -> VGG16Features:
    torch.manual_seed(3)
    return VGG16Features(list(LAYERS), "random")


def _style_images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.rand(3, 36, 40, generator=g) for _ in STYLES]


def _objectives(vgg: VGG16Features, weights=(1.0, 2.0, 0.5), tv: float = 0.1) -> list[StyleObjective]:
    return [StyleObjective(s, LAYERS, {"relu2_2": 1.0}, vgg=vgg, style_weight=w, tv_weight=tv, name=n)
            for s, n, w in zip(_style_images(), STYLES, weights)]


# ------------------------------------------------------------------ the network
def test_stylenet_keeps_odd_sizes_and_the_presets_have_their_sizes():
    for model in (StyleNet(**TINY).eval(), TunableStyleNet(**TINY, num_params=3).eval()):
        for h, w in ((1, 1), (5, 7), (13, 19), (30, 17)):
            x = torch.rand(2, 3, h, w)
            with torch.no_grad():
                y = model(x) if isinstance(model, StyleNet) else model(x, torch.tensor([0.2, 0.3, 0.5]))
            assert y.shape == x.shape and torch.isfinite(y).all()
    count = lambda cfg: sum(p.numel() for p in StyleNet(cfg).parameters())  # noqa: E731
    assert count(PRESETS["stylenet-johnson"]) == 1_679_235  # PyTorch fast_neural_style's TransformerNet
    assert count(PRESETS["stylenet-small"]) < count(PRESETS["stylenet-johnson"]) < count(PRESETS["stylenet-paper"])
    with pytest.raises(ValueError, match="blocks"):
        StyleNet(width=4, blocks=[0, 1, 1])
    with pytest.raises(ValueError, match="outer_kernel"):
        StyleNet(width=4, outer_kernel=4)


def test_conversion_keeps_the_plain_network_at_every_p():
    plain = _perturbed(StyleNet(**TINY))
    x = torch.rand(3, 3, 21, 26)
    with torch.no_grad():
        want = plain(x)
        for norms in (True, False):
            tunable = TunableStyleNet(**TINY, num_params=3, tunable_norms=norms).eval()
            tunable.load_plain_weights(plain.state_dict())
            for p in ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1 / 3] * 3, [0.6, 0.4, 0.0]):
                torch.testing.assert_close(tunable(x, torch.tensor(p)), want, atol=1e-5, rtol=1e-4)
            per_sample = torch.tensor([[1.0, 0.0, 0.0], [0.1, 0.2, 0.7], [0.5, 0.0, 0.5]])
            torch.testing.assert_close(tunable(x, per_sample), want, atol=1e-5, rtol=1e-4)


def test_instance_norm_tunable_or_fixed():
    plain = StyleNet(**TINY)
    norm_params = {f"{m}.{n}" for m, mod in plain.named_modules() if isinstance(mod, torch.nn.InstanceNorm2d)
                   for n, _ in mod.named_parameters()}
    assert norm_params and all(name.endswith(("weight", "bias")) for name in norm_params)
    full = TunableStyleNet(**TINY, num_params=3).conversion_report()
    assert not full.fixed and {e.name for e in full.tunable} == {n for n, _ in plain.named_parameters()}
    kept = TunableStyleNet(**TINY, num_params=3, tunable_norms=False).conversion_report()
    assert {e.name for e in kept.fixed} == norm_params
    assert {e.name for e in kept.tunable} == {n for n, _ in plain.named_parameters()} - norm_params
    # fixed norms: one set of affine parameters whatever p; tunable: the knob moves them
    fixed, tunable = (_perturbed(TunableStyleNet(**TINY, num_params=3, tunable_norms=t)) for t in (False, True))
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(tunable(x, torch.tensor([1.0, 0, 0])), tunable(x, torch.tensor([0, 0, 1.0])))
    assert sum(p.numel() for p in tunable.parameters()) > sum(p.numel() for p in fixed.parameters())


def test_registered_tiling_inexact_and_model_file_round_trip(tmp_path):
    assert ARCHITECTURES["stylenet"][0] is TunableStyleNet
    model = _perturbed(TunableStyleNet(**TINY, num_params=3))
    assert not runner_facts(model).tiling_exact
    knobs = [{"name": n, "description": ""} for n in STYLES]
    loaded, info = load_model(save_model(model, tmp_path / "m.safetensors", knobs=knobs))
    x, p = torch.rand(1, 3, 20, 23), torch.tensor([0.2, 0.5, 0.3])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, p), model(x, p))
    assert info.architecture == "stylenet" and info.space.tiling_exact is False and info.space.receptive_field is None


# ------------------------------------------------------------------ VGG16 and the Gram maths
def test_vgg16_shapes_missing_file_and_same_features_as_the_metrics(tmp_path, monkeypatch):
    vgg = _vgg()
    feats = vgg(torch.rand(2, 3, 37, 50))
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "relu1_2": (2, 64, 37, 50), "relu2_2": (2, 128, 18, 25), "relu3_3": (2, 256, 9, 12), "relu4_3": (2, 512, 4, 6)}
    assert not any(p.requires_grad for p in vgg.parameters()) and not vgg.train().training
    with pytest.raises(MissingWeightsError) as exc:
        VGG16Features(["relu2_2"], tmp_path / "none.safetensors")
    assert "\n" not in str(exc.value) and "none.safetensors" in str(exc.value)
    monkeypatch.setenv("TUNABLECONV_WEIGHTS", str(tmp_path))  # the default lookup, pointed at an empty folder
    with pytest.raises(MissingWeightsError, match=f"{VGG16_FILE}.*TUNABLECONV_WEIGHTS"):
        VGG16Features(["relu2_2"])
    with pytest.raises(InputError, match="unknown VGG16 layer"):
        VGG16Features(["relu3_4"], "random")
    # a float16 file in torchvision's layout: the loss reads it as the metrics do (LPIPS-VGG's taps)
    from tunableconv import metrics as M

    full = VGG16Features(["relu5_3"], "random")  # all 13 convolutions
    sd = {f"features.{VGG16_LAYERS.index(n)}.{k}": getattr(c, k).detach().half()
          for n, c in full.convs.items() for k in ("weight", "bias")}
    save_file(sd, str(tmp_path / VGG16_FILE))
    loaded = VGG16Features(list(LAYERS), tmp_path / VGG16_FILE)
    x = torch.rand(1, 3, 24, 24)
    mean, std = torch.tensor(M.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(M.IMAGENET_STD).view(1, 3, 1, 1)
    convs = load_feature_convs(tmp_path / VGG16_FILE, [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28], "VGG16")
    want = M._lpips_features((x - mean) / std, "vgg", convs)[:4]
    for got, ref in zip(loaded(x).values(), want):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)
    save_file({"features.0.weight": torch.zeros(64, 3, 3, 3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(InputError, match="lacks features.0.weight / features.0.bias: not torchvision"):
        VGG16Features(["relu1_2"], tmp_path / "bad.safetensors")


def test_gram_matrix_normalisation_and_gradient():
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)  # C = 2 channels of H·W = 2 pixels
    torch.testing.assert_close(gram_matrix(f), torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4)  # F Fᵀ / (C·H·W)
    x = torch.rand(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gram_matrix, (x,))
    (gram_matrix(x) * torch.ones(3, 3, dtype=torch.float64)).sum().backward()  # d(Σ G)/dF = 2 Σ_c F_c / (CHW)
    torch.testing.assert_close(x.grad, (2 * x.sum(1, keepdim=True) / 60).expand_as(x).detach())


def test_style_objective_of_the_style_image_itself_and_content_loss():
    vgg = _vgg()
    s = torch.rand(3, 24, 24)
    obj = StyleObjective(s, LAYERS, {"relu2_2": 1.0}, vgg=vgg, tv_weight=0.0)
    torch.testing.assert_close(obj(s[None], {"clean": s[None]}), torch.zeros(1))  # same style, same content
    other = torch.rand(1, 3, 24, 24)
    obj(other, {"clean": s[None]})
    f, g = vgg(other), vgg(s[None])
    torch.testing.assert_close(obj.last_parts["content"], (f["relu2_2"] - g["relu2_2"]).square().mean((1, 2, 3)))
    want = sum(((gram_matrix(f[n]) - gram_matrix(g[n])) ** 2).sum((1, 2)) for n in LAYERS)
    torch.testing.assert_close(obj.last_parts["style"], want)


# ------------------------------------------------------------------ mixing the styles with p
def _loss_and_grad(loss, y, batch, p):
    y = y.detach().requires_grad_()
    total, _ = loss(y, batch, p)
    return total, torch.autograd.grad(total, y)[0]


def test_at_a_vertex_both_mixes_are_objective_i():
    objs = _objectives(_vgg())
    x = torch.rand(2, 3, 24, 24)
    y, batch = x + 0.1 * torch.randn_like(x), {"clean": x}
    for mix in ("losses", "targets"):
        loss = StyleMixLoss(objs, mix=mix)
        for i, obj in enumerate(objs):
            p = torch.nn.functional.one_hot(torch.tensor(i), 3).float()
            total, grad = _loss_and_grad(loss, y, batch, p)
            yy = y.detach().requires_grad_()
            want = obj(yy, batch).mean()
            torch.testing.assert_close(total, want)
            torch.testing.assert_close(grad, torch.autograd.grad(want, yy)[0], atol=1e-9, rtol=1e-5)


def test_mixed_losses_are_the_multiloss_and_the_targets_blend_the_grams():
    vgg = _vgg()
    objs = _objectives(vgg)
    x = torch.rand(3, 3, 24, 24)
    y, batch = x + 0.1 * torch.randn_like(x), {"clean": x}
    p = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.4, 0.0], [0.0, 0.0, 1.0]])
    a, ga = _loss_and_grad(ParametricMultiLoss(objs), y, batch, p)
    b, gb = _loss_and_grad(StyleMixLoss(objs, mix="losses"), y, batch, p)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb, atol=1e-9, rtol=1e-5)
    # the Gram target of mix = targets is Σ_i p_i G(s_i)
    targets = StyleMixLoss(objs, mix="targets")
    blend = targets.blended_grams(p, 3)
    for n in LAYERS:
        grams = [gram_matrix(vgg(s[None])[n])[0] for s in _style_images()]  # the images of _objectives
        want = torch.stack([sum(float(p[b, i]) * grams[i] for i in range(3)) for b in range(3)])
        torch.testing.assert_close(blend[n], want, atol=1e-7, rtol=1e-5)
    # equal style weights: the same gradient (the losses differ by a constant); unequal: not
    even = _objectives(vgg, weights=(2.0, 2.0, 2.0))
    _, g1 = _loss_and_grad(StyleMixLoss(even, mix="losses"), y, batch, p)
    _, g2 = _loss_and_grad(StyleMixLoss(even, mix="targets"), y, batch, p)
    torch.testing.assert_close(g1, g2, atol=1e-9, rtol=1e-4)
    _, g3 = _loss_and_grad(targets, y, batch, p)
    assert (g3 - gb).abs().max() > 1e-3 * gb.abs().max()


def test_mixture_sampler_puts_the_requested_mass_on_vertices_and_edges():
    p = make_sampler("mixture", 3, vertex_share=0.3, edge_share=0.3)(20_000, torch.Generator().manual_seed(0))
    torch.testing.assert_close(p.sum(1), torch.ones(20_000))
    zeros = (p == 0).sum(1)
    vertex, edge, inside = (zeros == 2).float().mean(), (zeros == 1).float().mean(), (zeros == 0).float().mean()
    assert abs(vertex - 0.3) < 0.02 and abs(edge - 0.3) < 0.02 and abs(inside - 0.4) < 0.02, (vertex, edge, inside)
    assert ((p == 1).sum(1) == 1).float().mean() == vertex  # a vertex is a pure style
    counts = torch.bincount(p[zeros == 2].argmax(1), minlength=3).float() / float((zeros == 2).sum())
    assert (counts - 1 / 3).abs().max() < 0.03  # the three styles equally often


def test_style3_long_is_style3_small_with_three_times_the_steps_and_two_levers():
    """The longer recipe differs from ``style3-small`` only where its docstring says."""
    import dataclasses

    small, long = get_recipe("style3-small"), get_recipe("style3-long")
    assert long.train.steps == 3 * small.train.steps and long.train.threads == 2
    assert long.model.args == {**small.model.args, "tunable_norms": False}
    assert (long.task.vertex_share, long.task.edge_share) == (0.6, 0.3)
    for section in ("data", "task", "train"):
        a, b = dataclasses.asdict(getattr(small, section)), dataclasses.asdict(getattr(long, section))
        changed = {k for k in a if a[k] != b[k]}
        assert changed <= {"vertex_share", "edge_share", "steps", "threads"}, (section, changed)


# ------------------------------------------------------------------ the task
def _task(**task) -> StyleTask:
    r = get_recipe("style3-small")
    for k, v in task.items():
        setattr(r.task, k, v)
    return build_task(r)


def test_task_knobs_cases_sampling_and_section_errors():
    assert TASKS["style"] is StyleTask and StyleTask.budgets == {"small": "style3-small", "paper": "style3-paper"}
    task = _task()
    space = task.p_knob_space(runner_facts(TunableStyleNet(**TINY, num_params=3)))
    assert space.names == list(STYLES) and space.domain == "simplex" and space.default == [1.0, 0.0, 0.0]
    assert all(k.description for k in space.knobs) and space.tiling_exact is False
    assert task.num_params == 3 and task.blended_target(None, torch.ones(3)) is None
    assert [t for t, _ in task.validation_grid()] == [*STYLES, "centre"]
    (case,) = task.evaluation_cases()
    clean = torch.rand(3, 8, 8)
    sample = task.degrade_case(clean, case, torch.Generator())
    assert sample.input is clean and not sample.targets and sample.condition.shape == (0,)
    with pytest.raises(InputError, match="no degradation levels"):
        task.evaluation_cases([25])
    sampler = task.sampling.sampler
    assert (sampler.vertex_share, sampler.edge_share) == (0.3, 0.3) and task.sampling.group == 1
    twin = _task(single_style="kandinsky")
    assert twin.num_params == 0 and twin.objective_names == ["kandinsky"] and twin.sampling.sampler is None
    for fields, match in (({"styles": ["mosaic"]}, "task.styles"), ({"styles": ["a/x.jpg", "b/x.png"]}, "distinct"),
                          ({"single_style": "candy"}, "task.single_style"), ({"val_grid": [[0.5, 0.5, 0.5]]}, "sum to 1"),
                          ({"mix": "pixels"}, "task.mix"), ({"style_balance": [1.0, 2.0]}, "task.style_balance"),
                          ({"style_size": 8}, "task.style_size"), ({"sampler": "cube"}, "task.sampler")):
        with pytest.raises(InputError, match=match) as exc:
            _task(**fields)
        assert "\n" not in str(exc.value)


# ------------------------------------------------------------------ training smoke runs
def _images(folder: Path, n: int, size: tuple[int, int], seed: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        arr = (torch.rand(3, *size, generator=g) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(folder / f"img{i}.png")
    return folder


def _vgg_weights() -> str:
    """The shared VGG16 file when this machine has it, else random weights."""
    from tunableconv.paths import weights_file

    try:
        weights_file(VGG16_FILE)
        return "default"
    except MissingWeightsError:
        return "random"


def _tiny(name: str, root: Path):
    r = get_recipe(name)
    r.model.args.update(TINY)
    r.data.root = str(root)
    r.data.train, r.data.val = str(root / "content"), str(root / "val")
    r.data.patch_size, r.data.num_workers, r.data.val_images, r.data.val_crop = 32, 0, 1, 24
    r.task.more_content = [str(root / "more")]
    r.task.style_size, r.task.vgg_weights = 48, _vgg_weights()
    r.train.steps, r.train.batch_size, r.train.threads = 20, 2, 1
    r.train.log_every, r.train.ckpt_every, r.train.val_every, r.train.warmup_steps = 5, 100, 20, 2
    return r


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("style-data")
    _images(root / "content", 3, (40, 44), 0)
    _images(root / "more", 2, (36, 50), 1)
    _images(root / "val", 1, (28, 30), 2)
    for i, name in enumerate(STYLES):
        _images(root / "style" / "tmp", 1, (60, 52), 10 + i)
        (root / "style" / "tmp" / "img0.png").rename(root / "style" / f"{name}.png")
    return root


@pytest.fixture(scope="module")
def runs(data_root, tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    """20-step runs of ``style3-small`` and a single-style twin: ``{name: (summary, model file)}``."""
    out = {}
    for name in ("style3-small", "style3-fixed-edtaonisl-small"):
        folder = tmp_path_factory.mktemp(name)
        recipe = _tiny(name, data_root)
        trainer = Trainer(recipe, folder / "run", progress=False)
        assert len(trainer.task.train_images(recipe).paths) == 5  # data.train and task.more_content
        out[name] = (trainer.fit(), folder / "run" / "model.safetensors")
    return out


@pytest.mark.parametrize("name", ["style3-small", "style3-fixed-edtaonisl-small"])
def test_recipes_train_20_steps(name, runs):
    assert {"style3-small", "style3-paper", *(f"style3-fixed-{s}-small" for s in STYLES)} <= set(RECIPES)
    shipped = get_recipe(name)
    assert shipped.train.steps == get_recipe("style3-small").train.steps and shipped.data.patch_size == 128
    summary, path = runs[name]
    assert summary["steps"] == 20
    model, info = load_model(path)
    val = summary["val"]
    if name == "style3-small":
        assert info.space.names == list(STYLES) and info.space.domain == "simplex" and not info.space.tiling_exact
        assert {f"style_{s}@{t}" for s in STYLES for t in (*STYLES, "centre")} | {"content@centre"} <= set(val)
    else:
        assert info.space.num_params == 0 and set(val) == {*(f"style_{s}@fixed" for s in STYLES), "content@fixed"}
    assert all(v == v and v >= 0 for v in val.values())


# ------------------------------------------------------------------ the product: icons, restore, sweep, app
def test_model_file_carries_the_style_thumbnails(runs, data_root):
    from tunableconv.io import icon_image, read_image

    _, path = runs["style3-small"]
    _, info = load_model(path)
    styles = {s: read_image(data_root / "style" / f"{s}.png") for s in STYLES}  # 60x52 noise pictures
    for knob in info.space.knobs:
        icon = icon_image(knob.icon)
        assert icon.shape[0] == 3 and max(icon.shape[-2:]) == 64
        far = {s: float((icon - torch.nn.functional.interpolate(im[None], size=icon.shape[-2:], mode="bilinear")[0])
                        .abs().mean()) for s, im in styles.items()}
        assert min(far, key=far.get) == knob.name  # its own style image, not another's
    assert not load_model(runs["style3-fixed-edtaonisl-small"][1])[1].space.knobs


def test_restore_sweep_and_app_with_three_style_knobs(runs, data_root, tmp_path, capsys):
    from tunableconv.cli import main
    from tunableconv.io import read_image

    _, path = runs["style3-small"]
    photo = data_root / "val" / "img0.png"
    outs = {}
    for name, knobs in (("blend", ["mosaic=0.5", "kandinsky=0.5"]), ("mosaic", ["mosaic=1"]),
                        ("implied", ["mosaic=0.5", "edtaonisl=0"])):  # the last weight is implied: kandinsky 0.5
        args = ["restore", str(photo), str(tmp_path / f"{name}.png"), "--model", str(path)]
        for k in knobs:
            args += ["--knob", k]
        assert main(args) == 0
        outs[name] = read_image(tmp_path / f"{name}.png")
        assert outs[name].shape == read_image(photo).shape
    assert not torch.equal(outs["blend"], outs["mosaic"]) and torch.equal(outs["blend"], outs["implied"])
    capsys.readouterr()
    bad = tmp_path / "bad.png"
    assert main(["restore", str(photo), str(bad), "--model", str(path), "--knob", "mosaic=0.5", "--knob",
                 "kandinsky=0.7"]) == 2
    err = capsys.readouterr().err
    assert "sum to 1" in err and err.count("\n") == 1 and not bad.exists()
    assert main(["restore", str(photo), str(bad), "--model", str(path), "--knob", "mosaic=1", "--tile", "16",
                 "--overlap", "4"]) == 2
    assert "not exact" in capsys.readouterr().err and not bad.exists()

    # the triangle of blends: 5 points per edge, the style thumbnails in a legend above
    sheet = tmp_path / "triangle.png"
    assert main(["sweep", str(photo), "--model", str(path), "--grid", "5", "-o", str(sheet)]) == 0
    assert "15 settings" in capsys.readouterr().out
    tri = read_image(sheet)
    assert tri.shape[-1] >= 5 * 30 and tri.shape[-2] > 5 * 28  # five rows of 30x28 panels

    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    import io
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from tunableconv.app.server import AppConfig, create_app

    with TestClient(create_app(AppConfig(models=[str(path)], include_zoo=False, preview_size=32))) as client:
        (m,) = client.get("/api/models").json()["models"]
        assert m["simplex"] and [k["name"] for k in m["knobs"]] == list(STYLES)
        assert all(k["icon"].startswith("data:image/jpeg;base64,") for k in m["knob_space"]["knobs"])
        assert not any("icon" in k for k in m["knobs"])  # sent once
        upload = client.post("/api/images", files={"file": ("a.png", photo.read_bytes(), "image/png")}).json()
        r = client.post("/api/restore", json={"image_id": upload["id"], "model": m["name"],
                                              "knobs": {"mosaic": 0.5, "edtaonisl": 0, "kandinsky": 0.5}})
        assert r.status_code == 200, r.text
        app_out = torch.from_numpy(np.array(Image.open(io.BytesIO(r.content)).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(app_out.float() / 255, outs["blend"])  # the same 8-bit output as the CLI
        r = client.post("/api/restore", json={"image_id": upload["id"], "model": m["name"],
                                              "knobs": {"mosaic": 0.5, "edtaonisl": 0.5, "kandinsky": 0.5}})
        assert r.status_code == 422 and "sum to 1" in r.json()["detail"]


# ------------------------------------------------------------------ Dynamic-Net on one edge (two styles)
def test_dynamicnet_style_identities_stages_and_refusals():
    from tunableconv.errors import InvalidParamsError
    from tunableconv.models.baselines import StyleDynamicNet

    torch.manual_seed(0)
    model = StyleDynamicNet(width=4, blocks=[1, 3, 1]).eval()
    assert sorted(model.tuning) == ["0", "1", "2"] and len(StyleDynamicNet(width=4, blocks=[1, 3, 1], tuning_every=2).tuning) == 1
    x = torch.rand(2, 3, 21, 30)  # sizes not divisible by 4
    with torch.no_grad():
        main = model.main(x)
        assert torch.equal(model(x, torch.tensor([1.0, 0.0])), main)  # alpha = 0: the main network exactly
        assert torch.equal(model(x, torch.tensor([0.0, 1.0])), main)  # fresh tuning blocks add nothing
        for block in model.tuning.values():
            torch.nn.init.normal_(block.conv2.weight, std=0.2)
        ends = model(x, torch.tensor([0.0, 1.0]))
        assert ends.shape == x.shape and (ends - main).abs().max() > 1e-3
        per_sample = model(x, torch.tensor([[0.0, 1.0], [0.6, 0.4]]))
        assert torch.allclose(per_sample[1:], model(x[1:], torch.tensor([0.6, 0.4])), atol=1e-6)
        assert torch.allclose(per_sample[:1], ends[:1], atol=1e-6)
    main_stage, tuning_stage = model.training_stages(11)
    assert (main_stage.name, main_stage.steps, main_stage.p) == ("main", 6, (1.0, 0.0))
    assert (tuning_stage.name, tuning_stage.steps, tuning_stage.p) == ("tuning", 5, (0.0, 1.0))
    trainable = {id(q) for q in tuning_stage.begin(model)}
    assert trainable == {id(q) for q in model.tuning.parameters()} and not any(q.requires_grad for q in model.main.parameters())
    (only,) = StyleDynamicNet(width=4, blocks=[1, 3, 1], pretrained_main=True).training_stages(11)
    assert (only.name, only.steps) == ("tuning", 11)
    # a plain style network's file state (keys net.*) fills the main network
    twin = TunableStyleNet(num_params=0, width=4, blocks=[1, 3, 1])
    model.load_main(twin.state_dict())
    with torch.no_grad():
        assert torch.equal(model(x, torch.tensor([1.0, 0.0])), twin(x))
    for bad in (dict(num_params=3), dict(domain="cube"), dict(tuning_every=4), dict(blocks=[1, 0, 1])):
        with pytest.raises(ValueError):
            StyleDynamicNet(width=4, **{"blocks": [1, 3, 1], **bad})
    with pytest.raises(InvalidParamsError):
        model(x, torch.tensor([0.5, 0.5, 0.0]))
    with pytest.raises(InvalidParamsError):
        model(x)


def test_dynamicnet_style_recipe_trains_tuning_blocks_on_a_twin(runs, data_root, tmp_path, capsys):
    """The recipe on a tiny scale, its main network the 20-step Edtaonisl twin (the recipe's is the
    Mosaic twin): 20 steps train the tuning blocks only; at p = (1, 0) the file computes the twin;
    restore takes its two knobs."""
    from tunableconv.cli import main
    from tunableconv.io import read_image

    assert "style-dynamicnet-small" in RECIPES
    shipped = get_recipe("style-dynamicnet-small")
    assert shipped.model.init == "runs/style3-fixed-mosaic-small/model.safetensors"
    assert shipped.task.styles == ["mosaic", "kandinsky"] and shipped.train.steps == get_recipe("style3-small").train.steps
    _, twin_path = runs["style3-fixed-edtaonisl-small"]
    recipe = _tiny("style-dynamicnet-small", data_root)
    recipe.model.init, recipe.task.styles = str(twin_path), ["edtaonisl", "kandinsky"]
    summary = Trainer(recipe, tmp_path / "run", progress=False).fit()
    assert summary["steps"] == 20
    model, info = load_model(tmp_path / "run" / "model.safetensors")
    twin, _ = load_model(twin_path)
    assert info.architecture == "dynamicnet-style" and info.space.names == ["edtaonisl", "kandinsky"]
    assert not info.space.tiling_exact
    x = read_image(data_root / "val" / "img0.png")[None]
    with torch.no_grad():
        assert torch.equal(model(x, torch.tensor([1.0, 0.0])), twin(x))  # the main network stayed frozen
        assert not torch.equal(model(x, torch.tensor([0.0, 1.0])), twin(x))  # the tuning blocks learnt
    out = tmp_path / "half.png"
    assert main(["restore", str(data_root / "val" / "img0.png"), str(out), "--model",
                 str(tmp_path / "run" / "model.safetensors"), "--knob", "edtaonisl=0.5", "--knob", "kandinsky=0.5"]) == 0
    assert read_image(out).shape == x.shape[1:]
    recipe.model.init = str(runs["style3-small"][1])  # a tunable style network is not a main network
    with pytest.raises(InputError, match="is a stylenet network with knobs, the recipe trains a dynamicnet-style \\(or a plain stylenet"):
        Trainer(recipe, tmp_path / "run2", progress=False).warm_start(recipe.model.init)


# ------------------------------------------------------------------ DNI on the simplex and the evaluation script
def test_interpolate_networks_is_dni_over_any_number_of_networks():
    from tunableconv.models.baselines import interpolate_networks

    nets = [_perturbed(StyleNet(**TINY), 0.2, seed=i).eval() for i in range(3)]
    x = torch.rand(1, 3, 20, 22)
    for i in range(3):  # a vertex is that network exactly
        w = [float(j == i) for j in range(3)]
        assert torch.equal(interpolate_networks(nets, w)(x), nets[i](x))
    mid = interpolate_networks(nets, [0.5, 0.0, 0.5])
    for name, prm in mid.named_parameters():
        torch.testing.assert_close(prm, (dict(nets[0].named_parameters())[name] + dict(nets[2].named_parameters())[name]) / 2)
    assert not torch.allclose(mid(x), 0.5 * (nets[0](x) + nets[2](x)), atol=1e-4)  # weights, not pixels
    into = StyleNet(**TINY).eval()
    assert interpolate_networks(nets, [0.2, 0.3, 0.5], into=into) is into
    with pytest.raises(ValueError, match="3 networks but 2 weights"):
        interpolate_networks(nets, [0.5, 0.5])
    with pytest.raises(ValueError, match="keys or shapes"):
        interpolate_networks([nets[0], StyleNet(width=8, blocks=[1, 1, 1])], [0.5, 0.5])


def _style3_script():
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "scripts" / "style3.py"
    spec = importlib.util.spec_from_file_location("style3_script", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["style3_script"] = module
    spec.loader.exec_module(module)
    return module


def test_style3_script_points_evenness_and_methods(runs, tmp_path):
    from tunableconv.evaluation import task_of

    s3 = _style3_script()
    points = s3.all_points()
    assert len(points) == 40 and all(abs(sum(p) - 1) < 1e-9 for p in points)  # 15 + centre + 3 x 8 more on the edges
    assert len({s3.key_of(p) for p in points}) == 40
    # evenness: D(t) = t^2 on every photo gives the error max |t^2 - t| = 1/4 (at t = 0.5)
    row = {"points": {"a": {"content": 1.0}}, "edges": {"x-y": [t * t for t in s3.EDGE_T]}}
    summary = s3.summarise([row, row])
    assert summary["edges"]["x-y"]["error_mean"] == 0.25 and summary["edges"]["x-y"]["d_mean"][5] == 0.25

    # the methods on the 20-step model: three different twins (the trained one, perturbed)
    _, tunable = runs["style3-small"]
    _, twin_file = runs["style3-fixed-edtaonisl-small"]
    twin, info = load_model(twin_file)
    twins = {}
    for i, style in enumerate(STYLES):
        twins[style] = str(save_model(_perturbed(twin, 0.1, seed=i), tmp_path / f"{style}.safetensors",
                                      knob_space=info.space, info=info.info))
    methods = s3.Methods({"tunable": str(tunable)}, twins)
    assert methods.names == ["tunable", "dni", "pixel-blend"]
    x = torch.rand(3, 24, 28, generator=torch.Generator().manual_seed(0))
    vertices = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    dni, pixels = methods.outputs("dni", x, vertices), methods.outputs("pixel-blend", x, vertices)
    torch.testing.assert_close(dni, pixels)  # at the vertices both are the twins
    mid = [(0.5, 0.5, 0.0)]
    torch.testing.assert_close(methods.outputs("pixel-blend", x, mid)[0], (pixels[0] + pixels[1]) / 2)
    task = task_of(methods.restorers["tunable"].info)
    result = s3.measure_image(task, methods, "tunable", x)
    assert set(result["points"]) == {s3.key_of(p) for p in points}
    assert set(result["points"][s3.key_of(vertices[0])]) == {*(f"style_{s}" for s in STYLES), "content"}
    for curve in result["edges"].values():  # D(0) = 0 and D(1) = 1 by definition
        assert len(curve) == 11 and curve[0] == 0.0 and abs(curve[-1] - 1.0) < 1e-4

    # a two-style model (Dynamic-Net, its knobs in the other order) is measured along its edge only
    from tunableconv.knobs import Knob, KnobSpace
    from tunableconv.models.baselines import StyleDynamicNet

    torch.manual_seed(3)
    dyn = StyleDynamicNet(**TINY)
    for block in dyn.tuning.values():
        torch.nn.init.normal_(block.conv2.weight, std=0.2)
    space = KnobSpace([Knob("kandinsky"), Knob("mosaic")], "simplex", tiling_exact=False)
    edge_file = save_model(dyn, tmp_path / "dyn.safetensors", knob_space=space, info=info.info)
    methods = s3.Methods({"tunable": str(tunable)}, twins, edge_models={"dynamicnet": str(edge_file)})
    assert methods.names == ["tunable", "dynamicnet", "dni", "pixel-blend"] and methods.edges("dynamicnet") == [(0, 2)]
    ys = methods.outputs("dynamicnet", x, [(1.0, 0.0, 0.0), (0.25, 0.0, 0.75)])
    with torch.no_grad():
        torch.testing.assert_close(ys[1], dyn(x[None], torch.tensor([0.75, 0.25]))[0].clamp(0, 1))  # (kandinsky, mosaic)
        torch.testing.assert_close(ys[0], dyn(x[None], torch.tensor([0.0, 1.0]))[0].clamp(0, 1))  # pure mosaic
    with pytest.raises(ValueError, match="reaches only the kandinsky-mosaic edge"):
        methods.outputs("dynamicnet", x, [(0.5, 0.5, 0.0)])
    edge_result = s3.measure_image(task, methods, "dynamicnet", x)
    assert set(edge_result["edges"]) == {"mosaic-kandinsky"} and len(edge_result["points"]) == 11
    # the report takes a method that reaches one edge: its rows where it has them, "—" elsewhere
    import argparse
    import json

    (tmp_path / "out" / "measures").mkdir(parents=True)
    for name, r in (("tunable", result), ("dni", result), ("dynamicnet", edge_result)):
        (tmp_path / "out" / "measures" / f"{name}.json").write_text(json.dumps({"images": [{"name": "a", **r}]}))
    s3.report(argparse.Namespace(out=str(tmp_path / "out"), size=24))
    tables = (tmp_path / "out" / "tables.md").read_text()
    assert "| mosaic | dynamicnet |" in tables and "| edtaonisl | dynamicnet |" not in tables
    assert "| mosaic+kandinsky | dynamicnet |" in tables and "| centre | dynamicnet |" not in tables
    assert tables.count("—") == 2 and (tmp_path / "out" / "evenness.png").is_file()
    with pytest.raises(SystemExit, match="two knobs"):
        s3.Methods({"tunable": str(tunable)}, {}, edge_models={"bad": str(tunable)})


def test_validate_checkpoint_script_reproduces_the_trainers_validation(runs, capsys):
    import importlib.util
    import json

    path = Path(__file__).resolve().parents[1] / "scripts" / "validate_checkpoint.py"
    spec = importlib.util.spec_from_file_location("validate_checkpoint", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary, model_file = runs["style3-small"]
    assert module.main([str(model_file.parent)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["step"] == 20 and out["val"].keys() == summary["val"].keys()
    for k, v in summary["val"].items():
        assert out["val"][k] == pytest.approx(v, abs=1e-3), k
