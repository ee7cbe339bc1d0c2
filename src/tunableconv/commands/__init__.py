"""The command-line commands, one module each (registered by :mod:`tunableconv.cli`)."""


def add_model_option(ap) -> None:
    """The runners' ``--model`` option: a shipped model name or a model file; the model file
    carries its task and knob space, so nothing else about the model is asked."""
    from ..zoo import DEFAULT_MODEL

    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"shipped model name or model file (default: {DEFAULT_MODEL})")


def add_levels_option(ap, help_text: str) -> None:
    """The ``--levels`` option of the evaluation commands, and ``--sigma``, its old name from
    the days of one task (hidden; it still works, with a warning on stderr)."""
    import argparse
    import sys

    class _OldName(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"{parser.prog}: warning: --sigma is deprecated (it names one task's level); use --levels",
                  file=sys.stderr)
            setattr(namespace, self.dest, values)

    ap.add_argument("--levels", dest="levels", metavar="LEVELS", help=help_text)
    ap.add_argument("--sigma", dest="levels", action=_OldName, help=argparse.SUPPRESS)
