"""Connections: closed when they sit idle or send their request line and headers too slowly, and
requests that cannot even be read answered without repeating a byte of what the client sent.

aiohttp closes a keep-alive connection that stays idle between requests (``keepalive_timeout``);
older versions never time out a connection that sends nothing, or its headers a byte at a time,
before its first request. :class:`GuardedRunner` adds that deadline (``idle_timeout_s``) to every
connection: the first request's headers must be in by then. Request bodies have their own rules
(:mod:`.receive`).

A request aiohttp cannot parse (a header over 8190 bytes, a malformed line) used to be answered
and logged with the offending bytes in the message: an over-long ``Authorization`` header put the
token in the answer and in the server log. Here the answer is a fixed JSON error and the log line
names only the kind of error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Optional

import orjson
from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

__all__ = ["GuardedRunner", "request_started"]

log = logging.getLogger("ml_dash.server")


class _Handler(RequestHandler):
    """aiohttp's connection handler with a first-request deadline and quiet parse errors."""

    ml_dash_idle: Optional[float] = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.ml_dash_started = False
        self.ml_dash_timer = None
        if self.ml_dash_idle:
            self.ml_dash_timer = asyncio.get_running_loop().call_later(self.ml_dash_idle, self._ml_dash_deadline)

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.request_started()
        super().connection_lost(exc)

    def request_started(self) -> None:
        """A request got as far as the application: the connection is no longer silent."""
        self.ml_dash_started = True
        timer = getattr(self, "ml_dash_timer", None)
        if timer is not None:
            timer.cancel()
            self.ml_dash_timer = None

    def _ml_dash_deadline(self) -> None:
        self.ml_dash_timer = None
        if not self.ml_dash_started:
            log.info("closed a connection from %s: no complete request in %g s", self._peer(), self.ml_dash_idle)
            self.force_close()

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else "?"

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: Optional[BaseException] = None,
        message: Optional[str] = None,
    ) -> web.StreamResponse:
        if status >= 500:
            log.error("error handling a request from %s", request.remote, exc_info=exc)
        else:  # the client's own bytes stay out of the log and the answer: they may hold a token
            log.info("could not read a request from %s: %s", request.remote, type(exc).__name__ if exc else status)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer was already being sent")
        if isinstance(exc, LineTooLong):
            status, code, text = 431, "header_too_large", "a request line or header is over the server's size limit"
        elif status < 500:
            code, text = "bad_request", "the request could not be read as HTTP"
        else:
            code, text = "internal", "internal server error (logged on the server)"
        resp = web.Response(
            status=status,
            body=orjson.dumps({"error": {"code": code, "message": text}}),
            content_type="application/json",
        )
        resp.force_close()
        return resp


class _Server(web.Server):
    """Makes :class:`_Handler` connections (aiohttp's ``Server`` with another handler class)."""

    ml_dash_idle: Optional[float] = None

    def __call__(self) -> RequestHandler:
        handler = _Handler(self, loop=self._loop, **self._kwargs)
        handler.ml_dash_idle = self.ml_dash_idle
        return handler


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` whose connections follow the rules above; ``idle_timeout`` in seconds."""

    def __init__(self, app: web.Application, *, idle_timeout: float, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", idle_timeout)
        kwargs.setdefault("lingering_time", min(2.0, idle_timeout))  # reading what a refused client still sends
        super().__init__(app, **kwargs)
        self._idle_timeout = idle_timeout

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if type(server) is web.Server:
            server.__class__ = _Server
            assert isinstance(server, _Server)
            server.ml_dash_idle = self._idle_timeout
        return server


def request_started(request: web.Request) -> None:
    """Tell the connection that a request reached the application (called by the app's middleware)."""
    protocol = request.protocol
    if isinstance(protocol, _Handler) and not protocol.ml_dash_started:
        protocol.request_started()
