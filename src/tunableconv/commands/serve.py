"""``tunableconv serve``: a local web app with one slider per knob, updated live.

Examples::

    tunableconv serve                                   # every shipped model, http://127.0.0.1:8000
    tunableconv serve --model denoise --port 8080
    tunableconv serve --model runs/denoise-small/model.safetensors --no-zoo
    tunableconv serve --model a.safetensors b.safetensors --jobs 1 --max-upload-mb 50

Open the printed address in a browser: pick a model and a sample photo (or upload an image),
optionally degrade it as the model's task does in evaluation (one of its cases, as
``tunableconv sweep --degrade``: a demonstration on a clean photo), move the sliders (a
calibrated slider moves evenly; tick "raw p" for the raw knobs) and compare
before/after with the divider. "Download full resolution" runs the model on the whole image in tiles; "Sweep strip"
shows the outputs over the slider's range. The HTTP API is documented at /docs (served
offline) and /openapi.json.

The server binds to 127.0.0.1 (this machine only) unless --host says otherwise; it has no
authentication, so do not expose it to untrusted networks. Models are loaded once, from the
zoo and the files given with --model; clients refer to them by name only. A model file that
cannot be loaded is reported at start and listed by the app with its error; the others are
served. The app reads what each model's knobs mean from its file's knob space. Needs the ``app``
extra: ``pip install 'tunableconv[app]'``.
"""

from __future__ import annotations

import argparse
import socket
import sys

from ..errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("serve", help="local web app: live sliders, before/after, download", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port)")
    ap.add_argument("--model", action="append", nargs="+", default=[], metavar="NAME",
                    help="shipped model name or model file to serve (repeatable); shipped models are served too "
                         "unless --no-zoo")
    ap.add_argument("--no-zoo", action="store_true", help="serve only the models given with --model")
    ap.add_argument("--default-model", metavar="NAME", help="the model selected when the page opens")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    ap.add_argument("--max-upload-mb", type=float, default=20.0, metavar="MB", help="largest upload (default 20 MB)")
    ap.add_argument("--max-pixels", type=int, default=16_000_000, metavar="N",
                    help="largest image, width x height (default 16,000,000)")
    ap.add_argument("--max-images", type=int, default=16, metavar="N",
                    help="images kept in memory, least recently used dropped first (default 16)")
    ap.add_argument("--max-store-mb", type=float, default=1024.0, metavar="MB",
                    help="memory for kept images, least recently used dropped first (default 1024 MB)")
    ap.add_argument("--jobs", type=int, default=2, metavar="N", help="inference jobs at once (default 2)")
    ap.add_argument("--queue", type=int, default=64, metavar="N", help="jobs that may wait; more get 503 (default 64)")
    ap.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                    help="request timeout, queueing included (default 120)")
    ap.add_argument("--preview-size", type=int, default=768, metavar="PX",
                    help="live previews cover at most PX x PX (a centred crop of larger images; default 768)")
    ap.add_argument("--tile", type=int, default=512, metavar="PX", help="tile size of full-resolution jobs (default 512)")
    ap.add_argument("--no-channels-last", action="store_true",
                    help="run the models on NCHW tensors (bit-identical to `tunableconv restore`; slower on CPU)")
    ap.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                    help="server log level (default info)")
    ap.set_defaults(func=run)


def config_from_args(args: argparse.Namespace):
    """The :class:`~tunableconv.app.server.AppConfig` of the parsed options."""
    from ..app.server import MB, AppConfig

    for option, value in (("--max-upload-mb", args.max_upload_mb), ("--max-store-mb", args.max_store_mb)):
        if not value > 0:
            raise InputError(f"{option} must be positive, got {value:g}")
    models = [m for group in args.model for m in group]
    if args.no_zoo and not models:
        raise InputError("--no-zoo needs at least one --model")
    return AppConfig(
        models=models, include_zoo=not args.no_zoo, default_model=args.default_model, device=args.device,
        max_upload_bytes=int(args.max_upload_mb * MB), max_pixels=args.max_pixels, max_images=args.max_images,
        max_store_bytes=int(args.max_store_mb * MB), max_jobs=args.jobs, max_queued=args.queue,
        request_timeout=args.timeout, preview_size=args.preview_size, tile=args.tile,
        channels_last=not args.no_channels_last,
    )


def _check_port(host: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise InputError(f"--port must be in 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"cannot bind to --host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as exc:
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port") from None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..app.server import create_app
    except ImportError as exc:
        raise InputError(f"the web app needs the app extra ({exc.name} is missing): "
                         "pip install 'tunableconv[app]'") from None

    config = config_from_args(args)
    _check_port(args.host, args.port)
    app = create_app(config)
    registry = app.state.registry
    names = ", ".join(n for n in registry.entries if n not in registry.broken)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"tunableconv serve: models {names}")
    for name, error in registry.broken.items():
        print(f"tunableconv serve: warning: model {name} is unavailable (listed with its error): {error}",
              file=sys.stderr, flush=True)
    if args.port:
        print(f"tunableconv serve: open http://{shown}:{args.port}/  (API docs at /docs; Ctrl+C to stop)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("tunableconv serve: warning: the server has no authentication and is reachable from other machines",
              flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=5,
                server_header=False)
    return 0
