"""``tunableconv models``: the shipped models, their architecture, size and knobs.

Examples::

    tunableconv models                      # every shipped model, a few lines each
    tunableconv models --json               # the same as a JSON list
    tunableconv models --show denoise       # all metadata of one model (name or file)
    tunableconv models --show run/model.safetensors --json

For each model: the architecture in a line, the number of stored parameters (counted from
the file header, no weights loaded), the training task, its knob space — the knobs and what
they mean, the domain (simplex: the knobs are weights that sum to one; cube: independent
knobs), the default p, the named sliders (1-D paths through the knobs), which sliders and
knobs are calibrated, the scale factor, whether tiled inference is exact and the receptive
field — and the first lines of its model card (``NAME.md`` beside the file). A shipped file
that cannot be read is listed with its error and makes the exit status 1.
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
            domain = f", {a['domain']}" if a.get("domain", "simplex") != "simplex" else ""
            kind = f"tunable ({n} knob{'s' if n != 1 else ''}{domain}, {a.get('mapping', 'affine')} mapping{expansion})"
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
    space = info.space
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
        "format": info.format,
        "num_params": info.num_params,
        "knobs": info.knobs,
        "knob_space": space.to_dict(),
        "main_slider": space.main_slider.name if space.main_slider is not None else None,
        "calibrated": space.calibrated,
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


def knob_space_lines(d: dict[str, Any]) -> list[str]:
    """The knob space (:meth:`KnobSpace.to_dict`) as aligned lines of text."""
    from ..knobs import KnobSpace

    space = KnobSpace.from_dict(d, "knob space")
    lines = []
    if not space.knobs:
        lines.append("knobs:        none (a fixed network)")
    else:
        what = ("simplex (the knobs are weights that sum to 1)" if space.domain == "simplex"
                else "cube (independent knobs, each in [0, 1])")
        lines.append(f"domain:       {what}")
        lines.append("knobs:")
        width = max(len(k.name) for k in space.knobs)
        for i, k in enumerate(space.knobs):
            cal = "  [calibrated]" if k.calibration is not None else ""
            lines.append(f"  p{i} {k.name:<{width}}  {k.description}{cal}".rstrip())
        lines.append("default:      p = (" + ", ".join(f"{v:g}" for v in space.default or []) + ")")
        if space.sliders:
            lines.append("sliders:")
            for s in space.sliders:
                cal = "calibrated" if s.calibration is not None else "not calibrated"
                desc = f": {s.description}" if s.description else ""
                lines.append(f"  {s.name}  {s.formula()}, {cal}{desc}")
        else:
            lines.append("sliders:      none")
    rf = f", receptive field {space.receptive_field} px" if space.receptive_field is not None else ""
    lines.append(f"scale:        x{space.scale}, colour {space.color}")
    lines.append(f"tiling exact: {'yes' if space.tiling_exact else 'no (tiled inference needs --force-tiling)'}{rf}")
    return lines


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.1f} kB"


def _print_model(d: dict[str, Any]) -> None:
    print(f"{d['name']}  ({d['file']}, {_size(d['file_bytes'])})")
    print(f"  architecture: {d['summary']}")
    print(f"  parameters:   {d['parameters']:,}")
    if d.get("task"):
        print(f"  task:         {d['task']}")
    for line in knob_space_lines(d["knob_space"]):
        print(f"  {line}")
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
        print(f"  format:       {d['format']}, {d['architecture']} with {len(d['tensors'])} tensors")
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
