"""Training checkpoints in one ``.safetensors`` file, written atomically. No pickle.

Nested state (model, EMA, optimiser, scheduler, step, ...) is flattened: every tensor is
stored under a dotted key, and the rest of the structure (numbers, strings, lists, dicts)
is kept as JSON in the header metadata with placeholders for the tensors. The file is
written to a temporary name in the same folder, flushed to disk, then renamed over
``latest.safetensors`` (:func:`tunableconv.io.atomic_write`): a crash or SIGKILL at any point
leaves either the previous or the new checkpoint, never a broken one — but a SIGKILL during
the write leaves the temporary file behind: :func:`remove_stale_temporaries` deletes it when
the run is resumed. :func:`read_checkpoint_values` reads a checkpoint's plain values (step,
recipe, ...) from its header without loading a tensor.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError

_TENSOR = "__tensor__"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix or "root"
        tensors[key] = obj.detach().cpu().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise TypeError(f"cannot checkpoint dict keys of type {set(type(k) for k in obj)}")
        return {"__dict__": [[k, _flatten(v, f"{prefix}.{k}" if prefix else str(k), tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{prefix}.{i}" if prefix else str(i), tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint an object of type {type(obj).__name__}")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Atomically write a nested state dict (tensors + plain values) to ``path``."""
    from safetensors.torch import save

    from ..io import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, "", tensors)
    # safetensors refuses tensors that share memory; clone those that alias
    seen: dict[int, str] = {}
    for k, t in list(tensors.items()):
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            tensors[k] = t.clone()
        elif ptr is not None:
            seen[ptr] = k
    data = save(tensors, metadata={"skeleton": json.dumps(skeleton)})
    atomic_write(path, lambda file: file.write(data))
    return path


def load_checkpoint(path: str | os.PathLike, device: str = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path), device=device)
        skeleton = json.loads(meta["skeleton"])
    except Exception as exc:
        raise InputError(f"{path} is not a readable checkpoint ({exc})") from None
    return _unflatten(skeleton, tensors)


def read_checkpoint_values(path: str | os.PathLike) -> dict[str, Any]:
    """The plain values of a checkpoint (``step``, ``recipe``, ...), from its header only:
    every tensor is None."""
    from safetensors import safe_open

    class _NoTensors(dict):
        def __missing__(self, key):
            return None

    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        skeleton = json.loads(meta["skeleton"])
    except Exception as exc:
        raise InputError(f"{path} is not a readable checkpoint ({exc})") from None
    values = _unflatten(skeleton, _NoTensors())
    if not isinstance(values, dict):
        raise InputError(f"{path} is not a readable checkpoint (no state mapping)")
    return values


#: the temporary files of :func:`tunableconv.io.atomic_write`: ``.<name>.<12 hex digits>.tmp``
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.tmp")


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that an interrupted atomic write of ``path`` left next to
    it (a SIGKILL leaves no chance to clean up); returns the removed paths. Call it only when
    no other process is writing ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    for candidate in path.parent.iterdir():
        m = _TEMPORARY.fullmatch(candidate.name)
        if m and m["name"] == path.name and candidate.is_file():
            try:
                candidate.unlink()
                removed.append(candidate)
            except OSError:
                pass
    return removed
