"""A tiny end-to-end run of `tunableconv compare` through the CLI: every method trained a few
steps, evaluated by the task-agnostic protocol (tunableconv.evaluation), cached, tabled."""

import json

import pytest
import torch
from PIL import Image

from tunableconv.cli import main

METHODS = ["tunable", "fixed", "dni", "cresmd", "cresmd-condition"]


@pytest.fixture()
def tiny(tmp_path):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        arr = (torch.rand(3, 40, 40, generator=g) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(imgs / f"{i}.png")
    sets = [f"data.train={imgs}", f"data.val={imgs}", "data.num_workers=0", "data.patch_size=16", "data.val_images=1",
            "data.val_crop=32", "model.args.channels=8", "model.args.num_blocks=1", "train.batch_size=4",
            "train.threads=1", "train.log_every=1", "train.ckpt_every=2"]
    args = ["compare", "--task", "denoise", "--out", str(tmp_path / "cmp"), "--methods", ",".join(METHODS), "--steps", "4",
            "--data", str(imgs), "--levels", "25", "--p-grid", "0,0.5,1", "--metrics", "psnr", "--no-progress"]
    for s in sets:
        args += ["--set", s]
    return args, tmp_path / "cmp"


def test_compare_end_to_end_tiny(tiny, capsys):
    args, out = tiny
    assert main(args) == 0
    summary = json.loads((out / "compare.json").read_text())
    assert summary["methods"] == METHODS and summary["steps"] == 4
    # the recorded command is the compare command (it once dropped the word "compare")
    cmd = summary["command"].split()
    assert cmd[:2] == ["tunableconv", "compare"] and "--methods" in cmd and ",".join(METHODS) in cmd
    table = summary["table"]
    assert set(table) == set(METHODS)
    dni = table["dni"]
    assert dni["labels"] == ["strength=0", "strength=0.5", "strength=1"] and not dni["conditioned"]
    assert len(dni["datasets"]["imgs"]["metrics"]["psnr"]) == 3
    assert table["fixed"]["labels"] == ["fixed"]
    # the conditioned CResMD: its own knob (the noise level it is told) on the grid, then the
    # task's strengths told the matching level s * sigma, then the true levels
    cond = table["cresmd-condition"]
    assert cond["conditioned"] and cond["labels"] == ["noise_level=0", "noise_level=0.5", "noise_level=1",
                                                      "strength=0", "strength=0.5", "strength=1", "true levels"]
    assert cond["reference_setting"] == 6
    cm = cond["datasets"]["imgs"]["metrics"]
    assert cm["psnr"][3] == cm["psnr"][0]  # strength 0: told no noise, as noise_level=0
    assert cm["psnr"][5] == cm["psnr"][6]  # strength 1: told the true level
    assert cm["psnr_blend"][:3] == [None] * 3 and None not in cm["psnr_blend"][3:6]  # a blend at matched p only
    # the evaluation is the task-agnostic protocol's, cached per method
    res = json.loads((out / "eval" / "cresmd-condition.json").read_text())
    assert res["format"] == "tunableconv-eval/2" and res["model"]["conditioned_on"] == "condition"
    assert res["settings"][-1] == {"s": None, "p": None, "true_levels": True}
    assert res["settings"][3] == {"s": 0.0, "p": [0.0, 1.0], "matched": True}
    # tunableconv eval reports and draws a conditioned model: its knob grid, then the true levels
    ev = out / "ev"
    assert main(["eval", "--model", str(out / "models" / "cresmd-condition.safetensors"), "--data", args[args.index("--data") + 1],
                 "--levels", "25", "--p-grid", "0,0.1,0.2", "--out", str(ev), "--no-progress"]) == 0
    assert "| true levels |" in (ev / "results.md").read_text() and list(ev.glob("knobs_*.png"))
    assert summary["parameters"]["dni"] > summary["parameters"]["fixed"]
    h2h = summary["head_to_head"]
    t, d = table["tunable"]["datasets"]["imgs"]["metrics"], dni["datasets"]["imgs"]["metrics"]
    assert h2h["dni"]["imgs"]["fidelity_psnr"] == pytest.approx(t["psnr"][-1] - d["psnr"][-1])
    assert h2h["dni"]["imgs"]["mean_psnr_blend"] == pytest.approx(sum(t["psnr_blend"]) / 3 - sum(d["psnr_blend"]) / 3)
    c = cond["datasets"]["imgs"]["metrics"]["psnr"]
    assert h2h["cresmd-condition"]["imgs"]["fidelity_psnr"] == pytest.approx(t["psnr"][-1] - c[-1])
    assert h2h["cresmd-condition"]["imgs"]["mean_psnr"] == pytest.approx(sum(t["psnr"]) / 3 - sum(cm["psnr"][3:6]) / 3)
    assert h2h["fixed"]["imgs"]["fidelity_psnr"] == pytest.approx(
        t["psnr"][-1] - table["fixed"]["datasets"]["imgs"]["metrics"]["psnr"][0])
    md = (out / "compare.md").read_text()
    assert "tunable minus each method" in md and "| dni |" in md and "(true levels)" in md
    assert "cresmd-condition turned by its own knobs" in md and "Knob quality" in md
    assert all(c["ratio"] > 0 for c in summary["inference_cost"].values())
    for m in METHODS:
        assert (out / "strips" / f"{m}.png").is_file()
        assert (out / "models" / f"{m}.safetensors").is_file()  # finished models kept for reuse
    assert (out / "compare.png").is_file()
    # a run stopped early continues later: stop a fresh method at step 2, then finish it
    i = args.index("--methods") + 1
    one = args[:i] + ["adafm"] + args[i + 1:]
    assert main(one + ["--stop-at", "2"]) == 0
    assert not (out / "models" / "adafm.safetensors").exists() and (out / "runs" / "adafm" / "latest.safetensors").exists()
    assert main(one + ["--train-only"]) == 0
    assert (out / "models" / "adafm.safetensors").is_file()
    # finished runs are reused: a second call trains nothing and gives the same table
    capsys.readouterr()
    assert main(args + ["--eval-only"]) == 0
    again = json.loads((out / "compare.json").read_text())
    assert again["table"] == summary["table"]
    err = capsys.readouterr().err
    assert all(f"{m}: evaluation reused" in err for m in METHODS)
    # one method at a time, no table (separate processes), then the table from the cache
    assert main(one + ["--eval-only", "--no-table"]) == 0
    assert (out / "eval" / "adafm.json").is_file() and "== evaluating adafm" in capsys.readouterr().err
    # other settings are not served from the cache
    changed = [a if a != "0,0.5,1" else "0,1" for a in args]
    assert main(changed + ["--eval-only"]) == 0
    assert "== evaluating tunable" in capsys.readouterr().err
    assert json.loads((out / "compare.json").read_text())["table"]["tunable"]["labels"] == ["strength=0", "strength=1"]


def test_bad_options_are_refused_before_training(tiny, capsys):
    args, out = tiny
    for flag, value, msg in (("--p-grid", "0,2", "--p-grid"), ("--metrics", "psnr,fid", "unknown metric"),
                             ("--levels", "a", "levels")):
        i = args.index(flag) + 1
        assert main(args[:i] + [value] + args[i + 1:]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0]
        assert not (out / "runs").exists()


def test_cached_evaluation_checks_model_format_and_options(tmp_path):
    from tunableconv.compare import cached_evaluation
    from tunableconv.evaluation import FORMAT, _sha256

    model = tmp_path / "m.safetensors"
    model.write_bytes(b"weights")
    options = {"datasets": ["cbsd68"], "levels": [25.0], "grid": [0.0, 1.0], "seed": 0, "raw": True,
               "max_images": 2, "crop": None}
    cache = tmp_path / "m.json"
    assert cached_evaluation(cache, model, options) is None  # nothing stored yet
    stored = {"format": FORMAT, "model": {"sha256": _sha256(str(model))}, "options": {**options, "tile": None}, "x": 1}
    cache.write_text(json.dumps(stored))
    assert cached_evaluation(cache, model, options)["x"] == 1
    assert cached_evaluation(cache, model, {**options, "max_images": 3}) is None
    cache.write_text(json.dumps({**stored, "format": "tunableconv-eval/1"}))  # the old protocol's
    assert cached_evaluation(cache, model, options) is None
    cache.write_text(json.dumps(stored))
    model.write_bytes(b"other weights")
    assert cached_evaluation(cache, model, options) is None
    cache.write_text("{not json")
    assert cached_evaluation(cache, model, options) is None
