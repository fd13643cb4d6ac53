"""The read routes of stored records: an experiment's listing, parameters, logs, metric rows,
files (and their bytes), tracks: ``GET /api/v1/experiments``, ``/experiment``, ``/params``,
``/logs``, ``/metrics``, ``/metric``, ``/files``, ``/file``, ``/tracks``, ``/track``.

Also the read auth that every GET route shares (these, the read model's in :mod:`.read_routes`
and the dashboard's): the bearer token, else the dashboard's login cookie, checked against the
server's read scope.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from aiohttp import web

from .blob_responses import stream_blob
from .dashboard.headers import content_disposition
from .dashboard.session import COOKIE_NAME
from .errors import ApiError
from .state import STATE, State, json_response

__all__ = ["routes", "read_auth", "read_scope_of"]

routes = web.RouteTableDef()


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
                return json_response({"experiments": []})
            args[0] = only
        if method != "experiments":
            prefix = q.get("prefix")
            if not prefix:
                raise ApiError(400, "bad_query", "the 'prefix' query parameter is required")
            args.insert(0, prefix)
        return json_response(await st.run(getattr(st.reads, method), *args))

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
