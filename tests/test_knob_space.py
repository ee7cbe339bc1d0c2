"""The knob space in every model file (issue 15 item 2) and the runners that read only it.

Tiny random models of each domain — simplex-2 (with a slider that is *not* called
``strength``), cube-2 and simplex-3 — are saved with ``save_model`` to a temporary folder;
``restore``, ``sweep``, ``calibrate``, ``models`` and the app's API run on each with no
task-specific code. Format-1 files (the shipped denoisers) still load and give the same
outputs; bad metadata is one line, exit 2, never a traceback (issue 16 B2, B3).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tunableconv.cli import main
from tunableconv.errors import InputError, InvalidParamsError
from tunableconv.io import read_image, write_image
from tunableconv.knobs import Calibration, Knob, KnobSpace, Slider
from tunableconv.models import ResNet, ResNetConfig, load_model, read_metadata, save_model
from tunableconv.models.files import FORMAT_1, FORMAT_2, model_facts
from tunableconv.restore import Restorer

SPACES = {
    "simplex2": KnobSpace([Knob("sharp", "detail kept"), Knob("smooth", "noise removed")], "simplex", [0.5, 0.5],
                          [Slider("mix", (0.0, 1.0), (1.0, 0.0), "1: all sharp")]),
    "cube2": KnobSpace([Knob("x", "first effect"), Knob("y", "second effect")], "cube", [0.5, 0.5],
                       [Slider("both", (0.0, 0.0), (1.0, 1.0), "both effects together")]),
    "simplex3": KnobSpace([Knob("a"), Knob("b"), Knob("c")], "simplex"),
}


def _model(num_params: int, domain: str, seed: int = 0) -> ResNet:
    torch.manual_seed(seed)
    model = ResNet(ResNetConfig(channels=4, num_blocks=1, num_params=num_params, domain=domain))
    with torch.no_grad():  # leave the initialisation (equal weight sets): p must matter
        for prm in model.parameters():
            prm.mul_(0.5).add_(0.2 * torch.randn_like(prm))
    return model.eval()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("knob_space")


@pytest.fixture(scope="module")
def files(root) -> dict[str, Path]:
    out = {}
    for name, space in SPACES.items():
        model = _model(space.num_params, space.domain, seed=len(out))
        out[name] = save_model(model, root / f"{name}.safetensors", knob_space=space, info={"task": "denoise"})
    g = torch.Generator().manual_seed(0)
    out["image"] = root / "in.png"
    write_image(torch.rand(3, 24, 28, generator=g), out["image"])
    data = root / "data"
    data.mkdir()
    for i in range(2):
        write_image(torch.rand(3, 20, 20, generator=g), data / f"{i}.png")
    out["data"] = data
    return out


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc: int, err: str, *needles: str) -> str:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(read_image(path))


# ----------------------------------------------------------------------------------------
# the file format
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(SPACES))
def test_format_2_stores_the_knob_space(files, name):
    info = read_metadata(files[name])
    assert info.format == FORMAT_2
    assert info.knob_space == SPACES[name].to_dict()  # the raw JSON object
    assert info.space == SPACES[name]  # parsed once, at open
    assert info.knob_names == SPACES[name].names and info.num_params == SPACES[name].num_params
    with safe_open(str(files[name]), framework="pt") as f:
        meta = f.metadata()
    assert meta["format"] == "tunableconv-model/2" and json.loads(meta["knob_space"])["domain"] == SPACES[name].domain


def test_save_without_a_knob_space_derives_it_like_format_1(tmp_path):
    """The trainer's call ``save_model(model, path, knobs=..., info=...)`` keeps working."""
    knobs = [{"name": "fidelity", "description": "f"}, {"name": "noise_preservation", "description": "n"}]
    cal = {"slider": [0.0, 0.5, 1.0], "raw": [0.0, 0.8, 1.0]}
    path = save_model(_model(2, "simplex"), tmp_path / "m.safetensors", knobs=knobs,
                      info={"task": "denoise", "strength": "p = (s, 1 - s)", "calibration": cal})
    space = read_metadata(path).space
    assert space.names == ["fidelity", "noise_preservation"] and space.domain == "simplex"
    assert space.default == [1.0, 0.0] and space.slider("strength").calibration == Calibration((0, 0.5, 1), (0, 0.8, 1))
    assert space.scale == 1 and space.tiling_exact and space.receptive_field == 5  # 5 3x3 convs
    cube = read_metadata(save_model(_model(2, "cube"), tmp_path / "c.safetensors")).space
    assert cube.domain == "cube" and cube.names == ["p0", "p1"] and cube.sliders == []
    with pytest.raises(ValueError, match="differ"):
        save_model(_model(2, "simplex"), tmp_path / "x.safetensors", knobs=[{"name": "u"}, {"name": "v"}],
                   knob_space=SPACES["simplex2"])
    with pytest.raises(ValueError, match="num_params"):
        save_model(_model(2, "simplex"), tmp_path / "x.safetensors", knob_space=SPACES["simplex3"])
    with pytest.raises(ValueError, match="domain"):
        save_model(_model(2, "simplex"), tmp_path / "x.safetensors", knob_space=SPACES["cube2"])
    assert not (tmp_path / "x.safetensors").exists()


def test_model_facts():
    assert model_facts(_model(2, "simplex")) == (True, 5)
    norm = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.InstanceNorm2d(3))
    assert model_facts(norm) == (False, None)
    up = ResNet(ResNetConfig(channels=4, num_blocks=2, num_params=2, upscale=2))
    assert model_facts(up) == (True, 8)  # ceil((2N + 2)·1 + 1 (upsampler conv) + 1/2 (tail at x2)) = ceil(7.5)


