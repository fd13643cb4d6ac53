"""HTTP only: routes, the error middleware and load shedding (the test-only fault hooks: :mod:`.fault_routes`).

Everything that blocks (decoding, parsing, disk, SQLite) runs in a small thread pool, so the event
loop only moves bytes. The logic lives in :mod:`.ingest`, :mod:`.store`, :mod:`.reads`,
:mod:`.blobs` and :mod:`.auth`; a handler here checks the token, picks arguments out of the
request and renders the answer.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Iterator, Optional, TypeVar

import orjson
from aiohttp import web

from .._readmodel import ReadModel
from . import fault_routes, read_routes
from .auth import Authenticator
from .batch import parse_body
from .blob_responses import stream_blob
from .blobs import check_checksum, storage_error
from .connections import request_started
from .dashboard.headers import content_disposition
from .dashboard.session import COOKIE_NAME
from .decode import accepted_encodings, decoded_chunks
from .errors import ApiError
from .faults import FaultPlan, Stats, route_class
from .index import private_dir
from .limits import Limits
from .receive import read_body, receiving
from .settings import ServerSettings
from .stores import open_backend

__all__ = ["make_app", "State", "STATE"]

log = logging.getLogger("ml_dash.server")

STATE: web.AppKey["State"] = web.AppKey("ml_dash_state", object)  # type: ignore[arg-type]
_JSON = "application/json"
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type=_JSON, headers=headers)


class State:
    """Everything a request handler needs, built once per server."""

    def __init__(
        self,
        root: Path,
        *,
        auth: bool,
        fault_injection: bool,
        limits: Limits,
        workers: int = 4,
        settings: Optional[ServerSettings] = None,
        read_scope: str = "team",
    ):
        self.root = root
        self.limits = limits
        #: The store (:mod:`.stores`): the embedded one under ``root`` unless the settings name another.
        self.backend = open_backend(settings, root, limits)
        self.index = self.backend.index
        self.blobs = self.backend.blobs
        self.store = self.backend.store
        self.reads = self.backend.reads
        self.auth = Authenticator(self.index, enabled=auth, read_scope=read_scope)
        self.faults: Optional[FaultPlan] = FaultPlan() if fault_injection else None
        self.stats: Optional[Stats] = Stats() if fault_injection else None
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ml-dash-server")
        #: Requests in progress per slot pool; ingest and blob uploads never wait on each other.
        self.in_flight = {"ingest": 0, "blobs": 0}
        self._slots = {"ingest": limits.max_concurrent_writes, "blobs": limits.max_concurrent_blobs}
        self.shutting_down: Optional[asyncio.Event] = None
        #: The read model behind /series, /summary, /table (set by make_app).
        self.read_model: Optional[ReadModel] = None

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` in the server's thread pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    @asynccontextmanager
    async def write_slot(self, pool: str) -> AsyncIterator[None]:
        """Bound the requests of one pool ("ingest", "blobs") handled at once; past it, shed load
        with 503 + Retry-After. Separate pools: a crowd of slow uploads never holds up batches."""
        if self.in_flight[pool] >= self._slots[pool]:
            raise ApiError(
                503, "overloaded", "the server is busy; retry after the Retry-After delay", headers={"Retry-After": "1"}
            )
        self.in_flight[pool] += 1
        try:
            yield
        finally:
            self.in_flight[pool] -= 1

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.backend.close()


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
        resp = _json(exc.body(), exc.status, exc.headers)
    except web.HTTPException as exc:  # routing (404/405) and aiohttp's own refusals
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
        resp = _json({"error": {"code": _CODES.get(exc.status, "error"), "message": exc.reason}}, exc.status, headers)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        resp = _json({"error": {"code": "internal", "message": "internal server error (logged on the server)"}}, 500)
    if st.stats is not None:
        st.stats.answered(cls, resp.status)
    return resp


# -- routes ----------------------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get("/api/v1/info")
async def info(request: web.Request) -> web.Response:
    from .. import __version__

    st: State = request.app[STATE]
    return _json(
        {
            "protocol": 1,
            "server": f"ml-dash/{__version__}",
            "accept_encoding": accepted_encodings(),
            "auth_required": st.auth.enabled,
            "fault_injection": st.faults is not None,
            "limits": st.limits.as_dict(),
        }
    )


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a batch is parsed and stored.

    A batch allocates one dict per event and keeps them all alive until it is written, which makes
    the collector walk a growing heap again and again for nothing (parsed JSON has no cycles);
    pausing it halves the cost of parsing. Counted, so overlapping batches in several threads nest.
    """
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def _store_batch(st: State, raw: bytes, encoding: str, owner: Optional[str], crash: bool = False) -> Dict[str, Any]:
    pieces = decoded_chunks(raw, encoding, st.limits.max_decoded_bytes)
    with _gc_paused():
        # 403 as soon as the header is read, before any event is looked at
        batch = parse_body(pieces, st.limits, authorize=lambda prefix: st.auth.require_write(owner, prefix))
        answer: Dict[str, Any] = st.store.ingest(batch, crash_before_commit=crash)
    if st.read_model is not None:
        st.read_model.stored(str(batch.prefix))  # the next table page shows it
    return answer


