"""The shipped models: metadata, shapes, and the slider's behaviour on small crops."""

import numpy as np
import pytest
import torch

from tunableconv.data import bundled_sample_image
from tunableconv.data.datasets import center_crop
from tunableconv.errors import InputError
from tunableconv.metrics import psnr
from tunableconv.restore import Restorer
from tunableconv.zoo import available

SHIPPED = available()


def _zoo_app_client():
    """A test client of the web app serving the shipped models (skips without fastapi/httpx)."""
    import warnings

    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from tunableconv.app.server import AppConfig, create_app

    return TestClient(create_app(AppConfig(models=[], include_zoo=True, preview_size=64)))
#: the shipped files allowed above 5 MB: the tunable NAFNet (4.5 M parameters, stored in float16)
LARGEST_FILE = {"denoise-nafnet": 10e6}
pytestmark = pytest.mark.skipif("denoise" not in SHIPPED, reason="no shipped denoiser in src/tunableconv/zoo")


def test_shipped_models_metadata_and_shapes():
    assert {"denoise", "denoise-fixed"} <= set(SHIPPED)
    tunable, fixed = Restorer.load("denoise"), Restorer.load("denoise-fixed")
    assert tunable.info.architecture == fixed.info.architecture == "resnet"
    assert tunable.num_params == 2 and fixed.num_params == 0
    assert tunable.info.knob_names == ["fidelity", "noise_preservation"]
    assert tunable.space.has_slider("strength") and tunable.info.info["beta"] == 0.9
    same = ("channels", "num_blocks", "kernel_size")
    assert all(tunable.info.arguments[k] == fixed.info.arguments[k] for k in same)
    tr, fr = tunable.info.info["training"], fixed.info.info["training"]
    assert tr["steps"] == fr["steps"] and tunable.info.info["recipe"]["train"]["seed"] == fixed.info.info["recipe"]["train"]["seed"]
    cal = tunable.space.slider("strength").calibration.to_dict()
    assert cal is not None and cal["slider"][0] == 0 and cal["slider"][-1] == 1
    assert cal["raw"][0] == 0 and cal["raw"][-1] == 1 and np.all(np.diff(cal["raw"]) >= 0)
    x = torch.rand(3, 37, 53)
    assert tunable(x, tunable.params(slider=0.3)).shape == (3, 37, 53)
    assert fixed(x, None).shape == (3, 37, 53)
    for name, path in SHIPPED.items():
        assert path.stat().st_size < LARGEST_FILE.get(name, 5e6), name  # a few MB at most


def test_shipped_denoiser_is_trained_with_todays_recipe():
    """The recipe stored in the shipped file is ``denoise-small`` as the code defines it (only the
    step count may differ): a recipe change without a retrain and re-ship fails here."""
    from tunableconv.train import get_recipe

    stored = Restorer.load("denoise").info.info["recipe"]
    today = get_recipe("denoise-small").to_dict()
    assert stored["name"] == "denoise-small"
    # train.disc (the discriminator's optimiser, added after shipping) acts only on recipes
    # with an adversarial objective; denoise-small has none, so its training is unchanged
    unused = {"train": {"steps", "disc"}}
    for section in ("model", "data", "task", "train"):
        differs = {k for k in set(stored[section]) | set(today[section])
                   if stored[section].get(k) != today[section].get(k)}
        assert differs <= unused.get(section, set()), (section, differs)
    assert stored["task"]["name"] == "denoise"  # the denoising task has no adversarial objective