def _as_format_1(src: Path, dst: Path, knobs: list[dict], info: dict) -> Path:
    """A copy of ``src``'s weights written the way format-1 files were (no knob space)."""
    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    old = {"format": FORMAT_1, "architecture": meta["architecture"], "arguments": meta["arguments"],
           "num_params": meta["num_params"], "knobs": json.dumps(knobs), "parameters": meta["parameters"],
           "info": json.dumps(info)}
    save_file(tensors, str(dst), metadata=old)
    return dst


def test_format_1_files_load_and_give_the_same_outputs(files, tmp_path):
    knobs = [{"name": "fidelity", "description": "f"}, {"name": "noise_preservation", "description": "n"}]
    cal = {"slider": [0.0, 0.5, 1.0], "raw": [0.0, 0.3, 1.0], "response": {"s": [0, 1]}}
    old = _as_format_1(files["simplex2"], tmp_path / "old.safetensors", knobs,
                       {"task": "denoise", "strength": "p = (s, 1 - s)", "calibration": cal})
    info = read_metadata(old)
    assert info.format == FORMAT_1 and info.knob_space is None
    space = info.space
    assert space.slider("strength").calibration(0.5) == pytest.approx(0.3) and space.default == [1.0, 0.0]
    assert space.receptive_field == 5 and space.tiling_exact
    new, old_r = Restorer.load(str(files["simplex2"])), Restorer.load(str(old))
    x = torch.rand(3, 20, 20)
    for p in ([0.3, 0.7], [1.0, 0.0]):
        assert torch.equal(new(x, new.params(p=p)), old_r(x, old_r.params(p=p)))
    torch.testing.assert_close(old_r.params(slider=0.5), torch.tensor([0.3, 0.7]))
    torch.testing.assert_close(old_r.params(slider=0.5, calibrated=False), torch.tensor([0.5, 0.5]))
    assert old_r.space.slider("strength").calibration.to_dict() == {"slider": [0.0, 0.5, 1.0], "raw": [0.0, 0.3, 1.0]}
    assert old.read_bytes() == old.read_bytes()  # reading never rewrites


# ----------------------------------------------------------------------------------------
# bad metadata: one line naming the file and the field, exit 2, no output
# ----------------------------------------------------------------------------------------
def _mutated(src: Path, dst: Path, change: dict, tensors_dtype: torch.dtype | None = None) -> Path:
    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    for key, value in change.items():
        if value is None:
            meta.pop(key, None)
        elif key in ("arguments", "knob_space", "info", "knobs") and not isinstance(value, str):
            meta[key] = json.dumps(value)
        else:
            meta[key] = value
    if tensors_dtype is not None:
        tensors = {k: v.to(tensors_dtype) for k, v in tensors.items()}
    save_file(tensors, str(dst), metadata=meta)
    return dst


def _args(**change) -> dict:
    base = json.loads(json.dumps(ResNetConfig(channels=4, num_blocks=1, num_params=2).__dict__))
    base.update(change)
    return base


def _space(**change) -> dict:
    d = SPACES["simplex2"].to_dict()
    d.update(change)
    return d


BAD_METADATA = [
    ("upscale 5", {"arguments": _args(upscale=5)}, "arguments"),
    ("channels -4", {"arguments": _args(channels=-4)}, "arguments.channels"),
    ("channels many", {"arguments": _args(channels="many")}, "arguments.channels must be an integer"),
    ("channels huge", {"arguments": _args(channels=60000)}, "arguments"),
    ("arguments list", {"arguments": [1, 2, 3]}, "arguments must be a JSON object"),
    ("arguments not json", {"arguments": "{nope"}, "arguments is not valid JSON"),
    ("unknown argument", {"arguments": _args(colour=1)}, "unknown resnet argument(s) colour"),
    ("unknown mapping", {"arguments": _args(mapping="wavelet")}, "arguments"),
    ("architecture", {"architecture": "unet"}, "architecture 'unet' is unknown"),
    ("info list", {"info": [1, 2]}, "info must be a JSON object"),
    ("num_params", {"num_params": "two"}, "num_params"),
    ("num_params mismatch", {"num_params": "3"}, "num_params"),
    ("no format", {"format": None}, "not a tunableconv model file"),
    ("knob_space missing", {"knob_space": None}, "knob_space is missing"),
    ("knob_space list", {"knob_space": [1]}, "knob_space must be a JSON object"),
    ("unknown field", {"knob_space": _space(colour_space="lab")}, "knob_space has unknown field(s) colour_space"),
    ("domain", {"knob_space": _space(domain="sphere")}, "knob_space.domain"),
    ("domain mismatch", {"knob_space": _space(domain="cube")}, "knob_space.domain 'cube' differs"),
    ("knob count", {"knob_space": SPACES["simplex3"].to_dict()}, "3 knob(s)"),
    ("scale", {"knob_space": _space(scale=4)}, "knob_space.scale 4 differs"),
    ("default", {"knob_space": _space(default=[2, 0])}, "knob_space.default"),
    ("slider shape", {"knob_space": _space(sliders=[{"name": "s", "start": [0], "end": [1, 0]}])}, "sliders[0].start"),
    ("calibration type", {"knob_space": _space(sliders=[{"name": "s", "start": [0, 1], "end": [1, 0],
                                                         "calibration": {"slider": "x", "raw": 3}}])},
     "sliders[0].calibration"),
    ("calibration decreasing", {"knob_space": _space(sliders=[{"name": "s", "start": [0, 1], "end": [1, 0],
                                                               "calibration": {"slider": [0, 1], "raw": [1, 0]}}])},
     "non-decreasing"),
    ("tiling flag", {"knob_space": _space(tiling_exact="yes")}, "knob_space.tiling_exact"),
]


