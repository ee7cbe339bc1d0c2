"""Model files: ``.safetensors`` weights with self-describing metadata. No pickle.

The safetensors header metadata (string -> string) holds:

- ``format``: ``tunableconv-model/1``
- ``architecture``: a key of :data:`tunableconv.models.ARCHITECTURES`
- ``arguments``: JSON of the constructor arguments
- ``num_params`` and ``knobs``: JSON list of ``{"name", "description"}`` for the P parameters
- ``parameters``: JSON map from each tensor name to what it is (shape and meaning)
- ``info``: JSON with anything else (task, recipe, training steps, wall time, metrics,
  calibration, ...).

Loading reads tensors only (safetensors cannot run code), checks the architecture against
the explicit list and the tensor names/shapes against the constructed model, and fails with
a one-line :class:`~tunableconv.errors.InputError` otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError

FORMAT = "tunableconv-model/1"


@dataclass
class ModelInfo:
    """What a model file says about itself."""

    architecture: str
    arguments: dict
    num_params: int
    knobs: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def knob_names(self) -> list[str]:
        return [k["name"] for k in self.knobs]


def describe_parameters(model: nn.Module) -> dict[str, str]:
    """A short description of every tensor: its shape and, for tunable layers, its layout."""
    from ..nn.layers import TunableConv2d, TunableConvTranspose2d, TunableLinear
    from ..nn.mapping import ParamMap

    desc = {}
    owners = {n: m for n, m in model.named_modules()}
    for name, t in model.state_dict().items():
        mod_name, _, leaf = name.rpartition(".")
        mod = owners.get(mod_name)
        shape = "x".join(map(str, t.shape))
        if isinstance(mod, (TunableConv2d, TunableConvTranspose2d, TunableLinear)) and leaf in ("weight", "bias"):
            what = f"{mod.num_weight_sets} stacked {leaf} sets of a tunable {type(mod).__name__[7:]}, mixed by the aggregation weights"
        elif isinstance(mod, ParamMap):
            what = f"affine map p -> aggregation weights ({leaf}: {'A, (K, P)' if leaf == 'weight' else 'b, (K,)'})"
        else:
            what = f"{type(mod).__name__ if mod is not None else 'tensor'} {leaf}"
        desc[name] = f"[{shape}] {what}"
    return desc


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    knobs: list[dict] | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (which has ``architecture`` and ``arguments()``) to a ``.safetensors`` file.

    The write is atomic (temporary file, then rename).
    """
    from safetensors.torch import save

    from ..io import atomic_write

    arch = getattr(model, "architecture", None)
    if arch is None or not hasattr(model, "arguments"):
        raise TypeError("save_model needs a model from tunableconv.models (with .architecture and .arguments())")
    num_params = int(getattr(model, "num_params", 0))
    knobs = knobs or [{"name": f"p{i}", "description": ""} for i in range(num_params)]
    if len(knobs) != num_params:
        raise ValueError(f"{len(knobs)} knob descriptions for {num_params} parameters")
    meta = {
        "format": FORMAT,
        "architecture": arch,
        "arguments": json.dumps(model.arguments()),
        "num_params": str(num_params),
        "knobs": json.dumps(knobs),
        "parameters": json.dumps(describe_parameters(model)),
        "info": json.dumps(info or {}),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = save(tensors, metadata=meta)
    atomic_write(path, lambda file: file.write(data))
    return path


def read_metadata(path: str | os.PathLike) -> ModelInfo:
    """Read a model file's metadata without loading its tensors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise InputError(f"{path} is not a readable .safetensors file ({exc})") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not a tunableconv model file (format {meta.get('format')!r})")
    try:
        return ModelInfo(
            architecture=meta["architecture"], arguments=json.loads(meta["arguments"]), num_params=int(meta["num_params"]),
            knobs=json.loads(meta.get("knobs", "[]")), info=json.loads(meta.get("info", "{}")), path=str(path),
        )
    except (KeyError, ValueError) as exc:
        raise InputError(f"{path} has broken metadata ({exc})") from None


def build_model(info: ModelInfo) -> nn.Module:
    """Construct (untrained) the architecture a :class:`ModelInfo` describes."""
    from . import ARCHITECTURES

    if info.architecture not in ARCHITECTURES:
        raise InputError(f"unknown architecture {info.architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    cls, cfg_cls = ARCHITECTURES[info.architecture]
    names = {f.name for f in fields(cfg_cls)}
    unknown = set(info.arguments) - names
    if unknown:
        raise InputError(f"unknown {info.architecture} arguments in model file: {', '.join(sorted(unknown))}")
    return cls(cfg_cls(**info.arguments))


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Load a model file: returns (model in eval mode, its :class:`ModelInfo`)."""
    from safetensors.torch import load_file

    info = read_metadata(path)
    model = build_model(info)
    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:
        raise InputError(f"cannot read the tensors of {path} ({exc})") from None
    missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
    if missing or unexpected:
        raise InputError(f"{path} does not match its architecture: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{path}: tensor shapes do not match the architecture ({str(exc).splitlines()[-1].strip()})") from None
    return model.to(device).eval(), info
