"""``tunableconv models``: the shipped models, their architecture, size and knobs.

Examples::

    tunableconv models                      # every shipped model, a few lines each
    tunableconv models --json               # the same as a JSON list
    tunableconv models --show denoise       # all metadata of one model (name or file)
    tunableconv models --show run/model.safetensors --json

For each model: the architecture in a line, the number of stored parameters (counted from
the file header, no weights loaded), the knobs and what they mean, the strength slider if
any, the training task, and the first lines of its model card (``NAME.md`` beside the file).
A shipped file that cannot be read is listed with its error and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from ..errors import InputError

#: How many non-empty lines of the model card the listing shows.
CARD_LINES = 3


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("models", help="list the shipped models and their knobs", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--show", metavar="NAME_OR_PATH", help="print all metadata of one model (shipped name or file)")
    ap.set_defaults(func=run)


def architecture_summary(architecture: str, arguments: dict) -> str:
    """One line describing the network, e.g. ``'ResNet: 16 residual blocks x 64 channels, 3x3
    convs, tunable (2 knobs, affine mapping)'``."""
    if architecture == "resnet":
        a = arguments
        k = a.get("kernel_size", 3)
        n = int(a.get("num_params", 0))
        if n:
            expansion = f", expansion {a['expansion']}" if a.get("expansion", 1) != 1 else ""
            kind = f"tunable ({n} knob{'s' if n != 1 else ''}, {a.get('mapping', 'affine')} mapping{expansion})"
        else:
            kind = "plain (no knobs)"
        up = f", x{a['upscale']} upscaling" if a.get("upscale", 1) != 1 else ""
        blocks = a.get("num_blocks", "?")
        return (f"ResNet: {blocks} residual block{'' if blocks == 1 else 's'} x {a.get('channels', '?')} channels, "
                f"{k}x{k} convs, {kind}{up}")
    args = ", ".join(f"{key}={value}" for key, value in arguments.items())
    return f"{architecture}({args})"


def _header(path: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Tensor shapes and the raw metadata strings of a model file, from its header only."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {name: list(f.get_slice(name).get_shape()) for name in f.keys()}
            meta = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise InputError(f"{path} is not a readable .safetensors file ({exc})") from None
    return shapes, meta


def model_card(path: Path, max_lines: int | None = CARD_LINES) -> tuple[Path | None, list[str]]:
    """(card file or None, its first ``max_lines`` non-empty lines with Markdown ``#`` removed)."""
    card = path.with_suffix(".md")
    if not card.is_file():
        return None, []
    try:
        text = card.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return card, []
    lines = [line.strip().lstrip("#").strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("---")]
    return card, lines if max_lines is None else lines[:max_lines]


def describe_model(path: str | Path, name: str | None = None, *, card_lines: int | None = CARD_LINES,
                   tensors: bool = False) -> dict[str, Any]:
    """Everything the listing shows about one model file, JSON-serialisable.

    Raises:
        InputError: not a readable tunableconv model file.
    """
    from ..models.files import read_metadata

    path = Path(path)
    info = read_metadata(path)
    shapes, meta = _header(path)
    count = sum(math.prod(s) for s in shapes.values())
    card, lines = model_card(path, card_lines)
    out: dict[str, Any] = {
        "name": name or path.stem,
        "file": str(path),
        "file_bytes": path.stat().st_size,
        "architecture": info.architecture,
        "summary": architecture_summary(info.architecture, info.arguments),
        "arguments": info.arguments,
        "parameters": count,
        "num_params": info.num_params,
        "knobs": info.knobs,
        "strength": info.info.get("strength") if info.num_params == 2 else None,
        "calibrated": bool(info.info.get("calibration")),
        "task": info.info.get("task"),
        "info": info.info,
        "card_file": str(card) if card else None,
        "card": lines,
    }
    if tensors:
        try:
            out["tensors"] = json.loads(meta.get("parameters", "{}"))
        except ValueError:
            out["tensors"] = {k: "x".join(map(str, s)) for k, s in shapes.items()}
    return out


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.1f} kB"


def _print_model(d: dict[str, Any]) -> None:
    print(f"{d['name']}  ({d['file']}, {_size(d['file_bytes'])})")
    print(f"  architecture: {d['summary']}")
    print(f"  parameters:   {d['parameters']:,}")
    if d.get("task"):
        print(f"  task:         {d['task']}")
    if d["knobs"]:
        print("  knobs:")
        width = max(len(k.get("name", "")) for k in d["knobs"])
        for i, k in enumerate(d["knobs"]):
            print(f"    p{i} {k.get('name', ''):<{width}}  {k.get('description', '')}".rstrip())
    else:
        print("  knobs:        none (a fixed network)")
    if d.get("strength"):
        print(f"  strength:     {d['strength']}{' (calibrated slider)' if d['calibrated'] else ''}")
    for i, line in enumerate(d["card"]):
        print(f"  {'card:' if i == 0 else '':<13} {line}")


def run(args: argparse.Namespace) -> int:
    from .. import zoo

    if args.show:
        d = describe_model(zoo.resolve(args.show), tensors=True, card_lines=None if args.json else CARD_LINES)
        if args.json:
            print(json.dumps(d, indent=2))
            return 0
        _print_model(d)
        print(f"  format:       {d['architecture']} with {len(d['tensors'])} tensors")
        print("  arguments:    " + ", ".join(f"{k}={v}" for k, v in d["arguments"].items()))
        print("  info:")
        for line in json.dumps(d["info"], indent=2).splitlines():
            print(f"    {line}")
        return 0

    models = zoo.available()
    entries: list[dict[str, Any]] = []
    for name, path in models.items():
        try:
            entries.append(describe_model(path, name))
        except InputError as exc:
            entries.append({"name": name, "file": str(path), "error": str(exc)})
    broken = any("error" in e for e in entries)
    if args.json:
        print(json.dumps(entries, indent=2))
        return 1 if broken else 0
    if not entries:
        print(f"no shipped models yet (looked in {zoo.ZOO_DIR}); "
              "train one with `tunableconv train` and pass its file with --model PATH")
        return 0
    for i, d in enumerate(entries):
        if i:
            print()
        if "error" in d:
            print(f"{d['name']}  ({d['file']})")
            print(f"  error: {d['error']}")
        else:
            _print_model(d)
    return 1 if broken else 0
