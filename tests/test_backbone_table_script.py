"""scripts/backbone_table.py: the fidelity end per training hour and per inference second, read
from model files, eval results (format 2) and backbone_cost.json; and a model stored in float16
(``scripts/ship_model.py --half``) loads into float32 with the same outputs to float16 precision."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tunableconv.models import load_model, save_model
from tunableconv.models.resnet import ResNet, ResNetConfig

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "backbone_table.py"


def _script():
    spec = importlib.util.spec_from_file_location("backbone_table", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _model(path: Path, recipe: str, hours: float, steps: int) -> Path:
    model = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=2))
    info = {"training": {"recipe": recipe, "steps": steps, "train_wall_seconds": hours * 3600}}
    return save_model(model, path, info=info)


def _results(path: Path, psnr_end: float, gap: float) -> Path:
    case = lambda end: {"model": {"psnr": [20.0, end], "lpips": [0.4, 0.1]}, "reference": {"psnr": end - gap, "lpips": 0.1},
                        "gap": {"psnr": gap}}
    res = {"format": "tunableconv-eval/2", "reference_setting": 1,
           "datasets": {"setA": {"num_images": 3, "cases": {"sigma=15": case(psnr_end), "sigma=25": case(psnr_end - 2)}}}}
    path.write_text(json.dumps(res))
    return path


def test_table_reads_hours_steps_cost_and_the_fidelity_end(tmp_path, capsys):
    a = _model(tmp_path / "a.safetensors", "recipe-a", 1.5, 100)
    b = _model(tmp_path / "b.safetensors", "recipe-b", 0.5, 40)
    ra, rb = _results(tmp_path / "ra.json", 30.0, -0.1), _results(tmp_path / "rb.json", 31.0, 0.05)
    cost = tmp_path / "cost.json"
    cost.write_text(json.dumps({"recipes": {"recipe-a": {"infer_s": 2.0, "parameters": 10},
                                            "recipe-b": {"infer_s": 0.5, "parameters": 20}}}))
    out = tmp_path / "table" / "backbones"
    assert _script().main([f"A={a}:{ra}", f"B={b}:{rb}", "--cost", str(cost), "-o", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    assert "| A | 100 | 1.50 | 2.00 | 30.00 (-0.10) | 28.00 (-0.10) | 29.00 |" in md
    assert "| B | 40 | 0.50 | 0.50 | 31.00 (+0.05) | 29.00 (+0.05) | 30.00 |" in md
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["mean_psnr"] for r in rows] == [29.0, 30.0]
    assert out.with_suffix(".png").stat().st_size > 1000


def test_a_recipe_without_a_cost_and_old_results_are_refused(tmp_path):
    a = _model(tmp_path / "a.safetensors", "recipe-a", 1.0, 10)
    ra = _results(tmp_path / "ra.json", 30.0, 0.0)
    cost = tmp_path / "cost.json"
    cost.write_text(json.dumps({"recipes": {"other": {"infer_s": 1.0, "parameters": 1}}}))
    with pytest.raises(SystemExit):
        _script().main([f"A={a}:{ra}", "--cost", str(cost), "-o", str(tmp_path / "o")])
    cost.write_text(json.dumps({"recipes": {"recipe-a": {"infer_s": 1.0, "parameters": 1}}}))
    ra.write_text(json.dumps({"format": "tunableconv-eval/1"}))
    with pytest.raises(SystemExit, match="format 2"):
        _script().main([f"A={a}:{ra}", "--cost", str(cost), "-o", str(tmp_path / "o")])


def test_a_model_stored_in_float16_loads_into_float32(tmp_path):
    torch.manual_seed(0)
    model = ResNet(ResNetConfig(channels=8, num_blocks=2, num_params=2)).eval()
    full = save_model(model, tmp_path / "full.safetensors")
    half = save_model(_halved(model), tmp_path / "half.safetensors")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_model(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x, p = torch.rand(1, 3, 24, 24), torch.tensor([[0.3, 0.7]])
    with torch.no_grad():
        ref, got = model(x, p), loaded(x, p)
    assert 0 < (ref - got).abs().max() < 1e-2


def _halved(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).half()
