"""All network I/O of the agent, and nothing else: aiohttp requests to the ingest API.

The transport knows routes and headers, not policy: it returns every HTTP answer as a
:class:`Response` and turns "no answer" into :class:`~._retry.ConnectFailed` or
:class:`~._retry.RequestTimeout`. What an answer means is decided in ``_client``.

The token goes only into the ``Authorization`` header; it is never part of a URL, an exception
message or a log line. Requests go through the proxy the environment names (``_proxy``).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, AsyncIterator, Dict, List, NamedTuple, Optional, Tuple, Type

import aiohttp
import orjson
from aiohttp.abc import AbstractResolver, ResolveResult

from ml_dash._text import printable
from ml_dash._urls import warn_plain_http

from ._proxy import Route, route_for
from ._retry import ConnectFailed, RequestTimeout, Unrecoverable
from ._session import public_url

__all__ = ["Transport", "Response"]

_BLOB_CHUNK = 1 << 20
#: Failures that the same request would meet again: a URL aiohttp cannot use, a TLS handshake or
#: certificate that fails (https:// to a plain http port, an untrusted certificate). Not retried.
_UNRECOVERABLE: Tuple[Type[BaseException], ...] = tuple(
    c
    for c in (aiohttp.InvalidURL, getattr(aiohttp, "NonHttpUrlClientError", None), aiohttp.ClientSSLError)
    if c is not None
)


class Response(NamedTuple):
    status: int
    headers: Dict[str, str]
    body: bytes

    def json(self) -> Dict[str, Any]:
        """The body as a JSON object ({} when it is not one)."""
        try:
            value = orjson.loads(self.body) if self.body else {}
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}

    def error(self) -> str:
        """``code: message`` of a protocol error body, or the start of the body; control characters
        escaped, since this text is shown on terminals and kept in the spool's state file."""
        err = self.json().get("error")
        if isinstance(err, dict):
            return printable(f"{err.get('code', '?')}: {err.get('message', '')}")
        return printable(self.body[:200].decode("utf-8", "replace"))


class _InlineResolver(AbstractResolver):
    """getaddrinfo in the sender's own thread.

    aiohttp's default resolver runs getaddrinfo in the loop's thread pool, which refuses new work
    once the interpreter starts shutting down, exactly when atexit asks us to flush.
    """

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> List[ResolveResult]:
        infos = socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM)
        return [
            ResolveResult(
                hostname=host,
                host=str(addr[0]),
                port=int(addr[1]),
                family=fam,
                proto=proto,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for fam, _, proto, _, addr in infos
        ]

    async def close(self) -> None:
        pass


async def _file_chunks(path: str) -> AsyncIterator[bytes]:
    # Plain reads, not the loop's executor (see _InlineResolver); the page cache makes them quick.
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_BLOB_CHUNK)
            if not chunk:
                return
            yield chunk


class Transport:
    """One HTTP connection pool to one server."""

    def __init__(
        self, base_url: str, token: Optional[str], *, connect_timeout: float = 10.0, read_timeout: float = 60.0
    ):
        if token:
            warn_plain_http(base_url, token)
        self._api = base_url.rstrip("/") + "/api/v1"
        self._shown = public_url(base_url) + "/api/v1"  # for messages: no user info
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        self._base_url = base_url
        self._session: Optional[aiohttp.ClientSession] = None
        self._route: Optional[Route] = None

    async def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._route = route_for(self._base_url)  # raises Unrecoverable for a proxy we cannot use
            connector = aiohttp.TCPConnector(limit=4, resolver=_InlineResolver(), ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, auto_decompress=True, trust_env=False
            )
        return self._session

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def request(
        self, method: str, route: str, *, data: Any = None, headers: Optional[Dict[str, str]] = None
    ) -> Response:
        client = await self._client()
        assert self._route is not None  # found with the session
        try:
            async with client.request(
                method,
                self._api + route,
                data=data,
                headers={**self._auth, **self._route.request_headers, **(headers or {})},
                proxy=self._route.proxy,
                proxy_headers=self._route.proxy_headers or None,
            ) as resp:
                body = await resp.read()
                return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)
        except _UNRECOVERABLE as exc:
            raise Unrecoverable(
                f"{self._shown}{route}: {type(exc).__name__}: {exc} (not retried: sending it again "
                "would fail the same way; check the URL and the server's TLS setup)"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(f"cannot connect to {self._shown}: {exc.os_error}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            what = "no answer in time" if isinstance(exc, asyncio.TimeoutError) else "connection broke"
            raise RequestTimeout(f"{what} from {self._shown}{route} ({type(exc).__name__})") from None

    # -- routes ----------------------------------------------------------------------------------

    async def info(self) -> Response:
        return await self.request("GET", "/info")

    async def ingest(self, body: bytes, encoding: Optional[str]) -> Response:
        headers = {"Content-Type": "application/x-ndjson"}
        if encoding:
            headers["Content-Encoding"] = encoding
        return await self.request("POST", "/ingest", data=body, headers=headers)

    async def head_blob(self, checksum: str) -> Response:
        return await self.request("HEAD", f"/blobs/{checksum}")

    async def put_blob(self, checksum: str, path: str, size: int) -> Response:
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        return await self.request("PUT", f"/blobs/{checksum}", data=_file_chunks(path), headers=headers)
