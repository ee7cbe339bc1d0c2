"""tunableconv analyze: tuned kernels, path linearity, principal components, the three figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")

from tunableconv import analysis as A  # noqa: E402
from tunableconv.models import ResNet, ResNetConfig, load_model, save_model  # noqa: E402


def _tiny(num_params: int = 2, **kw) -> ResNet:
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(channels=8, num_blocks=2, num_params=num_params, expansion=2 if num_params else 1, **kw))
    with torch.no_grad():  # a random affine map too, not just its deterministic initialisation
        for m in A.tunable_convs(model).values():
            m.param_map.weight.normal_()
            m.param_map.bias.normal_()
    return model.eval()


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_model(_tiny(), path)
    return path


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "tunableconv", "analyze", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


# ----------------------------------------------------------------------------------------
def test_tuned_kernels_equal_the_hand_mixed_kernel(tiny_file):
    model, _ = load_model(tiny_file)
    s, ps = A.slider_settings(2, "simplex", 5)
    assert torch.allclose(ps, torch.stack([1 - s, s], 1))
    kernels = A.tuned_kernels(model, ps)
    assert list(kernels)[0] == "head" and list(kernels)[-1] == "tail" and "body.1.conv2" in kernels
    conv = model.body[1].conv2
    for i, p in enumerate(ps):
        w = conv.param_map.weight.detach().double() @ p + conv.param_map.bias.detach().double()  # (K,)
        by_hand = sum(w[k] * conv.weight.detach().double()[k] for k in range(conv.weight.shape[0]))
        assert kernels["body.1.conv2"].shape == (5, 8, 8, 3, 3)
        torch.testing.assert_close(kernels["body.1.conv2"][i], by_hand)
        # and what the layer itself applies at this p
        torch.testing.assert_close(kernels["body.1.conv2"][i].float(), conv.to_plain(p.float()).weight.detach(),
                                   rtol=1e-5, atol=1e-6)


def test_linearity_is_one_on_a_line_and_below_one_on_a_bent_path():
    torch.manual_seed(1)
    a, b = torch.randn(50, dtype=torch.float64), torch.randn(50, dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)[:, None]
    line = a + t * b
    assert A.kernel_path_linearity(line) == pytest.approx(1.0, abs=1e-12)
    assert A.path_summary(line)["off_line"] < 1e-12
    assert A.path_summary(line)["step_evenness"] == pytest.approx(1.0)
    theta = torch.linspace(0, torch.pi, 5, dtype=torch.float64)
    arc = torch.stack([torch.cos(theta), torch.sin(theta)], 1)  # a half circle
    assert A.kernel_path_linearity(arc) < 0.9
    assert A.path_summary(arc)["off_line"] > 0.3
    bent = line.clone()
    bent[2] += 0.5 * torch.randn(50, dtype=torch.float64)
    assert A.kernel_path_linearity(bent) < 1 - 1e-3
    assert A.kernel_path_linearity(torch.ones(5, 3)) == 1.0  # a constant path


def test_model_kernel_paths_are_exactly_linear(tiny_file):
    """The affine map makes the tuned kernels affine in p: exactly on a line (to rounding)."""
    model, _ = load_model(tiny_file)
    s, ps = A.slider_settings(2, "simplex", 5)
    report = A.kernel_paths_report(model, s, ps)
    assert report["exactly_linear_by_construction"] is True
    assert [r["block"] for r in report["blocks"]] == [0, 1]
    for row in report["blocks"]:
        assert row["linearity"] == pytest.approx(1.0, abs=1e-6)
        assert row["step_evenness"] == pytest.approx(1.0, abs=1e-6)
        assert row["relative_length"] > 0
    assert len(report["points"]) == 2 * 2 * 5 and report["dims"] == 8 * 8 * 9
    assert all(len(p["tsne"]) == 2 for p in report["points"])


def test_align_signs_makes_successive_components_agree():
    rng = np.random.default_rng(0)
    base = rng.normal(size=27)
    comps = np.stack([base + 0.1 * rng.normal(size=27) for _ in range(5)])
    comps /= np.linalg.norm(comps, axis=1, keepdims=True)
    signs = np.array([-1, 1, -1, -1, 1])
    aligned, flipped = A.align_signs(comps * signs[:, None])
    for i in range(1, 5):
        assert aligned[i] @ aligned[i - 1] > 0
    assert aligned[0][np.argmax(np.abs(aligned[0]))] > 0
    # all aligned with the same global sign as the originals (up to one overall flip)
    overall = np.sign(aligned[0] @ comps[0])
    np.testing.assert_allclose(aligned, overall * comps)
    assert flipped == [bool(x) for x in (signs * overall < 0)]


def test_first_components_of_head_and_tail(tiny_file):
    model, _ = load_model(tiny_file)
    _, ps = A.slider_settings(2, "simplex", 5)
    comps = A.first_components(model, ps)
    assert list(comps) == ["head", "tail"]
    assert comps["head"]["side"] == "input" and comps["tail"]["side"] == "output"
    for d in comps.values():
        c = np.asarray(d["components"])
        assert c.shape == (5, 3, 3, 3)  # (settings, kh, kw, RGB)
        np.testing.assert_allclose(np.linalg.norm(c.reshape(5, -1), axis=1), 1.0, rtol=1e-9)
        assert all(v >= 0 for v in d["cos_prev"])
        img = A.component_images(c)
        assert img.min() >= 0 and img.max() <= 1
    # the tail's samples are the transposed view: in x 3 x k x k
    k = A.tuned_kernels(model, ps[:1], ["tail"])["tail"][0]
    assert A.rgb_kernel_samples(k, "output").shape == (8, 3, 3, 3)


# ----------------------------------------------------------------------------------------
def _overhead_json(path):
    rows = [{"kernel_size": k, "channels": c, "inference_ratio": 1.0 + 0.01 * k, "train_ratio": 1.05,
             "inference_plain_ms": 1.0, "inference_tunable_ms": 1.0} for k in (1, 3) for c in (16, 32)]
    path.write_text(json.dumps({"rows": rows, "num_params": 2, "inference_ratio_median": 1.02, "torch": "x"}))
    return path


@pytest.mark.slow
def test_cli_each_analysis_writes_figure_and_json(tiny_file, tmp_path):
    out = tmp_path / "out"
    r = _cli("overhead", "--json", str(_overhead_json(tmp_path / "o.json")), "--out", str(out))
    assert r.returncode == 0, r.stderr
    data = json.loads((out / "overhead.json").read_text())
    assert data["kernel_sizes"] == [1, 3] and data["inference"]["3"] == [1.03, 1.03]
    assert (out / "overhead.png").stat().st_size > 1000

    r = _cli("kernels", "--model", str(tiny_file), "--out", str(out), "--threads", "1")
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "kernels_tiny.json").read_text())
    assert rep["linearity_min"] == pytest.approx(1.0, abs=1e-6) and rep["exactly_linear_by_construction"]
    assert (out / "kernels_tiny.png").stat().st_size > 1000
    assert "| block |" in r.stdout

    r = _cli("components", "--model", str(tiny_file), "--out", str(out), "--steps", "3")
    assert r.returncode == 0, r.stderr
    comp = json.loads((out / "components_tiny.json").read_text())
    assert comp["s"] == [0.0, 0.5, 1.0] and np.asarray(comp["layers"]["head"]["components"]).shape == (3, 3, 3, 3)
    assert (out / "components_tiny.png").stat().st_size > 1000


def test_all_runs_the_three(tiny_file, tmp_path, capsys):
    from tunableconv.cli import main

    out = tmp_path / "all"
    assert main(["analyze", "all", "--models", str(tiny_file), "--json", str(_overhead_json(tmp_path / "o.json")),
                 "--out", str(out), "--steps", "3", "--no-progress"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["components_tiny.json", "components_tiny.png", "kernels_tiny.json", "kernels_tiny.png",
                     "overhead.json", "overhead.png"]


def test_all_defaults_to_the_shipped_two_knob_simplex_models_it_can_read():
    """Read from the zoo's files, not a list of names: every shipped model with two knobs on a
    simplex and tunable residual blocks (not the NAFNet denoiser, tuned through slots)."""
    from tunableconv.commands.analyze import analysable_models
    from tunableconv.models.files import read_metadata
    from tunableconv.zoo import available

    chosen = analysable_models()
    assert {"denoise", "sr4"} <= set(chosen) and "denoise-nafnet" not in chosen
    for name in chosen:
        space = read_metadata(available()[name]).space
        assert space.num_params == 2 and space.domain == "simplex"
    assert not {"restore3", "style3", "deblur-denoise", "denoise-fixed"} & set(chosen)


def test_cli_bad_input_has_no_traceback(tmp_path):
    r = _cli("kernels", "--model", "no-such-model", "--out", str(tmp_path))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "unknown model 'no-such-model'" in r.stderr


@pytest.fixture(scope="module")
def odd_models(tmp_path_factory):
    d = tmp_path_factory.mktemp("odd")
    save_model(ResNet(ResNetConfig(channels=4, num_blocks=1, num_params=0)), d / "fixed.safetensors")
    save_model(ResNet(ResNetConfig(channels=4, num_blocks=1, num_params=3)), d / "three.safetensors")
    return d


@pytest.mark.parametrize("args, message", [
    (["kernels", "--model", "no-such-model", "--out", "OUT"], "unknown model"),
    (["overhead", "--json", "MISSING.json", "--out", "OUT"], "not found"),
    (["kernels", "--model", "ODD/fixed.safetensors", "--out", "OUT"], "has no knobs to analyse"),
    (["kernels", "--model", "denoise-nafnet", "--out", "OUT"], "(nafnet) has no TunableConv2d layers: its knobs act"),
    (["components", "--model", "ODD/three.safetensors", "--out", "OUT"], "2-knob simplex"),
    (["kernels", "--model", "TINY", "--out", "OUT", "--steps", "2"], "--steps"),
    (["kernels", "--model", "TINY"], "--out"),
    ([], "name an analysis"),
])
def test_bad_input_is_one_line(args, message, tmp_path, odd_models, tiny_file, capsys):
    from tunableconv.cli import main

    subs = {"OUT": str(tmp_path / "o"), "MISSING.json": str(tmp_path / "missing.json"), "TINY": str(tiny_file)}
    args = [str(odd_models / a[4:]) if a.startswith("ODD/") else subs.get(a, a) for a in args]
    assert main(["analyze", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert lines[0].startswith("tunableconv analyze: error: ")


def test_missing_sklearn_is_one_line(monkeypatch, capsys, tiny_file, tmp_path):
    from tunableconv.cli import main

    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn -> ImportError
    assert main(["analyze", "kernels", "--model", str(tiny_file), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "install scikit-learn (pip install 'tunableconv[eval]')" in err[0]


def test_bad_overhead_json_is_an_input_error(tmp_path):
    from tunableconv.errors import InputError

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"rows": [{"kernel_size": 3}]}))
    with pytest.raises(InputError, match="not benchmarks/overhead.py output"):
        A.read_overhead(bad)
    with pytest.raises(InputError, match="2-knob simplex or a 1-knob cube"):
        A.slider_settings(2, "cube", 5)
    s, ps = A.slider_settings(1, "cube", 4)
    assert ps.shape == (4, 1) and torch.equal(ps[:, 0], s)
