"""scripts/sr_table.py on a tiny SR comparison: the Table 4 layout with the bicubic floor
(computed with the SR metric convention), the anchors, the plane and the strips."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tunableconv.cli import main as cli
from tunableconv.train import Trainer, get_recipe

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sr_table.py"


def _script():
    spec = importlib.util.spec_from_file_location("sr_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        smooth = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(104, 100), mode="bilinear")
        Image.fromarray((smooth[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    return folder


def test_sr_table_on_a_tiny_comparison(tmp_path, capsys):
    torch.set_num_threads(1)
    imgs = _images(tmp_path / "imgs")
    sets = [f"data.train={imgs}", f"data.val={imgs}", "data.num_workers=0", "data.patch_size=32", "data.val_images=1",
            "model.args.channels=8", "model.args.num_blocks=1", "train.batch_size=2", "train.threads=1",
            "train.log_every=1", "train.ckpt_every=100", "task.vgg_weights=random", "task.disc_channels=8"]
    l1 = get_recipe("sr4-fixed-small")
    for s in sets:
        if not s.startswith("task."):
            l1.override(s)
    l1.train.steps = 4
    Trainer(l1, tmp_path / "l1", progress=False).fit()
    out = tmp_path / "cmp"
    args = ["compare", "--task", "sr", "--out", str(out), "--methods", "tunable,fixed,dni", "--steps", "3",
            "--data", str(imgs), "--p-grid", "0,0.5,1", "--metrics", "psnr,ssim,lpips", "--no-progress",
            "--set", f"model.init={tmp_path / 'l1' / 'model.safetensors'}"]
    for s in sets:
        args += ["--set", s]
    assert cli(args) == 0
    capsys.readouterr()
    mod = _script()
    assert mod.main([str(out), "--strips", "imgs:1", "--strip-crop", "64"]) == 0
    md = (out / "sr_table.md").read_text()
    res = json.loads((out / "sr_table.json").read_text())
    assert "| bicubic | — |" in md and "| tunable | 0.5 |" in md and "| fixed | — |" in md and "FSRCNN" in md
    assert set(res["methods"]) == {"tunable", "fixed", "dni"} and res["images"]["imgs"] == ["0", "1"]
    # the floor is measured as the task measures the methods: Y, 8-bit, a 4-pixel border
    from tunableconv.metrics import psnr
    from tunableconv.tasks.sr import bicubic_upscale, downscale, modcrop

    vals = []
    for i in range(2):
        hr = torch.from_numpy(np.array(Image.open(imgs / f"{i}.png"))).permute(2, 0, 1).float() / 255
        hr = modcrop(hr, 4)
        vals.append(float(psnr(bicubic_upscale(downscale(hr, 4), 4), hr, crop_border=4, y_channel=True, quantize=True)))
    assert abs(res["bicubic"]["imgs"]["psnr"] - sum(vals) / 2) < 1e-9
    assert (out / "sr_plane.png").is_file() and (out / "strips" / "sr_imgs.png").is_file()
    # not an SR comparison: one line, exit 2
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "compare.json").write_text(json.dumps({"task": "denoise"}))
    assert mod.main([str(tmp_path / "bad")]) == 2
    assert "not sr" in capsys.readouterr().err
