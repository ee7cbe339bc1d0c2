"""The ``tunableconv`` command line.

Each subcommand lives in its own module under :mod:`tunableconv.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returns an exit code). The list below is explicit: no auto-discovery.

Errors a user can cause (:class:`~tunableconv.errors.TunableconvError`) are printed as one
line on stderr with exit status 2; no traceback. ``TUNABLECONV_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import __version__
from .errors import TunableconvError

# (module under tunableconv.commands) in the order shown by --help
COMMAND_MODULES: list[str] = [
    "demo",
    "train",
    "eval",
    "restore",
    "sweep",
    "models",
    "calibrate",
    "compare",
    "serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tunableconv",
        description="Tunable image-restoration networks: one trained network, behaviour set by sliders.",
    )
    parser.add_argument("--version", action="version", version=f"tunableconv {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"tunableconv.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except TunableconvError as exc:
        if os.environ.get("TUNABLECONV_DEBUG"):
            raise
        print(f"tunableconv {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tunableconv {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
