"""What every request handler shares: the server's :class:`State`, the app key it is kept under,
and the JSON answer that handlers and the error middleware render."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, Optional, TypeVar

import orjson
from aiohttp import web

from .._readmodel import ReadModel
from .auth import Authenticator
from .errors import ApiError
from .faults import FaultPlan, Stats
from .limits import Limits
from .settings import ServerSettings
from .stores import open_backend

__all__ = ["State", "STATE", "Handler", "json_response"]

STATE: web.AppKey["State"] = web.AppKey("ml_dash_state", object)  # type: ignore[arg-type]
_JSON = "application/json"
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(body: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> web.Response:
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