@pytest.mark.parametrize("calibrated", [True, False])
def test_strength_trades_noise_removal_for_noise_preservation(calibrated):
    """As strength falls, PSNR to the clean image falls and PSNR to the noise-preservation
    target rises, monotonically, on small crops of a bundled photo."""
    r = Restorer.load("denoise")
    photo = bundled_sample_image()
    g = torch.Generator().manual_seed(0)
    strengths = [1.0, 0.75, 0.5, 0.25, 0.0]
    for top, left in ((40, 60), (200, 220)):
        clean = photo[:, top:top + 96, left:left + 96]
        noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=g)
        target = clean + 0.9 * (noisy - clean)
        outs = [r(noisy, r.params(slider=s, calibrated=calibrated)) for s in strengths]
        gt = [float(psnr(o, clean)) for o in outs]
        nt = [float(psnr(o, target)) for o in outs]
        assert all(a > b for a, b in zip(gt, gt[1:])), gt
        assert all(a < b for a, b in zip(nt, nt[1:])), nt


def test_shipped_format_1_files_migrate_to_a_knob_space(tmp_path):
    """The shipped files stay format 1 (never rewritten); their knob space is migrated on
    reading, and a format-2 copy carrying that knob space gives the same outputs."""
    from tunableconv.models import save_model
    from tunableconv.models.files import FORMAT_1, FORMAT_2

    r = Restorer.load("denoise")
    assert r.info.format == FORMAT_1 and r.info.knob_space is None
    space = r.space
    assert space.domain == "simplex" and space.names == ["fidelity", "noise_preservation"]
    assert space.default == [1.0, 0.0] and [s.name for s in space.sliders] == ["strength"]
    assert space.slider("strength").calibration is not None and space.scale == 1 and space.tiling_exact
    assert space.receptive_field == 2 * r.info.arguments["num_blocks"] + 3  # 3x3 convs: head, blocks, body tail, tail
    torch.testing.assert_close(r.params(), r.params(slider=1.0))  # the default p is strength 1
    copy = Restorer.load(str(save_model(r.model, tmp_path / "d2.safetensors", knob_space=space, info=r.info.info)))
    assert copy.info.format == FORMAT_2 and copy.space == space
    x = torch.rand(3, 40, 44)
    for s in (0.0, 0.3, 1.0):
        assert torch.equal(r(x, r.params(slider=s)), copy(x, copy.params(slider=s)))
    assert Restorer.load("denoise-fixed").space.num_params == 0


@pytest.mark.skipif("deblur-denoise" not in SHIPPED, reason="no shipped deblur-denoise model")
def test_shipped_deblur_denoise_knobs_move_their_own_property():
    """The shipped two-knob model (issue 17): a cube with knobs denoise and deblur, the fixed twin
    of the same size; on a bundled photo with noise and blur, raising `denoise` lowers the residual
    noise, raising `deblur` raises the edge sharpness, each monotonically (measures of
    tasks/deblur_denoise.py: output_measures)."""
    from tunableconv.tasks import build_task
    from tunableconv.tasks.base import EvalCase
    from tunableconv.train import get_recipe

    r, fixed = Restorer.load("deblur-denoise"), Restorer.load("deblur-denoise-fixed")
    assert r.space.domain == "cube" and r.space.names == ["denoise", "deblur"] and list(r.space.default) == [1.0, 1.0]
    assert fixed.num_params == 0 and fixed.info.arguments["channels"] == r.info.arguments["channels"]
    stored = r.info.info["recipe"]
    assert stored["name"] == "deblur-denoise-small" and stored["task"] == get_recipe("deblur-denoise-small").to_dict()["task"]
    task = build_task(get_recipe("deblur-denoise-small"))
    clean = center_crop(bundled_sample_image(), 128, 128)
    s = task.degrade_case(clean, EvalCase("x", {"noise": 25.0, "blur": 1.5}), torch.Generator().manual_seed(0))
    values = [0.0, 0.5, 1.0]
    noise = [task.output_measures(r(s.input, torch.tensor([v, 1.0])), s)["residual_noise"] for v in values]
    sharp = [task.output_measures(r(s.input, torch.tensor([1.0, v])), s)["edge_sharpness"] for v in values]
    # residual noise is clipped at 0 (as smooth as the clean image's flat parts or smoother)
    assert all(a >= b for a, b in zip(noise, noise[1:])) and noise[0] > noise[-1] + 3, noise
    assert all(a < b for a, b in zip(sharp, sharp[1:])), sharp


