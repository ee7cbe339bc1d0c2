"""Recipe validation and safe training runs (issue 16 B5, B6 and the training items of
"Also fix, smaller").

Every bad recipe value is refused before any work starts (no data loaded, no model built,
no run folder created) with one line naming the field and its range; the command line
exits 2 without a traceback. A resume that cannot continue leaves the run folder as it
was; a killed run's leftovers (temporary files, log records past the checkpoint) are
cleaned up when it is resumed.
"""

import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml

from tunableconv import InputError
from tunableconv.cli import main
from tunableconv.train import Recipe, Trainer, load_checkpoint, save_checkpoint
from tunableconv.train.config import DataSection, DiscOptimizerSection, ModelSection, TrainSection
from tunableconv.tasks import DenoiseTaskSection

from test_train import tiny_recipe


def _train(capsys, *args: str) -> tuple[int, str, str]:
    """``tunableconv train ARGS --no-progress`` in this process: (exit status, stdout, stderr)."""
    rc = main(["train", *args, "--no-progress"])
    out, err = capsys.readouterr()
    return rc, out, err


def _recipe_file(tmp_path: Path, mutate=None, steps: int = 3, name: str = "r.yaml") -> Path:
    d = tiny_recipe(tmp_path, steps=steps).to_dict()
    if mutate is not None:
        mutate(d)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def _setter(dotted: str, value):
    def mutate(d: dict) -> None:
        *path, key = dotted.split(".")
        for part in path:
            d = d[part]
        d[key] = value
    return mutate


