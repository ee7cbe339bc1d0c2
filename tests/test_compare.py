"""A tiny end-to-end run of `tunableconv compare` through the CLI."""

import json

import pytest
import torch
from PIL import Image

from tunableconv.cli import main


def test_compare_end_to_end_tiny(tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        arr = (torch.rand(3, 40, 40, generator=g) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(imgs / f"{i}.png")
    sets = [f"data.train={imgs}", f"data.val={imgs}", "data.num_workers=0", "data.patch_size=16", "data.val_images=1",
            "data.val_crop=32", "model.args.channels=8", "model.args.num_blocks=1", "train.batch_size=4",
            "train.threads=1", "train.log_every=1", "train.ckpt_every=2"]
    args = ["compare", "--out", str(tmp_path / "cmp"), "--methods", "tunable,fixed,dni,cresmd", "--steps", "4",
            "--data", str(imgs), "--sigma", "25", "--p-grid", "0,0.5,1", "--no-progress"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    out = tmp_path / "cmp"
    summary = json.loads((out / "compare.json").read_text())
    assert summary["methods"] == ["tunable", "fixed", "dni", "cresmd"] and summary["steps"] == 4
    # the recorded command is the compare command (it once dropped the word "compare")
    cmd = summary["command"].split()
    assert cmd[:2] == ["tunableconv", "compare"] and "--methods" in cmd and "tunable,fixed,dni,cresmd" in cmd
    assert set(summary["table1"]) == {"tunable", "fixed", "dni", "cresmd"}
    row = summary["table1"]["dni"]["imgs"]
    assert row["s"] == [0.0, 0.5, 1.0] and len(row["psnr_gt"]) == 3
    assert summary["parameters"]["dni"] > summary["parameters"]["fixed"]
    h2h = summary["head_to_head"]["dni"]["imgs"]
    t, d = summary["table1"]["tunable"]["imgs"], summary["table1"]["dni"]["imgs"]
    assert h2h["fidelity_end_psnr_gt"] == pytest.approx(t["psnr_gt"][-1] - d["psnr_gt"][-1])
    assert h2h["noise_end_psnr_target"] == pytest.approx(t["psnr_target"][0] - d["psnr_target"][0])
    assert set(summary["head_to_head"]) == {"dni", "cresmd"}  # the fixed network has no knob
    assert "tunable minus each method" in (out / "compare.md").read_text()
    assert all(c["ratio"] > 0 for c in summary["inference_cost"].values())
    for m in ("tunable", "fixed", "dni", "cresmd"):
        assert (out / "strips" / f"{m}.png").is_file()
        assert (out / "models" / f"{m}.safetensors").is_file()  # finished models kept for reuse
    assert (out / "compare.png").is_file() and "| dni |" in (out / "compare.md").read_text()
    # a run stopped early continues later: stop a fresh method at step 2, then finish it
    assert main(args[:4] + ["adafm"] + args[5:] + ["--stop-at", "2"]) == 0
    assert not (out / "models" / "adafm.safetensors").exists() and (out / "runs" / "adafm" / "latest.safetensors").exists()
    assert main(args[:4] + ["adafm"] + args[5:] + ["--train-only"]) == 0
    assert (out / "models" / "adafm.safetensors").is_file()
    # finished runs are reused: a second call trains nothing and gives the same table
    capsys.readouterr()
    assert main(args + ["--eval-only"]) == 0
    again = json.loads((out / "compare.json").read_text())
    assert again["table1"] == summary["table1"]
    err = capsys.readouterr().err
    assert all(f"{m}: evaluation reused" in err for m in ("tunable", "fixed", "dni", "cresmd"))
    # one method at a time, no table (separate processes), then the table from the cache
    assert main(args[:4] + ["adafm"] + args[5:] + ["--eval-only", "--no-table"]) == 0
    assert (out / "eval" / "adafm.json").is_file() and "== evaluating adafm" in capsys.readouterr().err
    # other settings are not served from the cache
    changed = [a if a != "0,0.5,1" else "0,1" for a in args]
    assert main(changed + ["--eval-only"]) == 0
    assert "== evaluating tunable" in capsys.readouterr().err
    assert json.loads((out / "compare.json").read_text())["table1"]["tunable"]["imgs"]["s"] == [0.0, 1.0]


def test_cached_evaluation_checks_model_and_settings(tmp_path):
    from tunableconv.compare import cached_evaluation
    from tunableconv.evaluate import _file_sha256

    model = tmp_path / "m.safetensors"
    model.write_bytes(b"weights")
    settings = {"dataset_specs": ["cbsd68"], "sigmas": [25.0], "grid": [0.0, 1.0], "seed": 0, "raw": True,
                "max_images": 2, "crop": None}
    cache = tmp_path / "m.json"
    assert cached_evaluation(cache, model, settings) is None  # nothing stored yet
    cache.write_text(json.dumps({"model": {"sha256": _file_sha256(str(model))}, "settings": settings, "x": 1}))
    assert cached_evaluation(cache, model, settings)["x"] == 1
    assert cached_evaluation(cache, model, {**settings, "max_images": 3}) is None
    model.write_bytes(b"other weights")
    assert cached_evaluation(cache, model, settings) is None
    cache.write_text("{not json")
    assert cached_evaluation(cache, model, settings) is None
