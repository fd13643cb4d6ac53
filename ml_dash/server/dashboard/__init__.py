"""The web dashboard, served by the server on the same port as the API.

Pages: ``/`` the experiments table, ``/e/<owner>/<project>/.../<name>`` one experiment,
``/compare?p=<prefix>&p=...`` several runs overlaid, ``/login``. Server-rendered HTML, plain
JavaScript and a vendored uPlot (``static/vendor/uplot``, MIT): no build step, nothing from outside.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from aiohttp import web

    from ..app import State

__all__ = ["mount"]


def mount(app: web.Application, state: State, read_only: bool = False) -> None:
    """Add the dashboard's routes to a server app (see :func:`ml_dash.server.app.make_app`)."""
    from .routes import mount as _mount  # routes import the app module: import on use, not at import

    _mount(app, state, read_only)