@routes.post("/api/v1/ingest")
async def ingest(request: web.Request) -> web.Response:
    st: State = request.app[STATE]
    owner = await st.run(st.auth.identify, request.headers.get("Authorization"))
    ctype = request.headers.get("Content-Type", "")
    if ctype and "json" not in ctype.lower():
        raise ApiError(415, "unsupported_media_type", "send the batch as Content-Type: application/x-ndjson")
    encoding = request.headers.get("Content-Encoding", "")
    async with st.write_slot("ingest"):
        try:
            after = await fault_routes.before_storage(request.app[STATE], "ingest")
        except fault_routes.Abort:
            return fault_routes.abort(request)
        raw = await read_body(request, st.limits.max_body_bytes, st.limits)
        crash = after is not None and after["action"] == "crash_before_commit"
        answer = await st.run(_store_batch, st, raw, encoding, owner, crash)
        if after is not None:  # drop_after_commit: stored and committed, but the client never hears
            return fault_routes.abort(request)
        return _json(answer)


@routes.head("/api/v1/blobs/{checksum}")
async def blob_head(request: web.Request) -> web.Response:
    st: State = request.app[STATE]
    await st.run(st.auth.identify, request.headers.get("Authorization"))
    size = await st.run(st.blobs.size, check_checksum(request.match_info["checksum"]))
    if size is None:
        return web.Response(status=404)
    return web.Response(status=200, headers={"X-Blob-Size": str(size)})


@routes.put("/api/v1/blobs/{checksum}")
async def blob_put(request: web.Request) -> web.Response:
    st: State = request.app[STATE]
    await st.run(st.auth.identify, request.headers.get("Authorization"))
    checksum = check_checksum(request.match_info["checksum"])
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        raise ApiError(415, "unsupported_encoding", "blobs are sent as raw bytes (no Content-Encoding)")
    limit = st.limits.max_blob_bytes
    async with st.write_slot("blobs"):
        try:
            after = await fault_routes.before_storage(request.app[STATE], "blobs")
        except fault_routes.Abort:
            return fault_routes.abort(request)
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "blob_too_large", f"blob is over the limit of {limit:,} bytes", limit=limit)
        size = await st.run(st.blobs.size, checksum)
        if size is not None:
            answer, status = {"checksum": checksum, "size": size, "created": False}, 200
        else:
            upload = None
            try:
                upload = st.blobs.upload(checksum, limit)
                async with receiving(request, st.limits, 1 << 20) as body:
                    async for chunk in body:
                        # Hashing a MiB takes milliseconds: hash and write in one hop to the pool, not on
                        # the loop. Measured against aiofiles (a write hop plus a hash hop per chunk): this
                        # uploads 15-22 % faster (README, "Server file I/O").
                        await st.run(upload.write, chunk)
                created = await st.run(upload.finish)
            except BaseException as exc:
                if upload is not None:
                    upload.abort()
                if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
                    log.warning("storage refused a blob upload: %s", exc)
                    raise storage_error(exc, limit) from None
                raise
            answer = {"checksum": checksum, "size": upload.size, "created": created}
            status = 201 if created else 200
        if after is not None:
            return fault_routes.abort(request)
        return _json(answer, status)