@pytest.fixture(scope="module")
def bad_files(files, root) -> dict[str, Path]:
    folder = root / "bad"
    folder.mkdir()
    out = {name: _mutated(files["simplex2"], folder / f"{i}.safetensors", change)
           for i, (name, change, _) in enumerate(BAD_METADATA)}
    out["int32"] = _mutated(files["simplex2"], folder / "int32.safetensors", {}, torch.int32)
    knobs2 = [{"name": "a"}, {"name": "b"}]
    good1 = {"format": FORMAT_1, "knob_space": None, "knobs": knobs2, "info": {"strength": "x"}}
    out["f1 knobs shape"] = _mutated(files["simplex2"], folder / "f1a.safetensors", {**good1, "knobs": [{"name": "a"}]})
    out["f1 knobs type"] = _mutated(files["simplex2"], folder / "f1b.safetensors", {**good1, "knobs": ["a", "b"]})
    out["f1 calibration"] = _mutated(files["simplex2"], folder / "f1c.safetensors",
                                     {**good1, "info": {"strength": "x", "calibration": {"slider": "x", "raw": 3}}})
    out["f1 calibration decreasing"] = _mutated(
        files["simplex2"], folder / "f1d.safetensors",
        {**good1, "info": {"strength": "x", "calibration": {"slider": [0, 1], "raw": [1, 0]}}})
    return out


BAD_NEEDLES = {name: needle for name, _, needle in BAD_METADATA} | {
    "int32": "has dtype I32: model weights must be floating point",
    "f1 knobs shape": "knobs lists 1 knob(s)",
    "f1 knobs type": "knobs[0] must be an object",
    "f1 calibration": "calibration (format 1)",
    "f1 calibration decreasing": "non-decreasing",
}


@pytest.mark.parametrize("name", list(BAD_NEEDLES))
def test_bad_metadata_is_one_line_naming_the_file_and_field(bad_files, name):
    path = bad_files[name]
    with pytest.raises(InputError) as exc:
        read_metadata(path)
    message = str(exc.value)
    assert "\n" not in message and BAD_NEEDLES[name] in message, message
    if name != "no format":
        assert message.startswith(f"{path}: ") or message.startswith(f"{path} "), message


@pytest.mark.parametrize("name", ["channels many", "unknown mapping", "calibration type", "int32", "f1 knobs shape",
                                  "knob count", "calibration decreasing"])
