"""HTTP only: the application, its error middleware and ``/api/v1/info`` (load shedding:
:meth:`.state.State.write_slot`; the test-only fault hooks: :mod:`.fault_routes`).

Everything that blocks (decoding, parsing, disk, SQLite) runs in a small thread pool, so the event
loop only moves bytes. The logic lives in :mod:`.ingest`, :mod:`.store`, :mod:`.reads`,
:mod:`.blobs` and :mod:`.auth`; a handler checks the token, picks arguments out of the request and
renders the answer. The handlers are grouped by what they serve: :mod:`.write_routes` (batches and
blobs), :mod:`.record_routes` (stored records and file bytes), :mod:`.read_routes` (the read
model), the dashboard's (:mod:`.dashboard`); what they share is in :mod:`.state`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Optional

from aiohttp import web

from . import fault_routes, read_routes, record_routes, write_routes
from .connections import request_started
from .decode import accepted_encodings
from .errors import ApiError
from .faults import route_class
from .index import private_dir
from .limits import Limits
from .record_routes import read_auth, read_scope_of
from .settings import ServerSettings
from .state import STATE, Handler, State, json_response

# State, STATE, Handler and the read auth are re-exported: launch, fault_routes and the dashboard
# import them from here.
__all__ = ["make_app", "State", "STATE", "Handler", "read_auth", "read_scope_of"]

log = logging.getLogger("ml_dash.server")


# -- middleware ------------------------------------------------------------------------------------

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes a JSON body; an unexpected exception is logged and answered 500, never leaked."""
    st: State = request.app[STATE]
    request_started(request)
    cls = route_class(request.path)
    if st.stats is not None:
        st.stats.arrive(cls)
    try:
        resp = await handler(request)
    except ApiError as exc:
        resp = json_response(exc.body(), exc.status, exc.headers)
    except web.HTTPException as exc:  # routing (404/405) and aiohttp's own refusals
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        resp = json_response(
            {"error": {"code": _CODES.get(exc.status, "error"), "message": exc.reason}}, exc.status, headers
        )
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        resp = json_response(
            {"error": {"code": "internal", "message": "internal server error (logged on the server)"}}, 500
        )
    if st.stats is not None:
        st.stats.answered(cls, resp.status)
    return resp


# -- what this server is ---------------------------------------------------------------------------


async def info(request: web.Request) -> web.Response:
    """``GET /api/v1/info``: the protocol, encodings, auth and limits a client adapts to."""
    from .. import __version__

    st: State = request.app[STATE]
    return json_response(
        {
            "protocol": 1,
            "server": f"ml-dash/{__version__}",
            "accept_encoding": accepted_encodings(),
            "auth_required": st.auth.enabled,
            "fault_injection": st.faults is not None,
            "limits": st.limits.as_dict(),
        }
    )


# -- the application -------------------------------------------------------------------------------


def make_app(
    root: os.PathLike[str] | str,
    *,
    auth: bool = True,
    fault_injection: bool = False,
    limits: Optional[Limits] = None,
    read_only: bool = False,
    settings: Optional[ServerSettings] = None,
    read_scope: str = "team",
) -> web.Application:
    """The aiohttp application of a server on ``root``. Run it with ``auto_decompress=False``
    (see :func:`ml_dash.server.launch.serve`): request bodies are decoded by us, under limits.
    ``read_only`` refuses every write (``ml-dash dashboard`` over a local folder). ``settings``
    name another store than the embedded one under ``root`` (:mod:`.settings`, :mod:`.stores`).
    ``read_scope`` "owner" lets a token read only its owner's experiments (default "team": every one)."""
    root = Path(root)
    existed = root.exists()
    private_dir(root)  # a new root is owner-only (0700), and the server's own folder always is
    if existed and not read_only and root.stat().st_mode & 0o077:
        log.warning(
            "the server root %s is open to other users (mode %o); the server makes a new root owner-only: chmod 700 %s",
            root,
            root.stat().st_mode & 0o777,
            root,
        )
    app = web.Application(middlewares=[_errors])
    state = State(
        root,
        auth=auth,
        fault_injection=fault_injection,
        limits=limits or Limits(),
        settings=settings,
        read_scope=read_scope,
    )
    app[STATE] = state
    app.router.add_get("/api/v1/info", info)
    app.add_routes(write_routes.routes)
    app.add_routes(record_routes.routes)
    state.read_model = state.backend.read_model()
    read_routes.setup(app, state.read_model, authenticate=read_scope_of, run=state.run, max_page=state.limits.max_page)
    from .dashboard import mount as mount_dashboard  # after the API routes: its pages never shadow them

    mount_dashboard(app, state, read_only=read_only)
    if fault_injection:
        fault_routes.setup(app, state)

    async def on_startup(app: web.Application) -> None:
        state.shutting_down = asyncio.Event()
        await state.run(state.store.recover)

    async def on_shutdown(app: web.Application) -> None:
        if state.shutting_down is not None:
            state.shutting_down.set()  # releases "hang" faults

    async def on_cleanup(app: web.Application) -> None:
        await asyncio.get_running_loop().run_in_executor(None, state.close)

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app