@pytest.mark.skipif("deblur-denoise" not in SHIPPED, reason="no shipped deblur-denoise model")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_app_restores_with_the_two_knobs_of_deblur_denoise():
    """The web app's API lists deblur-denoise with two independent sliders and restores with both
    knobs set by name; a wrong knob name is a 422 naming the knobs (issue 17)."""
    import io

    from PIL import Image

    with _zoo_app_client() as client:
        by_name = {m["name"]: m for m in client.get("/api/models").json()["models"]}
        m = by_name["deblur-denoise"]
        assert m["domain"] == "cube" and not m["simplex"] and [k["name"] for k in m["knobs"]] == ["denoise", "deblur"]
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(buf, format="PNG")
        image_id = client.post("/api/images", files={"file": ("a.png", buf.getvalue(), "image/png")}).json()["id"]
        outs = []
        for knobs in ({"denoise": 0.6, "deblur": 1.0}, {"denoise": 0.0, "deblur": 1.0}):
            r = client.post("/api/restore", json={"image_id": image_id, "model": "deblur-denoise", "knobs": knobs})
            assert r.status_code == 200, r.text
            outs.append(r.content)
        assert outs[0] != outs[1]  # the knob changes the output
        r = client.post("/api/restore", json={"image_id": image_id, "model": "deblur-denoise", "knobs": {"sharpness": 1}})
        assert r.status_code == 422 and "denoise" in r.json()["detail"]