def test_bad_metadata_in_the_runners(files, bad_files, name, tmp_path, capsys):
    out = tmp_path / "out.png"
    rc, _, err = _cli(capsys, "restore", files["image"], out, "--model", bad_files[name], "--knob", "a=1", "--knob", "b=0")
    _one_line_error(rc, err, BAD_NEEDLES[name])
    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", bad_files[name], "-o", out)
    _one_line_error(rc, err, BAD_NEEDLES[name])
    rc, _, err = _cli(capsys, "calibrate", bad_files[name], "-o", tmp_path / "c.safetensors", "--data", files["data"])
    _one_line_error(rc, err, BAD_NEEDLES[name])
    rc, _, err = _cli(capsys, "models", "--show", bad_files[name])
    _one_line_error(rc, err, BAD_NEEDLES[name])
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------
# resolving p
# ----------------------------------------------------------------------------------------
def test_resolve_in_each_domain():
    s2, c2, s3 = SPACES["simplex2"], SPACES["cube2"], SPACES["simplex3"]
    torch.testing.assert_close(s2.resolve(), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(s2.resolve(slider=("mix", 0.25)), torch.tensor([0.25, 0.75]))
    torch.testing.assert_close(s2.resolve(knobs={"sharp": 0.2, "smooth": 0.8}), torch.tensor([0.2, 0.8]))
    # simplex knobs are weights of one mixture: one left out is 1 minus the others ...
    torch.testing.assert_close(s2.resolve(knobs={"sharp": 0.2}), torch.tensor([0.2, 0.8]))
    torch.testing.assert_close(s3.resolve(knobs={"a": 0.2, "c": 0.5}), torch.tensor([0.2, 0.3, 0.5]))
    with pytest.raises(InvalidParamsError, match="missing knob value"):  # ... two left out are not implied
        s3.resolve(knobs={"a": 0.2})
    # ... unless the weights named already sum to 1: the others are 0
    torch.testing.assert_close(s3.resolve(knobs={"b": 1.0}), torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(s3.resolve(knobs={"a": 0.25, "c": 0.75}), torch.tensor([0.25, 0.0, 0.75]))
    with pytest.raises(InvalidParamsError, match="sum to 1.3"):
        s3.resolve(knobs={"a": 0.8, "b": 0.5})
    torch.testing.assert_close(c2.resolve(knobs={"y": 0.1}), torch.tensor([0.5, 0.1]))  # x at its default
    cal = c2.with_knob_calibration("y", Calibration((0.0, 1.0), (0.0, 0.5)))
    torch.testing.assert_close(cal.resolve(knobs={"y": 0.4}), torch.tensor([0.5, 0.2]))
    torch.testing.assert_close(cal.resolve(knobs={"y": 0.4}, calibrated=False), torch.tensor([0.5, 0.4]))
    torch.testing.assert_close(cal.along_knob("y", 1.0), torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(s3.along_knob("c", 0.5), torch.tensor([1 / 3, 1 / 3, 0.5]))
    assert s3.off_domain([0.0, 0.0, 0.0]) and s3.off_domain([0.2, 0.3, 0.5]) is None and c2.off_domain([0, 0]) is None
    for bad in ({"p": [0.5]}, {"p": [float("nan"), 0.5]}, {"knobs": {"z": 0.5}}, {"slider": ("strength", 0.5)},
                {"slider": ("mix", 1.5)}, {"p": [0.5, 0.5], "slider": ("mix", 0.5)}, {"p": [True, 0.0]}):
        with pytest.raises(InvalidParamsError):
            s2.resolve(**bad)
    assert SPACES["cube2"].sliders[0].formula() == "p = (s, s)" and s2.sliders[0].formula() == "p = (s, 1 - s)"


# ----------------------------------------------------------------------------------------
# restore
# ----------------------------------------------------------------------------------------
def test_restore_on_each_domain(files, tmp_path, capsys):
    def run(model, *opts, name="o.png"):
        out = tmp_path / name
        rc, stdout, err = _cli(capsys, "restore", files["image"], out, "--model", files[model], *opts)
        assert rc == 0, err
        return _pixels(out), stdout, err

    # simplex-2 with the slider "mix": slider = p, default = the knob space's default p
    a, out, _ = run("simplex2", "--slider", "mix=0.25")
    assert "p = (0.250, 0.750)" in out
    assert np.array_equal(a, run("simplex2", "--p", "0.25,0.75")[0])
    assert np.array_equal(a, run("simplex2", "--knob", "smooth=0.75", "--knob", "sharp=0.25")[0])
    default, out, _ = run("simplex2")
    assert "default, p = (0.500, 0.500)" in out and not np.array_equal(default, a)
    # cube-2: --knob sets one knob, the other stays at its default
    b, out, _ = run("cube2", "--knob", "y=0.2")
    assert "p = (0.500, 0.200)" in out and np.array_equal(b, run("cube2", "--p", "0.5,0.2")[0])
    assert "p = (0.300, 0.300)" in run("cube2", "--slider", "both=0.3")[1]
    # simplex-3: raw p and every knob by name; p off the simplex is refused (issue 16)
    c, _, _ = run("simplex3", "--p", "0.2,0.3,0.5")
    assert np.array_equal(c, run("simplex3", "--knob", "a=0.2", "--knob", "b=0.3", "--knob", "c=0.5")[0])
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "off.png", "--model", files["simplex3"],
                      "--p", "0,0,0")
    assert rc == 2 and "off the simplex" in err and "refused" in err and not (tmp_path / "off.png").exists()
    # the library gives the same pixels
    r = Restorer.load(str(files["simplex3"]))
    from tunableconv.io import to_uint8_array

    lib = to_uint8_array(r(read_image(files["image"]), r.params(p=[0.2, 0.3, 0.5])))
    assert np.array_equal(to_uint8_array(torch.from_numpy(c)), lib)


@pytest.mark.parametrize("model,opts,needle", [
    ("simplex3", ["--slider", "0.5"], "no slider: give its knobs (a, b, c) with --p or --knob"),
    ("simplex2", ["--slider", "both=0.5"], "no slider 'both' (sliders: mix)"),
    ("simplex2", ["--slider", "mix"], "NAME=VALUE"),
    ("simplex2", ["--slider", "mix=2"], "[0, 1]"),
    ("simplex3", ["--knob", "a=0.5"], "missing knob value(s) for b, c"),
    ("cube2", ["--knob", "z=0.5"], "unknown knob 'z'"),
    ("cube2", ["--p", "0.5"], "2 knobs"),
    ("simplex3", ["--slider", "mix=0.5", "--p", "0,0,1"], "one way"),
])
def test_restore_bad_knobs(files, tmp_path, capsys, model, opts, needle):
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "o.png", "--model", files[model], *opts)
    _one_line_error(rc, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_tiling_refused_when_not_exact(files, tmp_path, capsys):
    space = KnobSpace(SPACES["cube2"].knobs, "cube", [0.5, 0.5], tiling_exact=False)
    path = save_model(_model(2, "cube"), tmp_path / "global.safetensors", knob_space=space)
    out = tmp_path / "o.png"
    rc, _, err = _cli(capsys, "restore", files["image"], out, "--model", path, "--tile", "16", "--overlap", "4")
    _one_line_error(rc, err, "not exact", "--force-tiling")
    assert not out.exists()
    rc, _, err = _cli(capsys, "restore", files["image"], out, "--model", path, "--tile", "16", "--overlap", "4",
                      "--force-tiling")
    assert rc == 0 and out.is_file(), err
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "u.png", "--model", path)
    assert rc == 0, err  # untiled is fine
    r = Restorer.load(str(path))
    with pytest.raises(InputError, match="force-tiling"):
        r(read_image(files["image"]), r.params(), tile=16, overlap=4)


# ----------------------------------------------------------------------------------------
# sweep
# ----------------------------------------------------------------------------------------
def test_sweep_on_each_domain(files, tmp_path, capsys):
    from PIL import Image

    strip = tmp_path / "s.png"
    for model, opts in (("simplex2", []), ("simplex2", ["--knob", "sharp"]), ("cube2", ["--slider", "both"]),
                        ("cube2", ["--knob-index", "1"]), ("simplex3", ["--knob", "b", "--base", "0.1,0,0.2"])):
        rc, out, err = _cli(capsys, "sweep", files["image"], "--model", files[model], "--steps", "3", "-o", strip, *opts)
        assert rc == 0, (model, opts, err)
        with Image.open(strip) as im:
            assert im.width == 3 * 28 + 2 * 4
    grid = tmp_path / "g.png"
    rc, out, err = _cli(capsys, "sweep", files["image"], "--model", files["cube2"], "--grid", "x,y", "--steps", "3",
                        "-o", grid)
    assert rc == 0 and "3x3 grid" in out, err
    with Image.open(grid) as im:
        assert im.width > 3 * 28 + 2 * 4 and im.height > 3 * 24  # the panels plus a column of row labels

    from tunableconv.sweep import grid_params, sweep_labels, sweep_params

    r = Restorer.load(str(files["cube2"]))
    ps = sweep_params(r, [0.0, 1.0], knob="x")  # the other knob at its default, no simplex assumption
    assert [p.tolist() for p in ps] == [[0.0, 0.5], [1.0, 0.5]]
    assert sweep_labels(r, [0.0, 1.0]) == ["both=0.00", "both=1.00"]
    g = grid_params(r, ["y", "x"], [0.0, 1.0])
    assert g[1][0].tolist() == [0.0, 1.0]  # row: y = 1, column: x = 0


@pytest.mark.parametrize("model,opts,needle", [
    ("simplex3", [], "--knob NAME or --knob-index I"),
    ("simplex3", ["--grid", "a,b"], "cube"),
    ("cube2", ["--grid", "x,x"], "two different knobs"),
    ("cube2", ["--grid", "x"], "two knob names"),
    ("cube2", ["--grid", "x,y", "--gif", "a.gif"], "GIF"),
    ("cube2", ["--grid", "x,y", "--steps", "12"], "[2, 11]"),
    ("simplex2", ["--steps", "100000"], "[2, 33]"),
    ("simplex2", ["--slider", "mix", "--base", "0.5,0.5"], "--base"),
    ("simplex3", ["--knob", "a", "--base", "0.5"], "--base"),
    ("simplex2", ["--slider", "nope"], "no slider 'nope'"),
])
def test_sweep_errors(files, tmp_path, capsys, model, opts, needle):
    opts = [tmp_path / o if o.endswith(".gif") else o for o in opts]
    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", files[model], "-o", tmp_path / "s.png", *opts)
    _one_line_error(rc, err, needle)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------
# calibrate
# ----------------------------------------------------------------------------------------
def test_calibrate_on_each_domain(files, tmp_path, capsys):
    common = ["--data", files["data"], "--images", "2", "--crop", "16", "--repeats", "1", "--grid", "3",
              "--max-points", "5", "--points", "5", "--no-progress"]
    out2 = tmp_path / "s2.safetensors"
    rc, out, err = _cli(capsys, "calibrate", files["simplex2"], "-o", out2, *common)
    assert rc == 0 and "slider mix" in out, err
    space = read_metadata(out2).space
    assert read_metadata(out2).format == FORMAT_2 and space.slider("mix").calibration is not None
    fit = read_metadata(out2).info["calibration_fit"]
    assert len(fit["paths"]["slider mix"]["response"]["s"]) <= 5

    outc = tmp_path / "c2.safetensors"
    rc, out, err = _cli(capsys, "calibrate", files["cube2"], "-o", outc, *common)
    assert rc == 0, err
    space = read_metadata(outc).space
    assert space.slider("both").calibration is not None
    assert all(k.calibration is not None for k in space.knobs)  # each cube knob along its own axis
    # the runners apply the calibrations; --raw keeps raw p
    cal = space.knobs[0].calibration
    rc, out, _ = _cli(capsys, "restore", files["image"], tmp_path / "o.png", "--model", outc, "--knob", "x=0.5")
    assert f"p = ({cal(0.5):.3f}, 0.500)" in out
    rc, out, _ = _cli(capsys, "restore", files["image"], tmp_path / "o.png", "--model", outc, "--knob", "x=0.5", "--raw")
    assert "p = (0.500, 0.500)" in out

    # a simplex without a slider: every knob's weight warp, fitted on the three edges
    out3 = tmp_path / "s3.safetensors"
    rc, out, err = _cli(capsys, "calibrate", files["simplex3"], "-o", out3, *common)
    assert rc == 0 and "weight warps of a, b, c" in out and "edge a-b: evenness error" in out, err
    info3 = read_metadata(out3)
    warps = info3.info["calibration_fit"]["paths"]["weight warps"]
    assert set(warps["gamma"]) == {"a", "b", "c"} and set(warps["evenness_error_after"]) == {"a-b", "a-c", "b-c"}
    assert all(warps["evenness_error_after"][e] <= warps["evenness_error_before"][e] + 0.02 for e in ("a-b", "a-c", "b-c"))
    space3 = info3.space
    assert all(k.calibration is not None for k in space3.knobs)
    expected = space3.simplex_weights([0.3, 0.0, 0.7])
    assert abs(expected[0] - 0.3) > 0.01  # the warps move this point (else the check below proves nothing)
    rc, out, _ = _cli(capsys, "restore", files["image"], tmp_path / "o.png", "--model", out3, "--knob", "a=0.3",
                      "--knob", "c=0.7")
    assert rc == 0 and f"p = ({expected[0]:.3f}, 0.000, {expected[2]:.3f})" in out
    rc, out, _ = _cli(capsys, "restore", files["image"], tmp_path / "o.png", "--model", out3, "--knob", "a=0.3",
                      "--knob", "c=0.7", "--raw")
    assert "p = (0.300, 0.000, 0.700)" in out
    _app_applies_the_weight_warps(out3, files["image"], tmp_path / "o_app_check.png", capsys)
    from tunableconv.sweep import sweep_labels, sweep_params

    r3 = Restorer.load(str(out3))  # a knob sweep on the warped simplex: its weights warped, "raw" when not
    base = [0.0, 0.7, 0.0]  # b at 0.7 and c at 0: sweeping a to 0.3 lands on the simplex
    c = [k.calibration for k in space3.knobs]
    warped = [c[0](0.3), c[1](0.7), 0.0]
    expected = [w / sum(warped) for w in warped]  # the warps by hand
    assert abs(expected[0] - 0.3) > 0.01  # (else the check proves nothing)
    assert sweep_params(r3, [0.3], knob="a", base=base)[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert sweep_params(r3, [0.3], knob="a", base=base, calibrated=False)[0].tolist() == pytest.approx([0.3, 0.7, 0.0])
    assert sweep_labels(r3, [0.3], knob="a") == ["a=0.30"]
    assert sweep_labels(r3, [0.3], knob="a", calibrated=False) == ["raw a=0.30"]
    rc, _, err = _cli(capsys, "calibrate", files["simplex2"], "-o", tmp_path / "again.safetensors", *common)
    assert rc == 0 and "weight warps" not in _  # a model with a slider keeps its slider calibration only


@pytest.mark.parametrize("opts,needle", [
    (["--grid", "100000", "--max-points", "4"], "--grid must be in [3, 101]"),
    (["--grid", "11", "--max-points", "4"], "at least --grid"),
    (["--images", "0"], "--images"),
    (["--repeats", "99"], "--repeats"),
    (["--crop", "-1"], "--crop"),
])
def test_calibrate_bounds(files, tmp_path, capsys, opts, needle):
    rc, _, err = _cli(capsys, "calibrate", files["simplex2"], "-o", tmp_path / "c.safetensors", "--data", files["data"],
                      *opts)
    _one_line_error(rc, err, needle)
    rc, _, err = _cli(capsys, "calibrate", files["simplex2"], "-o", files["simplex2"], "--data", files["data"])
    _one_line_error(rc, err, "is the input model file")
    assert list(tmp_path.iterdir()) == []


def test_calibrate_needs_a_known_task(files, tmp_path, capsys):
    path = save_model(_model(2, "cube"), tmp_path / "m.safetensors", knob_space=SPACES["cube2"], info={"task": "paint"})
    rc, _, err = _cli(capsys, "calibrate", path, "-o", tmp_path / "c.safetensors", "--data", files["data"])
    _one_line_error(rc, err, "unknown task 'paint'")
    path = save_model(_model(2, "cube"), tmp_path / "n.safetensors", knob_space=SPACES["cube2"])
    rc, _, err = _cli(capsys, "calibrate", path, "-o", tmp_path / "c.safetensors", "--data", files["data"])
    _one_line_error(rc, err, "names no task")
    assert not (tmp_path / "c.safetensors").exists()


def test_calibrate_degrades_as_the_task_does(files):
    """Calibrate's inputs are the task layer's training degradation (here denoising: the same draws)."""
    from tunableconv.calibrate import _degrade_for
    from tunableconv.evaluation import task_of

    info = read_metadata(files["simplex2"])
    clean = torch.rand(3, 12, 12)
    got = _degrade_for(info, clean, torch.Generator().manual_seed(5))
    want = task_of(info).degrade(clean, torch.Generator().manual_seed(5)).input
    assert torch.equal(got, want) and not torch.equal(got, clean)


# ----------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------
def test_models_lists_every_knob_space(files, bad_files, tmp_path, monkeypatch, capsys):
    import tunableconv.zoo as zoo

    for name in SPACES:
        (tmp_path / f"{name}.safetensors").write_bytes(files[name].read_bytes())
    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    rc, out, err = _cli(capsys, "models")
    assert rc == 0, err
    assert "simplex (the knobs are weights that sum to 1)" in out and "cube (independent knobs" in out
    assert "mix  p = (s, 1 - s), not calibrated: 1: all sharp" in out and "both  p = (s, s)" in out
    assert "default:      p = (0.5, 0.5)" in out and "tiling exact: yes" in out
    assert "sliders:      none" in out and "scale:        x1" in out
    rc, out, _ = _cli(capsys, "models", "--json")
    entries = {e["name"]: e for e in json.loads(out)}
    for name, space in SPACES.items():
        assert KnobSpace.from_dict(entries[name]["knob_space"]) == space
        assert entries[name]["format"] == FORMAT_2
    derived = tmp_path / "derived.safetensors"  # a knob space derived at save: the receptive field is known
    save_model(_model(2, "simplex"), derived, knobs=[{"name": "u"}, {"name": "v"}], info={"strength": "p = (s, 1 - s)"})
    rc, out, _ = _cli(capsys, "models", "--show", derived)
    assert rc == 0 and "tiling exact: yes, receptive field 5 px" in out and "strength  p = (s, 1 - s)" in out
    derived.unlink()
    (tmp_path / "broken.safetensors").write_bytes(bad_files["calibration type"].read_bytes())
    rc, out, _ = _cli(capsys, "models")
    assert rc == 1 and "error:" in out and "sliders[0].calibration" in out and "cube (independent" in out


# ----------------------------------------------------------------------------------------
# the app's API
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(files, bad_files):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from tunableconv.app.server import AppConfig, create_app

    models = [str(files[n]) for n in SPACES] + [str(bad_files["channels many"])]
    app = create_app(AppConfig(models=models, include_zoo=False, preview_size=64, tile=48, tile_overlap=8))
    with TestClient(app) as c:
        yield c


def _image_id(client) -> str:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 28, 3), dtype=np.uint8)).save(buf, format="PNG")
    r = client.post("/api/images", files={"file": ("a.png", buf.getvalue(), "image/png")})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_app_lists_knob_spaces_and_marks_a_bad_file(client, bad_files):
    body = client.get("/api/models").json()
    by_name = {m["name"]: m for m in body["models"]}
    assert body["default"] == "simplex2"
    for name, space in SPACES.items():
        assert by_name[name]["error"] is None and KnobSpace.from_dict(by_name[name]["knob_space"]) == space
    assert by_name["cube2"]["domain"] == "cube" and not by_name["cube2"]["simplex"]
    assert by_name["simplex2"]["sliders"][0]["formula"] == "p = (s, 1 - s)" and by_name["simplex2"]["main_slider"] == "mix"
    assert by_name["simplex3"]["main_slider"] is None
    bad_name = bad_files["channels many"].stem
    bad = by_name[bad_name]
    assert bad["available"] is False and "arguments.channels must be an integer" in bad["error"]
    assert "/" not in bad["file"]
    image_id = _image_id(client)
    r = client.post("/api/restore", json={"image_id": image_id, "model": bad_name})
    assert r.status_code == 400 and "unavailable" in r.json()["detail"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("model,knobs,p", [
    ("simplex2", {}, "0.500000,0.500000"),
    ("simplex2", {"slider": "mix", "value": 0.25}, "0.250000,0.750000"),
    ("simplex2", {"value": 0.25}, "0.250000,0.750000"),  # no slider named: the main slider
    ("simplex2", {"strength": 0.25}, "0.250000,0.750000"),  # the old name of value
    ("simplex2", {"knobs": {"sharp": 0.1, "smooth": 0.9}}, "0.100000,0.900000"),
    ("cube2", {"knobs": {"y": 0.2}}, "0.500000,0.200000"),
    ("cube2", {"slider": "both", "value": 1}, "1.000000,1.000000"),
    ("simplex3", {"p": [0.2, 0.3, 0.5]}, "0.200000,0.300000,0.500000"),
])
def test_app_restore_with_any_knob_space(client, model, knobs, p):
    r = client.post("/api/restore", json={"image_id": _image_id(client), "model": model, **knobs})
    assert r.status_code == 200, r.text
    assert r.headers["x-tunableconv-p"] == p


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("model,knobs,needle", [
    ("simplex3", {"value": 0.5}, "has no slider: give its knobs (a, b, c)"),
    ("simplex2", {"slider": "mix"}, "position in value"),
    ("simplex2", {"strength": 0.5, "value": 0.5}, "not both"),
    ("simplex3", {"knobs": {"a": 0.1}}, "missing knob value(s) for b, c"),
    ("cube2", {"knobs": {"z": 0.1}}, "unknown knob 'z'"),
    ("cube2", {"knobs": {"x": True}}, "valid number"),
    ("cube2", {"strength": True}, "valid number"),
    ("cube2", {"slider": "both", "value": 0.5, "p": [0, 0]}, "one way"),
])
def test_app_bad_knobs(client, model, knobs, needle):
    r = client.post("/api/restore", json={"image_id": _image_id(client), "model": model, **knobs})
    assert r.status_code == 422 and needle in r.json()["detail"], r.text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_app_sweep_along_any_path(client):
    from PIL import Image
    import io

    image_id = _image_id(client)
    for model, extra in (("simplex2", {}), ("cube2", {"knob": "y"}), ("simplex3", {"knob_index": 2}),
                         ("cube2", {"grid": ["x", "y"]})):
        r = client.post("/api/sweep", json={"image_id": image_id, "model": model, "steps": 2, "with_input": False,
                                            **extra})
        assert r.status_code == 200, (model, r.text)
        width = Image.open(io.BytesIO(r.content)).width
        assert width == 2 * 28 + 4 if "grid" not in extra else width > 2 * 28 + 4  # a grid adds its row labels
    r = client.post("/api/sweep", json={"image_id": image_id, "model": "simplex3", "grid": ["a", "b"]})
    assert r.status_code == 422 and "cube" in r.json()["detail"]
    r = client.post("/api/sweep", json={"image_id": image_id, "model": "simplex3"})
    assert r.status_code == 422 and "--knob" in r.json()["detail"]


def test_load_model_reuses_the_validated_build(files):
    model, info = load_model(files["cube2"])
    assert info.space == SPACES["cube2"] and not model.training
    assert model.config.domain == "cube"


def test_nan_weights_blame_the_file_not_the_input(files, tmp_path, capsys):
    model = _model(2, "simplex")
    with torch.no_grad():
        model.tail.weight.fill_(float("nan"))
    path = save_model(model, tmp_path / "nan.safetensors", knob_space=SPACES["simplex2"])
    out = tmp_path / "o.png"
    rc, _, err = _cli(capsys, "restore", files["image"], out, "--model", path)
    _one_line_error(rc, err, "weights hold NaN/Inf")
    assert not out.exists()


def test_knob_icons_round_trip_and_refuse_anything_but_an_image_data_uri():
    from tunableconv.io import icon_data_uri, icon_image
    from tunableconv.knobs import MAX_ICON_CHARS

    picture = torch.rand(3, 30, 90, generator=torch.Generator().manual_seed(0))
    icon = icon_data_uri(picture, size=48)
    assert icon.startswith("data:image/jpeg;base64,") and icon_image(icon).shape == (3, 16, 48)
    space = KnobSpace([Knob("a", icon=icon), Knob("b"), Knob("c")], "simplex")
    back = KnobSpace.from_dict(space.to_dict())
    assert back.knobs[0].icon == icon and back.knobs[1].icon == "" and "icon" not in space.to_dict()["knobs"][1]
    for bad in ("javascript:alert(1)", 'data:image/png;base64,AAAA" onload="x', "data:image/svg+xml;base64,AAAA",
                "data:image/png;base64,AAAAA",  # not whole base64
                "http://example.com/a.png", "data:image/png;base64," + "A" * MAX_ICON_CHARS, 5):
        d = space.to_dict()
        d["knobs"][0]["icon"] = bad
        with pytest.raises(InputError, match=r"knobs\[0\]\.icon"):
            KnobSpace.from_dict(d)
        with pytest.raises(ValueError, match="icon"):
            Knob("a", icon=bad)
    with pytest.raises(InputError, match="not a knob icon"):
        icon_image("data:text/plain;base64,AAAA")


def _app_applies_the_weight_warps(model: Path, image: Path, cli_out: Path, capsys) -> None:
    """The web app sends a warped simplex model's weights by name and gets the CLI's output."""
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    import io

    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from tunableconv.app.server import AppConfig, create_app

    rc, _, _ = _cli(capsys, "restore", image, cli_out, "--model", model, "--knob", "a=0.3", "--knob", "c=0.7")
    assert rc == 0
    raw_out = cli_out.with_name("raw_" + cli_out.name)
    assert _cli(capsys, "restore", image, raw_out, "--model", model, "--p", "0.3,0,0.7")[0] == 0
    with TestClient(create_app(AppConfig(models=[str(model)], include_zoo=False, preview_size=32))) as client:
        (m,) = client.get("/api/models").json()["models"]
        assert all(k["calibrated"] for k in m["knobs"])
        upload = client.post("/api/images", files={"file": ("a.png", image.read_bytes(), "image/png")}).json()
        r = client.post("/api/restore", json={"image_id": upload["id"], "model": m["name"], "calibrated": True,
                                              "knobs": {"a": 0.3, "b": 0.0, "c": 0.7}})
        assert r.status_code == 200, r.text
        app_out = np.array(Image.open(io.BytesIO(r.content)).convert("RGB"))
        assert np.array_equal(app_out, np.array(Image.open(cli_out).convert("RGB")))  # warped, as the CLI
        assert not np.array_equal(app_out, np.array(Image.open(raw_out).convert("RGB")))  # not the raw p


def test_simplex_weight_warps():
    from tunableconv.knobs import Calibration

    space = SPACES["simplex3"]
    assert space.simplex_weights([0.2, 0.3, 0.5]) == [0.2, 0.3, 0.5]  # no calibration: the identity
    square = Calibration.from_dict({"slider": [0, 0.5, 1], "raw": [0, 0.25, 1]}, "test", "c")
    warped = space.with_knob_calibration("a", square)
    p = warped.simplex_weights([0.5, 0.5, 0.0])  # c_a(0.5) = 0.25 against 0.5
    assert p == pytest.approx([1 / 3, 2 / 3, 0.0])
    for vertex in ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]):
        assert warped.simplex_weights(vertex) == vertex  # the pure objectives stay where they are
    assert warped.simplex_weights([0.5, 0.5, 0.0], calibrated=False) == [0.5, 0.5, 0.0]
    grid = torch.tensor([[0.5, 0.2, 1.0, 0.0], [0.5, 0.3, 0.0, 0.0], [0.0, 0.5, 0.0, 1.0]])  # 4 pixels' weights
    per_pixel = warped.simplex_weights(grid.view(3, 2, 2))  # a tensor (P, H, W): per pixel, as the list form
    assert per_pixel.shape == (3, 2, 2)
    for j in range(4):
        assert per_pixel.view(3, 4)[:, j].tolist() == pytest.approx(warped.simplex_weights(grid[:, j].tolist()))
    assert warped.simplex_weights(grid, calibrated=False) is grid
    torch.testing.assert_close(warped.resolve(knobs={"a": 0.5, "b": 0.5}), torch.tensor([1 / 3, 2 / 3, 0.0]))
    torch.testing.assert_close(warped.resolve(p=[0.5, 0.5, 0.0]), torch.tensor([0.5, 0.5, 0.0]))  # raw p is raw
    assert KnobSpace.from_dict(warped.to_dict()).knobs[0].calibration == square
    moved_end = Calibration.from_dict({"slider": [0, 1], "raw": [0.3, 1]}, "test", "c")
    with pytest.raises(InvalidParamsError, match="0 to 0 and 1 to 1"):
        space.with_knob_calibration("a", moved_end)
    d = warped.to_dict()
    d["knobs"][0]["calibration"] = moved_end.to_dict()
    with pytest.raises(InputError, match="must map 0 to 0"):
        KnobSpace.from_dict(d)
    from tunableconv.preview import anchor_set

    from tunableconv.knob_maps import knob_map_params

    per_pixel = knob_map_params(warped, torch.tensor([0.5, 0.5, 0.0]).view(3, 1, 1).expand(3, 4, 5), (4, 5))
    torch.testing.assert_close(per_pixel[:, 2, 3], torch.tensor([1 / 3, 2 / 3, 0.0]))  # a knob map is warped too
    raw_map = knob_map_params(warped, torch.tensor([0.5, 0.5, 0.0]).view(3, 1, 1).expand(3, 4, 5), (4, 5),
                              calibrated=False)
    torch.testing.assert_close(raw_map[:, 0, 0], torch.tensor([0.5, 0.5, 0.0]))
    tri = anchor_set(warped, "knobs", steps=3)
    assert tri.points[4].tolist() == [0.5, 0.5, 0.0] and tri.ps[4].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])


def test_fit_simplex_warps_recovers_known_exponents():
    """Edges whose response is exactly even under warps u^γ (γ = 2, 1, 0.5): the fit finds
    exponents that make every edge even (the ratios of γ matter: the fit is told the curves only)."""
    import numpy as np

    from tunableconv.calibrate import fit_simplex_warps

    gamma = np.array([2.0, 1.0, 0.5])
    t = np.linspace(0, 1, 201)
    responses = {}
    for a, b in ((0, 1), (0, 2), (1, 2)):
        s = t ** gamma[b] / ((1 - t) ** gamma[a] + t ** gamma[b])  # raw fraction at the user's t
        responses[(a, b)] = {"s": s.tolist(), "d": t.tolist()}  # D(s(t)) = t: even under the true warps
    fit = fit_simplex_warps(responses, 3)
    assert max(fit["error_after"].values()) < 0.02 < min(fit["error_before"].values())
    assert fit["gamma"][0] / fit["gamma"][1] == pytest.approx(2.0, rel=0.1)
    assert fit["gamma"][1] / fit["gamma"][2] == pytest.approx(2.0, rel=0.1)
    assert fit["warps"][0]["raw"][-1] == 1.0 and fit["warps"][0]["raw"][0] == 0.0