def _assert_refused(rc: int, err: str, fragment: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and fragment in lines[0], err


# --- B5/B6: the cases of the issue, through the command line ------------------------------
ISSUE_CASES = [  # (field, bad value, fragment of the message)
    ("train.lr", -1e-3, "train.lr"),
    ("train.lr", "fast", "train.lr"),
    ("train.lr", math.nan, "train.lr"),
    ("train.betas", [2, 3], "train.betas"),
    ("train.batch_size", 0, "train.batch_size"),
    ("data.patch_size", 100000, "data.patch_size"),
    ("train.ckpt_every", 0, "train.ckpt_every"),
    ("train.log_every", 0, "train.log_every"),
    ("data.num_workers", -1, "data.num_workers"),
    ("train.threads", -1, "train.threads"),
    ("train.device", "tpu", "train.device"),
    ("train.steps", 0, "train.steps"),  # B6
    ("train", 5, "'train' must be a mapping"),
    ("train", "abc", "'train' must be a mapping"),
]


@pytest.mark.parametrize("field,value,fragment", ISSUE_CASES, ids=[f"{f}={v!r}" for f, v, _ in ISSUE_CASES])
def test_bad_recipe_value_is_one_line_before_any_work(tmp_path, capsys, field, value, fragment):
    recipe = _recipe_file(tmp_path, _setter(field, value))
    out = tmp_path / "run"
    rc, _, err = _train(capsys, "--recipe", str(recipe), "--out", str(out))
    _assert_refused(rc, err, fragment)
    assert not out.exists()  # nothing was created


@pytest.mark.parametrize("assignment,fragment", [
    ("train.steps=1.5", "train.steps must be an integer"),
    ("train.steps=0", "train.steps"),  # B6: refused like --steps 0
    ("train.lr=-1", "train.lr"),
    ("train.betas=[2, 3]", "train.betas"),
    ("train.disc.lr=.nan", "train.disc.lr"),
])
def test_bad_set_override_is_one_line_before_any_work(tmp_path, capsys, assignment, fragment):
    out = tmp_path / "run"
    rc, _, err = _train(capsys, "--recipe", str(_recipe_file(tmp_path)), "--set", assignment, "--out", str(out))
    _assert_refused(rc, err, fragment)
    assert not out.exists()


def test_zero_steps_is_refused_everywhere(tmp_path, capsys):
    """B6: a recipe's ``train.steps: 0`` (or ``--set``) is refused like ``--steps 0``, also by the Trainer."""
    r = tiny_recipe(tmp_path, steps=1)
    r.train.steps = 0
    with pytest.raises(InputError, match="train.steps"):
        Trainer(r, tmp_path / "lib", progress=False)
    assert not (tmp_path / "lib").exists()
    rc, _, err = _train(capsys, "--recipe", str(_recipe_file(tmp_path)), "--steps", "0", "--out", str(tmp_path / "x"))
    _assert_refused(rc, err, "--steps")


def test_print_refuses_a_bad_recipe_too(tmp_path, capsys):
    rc, _, err = _train(capsys, "--recipe", str(_recipe_file(tmp_path, _setter("train.log_every", 0))), "--print")
    _assert_refused(rc, err, "train.log_every")


def test_yaml_exponent_strings_are_numbers(tmp_path):
    """YAML 1.1 reads ``lr: 1e-4`` as a string: the recipe reads it as the number it means."""
    path = tmp_path / "r.yaml"
    path.write_text(_recipe_file(tmp_path).read_text().replace("lr: 0.001", "lr: 1e-4"))
    r = Recipe.load(path)
    assert r.train.lr == 1e-4
    r.validate()


def test_huge_lr_gives_a_message_at_the_first_non_finite_loss(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = _train(capsys, "--recipe", str(_recipe_file(tmp_path, steps=6)), "--set", "train.lr=1e12",
                        "--set", "train.warmup_steps=0", "--out", str(out))
    _assert_refused(rc, err, "NaN/Inf at step")
    assert "lower train.lr (now 1e+12)" in err
    assert not (out / "model.safetensors").exists()


def test_out_naming_an_existing_file_is_refused(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    rc, _, err = _train(capsys, "--recipe", str(_recipe_file(tmp_path)), "--out", str(target))
    _assert_refused(rc, err, str(target))
    assert target.read_text() == "keep me"
    rc, _, err = _train(capsys, "--recipe", str(_recipe_file(tmp_path)), "--out", str(target / "run"))
    _assert_refused(rc, err, str(target))
    assert target.read_text() == "keep me"


# --- resume ---------------------------------------------------------------------------------
def _stopped_run(tmp_path: Path, capsys, steps: int = 3, stop_at: int | None = 2) -> Path:
    run = tmp_path / "run"
    args = ["--recipe", str(_recipe_file(tmp_path, steps=steps)), "--out", str(run)]
    if stop_at is not None:
        args += ["--stop-at", str(stop_at)]
    rc, _, err = _train(capsys, *args)
    assert rc == 0, err
    return run


def _folder_state(run: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


def test_resume_after_changing_the_architecture_names_the_field(tmp_path, capsys):
    run = _stopped_run(tmp_path, capsys)
    saved = yaml.safe_load((run / "recipe.yaml").read_text())
    saved["model"]["args"]["channels"] = 16
    (run / "recipe.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    before = _folder_state(run)
    rc, _, err = _train(capsys, "--resume", str(run))
    _assert_refused(rc, err, "model.args.channels")
    assert "16" in err and "8" in err
    assert _folder_state(run) == before  # recipe.yaml, the checkpoint and the log untouched


def test_failed_resume_does_not_rewrite_the_recipe(tmp_path, capsys):
    run = _stopped_run(tmp_path, capsys)
    before = _folder_state(run)
    rc, _, err = _train(capsys, "--resume", str(run), "--set", "model.args.num_blocks=3")
    _assert_refused(rc, err, "model.args.num_blocks")
    assert _folder_state(run) == before
    rc, _, err = _train(capsys, "--resume", str(run), "--set", "train.lr=-1")
    _assert_refused(rc, err, "train.lr")
    assert _folder_state(run) == before


def test_resume_of_an_old_checkpoint_with_another_architecture_says_it_does_not_match(tmp_path, capsys):
    """A checkpoint written before checkpoints stored their recipe: the size mismatch is one line."""
    run = _stopped_run(tmp_path, capsys)
    state = load_checkpoint(run / "latest.safetensors")
    del state["recipe"]
    save_checkpoint(state, run / "latest.safetensors")
    r = Recipe.load(run / "recipe.yaml")
    r.model.args["channels"] = 16
    r.save(run / "recipe.yaml")
    rc, _, err = _train(capsys, "--resume", str(run))
    _assert_refused(rc, err, "does not match the recipe")


def test_resume_with_fewer_steps_than_done_is_refused(tmp_path, capsys):
    run = _stopped_run(tmp_path, capsys, steps=3, stop_at=None)
    before = _folder_state(run)
    rc, out, err = _train(capsys, "--resume", str(run), "--steps", "2")
    _assert_refused(rc, err, "3 steps")
    assert "trained" not in out
    assert _folder_state(run) == before
    r = Recipe.load(run / "recipe.yaml")
    r.train.steps = 2
    with pytest.raises(InputError, match="3 steps"):
        Trainer(r, run, progress=False).fit(resume=True)
    assert _folder_state(run) == before


def test_resume_after_a_kill_removes_temporary_files_and_dedupes_the_log(tmp_path, capsys):
    run = _stopped_run(tmp_path, capsys, steps=4, stop_at=2)
    # what SIGKILL leaves: a temporary file of a checkpoint being written, records of steps
    # logged after the last checkpoint (done again on resume), a half-written last line
    (run / ".latest.safetensors.0123456789ab.tmp").write_bytes(b"partial")
    (run / ".model.safetensors.ba9876543210.tmp").write_bytes(b"partial")
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": 3, "loss": 1.0}) + "\n" + '{"step": 4, "lo')
    (run / "keep.tmp").write_text("not ours")
    rc, _, err = _train(capsys, "--resume", str(run))
    assert rc == 0, err
    assert sorted(p.name for p in run.iterdir() if p.name.endswith(".tmp")) == ["keep.tmp"]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert all(r.get("loss") != 1.0 for r in records)  # the stale step-3 record is gone


def test_resume_extends_and_says_the_right_step_count(tmp_path, capsys):
    run = _stopped_run(tmp_path, capsys, steps=3, stop_at=None)
    rc, out, err = _train(capsys, "--resume", str(run), "--steps", "4")
    assert rc == 0, err
    assert "trained 4 steps" in out
    assert load_checkpoint(run / "latest.safetensors")["step"] == 4


# --- every field of every section, in the library -------------------------------------------
#: (section path, field) -> values each refused with a message naming the field
BAD_VALUES = {
    ("model", "arch"): ["nope", 5],
    ("model", "args"): [[1, 2], {"channels": -4}, {"channels": "many"}, {"nope": 1}, {"upscale": 5},
                        {"channels": 65536, "num_blocks": 64}],
    ("model", "init"): [5, "", ["a"]],
    ("data", "train"): ["", 5, None],
    ("data", "root"): [5, ""],
    ("data", "patch_size"): [0, 100000, 1.5, "big", True],
    ("data", "num_workers"): [-1, 10_000, 1.5],
    ("data", "cache"): ["yes", 1],
    ("data", "val"): ["", 5],
    ("data", "val_images"): [0, -1, 1.5],
    ("data", "val_crop"): [-1, 1.5, 10**6],
    ("task", "sigma"): [[50, 5], [-1, 5], [5], "x", [math.nan, 5], [5, 300]],
    ("task", "val_sigma"): [-1, "x", math.nan, 300],
    ("task", "beta"): [1.0, -0.1, "x"],
    ("task", "loss"): ["l3", 1],
    ("task", "mix"): ["average"],
    ("task", "fidelity_only"): ["no"],
    ("task", "sampler"): ["gauss"],
    ("task", "vertex_share"): [-0.1, 1.5, "x"],
    ("task", "edge_share"): [-0.1, 1.5],
    ("task", "p_granularity"): ["group:0", "x", 1],
    ("task", "val_grid"): [[], [2], "x", [math.nan]],
    ("task", "name"): [5],
    ("train", "steps"): [0, -1, 1.5, True, 10**12],
    ("train", "batch_size"): [0, 100_000, 2.5],
    ("train", "lr"): [-1, 0, "fast", math.nan, math.inf],
    ("train", "optimizer"): ["sgd"],
    ("train", "weight_decay"): [-1, math.nan, 2],
    ("train", "betas"): [[2, 3], [0.9], "x", [0.9, -0.1], [0.9, 1.0]],
    ("train", "schedule"): ["linear"],
    ("train", "warmup_steps"): [-1, 1.5],
    ("train", "min_lr_ratio"): [-0.1, 2],
    ("train", "milestones"): [[0], [-5], "x", [1.5]],
    ("train", "gamma"): [0, -1, math.nan, 2],
    ("train", "grad_clip"): [-1, math.nan],
    ("train", "ema"): [1.0, -0.5],
    ("train", "seed"): [-1, 1.5, 2**64],
    ("train", "threads"): [-1, 100_000],
    ("train", "channels_last"): ["yes"],
    ("train", "device"): ["tpu", "cuda:x", 5],
    ("train", "log_every"): [0, 1.5],
    ("train", "val_every"): [0],
    ("train", "ckpt_every"): [0],
    ("train", "disc"): [5],
    ("train.disc", "optimizer"): ["sgd"],
    ("train.disc", "lr"): [-1, math.nan],
    ("train.disc", "betas"): [[2, 3]],
    ("train.disc", "weight_decay"): [-1],
    ("train.disc", "schedule"): ["linear"],
    ("train.disc", "warmup_steps"): [-1],
    ("train.disc", "min_lr_ratio"): [2],
    ("train.disc", "milestones"): [[0]],
    ("train.disc", "gamma"): [0],
}

_CASES = [(sec, name, v) for (sec, name), values in BAD_VALUES.items() for v in values]


def test_every_field_of_every_section_has_bad_values_in_the_table():
    sections = {"model": ModelSection, "data": DataSection, "task": DenoiseTaskSection, "train": TrainSection,
                "train.disc": DiscOptimizerSection}
    for where, cls in sections.items():
        for f in dataclasses.fields(cls):
            assert (where, f.name) in BAD_VALUES, f"{where}.{f.name} has no bad values in the table"


@pytest.mark.parametrize("where,name,value", _CASES, ids=[f"{s}.{n}={v!r}"[:60] for s, n, v in _CASES])
def test_each_bad_field_value_is_refused_naming_the_field(tmp_path, where, name, value):
    r = tiny_recipe(tmp_path)
    r.validate()  # the base recipe is fine
    sec = r
    for part in where.split("."):
        sec = getattr(sec, part)
    setattr(sec, name, value)
    with pytest.raises(InputError) as exc:
        r.validate()
    msg = str(exc.value)
    assert f"{where}.{name}" in msg and "\n" not in msg, msg
    with pytest.raises(InputError):
        Trainer(r, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_shipped_recipes_are_valid():
    from tunableconv.train import RECIPES

    for name, make in RECIPES.items():
        make().validate()


def test_every_architecture_validates_without_building_weights(tmp_path):
    from tunableconv.models import ARCHITECTURES

    own_args = {"nafnet": dict(width=8, enc_blocks=[1], middle_blocks=1, dec_blocks=[1]),  # not ResNet-shaped
                "swinir": dict(embed_dim=12, depths=[2], num_heads=[2], window_size=4),
                "stylenet": dict(width=8, blocks=[1, 1, 1]), "dynamicnet-style": dict(width=8, blocks=[1, 1, 1])}
    for arch in ARCHITECTURES:
        r = tiny_recipe(tmp_path)
        r.model.arch, r.model.args = arch, own_args.get(arch, dict(channels=8, num_blocks=2))
        r.validate()


def test_resume_that_fails_before_its_first_checkpoint_keeps_the_recipe(tmp_path, capsys):
    """A resumed session's new train.* values reach recipe.yaml with its first checkpoint: one that
    fails before (here: the loss diverges) leaves recipe.yaml and the checkpoint as they were."""
    run = _stopped_run(tmp_path, capsys, steps=6, stop_at=2)
    recipe, latest = (run / "recipe.yaml").read_bytes(), (run / "latest.safetensors").read_bytes()
    rc, _, err = _train(capsys, "--resume", str(run), "--set", "train.lr=1e12", "--set", "train.warmup_steps=0")
    _assert_refused(rc, err, "NaN/Inf at step")
    assert (run / "recipe.yaml").read_bytes() == recipe and (run / "latest.safetensors").read_bytes() == latest
    rc, _, err = _train(capsys, "--resume", str(run), "--set", "train.lr=2e-3")  # a working change is kept
    assert rc == 0, err
    assert Recipe.load(run / "recipe.yaml").train.lr == 2e-3
    assert load_checkpoint(run / "latest.safetensors")["recipe"]["train"]["lr"] == 2e-3


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a CUDA GPU is present")
def test_a_device_this_machine_lacks_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    rc, _, err = _train(capsys, "--recipe", str(_recipe_file(tmp_path)), "--set", "train.device=cuda", "--out", str(out))
    _assert_refused(rc, err, "train.device is cuda")
    assert not out.exists()
