"""HTTP routes of the read model: ``/api/v1/series``, ``/api/v1/summary``, ``/api/v1/table``.

They ask a :class:`ml_dash._readmodel.ReadModel` and nothing else, so another store only has to
implement that interface. :func:`setup` registers them on an application; ``authenticate`` is the
application's read auth (the same as its other read routes): it checks the token and a ``prefix``
query parameter against the server's read scope, and returns the only owner whose experiments the
request may read (None: every owner's), which the table is limited to.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Awaitable, Callable, Optional

import orjson
from aiohttp import web

from .._readmodel import ReadModel, TableQuery
from .._readmodel._series import QueryError
from .errors import ApiError

__all__ = ["setup", "READ_MODEL"]

READ_MODEL: web.AppKey[ReadModel] = web.AppKey("ml_dash_read_model", object)  # type: ignore[arg-type]
_AUTH: web.AppKey[Callable[[web.Request], Any]] = web.AppKey("ml_dash_read_auth", object)  # type: ignore[arg-type]
_RUN: web.AppKey[Callable[..., Awaitable[Any]]] = web.AppKey("ml_dash_read_run", object)  # type: ignore[arg-type]
_LIMIT: web.AppKey[int] = web.AppKey("ml_dash_read_limit", int)


def _json(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def _ask(request: web.Request, method: str, *args: Any, **kwargs: Any) -> web.Response:
    request.app[_AUTH](request)
    model = request.app[READ_MODEL]
    try:
        body = await request.app[_RUN](functools.partial(getattr(model, method), *args, strict=True, **kwargs))
    except QueryError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    return _json(body)


def _prefix(request: web.Request) -> str:
    prefix = request.query.get("prefix")
    if not prefix:
        raise ApiError(400, "bad_query", "the 'prefix' query parameter is required")
    return prefix


def _name(request: web.Request) -> Optional[str]:
    return request.query.get("name") or None


async def series(request: web.Request) -> web.Response:
    q = request.query
    prefix = _prefix(request)
    if q.get("after") not in (None, ""):
        limit_max = request.app[_LIMIT]
        try:
            limit = int(q.get("limit") or limit_max)
        except ValueError:
            raise ApiError(400, "bad_query", "'limit' must be an integer") from None
        if limit < 1:
            raise ApiError(400, "bad_query", "'limit' must be >= 1")
        return await _ask(
            request,
            "increments",
            prefix,
            _name(request),
            q.get("field", ""),
            q.get("x") or "index",
            q.get("after"),
            min(limit, limit_max),
        )
    return await _ask(
        request,
        "series",
        prefix,
        _name(request),
        q.get("field", ""),
        q.get("x") or "index",
        q.get("start"),
        q.get("end"),
        q.get("buckets"),
    )


async def summary(request: web.Request) -> web.Response:
    return await _ask(request, "summary", _prefix(request))


async def table(request: web.Request) -> web.Response:
    q = request.query
    try:
        query = TableQuery.from_query(q.get, lambda k: q.getall(k, []))
    except QueryError as exc:
        raise ApiError(exc.status, exc.code, str(exc)) from None
    only = request.app[_AUTH](request)
    return await _ask(request, "table", query, **({"owner": only} if only is not None else {}))


def setup(
    app: web.Application,
    model: ReadModel,
    *,
    authenticate: Callable[[web.Request], Any],
    run: Callable[..., Awaitable[Any]],
    max_page: int,
) -> None:
    """Register the routes on ``app``; ``run(fn)`` runs blocking work off the event loop.
    The catalogue is built in the background at start, so the first table page is quick."""
    app[READ_MODEL] = model
    app[_AUTH] = authenticate
    app[_RUN] = run
    app[_LIMIT] = max_page
    warming: dict[str, Any] = {}
    app.router.add_get("/api/v1/series", series)
    app.router.add_get("/api/v1/summary", summary)
    app.router.add_get("/api/v1/table", table)

    async def warm(app: web.Application) -> None:
        warming["task"] = asyncio.ensure_future(run(model.warm))

    async def stop(app: web.Application) -> None:
        model.close()
        task = warming.get("task")
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    app.on_startup.append(warm)
    app.on_shutdown.append(stop)
