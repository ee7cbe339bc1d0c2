"""scripts/summarise_evals.py: means over cases of several eval results, side by side."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "summarise_evals.py"


def _result(values_a, values_b, ref):
    settings = [{"s": None, "p": [0.0, 0.0]}, {"s": None, "p": [1.0, 1.0]}]
    cases = {"noise=15,blur=0": {"model": {"psnr": values_a}, "reference": {"psnr": ref[0]}},
             "noise=50,blur=0": {"model": {"psnr": values_b}, "reference": {"psnr": ref[1]}}}
    return {"settings": settings, "reference_setting": 1, "datasets": {"kodak24": {"num_images": 2, "cases": cases}}}


def test_means_per_setting_and_reference(tmp_path):
    a = tmp_path / "a.json"
    a.write_text(json.dumps(_result([20.0, 30.0], [22.0, 26.0], [31.0, 27.0])))
    out = tmp_path / "s.md"
    r = subprocess.run([sys.executable, str(SCRIPT), f"uniform={a}", "--per-case", "-o", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert "| uniform | (0, 0) | 21.000 | 20.000 | 22.000 |" in text
    assert "| uniform | (1, 1) | 28.000 | 30.000 | 26.000 |" in text
    assert "| uniform (reference) | (1, 1) | 29.000 | 31.000 | 27.000 |" in text


def test_missing_file_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(SCRIPT), f"x={tmp_path / 'nope.json'}"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "LABEL=results.json" in r.stderr
