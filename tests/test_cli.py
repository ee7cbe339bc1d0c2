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
