"""Export round trips with p as a graph input."""

import pytest
import torch
from torch import nn

from tunableconv import make_tunable
from tunableconv.export import export_onnx, export_program


def _model():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"),
        nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ConvTranspose2d(8, 3, 2, stride=2),
    )
    model = make_tunable(net, 2).eval()
    with torch.no_grad():  # make the knobs matter
        for _, slot in model.tunable_layers():
            for sets in slot.sets.values():
                sets.add_(0.1 * torch.randn_like(sets))
    return model


def test_torch_export_shared_and_per_sample():
    model = _model()
    ep = export_program(model, 2)
    x = torch.randn(3, 3, 20, 28)
    for p in ([1.0, 0.0], [0.25, 0.6]):
        p = torch.tensor(p)
        torch.testing.assert_close(ep.module()(x, p), model(x, p), atol=1e-5, rtol=1e-5)
    ep = export_program(model, 2, per_sample=True, batch=3, height=20, width=28)  # vmap: fixed shapes
    p = torch.rand(3, 2)
    torch.testing.assert_close(ep.module()(x, p), model(x, p), atol=1e-5, rtol=1e-5)
    # p is a real input of the graph, not a baked constant
    assert len(ep.graph_signature.user_inputs) == 2


def test_onnx_matches_pytorch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model()
    path = export_onnx(model, tmp_path / "m.onnx", 2)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x", "p"]
    for shape in [(1, 3, 16, 16), (2, 3, 24, 20)]:
        x = torch.rand(*shape)
        for p in ([1.0, 0.0], [0.0, 1.0], [0.3, 0.7]):
            y = sess.run(None, {"x": x.numpy(), "p": torch.tensor(p).numpy()})[0]
            with torch.no_grad():
                ref = model(x, p)
            assert abs(torch.from_numpy(y) - ref).max().item() < 1e-4


def test_onnx_per_sample_fixed_batch(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model = _model()
    path = export_onnx(model, tmp_path / "ps.onnx", 2, per_sample_batch=2, height=16, width=16)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x, p = torch.rand(2, 3, 16, 16), torch.rand(2, 2)
    y = sess.run(None, {"x": x.numpy(), "p": p.numpy()})[0]
    with torch.no_grad():
        assert abs(torch.from_numpy(y) - model(x, p)).max().item() < 1e-4
