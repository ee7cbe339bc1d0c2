"""Export a tunable model with p as a graph input.

What exports:

- ``torch.export``: shared p ``(P,)`` with dynamic batch, height and width. Per-sample p
  ``(B, P)``: dynamic for the hand-written explicit layers; for models made with
  :func:`~tunableconv.nn.make_tunable` the shapes are **fixed** to the example's (batch,
  height, width: ``torch.func.vmap`` specialises them) — export the shared-p graph to deploy.
- ONNX (via ``torch.onnx.export(..., dynamo=True)``): shared p ``(P,)`` with dynamic batch,
  height and width — the deployment path (weights are mixed inside the graph, then one
  ordinary Conv per layer runs). Per-sample p exports only for a **fixed** batch size: the
  batch-as-groups convolution needs ``group = B × groups``, and ONNX's ``Conv`` takes
  ``group`` as a static attribute, so B cannot be a dynamic dimension there.
- Value checks on p (range, NaN) are data-dependent and are skipped while tracing; the
  exported graph does not validate p — validate it in the application.

A model baked at one setting (:meth:`tunableconv.nn.TunableModel.freeze`) exports like any
plain network.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .errors import InputError


def example_inputs(num_params: int, batch: int = 1, channels: int = 3, height: int = 64, width: int = 64,
                   per_sample: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Example (x, p) for tracing: x ``(B, C, H, W)``, p ``(P,)`` or ``(B, P)``."""
    x = torch.rand(batch, channels, height, width)
    p = torch.full((batch, num_params) if per_sample else (num_params,), 1.0 / num_params)
    return x, p


def export_program(model: nn.Module, num_params: int, *, per_sample: bool = False, dynamic: bool = True,
                   channels: int = 3, height: int = 64, width: int = 64, batch: int = 2) -> torch.export.ExportedProgram:
    """``torch.export`` of ``model(x, p)``; batch/height/width dynamic unless ``dynamic=False``.

    A converted model (:class:`~tunableconv.nn.TunableModel`) with ``per_sample=True`` exports
    with the example's fixed shapes (``batch`` x channels x height x width).
    """
    from .nn import TunableModel

    x, p = example_inputs(num_params, batch, channels, height, width, per_sample)
    shapes = None
    if dynamic:
        b, h, w = torch.export.Dim("batch", min=1, max=1024), torch.export.Dim.AUTO, torch.export.Dim.AUTO
        if per_sample and isinstance(model, TunableModel):
            shapes = None  # vmap specialises every dimension
        else:
            shapes = {"x": {0: b, 2: h, 3: w}, "p": {0: b} if per_sample else None}
    return torch.export.export(model.eval(), (x, p), dynamic_shapes=shapes)


def export_onnx(model: nn.Module, path: str | os.PathLike, num_params: int, *, channels: int = 3,
                height: int = 64, width: int = 64, per_sample_batch: int | None = None) -> Path:
    """Write ``model(x, p)`` as ONNX with inputs ``x`` ``(B, C, H, W)`` and ``p``.

    Args:
        per_sample_batch: None (default) exports shared p ``(P,)`` with dynamic B, H, W;
            an integer B exports per-sample p ``(B, P)`` for that fixed batch size (and, for a
            converted :class:`~tunableconv.nn.TunableModel`, the fixed ``height`` x ``width``).
    """
    try:
        import onnxscript  # noqa: F401  (needed by the dynamo ONNX exporter)
    except ImportError as exc:
        raise InputError("ONNX export needs the 'export' extra: pip install 'tunableconv[export]'") from exc
    path = Path(path)
    model = model.eval()
    if per_sample_batch is None:
        x, p = example_inputs(num_params, 1, channels, height, width)
        shapes = {"x": {0: torch.export.Dim("batch", min=1, max=1024), 2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO},
                  "p": None}
    else:
        from .nn import TunableModel

        x, p = example_inputs(num_params, per_sample_batch, channels, height, width, per_sample=True)
        shapes = {"x": {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}, "p": None}
        if isinstance(model, TunableModel):  # vmap specialises every dimension: say so, fixed shapes
            shapes = None
    torch.onnx.export(model, (x, p), str(path), input_names=["x", "p"], output_names=["y"], dynamo=True,
                      dynamic_shapes=shapes, verbose=False)
    return path
