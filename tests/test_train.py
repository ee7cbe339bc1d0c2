"""Trainer: recipes, schedules, atomic checkpoints, exact resume after SIGKILL, DDP equivalence."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from tunableconv import InputError
from tunableconv.train import Recipe, Trainer, get_recipe, load_checkpoint, lr_factor, save_checkpoint
from tunableconv.train.config import TrainSection


def _images(folder: Path, n: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for i in range(n):
        arr = (torch.rand(3, 40, 48, generator=g) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(folder / f"img{i}.png")
    return folder


def tiny_recipe(tmp_path: Path, steps: int = 20, **train_kw) -> Recipe:
    r = get_recipe("denoise-small")
    r.name = "tiny"
    r.model.args.update(channels=8, num_blocks=1)
    data = _images(tmp_path / "imgs")
    r.data.train, r.data.val, r.data.num_workers = str(data), str(data), 0
    r.data.patch_size, r.data.val_images, r.data.val_crop = 16, 2, 32
    r.train.steps, r.train.batch_size, r.train.threads = steps, 4, 1
    r.train.log_every, r.train.ckpt_every, r.train.val_every, r.train.warmup_steps = 1, 5, 10_000, 2
    for k, v in train_kw.items():
        setattr(r.train, k, v)
    return r


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "tunableconv", *args], capture_output=True, text=True, env=env, **kw)


def _weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


# --- recipes ------------------------------------------------------------------------------
#: denoise-small-v1 as it trained the compare models and the ablation base: frozen (new fields may be
#: added to the sections, but they must default to the old behaviour)
V1 = {"model": {"arch": "resnet", "args": {"channels": 32, "num_blocks": 6, "num_params": 2, "mapping": "affine", "expansion": 1}},
      "data": {"train": "train/bsds400", "root": None, "patch_size": 48, "num_workers": 1, "cache": True, "val": "cbsd68",
               "val_images": 4, "val_crop": 128},
      "task": {"name": "denoise", "sigma": [5.0, 50.0], "val_sigma": 25.0, "beta": 0.9, "loss": "l1", "mix": "losses",
               "fidelity_only": False, "sampler": "simplex", "vertex_share": 0.0, "edge_share": 0.0,
               "p_granularity": "sample", "val_grid": [0.0, 0.5, 1.0]},
      "train": {"steps": 8000, "batch_size": 16, "lr": 0.001, "optimizer": "adam", "weight_decay": 0.0, "betas": [0.9, 0.999],
                "schedule": "cosine", "warmup_steps": 100, "min_lr_ratio": 0.01, "milestones": [], "gamma": 0.5,
                "grad_clip": 1.0, "ema": 0.0, "seed": 0, "threads": 1, "channels_last": False, "device": "cpu",
                "log_every": 20, "val_every": 1000, "ckpt_every": 200}}


def test_denoise_small_v1_is_frozen():
    from tunableconv.compare import recipe_for

    got = get_recipe("denoise-small-v1").to_dict()
    for section, fields in V1.items():
        for key, value in fields.items():
            assert got[section][key] == value, (section, key)
    # compare --budget small builds on it
    tunable = recipe_for("tunable", "small", task="denoise").to_dict()
    assert {k: v for k, v in tunable.items() if k != "name"} == {k: v for k, v in got.items() if k != "name"}


def test_denoise_small_is_v1_plus_the_ablation_winners():
    v1, now = get_recipe("denoise-small-v1").to_dict(), get_recipe("denoise-small").to_dict()
    changed = {(sec, k) for sec in v1 if isinstance(v1[sec], dict) for k in v1[sec] if v1[sec][k] != now[sec][k]}
    assert changed == {("task", "mix"), ("model", "args")} and now["name"] == "denoise-small"
    assert now["task"]["mix"] == "targets" and now["model"]["args"] == {**v1["model"]["args"], "expansion": 2}
    # the fixed twin has no knob (one target: the mix is ignored; no kernels to expand): it trains as v1's fixed twin
    fixed = get_recipe("denoise-fixed-small").to_dict()
    fixed_v1 = {**v1, "name": "denoise-fixed-small", "model": {**v1["model"], "args": {**v1["model"]["args"], "num_params": 0}},
                "task": {**v1["task"], "fidelity_only": True, "mix": "targets"}}
    assert fixed == fixed_v1


def test_recipe_roundtrip_and_overrides(tmp_path):
    r = get_recipe("denoise-small")
    for suffix in (".yaml", ".json"):
        r.save(tmp_path / f"r{suffix}")
        assert Recipe.load(tmp_path / f"r{suffix}").to_dict() == r.to_dict()
    r.override("train.lr=2e-4").override("train.steps=30").override("model.args.channels=16").override("task.sigma=[10, 20]")
    assert r.train.lr == 2e-4 and r.train.steps == 30 and r.model.args["channels"] == 16 and r.task.sigma == [10, 20]
    with pytest.raises(InputError, match="no field"):
        r.override("train.learning_rate=1")
    with pytest.raises(InputError, match="number"):
        r.override("train.lr=fast")
    with pytest.raises(InputError, match="section"):
        r.override("optim.lr=1")
    with pytest.raises(InputError, match="unknown recipe"):
        get_recipe("nope")
    paper = get_recipe("denoise-paper")
    assert paper.model.args["num_blocks"] == 16 and paper.model.args["channels"] == 64
    assert paper.train.batch_size == 16 and paper.train.lr == 1e-4 and paper.data.patch_size == 64


def test_lr_schedules():
    cfg = TrainSection(steps=100, warmup_steps=10, schedule="cosine", min_lr_ratio=0.0)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(55, cfg) == pytest.approx(0.5)
    assert lr_factor(100, cfg) == pytest.approx(0.0, abs=1e-9)
    cfg = TrainSection(steps=100, schedule="step", milestones=[30, 60], gamma=0.1)
    assert [lr_factor(s, cfg) for s in (0, 29, 30, 60)] == pytest.approx([1, 1, 0.1, 0.01])


# --- checkpoints -------------------------------------------------------------------------
def test_checkpoint_roundtrip_optimizer(tmp_path):
    m = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(m.parameters())
    m(torch.rand(4, 3)).sum().backward()
    opt.step()
    save_checkpoint({"model": m.state_dict(), "optimizer": opt.state_dict(), "step": 7}, tmp_path / "c.safetensors")
    st = load_checkpoint(tmp_path / "c.safetensors")
    opt2 = torch.optim.Adam(m.parameters())
    opt2.load_state_dict(st["optimizer"])
    assert st["step"] == 7
    torch.testing.assert_close(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "latest.safetensors"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    real_replace = os.replace

    def killed_before_rename(src, dst):  # the data is written, the process dies before the rename
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(os, "replace", killed_before_rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert load_checkpoint(path)["step"] == 1  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["latest.safetensors"]  # no temp file left
    save_checkpoint({"step": 3, "w": torch.zeros(3)}, path)
    assert load_checkpoint(path)["step"] == 3


# --- training runs -----------------------------------------------------------------------
def test_training_is_deterministic_and_workers_do_not_change_it(tmp_path):
    a = Trainer(tiny_recipe(tmp_path, steps=6), tmp_path / "a", progress=False)
    a.fit()
    r = tiny_recipe(tmp_path, steps=6)
    r.data.num_workers = 2
    b = Trainer(r, tmp_path / "b", progress=False)
    b.fit()
    for k, v in _weights(tmp_path / "a" / "model.safetensors").items():
        assert torch.equal(v, _weights(tmp_path / "b" / "model.safetensors")[k]), k


def test_p_reaches_model_and_loss(tmp_path, monkeypatch):
    """The same per-sample p is given to the model and to the multi-loss."""
    seen = {}
    t = Trainer(tiny_recipe(tmp_path, steps=1), tmp_path / "run", progress=False)
    fwd, loss = t.task.forward, t.loss.forward

    def spy_forward(model, batch):
        seen["model_p"] = batch["p"].clone()
        return fwd(model, batch)

    def spy_loss(out, batch, p=None):
        seen["loss_p"] = p.clone()
        return loss(out, batch, p)

    monkeypatch.setattr(t.task, "forward", spy_forward)
    monkeypatch.setattr(t.loss, "forward", spy_loss)
    t.fit()
    assert seen["model_p"].shape == (4, 2)
    torch.testing.assert_close(seen["model_p"], seen["loss_p"])
    torch.testing.assert_close(seen["model_p"].sum(1), torch.ones(4))  # simplex sampler
    assert len(torch.unique(seen["model_p"][:, 0])) == 4  # per-sample


def test_sigkill_and_resume_gives_identical_weights(tmp_path):
    steps = 200
    recipe = tiny_recipe(tmp_path, steps=steps, ckpt_every=5)
    recipe.save(tmp_path / "tiny.yaml")
    ref = _cli("train", "--recipe", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "ref"), "--no-progress", timeout=300)
    assert ref.returncode == 0, ref.stderr
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tunableconv", "train", "--recipe", str(tmp_path / "tiny.yaml"), "--out", str(run),
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        log = run / "log.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 23:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    st = load_checkpoint(run / "latest.safetensors")
    assert 0 < st["step"] < steps, "the kill must land mid-run"
    assert not (run / "model.safetensors").exists()
    res = _cli("train", "--resume", str(run), "--no-progress", timeout=300)
    assert res.returncode == 0, res.stderr
    w_ref, w_res = _weights(tmp_path / "ref" / "model.safetensors"), _weights(run / "model.safetensors")
    for k in w_ref:
        assert torch.equal(w_ref[k], w_res[k]), k
    # extending a finished run to a new total step count continues from where it stopped
    more = _cli("train", "--resume", str(run), "--steps", str(steps + 10), "--no-progress", timeout=300)
    assert more.returncode == 0, more.stderr
    assert load_checkpoint(run / "latest.safetensors")["step"] == steps + 10


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_processes_equals_one_process(tmp_path):
    recipe = tiny_recipe(tmp_path, steps=8)
    recipe.save(tmp_path / "tiny.yaml")
    one = _cli("train", "--recipe", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "one"), "--no-progress", timeout=300)
    assert one.returncode == 0, one.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "tunableconv", "train", "--recipe", str(tmp_path / "tiny.yaml"),
         "--out", str(tmp_path / "two"), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["processes"] == 2
    w1, w2 = _weights(tmp_path / "one" / "model.safetensors"), _weights(tmp_path / "two" / "model.safetensors")
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-5, rtol=1e-4)


def test_cli_smoke_20_steps(tmp_path):
    recipe = tiny_recipe(tmp_path, steps=20)
    recipe.save(tmp_path / "tiny.yaml")
    r = _cli("train", "--recipe", str(tmp_path / "tiny.yaml"), "--set", "train.lr=5e-4", "--out", str(tmp_path / "run"),
             "--no-progress", timeout=300)
    assert r.returncode == 0, r.stderr
    logs = [json.loads(l) for l in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in logs if "loss" in l] == list(range(1, 21))
    assert any("val" in l for l in logs)
    from tunableconv.models import load_model

    model, info = load_model(tmp_path / "run" / "model.safetensors")
    assert info.knob_names == ["fidelity", "noise_preservation"]
    assert info.info["recipe"]["train"]["lr"] == 5e-4
    assert info.info["training"]["steps"] == 20
    # a second run into the same folder is refused; bad overrides are one-line errors
    again = _cli("train", "--recipe", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / "run"))
    assert again.returncode == 2 and "--resume" in again.stderr and "Traceback" not in again.stderr
    bad = _cli("train", "--recipe", "denoise-small", "--set", "train.nope=1", "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def _baseline_recipe(tmp_path: Path, arch: str, steps: int) -> Recipe:
    r = tiny_recipe(tmp_path, steps=steps)
    r.model.arch, r.model.args = arch, dict(channels=8, num_blocks=2)
    r.task.mix = "losses"  # as `compare` trains them (denoise-small-v1): one loss term per objective in the log
    return r


@pytest.mark.parametrize("arch", ["dni", "adafm", "cresmd"])
def test_staged_training_and_resume_across_the_stage_boundary(tmp_path, arch):
    full = Trainer(_baseline_recipe(tmp_path, arch, 10), tmp_path / "full", progress=False)
    full.fit()
    stages = full.stages
    assert sum(s.steps for s in stages) == 10
    logs = [json.loads(l) for l in (tmp_path / "full" / "log.jsonl").read_text().splitlines() if '"loss"' in l]
    if len(stages) == 2:  # stage 1 trains objective 1 only, stage 2 objective 2 only
        assert [l["stage"] for l in logs] == [0] * stages[0].steps + [1] * stages[1].steps
        assert "loss_noise" not in logs[0] and "loss_fidelity" not in logs[-1]
    for stop in sorted({3, stages[0].steps} - {10}):  # mid-stage, and exactly at the stage boundary
        out = tmp_path / f"stop{stop}"
        Trainer(_baseline_recipe(tmp_path, arch, 10), out, progress=False).fit(stop_at=stop)
        assert not (out / "model.safetensors").exists()
        Trainer(_baseline_recipe(tmp_path, arch, 10), out, progress=False).fit(resume=True)
        a, b = _weights(tmp_path / "full" / "model.safetensors"), _weights(out / "model.safetensors")
        for k in a:
            assert torch.equal(a[k], b[k]), (stop, k)


def test_ema_weights_are_what_gets_exported(tmp_path):
    t = Trainer(tiny_recipe(tmp_path, steps=6, ema=0.5, lr=1e-2), tmp_path / "ema", progress=False)
    t.fit()
    exported = _weights(tmp_path / "ema" / "model.safetensors")
    raw = {k: v.detach() for k, v in t.model.state_dict().items()}
    for k, v in exported.items():
        torch.testing.assert_close(v, t.ema.shadow[k])
    assert any(not torch.equal(exported[k], raw[k]) for k in exported)  # EMA lags the raw weights
    # resuming restores the EMA too
    st = load_checkpoint(tmp_path / "ema" / "latest.safetensors")
    for k, v in st["ema"].items():
        torch.testing.assert_close(v, t.ema.shadow[k])


def test_blended_targets_recipe_trains(tmp_path):
    from tunableconv.losses import BlendedTargetLoss

    r = tiny_recipe(tmp_path, steps=3)
    r.override("task.mix=targets")
    t = Trainer(r, tmp_path / "run", progress=False)
    assert isinstance(t.loss, BlendedTargetLoss)
    t.fit()
    assert (tmp_path / "run" / "model.safetensors").is_file()
    r.override("task.mix=average")
    with pytest.raises(InputError, match="task.mix"):
        Trainer(r, tmp_path / "bad", progress=False)


def test_channels_last_training_matches_nchw(tmp_path):
    """train.channels_last only changes the memory layout: same weights up to float rounding."""
    runs = {}
    for cl in (False, True):
        r = tiny_recipe(tmp_path, steps=3)
        r.train.channels_last = cl
        Trainer(r, tmp_path / f"cl{cl}", progress=False).fit()
        runs[cl] = _weights(tmp_path / f"cl{cl}" / "model.safetensors")
    for k, v in runs[False].items():
        torch.testing.assert_close(runs[True][k], v, atol=1e-5, rtol=1e-4, msg=k)
