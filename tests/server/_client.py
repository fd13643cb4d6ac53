"""A tiny HTTP client for the server tests (http.client: full control over headers and bodies)."""

from __future__ import annotations

import gzip
import http.client
import json
import urllib.parse
from typing import Any, Dict, Iterable, List, Optional

import orjson


class Answer:
    def __init__(self, status: int, headers: Dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.raw = body

    @property
    def json(self) -> Any:
        return json.loads(self.raw)

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.raw[:300]!r})"


def request(
    url: str, method: str, path: str, body: bytes = b"", headers: Optional[Dict[str, str]] = None, timeout: float = 30
) -> Answer:
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def auth(token: Optional[str]) -> Dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def batch_body(session: str, prefix: str, events: Iterable[dict], header: Optional[dict] = None) -> bytes:
    head = header if header is not None else {"v": 1, "session": session, "prefix": prefix}
    return b"\n".join([orjson.dumps(head)] + [orjson.dumps(e) for e in events]) + b"\n"


def post(
    url: str,
    token: Optional[str],
    body: bytes,
    encoding: Optional[str] = None,
    headers: Optional[Dict[str, str]] = None,
    timeout: float = 30,
) -> Answer:
    h = {"Content-Type": "application/x-ndjson", **auth(token)}
    if encoding == "gzip":
        body = gzip.compress(body)
    elif encoding == "zstd":
        import zstandard

        body = zstandard.ZstdCompressor().compress(body)
    if encoding:
        h["Content-Encoding"] = encoding
    h.update(headers or {})
    return request(url, "POST", "/api/v1/ingest", body, h, timeout)


def ingest(url: str, token: Optional[str], session: str, prefix: str, events: List[dict], **kw) -> Answer:
    return post(url, token, batch_body(session, prefix, events), **kw)


def get(url: str, token: Optional[str], route: str, **query: Any) -> Answer:
    q = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
    return request(url, "GET", f"/api/v1/{route}" + ("?" + q if q else ""), headers=auth(token))


def metric_events(start_seq: int, n: int, name: Optional[str] = "train", base: int = 0) -> List[dict]:
    return [
        {
            "seq": start_seq + i,
            "kind": "metric",
            "ts": 1700000000.0 + i,
            "name": name,
            "data": {"step": base + i, "loss": 1.0 / (base + i + 1)},
        }
        for i in range(n)
    ]