def read_auth(request: web.Request) -> Optional[str]:
    """Auth of a read route (GET): the bearer token, else the dashboard's login cookie."""
    st: State = request.app[STATE]
    return st.auth.identify_read(request.headers.get("Authorization"), request.cookies.get(COOKIE_NAME))


def read_scope_of(request: web.Request) -> Optional[str]:
    """Auth of a read route, and its scope: the only owner whose experiments the request may read
    (None: every owner's). A ``prefix`` query parameter outside that scope is 403 here."""
    st: State = request.app[STATE]
    only = st.auth.readable_owner(read_auth(request))
    prefix = request.query.get("prefix")
    if only is not None and prefix:
        st.auth.require_read(only, prefix)
    return only


def _reader_route(path: str, method: str, *params: str) -> None:
    """A read route: auth, then ``Reads.<method>(prefix, *query params)`` in the pool."""

    async def handler(request: web.Request) -> web.Response:
        st: State = request.app[STATE]
        only = await st.run(read_scope_of, request)
        q = request.query
        args = [q.get(p) for p in params]
        if method == "experiments" and only is not None:  # an owner-scoped token lists its owner's only
            if args[0] not in (None, "", only):
                return _json({"experiments": []})
            args[0] = only
        if method != "experiments":
            prefix = q.get("prefix")
            if not prefix:
                raise ApiError(400, "bad_query", "the 'prefix' query parameter is required")
            args.insert(0, prefix)
        return _json(await st.run(getattr(st.reads, method), *args))

    routes.get(path)(handler)


_reader_route("/api/v1/experiments", "experiments", "owner", "project", "glob")
_reader_route("/api/v1/experiment", "experiment")
_reader_route("/api/v1/params", "params")
_reader_route("/api/v1/logs", "logs", "start", "limit", "level")
_reader_route("/api/v1/metrics", "metric_names")
_reader_route("/api/v1/metric", "metric_rows", "name", "start", "limit")
_reader_route("/api/v1/files", "files", "path")
_reader_route("/api/v1/tracks", "track_topics")
_reader_route("/api/v1/track", "track_entries", "topic", "start", "limit")


@routes.get("/api/v1/file")
async def file_download(request: web.Request) -> web.StreamResponse:
    st: State = request.app[STATE]
    await st.run(read_scope_of, request)
    prefix, file_id = request.query.get("prefix"), request.query.get("id")
    if not prefix or not file_id:
        raise ApiError(400, "bad_query", "'prefix' and 'id' are required")
    path, entry = await st.run(st.reads.file, prefix, file_id)
    headers = {
        "Content-Type": str(entry.get("contentType") or "application/octet-stream"),
        # Uploaded bytes are the user's, not ours: a stored HTML or SVG file opened in the browser
        # must not run as this origin (it would read the API with the dashboard's login cookie).
        "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
        "X-Content-Type-Options": "nosniff",
    }
    if request.query.get("download"):
        headers["Content-Disposition"] = content_disposition(str(entry.get("filename") or "file"))
    if isinstance(path, Path):
        # sendfile (zero copy), not aiofiles: measured, aiofiles read-and-write costs 17 % of the
        # download rate and 60 % more server CPU (README, "Server file I/O"). The path was checked
        # for symlinks.
        return web.FileResponse(path, headers=headers)
    return await stream_blob(request, path, headers)


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
    app.add_routes(routes)
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
