"""The interactive web app: ``tunableconv serve``.

A local FastAPI server and a static HTML/JS/CSS page (``static/``) that show a tunable model's
output live while its knobs move. Needs the ``app`` extra (``pip install 'tunableconv[app]'``).

    from tunableconv.app import AppConfig, create_app
    app = create_app(AppConfig(models=["denoise"]))     # an ASGI app; run it with uvicorn

See :mod:`tunableconv.app.server` for the HTTP API (also at ``/docs`` and ``/openapi.json``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["AppConfig", "create_app"]

if TYPE_CHECKING:  # pragma: no cover
    from .server import AppConfig, create_app


def __getattr__(name: str):
    # FastAPI is an optional dependency: import the server only when it is asked for
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(name)
