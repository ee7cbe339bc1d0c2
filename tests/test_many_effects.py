"""Many effects per image: every setting of a cube model's knobs at once (``tunableconv sweep
--grid N``), the automatic choice by NIQE, the contact sheet, and the measurement scripts of
``results/many-effects`` (FLOPs by the counter's affine fit, the quality summary).

The NIQE tests need ``niqe_pris_params.npz`` in the weights root and skip when it is absent;
everything else runs on tiny random models.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tunableconv.cli import main
from tunableconv.errors import InputError, InvalidParamsError, MissingWeightsError
from tunableconv.io import read_image, write_image
from tunableconv.knobs import Knob, KnobSpace
from tunableconv.models import ResNet, ResNetConfig, save_model
from tunableconv.models.baselines.cresmd import CResMD, CResMDConfig
from tunableconv.paths import data_root, weights_file
from tunableconv.restore import Restorer
from tunableconv.sweep import choose_setting, contact_sheet, knob_settings, settings_outputs, triangle_sheet

REPO = Path(__file__).resolve().parents[1]
CUBE3 = KnobSpace([Knob("deblur"), Knob("denoise"), Knob("dejpeg")], "cube")


def _load_script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _resnet(trunk_blocks: int, num_params: int = 3, seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    model = ResNet(ResNetConfig(channels=4, num_blocks=2, num_params=num_params, domain="cube", trunk_blocks=trunk_blocks))
    with torch.no_grad():  # leave the initialisation (equal weight sets): p must matter
        for prm in model.parameters():
            prm.mul_(0.5).add_(0.2 * torch.randn_like(prm))
    return model.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("many_effects")
    out = {
        "trunk": save_model(_resnet(1), root / "trunk.safetensors", knob_space=CUBE3, info={"task": "restore3"}),
        "full": save_model(_resnet(0), root / "full.safetensors", knob_space=CUBE3, info={"task": "restore3"}),
        "cube4": save_model(_resnet(0, num_params=4), root / "cube4.safetensors",
                            knob_space=KnobSpace([Knob(n) for n in "abcd"], "cube"), info={"task": "restore3"}),
        "simplex3": save_model(ResNet(ResNetConfig(channels=4, num_blocks=1, num_params=3, domain="simplex")).eval(),
                               root / "simplex3.safetensors", knob_space=KnobSpace([Knob(n) for n in "abc"], "simplex"),
                               info={"task": "restore3"}),
        "cresmd": save_model(CResMD(CResMDConfig(channels=4, num_blocks=1, num_params=3, domain="cube")).eval(),
                             root / "cresmd.safetensors", knob_space=CUBE3, info={"task": "restore3"}),
    }
    g = torch.Generator().manual_seed(0)
    out["image"] = root / "in.png"
    write_image(torch.rand(3, 24, 28, generator=g), out["image"])
    return out


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


# ----------------------------------------------------------------------------------------
# the library
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["trunk", "full"])
def test_settings_outputs_equal_one_call_per_setting(files, name):
    r = Restorer.load(str(files[name]))
    settings = knob_settings(r, 3)
    assert len(settings) == 27 and settings.points[0].tolist() == [0, 0, 0] and settings.points[1].tolist() == [0, 0, 0.5]
    image = read_image(files["image"])
    outs = settings_outputs(r, image, settings.ps)
    assert len(outs) == 27
    for p, y in zip(settings.ps, outs):
        torch.testing.assert_close(y, r(image, p), atol=1e-4, rtol=0)  # float32 path differences
    assert (outs[0] - outs[-1]).abs().max() > 1e-3  # the settings differ


def test_settings_outputs_without_a_sweep_method(files):
    r = Restorer.load(str(files["cresmd"]))
    assert not callable(getattr(r.model, "sweep", None))
    x = torch.rand(3, 12, 12)
    ps = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0]])
    outs = settings_outputs(r, x, ps)
    for p, y in zip(ps, outs):
        torch.testing.assert_close(y, r(x, p))


def test_knob_settings_refuses_what_it_cannot_lay_out(files, tmp_path):
    simplex4 = save_model(ResNet(ResNetConfig(channels=4, num_blocks=1, num_params=4, domain="simplex")).eval(),
                          tmp_path / "simplex4.safetensors", knob_space=KnobSpace([Knob(n) for n in "abcd"], "simplex"),
                          info={"task": "restore3"})
    with pytest.raises(InvalidParamsError, match="4 weights on the simplex"):
        knob_settings(Restorer.load(str(simplex4)), 3)
    with pytest.raises(InvalidParamsError, match="at most 27"):
        knob_settings(Restorer.load(str(files["cube4"])), 3)
    assert len(knob_settings(Restorer.load(str(files["cube4"])), 2)) == 16


def test_contact_sheet_layout_and_highlight(files):
    r = Restorer.load(str(files["trunk"]))
    settings = knob_settings(r, 3)
    panels = [torch.full((3, 10, 12), k / 26) for k in range(27)]
    sheet = contact_sheet(panels, settings, gap=2)
    plain = contact_sheet(panels, settings, gap=2, highlight=None)
    marked = contact_sheet(panels, settings, gap=2, highlight=5)
    assert sheet.size == plain.size == marked.size
    assert sheet.width > 9 * 12 + 8 * 2 and sheet.height > 3 * 10 + 2 * 2  # 3 rows (deblur) of 9 columns + labels
    import numpy as np

    assert (np.asarray(marked) != np.asarray(plain)).any()  # the frame
    with pytest.raises(InputError, match="26 outputs for 27 settings"):
        contact_sheet(panels[:-1], settings)
    with pytest.raises(InputError, match="highlight"):
        contact_sheet(panels, settings, highlight=27)


@pytest.fixture(scope="module")
def natural_image():
    try:
        weights_file("niqe_pris_params.npz")
        folder = data_root() / "test" / "cbsd68"
    except (MissingWeightsError, InputError) as exc:
        pytest.skip(f"shared data or NIQE parameters absent: {exc}")
    files = sorted(folder.glob("*.png"))
    if not files:
        pytest.skip(f"no test images in {folder}")
    return read_image(files[0])[:, :192, :192]


def test_auto_choice_on_a_toy_case(natural_image):
    """A natural photo among heavily noisy and flattened versions of itself: NIQE picks the photo."""
    g = torch.Generator().manual_seed(0)
    noisy = (natural_image + 0.2 * torch.randn(natural_image.shape, generator=g)).clamp(0, 1)
    flat = torch.nn.functional.avg_pool2d(natural_image[None], 9, stride=1, padding=4, count_include_pad=False)[0]
    best, scores = choose_setting([noisy, natural_image, flat])
    assert best == 1, scores
    assert len(scores) == 3 and scores[1] < min(scores[0], scores[2])
    with pytest.raises(InputError, match="96x96"):
        choose_setting([natural_image[:, :64, :64]])


def test_auto_choice_without_niqe_parameters_is_one_line(files, tmp_path, capsys, monkeypatch):
    empty = tmp_path / "weights"
    empty.mkdir()
    monkeypatch.setenv("TUNABLECONV_WEIGHTS", str(empty))
    big = tmp_path / "big.png"
    write_image(torch.rand(3, 100, 100), big)
    rc, _, err = _cli(capsys, "sweep", big, "--model", files["trunk"], "--grid", "2", "--auto", "-o", tmp_path / "s.png")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "niqe_pris_params" in err, err
    assert not (tmp_path / "s.png").exists()


# ----------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------
def test_sweep_grid_n_writes_the_contact_sheet(files, tmp_path, capsys):
    from PIL import Image

    sheet = tmp_path / "sheet.png"
    rc, out, err = _cli(capsys, "sweep", files["image"], "--model", files["trunk"], "--grid", "3", "-o", sheet)
    assert rc == 0, err
    assert "27 settings in" in out and "do not depend on p run once" in out and "27 settings, " in out
    with Image.open(sheet) as im:
        assert im.width > 9 * 28 and im.height > 3 * 24


def test_sweep_auto_picks_names_and_writes_the_choice(files, tmp_path, capsys, natural_image):
    photo = tmp_path / "photo.png"
    write_image(natural_image, photo)
    chosen = tmp_path / "chosen.png"
    rc, out, err = _cli(capsys, "sweep", photo, "--model", files["trunk"], "--grid", "2", "--auto",
                        "-o", tmp_path / "sheet.png", "--auto-output", chosen)
    assert rc == 0, err
    line = next(t for t in out.splitlines() if t.startswith("auto (lowest NIQE): "))
    assert "deblur=" in line and "dejpeg=" in line
    r = Restorer.load(str(files["trunk"]))
    settings = knob_settings(r, 2)
    outs = settings_outputs(r, natural_image, settings.ps)
    best, _ = choose_setting(outs)
    assert (read_image(chosen) - outs[best]).abs().max() <= 1 / 255 + 1e-6
    # the choice alone (no sheet), from a two-knob grid
    alone = tmp_path / "alone.png"
    rc, out, err = _cli(capsys, "sweep", photo, "--model", files["trunk"], "--grid", "deblur,denoise", "--steps", "2",
                        "--auto", "--auto-output", alone)
    assert rc == 0 and alone.is_file() and "grid" not in out, err
    # --auto on a strip sweep too
    rc, out, err = _cli(capsys, "sweep", photo, "--model", files["trunk"], "--knob", "denoise", "--steps", "3", "--auto",
                        "-o", tmp_path / "strip.png")
    assert rc == 0 and "auto (lowest NIQE): " in out, err


@pytest.mark.parametrize("model,opts,needle", [
    ("trunk", ["--grid", "3", "--steps", "3"], "drop --steps"),
    ("trunk", ["--grid", "1"], "N >= 2"),
    ("cube4", ["--grid", "3"], "at most 27"),
    ("simplex3", ["--grid", "7"], "at most 27"),  # the triangle of 7 per edge has 28 points
    ("trunk", ["--grid", "3", "--with-input"], "--with-input"),
    ("trunk", ["--grid", "2", "--auto-output", "x.png"], "add --auto"),
])
def test_sweep_grid_n_errors(files, tmp_path, capsys, model, opts, needle):
    opts = [str(tmp_path / o) if o.endswith(".png") else o for o in opts]
    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", files[model], "-o", tmp_path / "s.png", *opts)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------
# the measurement scripts
# ----------------------------------------------------------------------------------------
def test_flops_fit_is_exact_and_the_trunk_costs_less(files):
    bench = _load_script(REPO / "benchmarks" / "many_effects_cost.py", "many_effects_cost")
    full = Restorer.load(str(files["full"]))
    trunk = Restorer.load(str(files["trunk"]))
    sizes = {"tiny": (36, 64)}
    f_full, f_trunk = bench.flops_at(full, sizes), bench.flops_at(trunk, sizes)
    for f, r in ((f_full, full), (f_trunk, trunk)):
        assert f["check"]["relative_residual"] < 1e-9
        assert f["tiny"] == bench.count_flops(r, 36, 64)
    assert f_trunk["tiny"] < f_full["tiny"]


def test_quality_summary():
    script = _load_script(REPO / "scripts" / "many_effects.py", "many_effects_script")
    psnr = [20.0] * 27
    psnr[script.FULL] = 25.0
    psnr[3] = 26.0
    niqe = [5.0] * 27
    niqe[script.FULL] = 4.0
    row = {"psnr": psnr, "niqe": niqe, "best": 3, "auto": script.FULL, "ssim_best": 0.8, "ssim_full": 0.7,
           "lpips_best": 0.2, "lpips_full": 0.25, "lpips_auto": 0.25}
    s = script.summarise([row, dict(row, best=script.FULL, psnr=[25.0 if k == script.FULL else 20.0 for k in range(27)])])
    assert s["psnr_best"] == 25.5 and s["psnr_full"] == 25.0 and s["psnr_auto"] == 25.0
    assert s["auto_psnr_loss"] == 0.5 and s["auto_is_best"] == 0.5 and s["best_is_full"] == 0.5
    assert script.GRID.shape == (27, 3) and script.GRID[script.FULL].tolist() == [1, 1, 1]


def test_searched_architecture_table():
    from tunableconv.models.baselines.tsnet import TATSNet, TATSNetConfig

    script = _load_script(REPO / "scripts" / "many_effects.py", "many_effects_script")
    torch.manual_seed(0)
    model = TATSNet(TATSNetConfig(channels=4, num_blocks=1, num_params=3, domain="cube")).eval()
    arch = model.searched_architecture(size=(16, 16))
    lines = script.architecture_lines("TA+TSNet", arch)
    rows = [t for t in lines if t.startswith("| ") and not t.startswith("| Module")]
    assert len(rows) == len(arch["modules"]) == 3 * 1 + 4
    for row, name in zip(rows, arch["modules"]):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0] == name and 0 <= int(cells[2]) <= float(cells[3]) <= int(cells[4]) <= 4
    assert "27 effects" in lines[2] and "of 7 channel-selection modules shared" in lines[2]


def test_triangle_of_a_three_knob_simplex(files):
    """``--grid N`` on a 3-knob simplex: the barycentric lattice with N points per edge, laid
    out as a triangle (knob 0 at the top, knob 1 bottom left, knob 2 bottom right)."""
    r = Restorer.load(str(files["simplex3"]))
    settings = knob_settings(r, 5)
    assert settings.layout == "triangle" and len(settings) == 15
    torch.testing.assert_close(settings.ps.sum(1), torch.ones(15))
    assert {tuple(round(float(v) * 4) for v in p) for p in settings.ps} == \
        {(i, j, 4 - i - j) for i in range(5) for j in range(5 - i)}
    # each panel a flat colour coding its weights: find each one where the triangle puts it
    panels = [torch.stack([p[0], p[1], p[2]])[:, None, None].expand(3, 20, 30) for p in settings.ps]
    sheet = np.asarray(contact_sheet(panels, settings, gap=4)).astype(float) / 255
    h, w = sheet.shape[:2]
    colours = {tuple(round(float(v) * 4) for v in p) for p in settings.ps}
    found = {}
    for y in range(h):
        for x in range(0, w, 3):
            c = tuple(sheet[y, x])
            key = tuple(round(v * 4) for v in c)
            if key in colours and max(abs(v * 4 - k) for v, k in zip(c, key)) < 0.05 and sum(key) == 4:
                found.setdefault(key, (y, x))
    assert set(found) == colours
    top, left, right = found[(4, 0, 0)], found[(0, 4, 0)], found[(0, 0, 4)]
    assert top[0] < left[0] == right[0] and left[1] < top[1] < right[1]
    assert abs(found[(2, 1, 1)][1] - top[1]) <= 3  # the middle of its row sits under the top
    with pytest.raises(InputError, match="lattice"):
        triangle_sheet(panels[:3], [(0.5, 0.5, 0.0), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0)], ["a", "b", "c"])
    with pytest.raises(InputError, match="do not fill a barycentric lattice"):
        triangle_sheet(panels[:14], [tuple(float(v) for v in p) for p in settings.ps[:14]], ["a", "b", "c"])
    legend = contact_sheet(panels, settings, corner_images=panels[:3])
    assert legend.height > sheet.shape[0]  # the three corner pictures above the triangle


def test_sweep_grid_draws_the_triangle_of_a_simplex_model(files, tmp_path, capsys):
    out = tmp_path / "tri.png"
    rc, text, _ = _cli(capsys, "sweep", files["image"], "--model", files["simplex3"], "--grid", "4", "-o", out)
    assert rc == 0 and "10 settings" in text and read_image(out).shape[-1] >= 4 * 28


def test_has_shared_trunk_tells_a_trunk_from_none(files):
    from tunableconv.sweep import has_shared_trunk

    assert has_shared_trunk(Restorer.load(str(files["trunk"])))
    assert not has_shared_trunk(Restorer.load(str(files["full"])))
    assert not has_shared_trunk(Restorer.load(str(files["cresmd"])))
