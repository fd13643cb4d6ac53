"""A real HTTP forward proxy on loopback, for the tests of uploads through a proxy.

It takes requests in absolute form (``POST http://host:port/path HTTP/1.1``), as clients send them
to a proxy for an http:// server, and ``CONNECT host:port`` tunnels, as they ask for an https://
one. It checks ``Proxy-Authorization`` when it is given credentials (407 otherwise), forwards each
plain request on a connection of its own (``Connection: close`` upstream) and pipes the bytes
both ways. Every request it saw is kept in :attr:`ForwardProxy.seen`.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import urllib.parse
from typing import List, NamedTuple, Optional


class Seen(NamedTuple):
    method: str
    target: str  # the absolute URL the client asked for
    proxy_authorization: Optional[str]
    head: str  # the whole request head as received


_HOP_BY_HOP = ("proxy-authorization", "proxy-connection", "connection", "keep-alive")


class ForwardProxy:
    """``with ForwardProxy(user="u", password="p") as proxy:`` listens on ``proxy.port``."""

    def __init__(self, user: Optional[str] = None, password: Optional[str] = None):
        self.expected = None if user is None else "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: List[Seen] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="forward-proxy", daemon=True)

    def __enter__(self) -> "ForwardProxy":
        self._thread.start()
        assert self._ready.wait(10), "the proxy did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        request_line, *header_lines = head.split("\r\n")
        method, target, version = request_line.split(" ", 2)
        headers = [line for line in header_lines if line]
        auth = next(
            (line.split(":", 1)[1].strip() for line in headers if line.lower().startswith("proxy-authorization:")), None
        )
        self.seen.append(Seen(method, target, auth, head))
        if self.expected is not None and auth != self.expected:
            await _refuse(writer, "407 Proxy Authentication Required\r\nProxy-Authenticate: Basic")
            return
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
            return
        url = urllib.parse.urlsplit(target)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        try:
            up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
        except OSError:
            await _refuse(writer, "502 Bad Gateway")
            return
        kept = [line for line in headers if line.split(":", 1)[0].strip().lower() not in _HOP_BY_HOP]
        up_writer.write(f"{method} {path} {version}\r\n".encode("latin-1"))
        up_writer.write(("\r\n".join([*kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1"))
        body = asyncio.ensure_future(self._pipe(reader, up_writer))
        await self._pipe(up_reader, writer)  # the answer, until the server closes (Connection: close)
        body.cancel()
        writer.close()
        up_writer.close()

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            await _refuse(writer, "502 Bad Gateway")
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        ways = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        await asyncio.wait(ways, return_when=asyncio.FIRST_COMPLETED)
        for way in ways:
            way.cancel()
        writer.close()
        up_writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                chunk = await src.read(1 << 16)
                if not chunk:
                    return
                dst.write(chunk)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            return


async def _refuse(writer: asyncio.StreamWriter, status: str) -> None:
    """Answer ``status`` (its line after the version, and any headers) with no body, and close."""
    writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode("latin-1"))
    await writer.drain()
    writer.close()
