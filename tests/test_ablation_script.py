"""scripts/ablation.py end to end on a tiny model and tiny images (the pipeline, not the science)."""

import importlib.util
import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "ablation.py"


def _load():
    spec = importlib.util.spec_from_file_location("ablation_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _noise_images(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray((rng.random((40, 40, 3)) * 255).astype("uint8")).save(folder / f"{i}.png")
    return folder


def test_every_variant_is_a_valid_recipe_change():
    mod = _load()
    args = mod.parse_args(["--out", "x"])
    base = mod.build_recipe(mod.variant_overrides(args, "base", {}))
    for name in mod.VARIANTS:
        r = mod.build_recipe(mod.variant_overrides(args, name, {}))
        assert (r.to_dict() != base.to_dict()) == (name != "base"), name


def test_ablation_tiny_end_to_end(tmp_path):
    mod = _load()
    imgs = _noise_images(tmp_path / "imgs", 3, seed=0)
    out = tmp_path / "abl"
    argv = ["--out", str(out), "--base-steps", "3", "--time-steps", "4", "--tiny", "--train-data", str(imgs),
            "--data", str(imgs), "--crop", "32", "--sigma", "25", "--p-grid", "0,0.5,1", "--variants", "mix-targets,p-batch",
            "--add", "combo=task.mix=targets;task.loss=l2"]
    assert mod.main(argv) == 0
    res = json.loads((out / "ablation.json").read_text())
    assert set(res["rows"]) == {"base", "mix-targets", "p-batch", "combo", "fixed"}
    assert shlex.split(res["command"]) == ["python", "scripts/ablation.py", *argv]  # copy-paste runs it again
    plan = res["plan"]["variants"]
    assert plan["base"]["steps"] == 3 and plan["fixed"]["steps"] == 3
    # a hyperparameter change runs the base's convolutions: equal steps, not timed; p-batch is timed
    assert plan["mix-targets"]["step_time_ratio"] is None and plan["mix-targets"]["steps"] == 3
    assert plan["p-batch"]["step_time_ratio"] > 0
    assert plan["p-batch"]["steps"] == max(1, round(3 / plan["p-batch"]["step_time_ratio"]))
    assert res["rows"]["p-batch"]["train_sec_per_step"] > 0
    row = res["rows"]["mix-targets"]
    assert row["steps"] == plan["mix-targets"]["steps"] and 0 <= row["evenness"] <= 1
    assert row["gap_to_fixed"] == pytest.approx(row["psnr_gt_fidelity_end"] - res["rows"]["fixed"]["psnr_gt_fidelity_end"],
                                                abs=1e-6)
    assert (out / "ablation.png").stat().st_size > 1000 and "| mix-targets |" in (out / "ablation.md").read_text()
    # a second call reuses the plan, the runs and the evaluations
    mtime = (out / "eval" / "base" / "results.json").stat().st_mtime
    assert mod.main(argv) == 0
    assert (out / "eval" / "base" / "results.json").stat().st_mtime == mtime
    # the runs folder is gone (a later session): the cached evaluations rebuild the table, nothing retrains
    shutil.rmtree(out / "runs")
    (out / "ablation.json").unlink()
    assert mod.main(argv) == 0
    again = json.loads((out / "ablation.json").read_text())
    assert again["rows"] == res["rows"] and not (out / "runs").exists()
    with pytest.raises(SystemExit, match="base-steps"):
        mod.main([a if a != "3" else "5" for a in argv])


def test_train_only_trains_exactly_the_named_variants(tmp_path):
    mod = _load()
    imgs = _noise_images(tmp_path / "imgs", 2, seed=1)
    out, runs = tmp_path / "abl", tmp_path / "runs"
    common = ["--out", str(out), "--runs", str(runs), "--base-steps", "2", "--tiny", "--train-data", str(imgs),
              "--variants", "loss-l2"]
    with pytest.raises(SystemExit, match="make the plan first"):  # no timing beside other trainings
        mod.main(common + ["--train-only", "loss-l2"])
    with pytest.raises(SystemExit, match="unknown variant"):
        mod.main(common + ["--train-only", "nope"])
    assert mod.main(common + ["--stop-after", "plan"]) == 0
    assert mod.main(common + ["--train-only", "loss-l2"]) == 0
    assert sorted(p.name for p in runs.iterdir() if p.is_dir()) == ["loss-l2"]  # base and fixed not added
    assert (runs / "loss-l2" / "model.safetensors").is_file() and mod.last_step(runs / "loss-l2") == 2


def test_a_combination_is_timed_only_when_it_computes_something_new(tmp_path, monkeypatch):
    mod = _load()
    out = tmp_path / "abl"
    out.mkdir()
    timed_plan = {"what": "x", "overrides": ["model.args.expansion=2"], "step_time_ratio": 1.25, "steps": 8}
    (out / "plan.json").write_text(json.dumps({"recipe": mod.BASE_RECIPE, "base_steps": 10,
                                               "variants": {"expansion-2": timed_plan}}))
    args = mod.parse_args(["--out", str(out), "--base-steps", "10"])
    extra = {"hp": ("combination", ["task.mix=targets", "task.vertex_share=0.5"]),
             "e2": ("combination", ["task.mix=targets", "model.args.expansion=2"]),
             "pb": ("combination", ["task.mix=targets", "task.p_granularity=batch"])}
    calls = []
    monkeypatch.setattr(mod, "time_steps", lambda a, names, e: calls.append(names) or {"base": 1.0, "pb": 1.1})
    plan = mod.make_plan(args, ["base", "hp", "e2", "pb", "fixed"], extra)["variants"]
    assert calls == [["base", "pb"]]  # only the one that changes the convolutions in a new way
    assert plan["hp"]["step_time_ratio"] is None and plan["hp"]["steps"] == 10
    assert plan["e2"]["step_time_ratio"] == 1.25 and plan["e2"]["steps"] == 8 and "expansion-2" in plan["e2"]["budget"]
    assert plan["pb"]["steps"] == round(10 / 1.1) and plan["fixed"]["steps"] == 10
