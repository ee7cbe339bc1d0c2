"""The command line: help, and one-line errors with a non-zero exit."""

import subprocess
import sys

import pytest


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "tunableconv", *args], capture_output=True, text=True, timeout=timeout)


def test_help_and_version():
    r = _run("--help")
    assert r.returncode == 0 and "demo" in r.stdout
    r = _run("--version")
    assert r.returncode == 0 and "tunableconv" in r.stdout


def test_demo_runs():
    r = _run("demo", "--layers", "--steps", "5", "--p", "0.2,0.8")
    assert r.returncode == 0, r.stderr
    assert "0.20,0.80" in r.stdout


@pytest.mark.parametrize(
    "p,msg",
    [("0.5", "expected 2"), ("0.5,0.2,0.3", "expected 2"), ("1.5,0", "[0, 1]"), ("nan,0.5", "NaN"), ("a,b", "numbers")],
)
def test_bad_p_gives_one_line_error(p, msg):
    r = _run("demo", "--layers", "--steps", "1", "--p", p)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert msg in lines[0] and "Traceback" not in r.stderr


def _psnr_rows(stdout):
    """The demo table's rows: {label: (psnr vs clean, psnr vs blended target)}."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) == 4 and "=" in cells[0]:
            rows[cells[0]] = (float(cells[2]), float(cells[3]))
    return rows


@pytest.mark.parametrize("model,extra,first,last", [
    ("denoise", [], "strength=0.00", "strength=1.00"),
    ("deblur-denoise", ["--degrade", "noise=25,blur=1"], "denoise=0.00", "denoise=1.00"),
])
def test_demo_degrades_through_the_models_task(tmp_path, model, extra, first, last):
    """The demo has no task code: the model file's task degrades the photo, the model's first
    slider (or first knob, the others at 1) is swept, and the blended target is the knob's end."""
    r = _run("demo", "--model", model, *extra, "--crop", "64", "--values", "0,1", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    rows = _psnr_rows(r.stdout)
    assert set(rows) == {first, last}
    assert rows[last][0] > rows[first][0] + 1  # removing the noise brings the output nearer the clean photo
    assert (tmp_path / "strip.png").is_file() and (tmp_path / "degraded.png").is_file()


@pytest.mark.parametrize("args,msg", [
    (["--degrade", "300"], "--degrade: a denoising case is one noise sigma in 0..255"),
    (["--degrade", "15,25"], "--degrade takes one case"),
    (["--model", "deblur-denoise", "--degrade", "25"], "--degrade: a deblur_denoise case is written"),
    (["--model", "deblur-denoise", "--knob", "sharpness"], "sharpness"),
])
def test_demo_bad_degradation_or_knob_one_line(tmp_path, args, msg):
    r = _run("demo", *args, "--crop", "32", "--out", str(tmp_path / "o"))
    assert r.returncode == 2, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0], r.stderr
    assert not (tmp_path / "o").exists()
