"""The shipped models, and loading a model by name or path.

Shipped models are ``.safetensors`` files in this folder, each with a model card
(``NAME.md``). :func:`load` accepts a shipped name (``"denoise"``) or a path to any model
file written by :func:`tunableconv.models.save_model`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

ZOO_DIR = Path(__file__).resolve().parent
#: the shipped model the runners (restore, sweep, eval, demo) use when none is named
DEFAULT_MODEL = "denoise"


def available() -> dict[str, Path]:
    """Shipped model name -> file."""
    return {p.stem: p for p in sorted(ZOO_DIR.glob("*.safetensors"))}


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The file of a shipped model name, or the given path if it is a file."""
    text = str(name_or_path)
    models = available()
    if text in models:
        return models[text]
    p = Path(text)
    if p.is_file():
        return p
    from ..io import path_problem

    problem = path_problem(p)
    if problem and problem != "not found":  # a link loop, a broken link, a FIFO, a folder
        raise InputError(f"model file {p} {problem}")
    known = ", ".join(models) or "none shipped"
    raise InputError(f"unknown model {text!r}: not a shipped model ({known}) nor a model file")
