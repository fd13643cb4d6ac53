"""Reading a request body off the socket: a size limit, an idle timeout and a minimum rate.

A client that sends its body a byte at a time must not hold a write slot for ever. While a body
is read, a watch wakes about once a second: when no byte came for ``idle_timeout_s``, or, after
the first ``idle_timeout_s``, the body arrives slower on average than ``min_body_bytes_per_s``,
the connection is closed (a client that slow is not reading answers either; a real client retries
on a new connection, which is safe: batches are idempotent and blobs content-addressed).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Optional

from aiohttp import web

from .decode import too_large
from .limits import Limits

__all__ = ["read_body", "receiving"]

log = logging.getLogger("ml_dash.server")


class _Watch:
    """Closes the request's connection when its body stalls or crawls (see the module doc)."""

    def __init__(self, request: web.Request, limits: Limits) -> None:
        self.request = request
        self.idle = max(0.05, float(limits.idle_timeout_s))
        self.rate = limits.min_body_bytes_per_s
        self.loop = asyncio.get_running_loop()
        self.start = self.last = self.loop.time()
        self.got = 0
        self._tick_every = min(1.0, self.idle / 2)
        self._handle = self.loop.call_later(self._tick_every, self._tick)

    def saw(self, n: int) -> None:
        self.got += n
        self.last = self.loop.time()

    def _tick(self) -> None:
        now = self.loop.time()
        elapsed = now - self.start
        if now - self.last >= self.idle:
            why = f"no byte of the body for {self.idle:g} s"
        elif elapsed >= self.idle and self.got < self.rate * elapsed:
            why = f"the body came at {self.got / elapsed:.0f} bytes/s, under {self.rate:,} bytes/s"
        else:
            self._handle = self.loop.call_later(self._tick_every, self._tick)
            return
        log.info("closed a connection from %s: %s", self.request.remote, why)
        protocol = self.request.protocol
        if protocol is not None:
            protocol.force_close()  # the pending read fails; the handler lets its slot go

    def stop(self) -> None:
        self._handle.cancel()


class receiving:
    """``async with receiving(request, limits) as body: async for chunk in body: ...``: the body as
    it arrives, in pieces of at most ``size`` bytes, under the idle and rate rules while the block runs."""

    def __init__(self, request: web.Request, limits: Limits, size: int = 1 << 16) -> None:
        self.request = request
        self.limits = limits
        self.size = size
        self._watch: Optional[_Watch] = None

    async def __aenter__(self) -> "receiving":
        self._watch = _Watch(self.request, self.limits)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._watch is not None  # __aenter__ made it
        self._watch.stop()

    def __aiter__(self) -> "receiving":
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.request.content.read(self.size)
        if not chunk:
            raise StopAsyncIteration
        assert self._watch is not None  # iterated inside the `async with`
        self._watch.saw(len(chunk))
        return chunk


async def read_body(request: web.Request, limit: int, limits: Limits) -> bytes:
    """The raw body, refused with 413 once it passes ``limit`` (before reading it all when declared)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large("request body", limit, "body_too_large")
    chunks = []
    total = 0
    async with receiving(request, limits) as body:
        async for chunk in body:
            total += len(chunk)
            if total > limit:
                raise too_large("request body", limit, "body_too_large")
            chunks.append(chunk)
    return b"".join(chunks)
