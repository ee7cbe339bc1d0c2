"""The ``tunableconv`` command line.

Each subcommand lives in its own module under :mod:`tunableconv.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (called with the parsed
arguments, returns an exit code). The list below is explicit: no auto-discovery.

Errors a user can cause (:class:`~tunableconv.errors.TunableconvError`) are printed as one
line on stderr with exit status 2; no traceback. ``TUNABLECONV_DEBUG=1`` shows tracebacks.
Command-line mistakes caught by argparse (an unknown option, a non-number) are one line too,
with the same exit status, and point to ``--help`` instead of printing the usage. Warnings
about an input that is used but not quite as given (:class:`~tunableconv.errors.InputWarning`,
e.g. the first frame of an animated GIF) are one ``warning:`` line each on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

from . import __version__
from .errors import InputWarning, TunableconvError

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
    "analyze",
    "serve",
]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2), naming the
    command and pointing to its ``--help``, instead of the usage block and the error."""

    def error(self, message: str):  # type: ignore[override]
        text = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {text} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
    args, extra = parser.parse_known_args(argv)
    if extra:  # named after the subcommand they were given to, not the top-level parser
        prog = f"{parser.prog} {args.command}" if getattr(args, "command", None) else parser.prog
        words = " ".join(extra)
        print(f"{prog}: error: unrecognized arguments: {words} (see {prog} --help)", file=sys.stderr)
        return 2
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    def show_warning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):
            print(f"tunableconv {args.command}: warning: {' '.join(str(message).split())}", file=sys.stderr)
        else:
            default_show(message, category, filename, lineno, file, line)

    default_show = warnings.showwarning
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", InputWarning)
            warnings.showwarning = show_warning
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
