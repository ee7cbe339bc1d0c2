"""The command-line commands, one module each (registered by :mod:`tunableconv.cli`)."""


def add_model_option(ap) -> None:
    """The runners' ``--model`` option: a shipped model name or a model file; the model file
    carries its task and knob space, so nothing else about the model is asked."""
    from ..zoo import DEFAULT_MODEL

    ap.add_argument("--model", default=DEFAULT_MODEL, help=f"shipped model name or model file (default: {DEFAULT_MODEL})")