@pytest.mark.skipif("denoise-nafnet" not in SHIPPED, reason="no shipped denoise-nafnet model")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_shipped_nafnet_restores_through_the_cli_and_the_app(tmp_path):
    """The tunable NAFNet (issue: drop-in conversion) runs through the runners with no code of
    its own: float16 weights load as float32, the strength slider trades noise removal for
    noise preservation, the CLI restores a PNG, and the app lists it as a whole-image model
    (its channel attention pools globally: no tiling) and restores with its slider."""
    import io

    from PIL import Image

    from tunableconv.cli import main as cli

    r = Restorer.load("denoise-nafnet")
    assert r.info.architecture == "nafnet" and r.info.knob_names == ["fidelity", "noise_preservation"]
    assert all(p.dtype == torch.float32 for p in r.model.parameters())
    assert not r.space.tiling_exact and r.space.has_slider("strength")
    photo = bundled_sample_image()
    clean = photo[:, 40:136, 60:156]
    noisy = clean + 25 / 255 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    outs = [r(noisy, r.params(slider=s)) for s in (1.0, 0.5, 0.0)]
    gt = [float(psnr(o, clean)) for o in outs]
    assert gt[0] > gt[1] > gt[2] and gt[0] > float(psnr(noisy.clamp(0, 1), clean)) + 5, gt

    src, out = tmp_path / "noisy.png", tmp_path / "out.png"
    Image.fromarray((noisy.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()).save(src)
    assert cli(["restore", str(src), str(out), "--model", "denoise-nafnet", "--slider", "0.7"]) == 0
    assert Image.open(out).size == (96, 96)

    with _zoo_app_client() as client:
        m = {m["name"]: m for m in client.get("/api/models").json()["models"]}["denoise-nafnet"]
        assert not m["tiling_exact"] and m["bytes_per_pixel"] > 0
        buf = io.BytesIO()
        Image.open(src).save(buf, format="PNG")
        image_id = client.post("/api/images", files={"file": ("n.png", buf.getvalue(), "image/png")}).json()["id"]
        got = [client.post("/api/restore", json={"image_id": image_id, "model": "denoise-nafnet", "value": s})
               for s in (1.0, 0.0)]
        assert all(g.status_code == 200 for g in got) and got[0].content != got[1].content


@pytest.mark.skipif("restore3" not in SHIPPED, reason="no shipped restore3 model")
def test_shipped_restore3_sweeps_27_effects_through_its_trunk(tmp_path, capsys):
    """The shipped three-degradation model (issue 21): knobs deblur, denoise, dejpeg on the cube,
    a p-independent trunk of all 6 of its blocks (only the last two convs tunable);
    ``model.sweep`` of the 27 effects equals 27 calls; raising ``denoise`` removes noise;
    ``tunableconv sweep --grid 3`` renders the sheet."""
    from PIL import Image

    from tunableconv.cli import main as cli
    from tunableconv.sweep import knob_settings, settings_outputs
    from tunableconv.tasks import build_task
    from tunableconv.tasks.restore3 import make_case
    from tunableconv.train import get_recipe

    r = Restorer.load("restore3")
    assert r.space.domain == "cube" and r.space.names == ["deblur", "denoise", "dejpeg"]
    assert r.info.arguments["trunk_blocks"] == 6 and r.info.arguments["num_blocks"] == 6  # every block shared
    clean = center_crop(bundled_sample_image(), 64, 64)
    task = build_task(get_recipe("restore3-small"))
    s = task.degrade_case(clean, make_case(0.0, 25.0, None), torch.Generator().manual_seed(0))
    settings = knob_settings(r, 3)
    outs = settings_outputs(r, s.input, settings.ps)
    for k in (0, 13, 26):
        torch.testing.assert_close(outs[k], r(s.input, settings.ps[k]), atol=1e-4, rtol=0)
    gt = [float(psnr(outs[k], clean)) for k in (18, 21, 24)]  # deblur 1, denoise 0 / 0.5 / 1, dejpeg 0
    assert gt[0] < gt[1] < gt[2] and gt[2] > float(psnr(s.input, clean)) + 3, gt
    src, sheet = tmp_path / "in.png", tmp_path / "sheet.png"
    Image.fromarray((s.input * 255).round().byte().permute(1, 2, 0).numpy()).save(src)
    assert cli(["sweep", str(src), "--model", "restore3", "--grid", "3", "-o", str(sheet)]) == 0
    assert "27 settings in" in capsys.readouterr().out and Image.open(sheet).width > 9 * 64


def test_shipped_style3_blends_three_styles_on_the_simplex(tmp_path, capsys):
    """The shipped style model (issue 19): three knobs on the simplex with the style thumbnails
    as icons and calibrated weight warps; the vertices differ, a blend lies between them, tiled
    inference is refused, and the sweep draws the triangle."""
    from PIL import Image

    from tunableconv.cli import main as cli
    from tunableconv.io import icon_image

    r = Restorer.load("style3")
    space = r.space
    assert space.names == ["mosaic", "edtaonisl", "kandinsky"] and space.domain == "simplex"
    assert not space.tiling_exact and all(k.calibration is not None for k in space.knobs)
    assert all(icon_image(k.icon).shape[0] == 3 for k in space.knobs)
    x = center_crop(bundled_sample_image(), 64, 64)
    mosaic, kandinsky = r(x, space.resolve(knobs={"mosaic": 1.0})), r(x, space.resolve(knobs={"kandinsky": 1.0}))
    blend = r(x, space.resolve(knobs={"mosaic": 0.5, "kandinsky": 0.5}))
    d = float((mosaic - kandinsky).abs().mean())
    assert d > 0.01  # two styles, two pictures
    assert float((blend - mosaic).abs().mean()) < d and float((blend - kandinsky).abs().mean()) < d
    with pytest.raises(InputError, match="not exact"):
        r(x, space.resolve(knobs={"mosaic": 1.0}), tile=32, overlap=8)
    src, sheet = tmp_path / "in.png", tmp_path / "tri.png"
    Image.fromarray((x * 255).round().byte().permute(1, 2, 0).numpy()).save(src)
    assert cli(["sweep", str(src), "--model", "style3", "--grid", "3", "-o", str(sheet)]) == 0
    assert "6 settings" in capsys.readouterr().out and Image.open(sheet).width >= 3 * 64
