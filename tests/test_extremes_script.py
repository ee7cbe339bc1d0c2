"""scripts/deblur_denoise_extremes.py on a tiny random deblur_denoise model (issue 17 c)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tunableconv.models import ResNet, ResNetConfig, save_model
from tunableconv.paths import data_root
from tunableconv.tasks import build_task
from tunableconv.train import get_recipe

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (data_root() / "blur_kernels" / "kernels.npz").is_file(), reason="no blur kernels in the data root")
def test_extremes_script_on_a_tiny_model(tmp_path):
    recipe = get_recipe("deblur-denoise-small")
    task = build_task(recipe)
    torch.manual_seed(0)
    net = ResNet(ResNetConfig(channels=4, num_blocks=1, num_params=2, domain="cube"))
    model = save_model(net, tmp_path / "dd.safetensors", knobs=task.knobs(net),
                       info={"task": "deblur_denoise", "recipe": recipe.to_dict()}, knob_space=task.knob_space(net))
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray((np.random.default_rng(0).random((48, 48, 3)) * 255).astype(np.uint8)).save(imgs / "a.png")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "deblur_denoise_extremes.py"), "--model", str(model),
                        "--data", str(imgs), "--max-images", "1", "--crop", "48", "--out", str(out)],
                       capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "extremes.json").read_text())
    assert len(res["cases"]) == 3 + 8  # sigma_n 70, sigma_b 5 (alone and with noise), the 8 Levin kernels
    per = res["cases"]["noise=70"]["models"]["dd"]
    assert len(per) == 9 and all(v["nan"] == 0 for v in per.values())
    assert len(list(out.glob("extremes_*.jpg"))) == 11 and "| noise=70 | the input |" in (out / "extremes.md").read_text()
