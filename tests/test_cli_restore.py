"""``tunableconv restore``, ``sweep`` and ``models`` on tiny random-weight models.

Most cases call :func:`tunableconv.cli.main` in-process (fast); one goes through
``python -m tunableconv`` end to end.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tunableconv.cli import main
from tunableconv.io import read_image, write_image
from tunableconv.models import ResNet, ResNetConfig, save_model

KNOBS = [
    {"name": "fidelity", "description": "noise removal"},
    {"name": "noise_preservation", "description": "grain and detail kept"},
]


def _tiny(num_params: int, path: Path, **info) -> Path:
    torch.manual_seed(1)
    model = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=num_params))
    with torch.no_grad():  # keep the outputs mostly inside [0, 1] (little clamping)
        for prm in model.parameters():
            prm.mul_(0.5)
    if num_params == 0:
        return save_model(model, path, info={"task": "denoise", **info})
    knobs = KNOBS if num_params == 2 else [{"name": f"k{i}", "description": f"knob {i}"} for i in range(num_params)]
    return save_model(model, path, knobs=knobs, info={"task": "denoise", "strength": "p = (s, 1 - s)", **info})


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    g = torch.Generator().manual_seed(0)
    img = root / "in.png"
    write_image(torch.rand(3, 30, 40, generator=g), img)
    big = root / "big.png"
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 150), torch.linspace(0, 1, 200), indexing="ij")
    smooth = torch.stack([yy, xx, (yy + xx) / 2]) * 0.8 + 0.1
    write_image((smooth + 0.05 * torch.randn(3, 150, 200, generator=g)).clamp(0, 1), big)
    return {
        "model": _tiny(2, root / "tiny.safetensors"),
        "calibrated": _tiny(2, root / "cal.safetensors", calibration={"slider": [0.0, 1.0], "raw": [0.0, 0.5]}),
        "plain": _tiny(0, root / "plain.safetensors"),
        "three": _tiny(3, root / "three.safetensors"),
        "image": img,
        "big": big,
    }


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(np.int16)


def _assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


# ----------------------------------------------------------------------------------------
# restore: files and folders
# ----------------------------------------------------------------------------------------
def test_restore_file_end_to_end(files, tmp_path):
    out = tmp_path / "sub" / "out.png"
    r = subprocess.run([sys.executable, "-m", "tunableconv", "restore", str(files["image"]), str(out),
                        "--model", str(files["model"]), "--slider", "0.7"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "p = (0.700, 0.300)" in r.stdout
    assert read_image(out).shape == (3, 30, 40)


def test_restore_into_existing_folder_and_jpeg(files, tmp_path, capsys):
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path, "--model", files["model"])
    assert rc == 0, err
    assert (tmp_path / "in.png").is_file()
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "x.JPG", "--model", files["model"])
    assert rc == 0, err
    with Image.open(tmp_path / "x.JPG") as im:
        assert im.format == "JPEG"


def test_restore_folder_keeps_names_and_converts_modes(files, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    rgb = (np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(src / "a.png")
    Image.fromarray(rgb[..., 0]).save(src / "grey.png")  # L
    Image.fromarray(np.dstack([rgb, np.full((20, 24), 128, np.uint8)])).save(src / "rgba.png")
    Image.fromarray((rgb[..., 1].astype(np.uint16) * 257)).save(src / "deep.png")  # 16-bit grey
    Image.fromarray(rgb).convert("CMYK").save(src / "c.jpg")
    (src / "notes.txt").write_text("not an image, not picked up")
    dst = tmp_path / "out" / "nested"
    rc, out, err = _cli(capsys, "restore", src, dst, "--model", files["model"], "--p", "0.2,0.8")
    assert rc == 0, err
    assert sorted(p.name for p in dst.iterdir()) == ["a.png", "c.jpg", "deep.png", "grey.png", "rgba.png"]
    for p in dst.iterdir():
        with Image.open(p) as im:
            assert im.mode == "RGB" and im.size == (24, 20)
    assert "restored 5 image(s)" in out


def test_slider_equals_p_and_knob_names(files, tmp_path, capsys):
    outs = {}
    for tag, opts in {
        "main": ["--slider", "0.7"],
        "named": ["--slider", "strength=0.7"],
        "p": ["--p", "0.7,0.3"],
        "knob": ["--knob", "noise_preservation=0.3", "--knob", "fidelity=0.7"],
        "other": ["--p", "0.1,0.9"],
    }.items():
        rc, _, err = _cli(capsys, "restore", files["big"], tmp_path / f"{tag}.png", "--model", files["model"], *opts)
        assert rc == 0, err
        outs[tag] = _pixels(tmp_path / f"{tag}.png")
    assert np.array_equal(outs["main"], outs["p"]) and np.array_equal(outs["named"], outs["p"])
    assert np.array_equal(outs["knob"], outs["p"])
    assert not np.array_equal(outs["other"], outs["p"])  # p matters


def test_old_strength_option_is_the_main_slider_with_a_warning(files, tmp_path, capsys):
    """``--strength S`` (hidden, from the days of one task) runs ``--slider S`` and says so on stderr."""
    rc, out, err = _cli(capsys, "restore", files["big"], tmp_path / "old.png", "--model", files["model"],
                        "--strength", "0.7")
    assert rc == 0 and "--strength is deprecated; use --slider 0.7" in err and "slider strength=0.7" in out
    rc, _, _ = _cli(capsys, "restore", files["big"], tmp_path / "new.png", "--model", files["model"], "--slider", "0.7")
    assert rc == 0 and np.array_equal(_pixels(tmp_path / "old.png"), _pixels(tmp_path / "new.png"))
    rc, _, err = _cli(capsys, "restore", files["big"], tmp_path / "both.png", "--model", files["model"],
                      "--strength", "0.7", "--slider", "0.5")
    _assert_one_line_error(rc, err, "give --slider once")
    assert not (tmp_path / "both.png").exists()
    with pytest.raises(SystemExit):
        main(["restore", "--help"])
    assert "--strength" not in capsys.readouterr().out


def test_calibrated_strength_and_raw(files, tmp_path, capsys):
    def run(name, *opts):
        rc, _, err = _cli(capsys, "restore", files["big"], tmp_path / name, "--model", files["calibrated"], *opts)
        assert rc == 0, err
        return _pixels(tmp_path / name)

    # calibration maps slider 0.6 -> raw 0.3
    assert np.array_equal(run("cal.png", "--slider", "0.6"), run("p03.png", "--p", "0.3,0.7"))
    assert np.array_equal(run("raw.png", "--slider", "0.6", "--raw"), run("p06.png", "--p", "0.6,0.4"))
    assert not np.array_equal(_pixels(tmp_path / "cal.png"), _pixels(tmp_path / "raw.png"))


def test_plain_model(files, tmp_path, capsys):
    rc, out, err = _cli(capsys, "restore", files["image"], tmp_path / "o.png", "--model", files["plain"])
    assert rc == 0 and "no knobs" in out, err
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "o2.png", "--model", files["plain"], "--slider", "0.5")
    _assert_one_line_error(rc, err, "no knobs")
    assert not (tmp_path / "o2.png").exists()


def test_tiled_equals_untiled(files, tmp_path, capsys):
    from tunableconv.restore import Restorer

    r = Restorer.load(str(files["model"]))
    x = read_image(files["big"])
    p = r.params(slider=0.6)
    full = r(x, p)
    tiled = r(x, p, tile=64, overlap=16)
    assert tiled.shape == full.shape == (3, 150, 200)
    assert (tiled - full).abs().max().item() < 1e-4

    for name, opts in {"full.png": [], "tiled.png": ["--tile", "64", "--overlap", "16"]}.items():
        rc, _, err = _cli(capsys, "restore", files["big"], tmp_path / name, "--model", files["model"], "--slider", "0.6", *opts)
        assert rc == 0, err
    diff = np.abs(_pixels(tmp_path / "full.png") - _pixels(tmp_path / "tiled.png"))
    assert diff.max() <= 1  # 8-bit rounding at most: no seams
    # no seam: the columns and rows around tile borders differ no more than anywhere else
    assert diff[:, 40:56].max() <= 1 and diff[40:56, :].max() <= 1


# ----------------------------------------------------------------------------------------
# restore: bad input -> one line, exit 2, no output
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_images(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad")
    write_image(torch.rand(3, 30, 40), root / "good.png")
    data = (root / "good.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "text.png").write_text("hello, I am not a PNG\n")
    (root / "empty.jpg").write_bytes(b"")
    Image.fromarray(np.full((8, 8), 100_000, np.int32)).save(root / "deep32.tif")  # mode I > 65535: refused
    return {p.stem: p for p in root.iterdir()}


@pytest.mark.parametrize("name,needle", [
    ("truncated", "truncated"),
    ("text", "not an image"),
    ("empty", "empty.jpg"),
    ("deep32", "not supported"),
    ("missing", "not found"),
])
def test_bad_image_file(files, bad_images, tmp_path, capsys, name, needle):
    src = bad_images.get(name, tmp_path / "missing.png")
    rc, _, err = _cli(capsys, "restore", src, tmp_path / "out.png", "--model", files["model"])
    _assert_one_line_error(rc, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_decompression_bomb_refused(files, tmp_path, capsys):
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "out.png", "--model", files["model"], "--max-pixels", "100")
    _assert_one_line_error(rc, err, "more than the limit")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opts,needle", [
    (["--p", "0.5"], "2 knobs"),
    (["--p", "0.5,0.2,0.3"], "2 knobs"),
    (["--p", "1.5,0"], "[0, 1]"),
    (["--p=-0.1,0.5"], "[0, 1]"),
    (["--p", "nan,0.5"], "NaN"),
    (["--p", "a,b"], "comma-separated numbers"),
    (["--p", "0.5,"], "comma-separated numbers"),
    (["--slider", "1.5"], "[0, 1]"),
    (["--slider", "-0.2"], "[0, 1]"),
    (["--slider", "strength=1.5"], "[0, 1]"),
    (["--slider", "half"], "VALUE (the main slider) or NAME=VALUE"),
    (["--slider", "strength=half"], "must be a number"),
    (["--slider", "inf"], "finite"),
    (["--slider", "sharpness=0.5"], "no slider 'sharpness'"),
    (["--slider", "0.5", "--p", "0.5,0.5"], "one way"),
    (["--knob", "fidelty=0.5", "--knob", "noise_preservation=0.5"], "fidelity, noise_preservation"),
    (["--knob", "fidelity=0.5", "--p", "0.5,0.5"], "one way"),
    (["--knob", "fidelity=2", "--knob", "noise_preservation=0"], "[0, 1]"),
    (["--knob", "fidelity=x", "--knob", "noise_preservation=0"], "must be a number"),
    (["--knob", "fidelity", "--knob", "noise_preservation=0"], "NAME=VALUE"),
    (["--knob", "fidelity=0.1", "--knob", "fidelity=0.2"], "twice"),
    (["--tile", "32", "--overlap", "32"], "overlap"),
    (["--device", "nonsense"], "device"),
])
def test_bad_knob_values(files, tmp_path, capsys, opts, needle):
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "out.png", "--model", files["model"], *opts)
    _assert_one_line_error(rc, err, needle)
    assert list(tmp_path.iterdir()) == []


def test_bad_model_and_output(files, tmp_path, capsys):
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "out.png", "--model", "no-such-model")
    _assert_one_line_error(rc, err, "unknown model 'no-such-model'")
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "out.png", "--model", files["image"])
    _assert_one_line_error(rc, err, "safetensors")
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "out.xyz", "--model", files["model"])
    _assert_one_line_error(rc, err, "unknown image extension '.xyz'")
    rc, _, err = _cli(capsys, "restore", files["image"], tmp_path / "noext", "--model", files["model"])
    _assert_one_line_error(rc, err, "unknown image extension")
    rc, _, err = _cli(capsys, "restore", files["image"], files["image"], "--model", files["model"])
    _assert_one_line_error(rc, err, "input file")
    assert list(tmp_path.iterdir()) == []


def test_folder_with_a_bad_file_writes_nothing(files, bad_images, tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    write_image(torch.rand(3, 20, 20), src / "a.png")
    (src / "b.png").write_bytes(bad_images["truncated"].read_bytes())
    (src / "c.jpg").write_bytes(b"")
    dst = tmp_path / "out"
    rc, _, err = _cli(capsys, "restore", src, dst, "--model", files["model"])
    _assert_one_line_error(rc, err, "b.png", "1 more", "nothing was written")
    assert not dst.exists()

    rc, out, err = _cli(capsys, "restore", src, dst, "--model", files["model"], "--skip-bad")
    assert rc == 1
    assert err.count("warning: skipped") == 2
    assert sorted(p.name for p in dst.iterdir()) == ["a.png"]

    rc, _, err = _cli(capsys, "restore", src, src, "--model", files["model"])
    _assert_one_line_error(rc, err, "another folder")
    rc, _, err = _cli(capsys, "restore", tmp_path / "empty", dst, "--model", files["model"])
    _assert_one_line_error(rc, err, "not found")
    rc, _, err = _cli(capsys, "restore", src, files["image"], "--model", files["model"])
    _assert_one_line_error(rc, err, "is a file")


# ----------------------------------------------------------------------------------------
# sweep
# ----------------------------------------------------------------------------------------
def test_sweep_strip_and_gif(files, tmp_path, capsys):
    strip, gif = tmp_path / "strip.png", tmp_path / "anim.gif"
    rc, out, err = _cli(capsys, "sweep", files["big"], "--model", files["model"], "--steps", "4", "--crop", "32",
                        "-o", strip, "--gif", gif, "--degrade", "25")
    assert rc == 0, err
    with Image.open(strip) as im:
        assert im.width == 4 * 32 + 3 * 4 and im.height > 32
    with Image.open(gif) as im:
        assert im.n_frames == 6 and im.info.get("loop") == 0  # 0,1,2,3,2,1 forever
        assert im.size[0] == 32

    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", files["model"], "--steps", "3", "--with-input",
                      "--raw", "-o", strip)
    assert rc == 0, err
    with Image.open(strip) as im:
        assert im.width == 4 * 40 + 3 * 4


def test_sweep_library_functions(files):
    from tunableconv.restore import Restorer
    from tunableconv.sweep import make_strip, sweep_labels, sweep_outputs, sweep_params, sweep_values

    r = Restorer.load(str(files["three"]))
    values = sweep_values(3)
    assert values == [0.0, 0.5, 1.0]
    ps = sweep_params(r, values, knob_index=2)  # the other knobs at their defaults (1/3 on the 3-simplex)
    assert torch.allclose(ps[1], torch.tensor([1 / 3, 1 / 3, 0.5]))
    assert torch.equal(sweep_params(r, values, knob="k2")[1], ps[1])
    ps = sweep_params(r, values, knob_index=0, base=[0.0, 0.3, 0.9])
    assert torch.allclose(ps[2], torch.tensor([1.0, 0.3, 0.9]))
    assert sweep_labels(r, values, knob_index=1) == ["k1=0.00", "k1=0.50", "k1=1.00"]
    outs = sweep_outputs(r, torch.rand(3, 16, 24), values, knob_index=1)
    assert len(outs) == 3 and outs[0].shape == (3, 16, 24)
    assert make_strip(outs, ["a", "b", "c"], gap=2).width == 3 * 24 + 2 * 2


def test_sweep_errors(files, tmp_path, capsys):
    strip = tmp_path / "s.png"
    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", files["plain"], "-o", strip)
    _assert_one_line_error(rc, err, "no knobs")
    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", files["three"], "-o", strip)
    _assert_one_line_error(rc, err, "--knob-index")
    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", files["three"], "--knob-index", "3", "-o", strip)
    _assert_one_line_error(rc, err, "out of range")
    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", files["model"], "-o", tmp_path / "s.xyz")
    _assert_one_line_error(rc, err, "unknown image extension")
    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", files["model"], "--gif", tmp_path / "a.png")
    _assert_one_line_error(rc, err, ".gif")
    rc, _, err = _cli(capsys, "sweep", files["image"], "--model", files["model"], "--steps", "1", "-o", strip)
    _assert_one_line_error(rc, err, "steps")
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------
def test_models_listing(files, tmp_path, monkeypatch, capsys):
    import tunableconv.zoo as zoo

    monkeypatch.setattr(zoo, "ZOO_DIR", tmp_path)
    rc, out, _ = _cli(capsys, "models")
    assert rc == 0 and "no shipped models" in out
    rc, out, _ = _cli(capsys, "models", "--json")
    assert rc == 0 and json.loads(out) == []

    (tmp_path / "denoise.safetensors").write_bytes(files["model"].read_bytes())
    (tmp_path / "denoise.md").write_text("# Denoiser\n\nA tiny test denoiser.\nSecond line.\nFourth.\n")
    rc, out, err = _cli(capsys, "models")
    assert rc == 0, err
    assert "denoise" in out and "ResNet: 1 residual block x 8 channels" in out
    assert "fidelity" in out and "noise removal" in out and "A tiny test denoiser." in out
    n_params = sum(p.numel() for p in ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=2)).parameters())
    assert f"{n_params:,}" in out
    rc, out, _ = _cli(capsys, "models", "--json")
    (entry,) = json.loads(out)
    assert entry["name"] == "denoise" and entry["parameters"] == n_params
    assert [k["name"] for k in entry["knobs"]] == ["fidelity", "noise_preservation"]
    assert entry["card"][:2] == ["Denoiser", "A tiny test denoiser."]

    rc, out, err = _cli(capsys, "models", "--show", "denoise")
    assert rc == 0 and "arguments:" in out and "channels=8" in out, err
    rc, out, _ = _cli(capsys, "models", "--show", files["plain"], "--json")
    assert rc == 0 and json.loads(out)["num_params"] == 0
    rc, _, err = _cli(capsys, "models", "--show", "nope")
    _assert_one_line_error(rc, err, "unknown model")

    (tmp_path / "broken.safetensors").write_bytes(b"not a model")
    rc, out, _ = _cli(capsys, "models")
    assert rc == 1 and "error:" in out and "denoise" in out


@pytest.mark.parametrize("arch", ["resnet", "adafm", "cfsnet"])
def test_restorer_equals_the_plain_forward(arch, tmp_path):
    """The Restorer runs NHWC (channels_last) for speed: the values are those of the NCHW forward."""
    from tunableconv.models import ARCHITECTURES, save_model
    from tunableconv.restore import Restorer

    cls, cfg = ARCHITECTURES[arch]
    torch.manual_seed(0)
    model = cls(cfg(channels=8, num_blocks=2)).eval()
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))  # leave the identity initialisation
    path = save_model(model, tmp_path / f"{arch}.safetensors")
    r = Restorer.load(str(path))
    x = torch.rand(3, 37, 45)
    p = torch.tensor([0.3, 0.7])
    with torch.no_grad():
        want = model(x[None], p)[0].clamp(0, 1)
    got = r(x, r.params(p=[0.3, 0.7]))
    assert got.is_contiguous()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
