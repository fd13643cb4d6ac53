"""The test-only fault hooks (``--fault-injection``): the plan's routes, and the fault a rule
injects before a batch or a blob is stored. Never mounted without the flag."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional

import orjson
from aiohttp import web

from .errors import ApiError
from .faults import FaultPlan
from .receive import read_body

if TYPE_CHECKING:
    from .app import State

__all__ = ["setup", "before_storage", "Abort", "abort"]

_STATE: web.AppKey["State"] = web.AppKey("ml_dash_fault_state", object)  # type: ignore[arg-type]


def setup(app: web.Application, state: "State") -> None:
    """Mount ``/api/v1/_test/faults`` (PUT/GET) and ``/api/v1/_test/stats`` (GET)."""
    app[_STATE] = state
    app.router.add_put("/api/v1/_test/faults", faults_put)
    app.router.add_get("/api/v1/_test/faults", faults_get)
    app.router.add_get("/api/v1/_test/stats", stats_get)


def _json_response(body: Any) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def before_storage(st: "State", cls: str) -> Optional[Dict[str, Any]]:
    """Apply the pre-storage part of a fault rule; returns a rule that acts after storage, if any."""
    if st.faults is None:
        return None
    rule = st.faults.take(cls)
    if rule is None:
        return None
    action = rule["action"]
    if action == "status":
        headers = {}
        if rule.get("retry_after") is not None:
            headers["Retry-After"] = str(rule["retry_after"])
        raise ApiError(rule["status"], "injected_fault", f"injected status {rule['status']}", headers=headers)
    if action == "close_before":
        raise Abort()
    if action == "hang":
        assert st.shutting_down is not None  # set at startup, before any request
        await st.shutting_down.wait()
        raise Abort()
    return rule  # drop_after_commit, crash_before_commit: they act later


class Abort(Exception):
    """Close the connection without an answer (fault injection)."""


def abort(request: web.Request) -> web.Response:
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)  # never sent: writing to the aborted transport fails quietly


async def faults_put(request: web.Request) -> web.Response:
    st = request.app[_STATE]
    st.auth.identify(request.headers.get("Authorization"))  # like every other route
    try:
        rules = orjson.loads(await read_body(request, 1 << 20, st.limits))
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_json", "the fault plan must be JSON") from None
    faults = _faults(st)
    faults.set(rules)
    return _json_response({"rules": faults.rules})


async def faults_get(request: web.Request) -> web.Response:
    st = request.app[_STATE]
    st.auth.identify(request.headers.get("Authorization"))
    return _json_response({"rules": _faults(st).rules})


async def stats_get(request: web.Request) -> web.Response:
    st = request.app[_STATE]
    st.auth.identify(request.headers.get("Authorization"))
    assert st.stats is not None  # the route exists only with fault injection on
    return _json_response(st.stats.as_dict())


def _faults(st: State) -> FaultPlan:
    assert st.faults is not None  # the routes exist only with fault injection on
    return st.faults
