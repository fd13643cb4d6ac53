"""Sending file bytes that live in a blob store rather than a local file (an S3 object), with the
single-range requests a browser or ``curl -r`` makes (a multi-range request gets the whole file)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from aiohttp import web

if TYPE_CHECKING:
    from .stores import BlobSource

__all__ = ["stream_blob", "parse_range"]

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range(header: Optional[str], size: int) -> Optional[Tuple[int, int]]:
    """(start, stop) of a single satisfiable byte range; None for the whole file; ValueError when
    the range cannot be satisfied (416)."""
    if not header:
        return None
    m = _RANGE.fullmatch(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # not a single byte range: answer the whole file (allowed by RFC 9110)
    if m.group(1):
        start = int(m.group(1))
        stop = min(size, int(m.group(2)) + 1) if m.group(2) else size
    else:
        start, stop = max(0, size - int(m.group(2))), size
    if start >= size or stop <= start:
        raise ValueError("unsatisfiable range")
    return start, stop


async def stream_blob(request: web.Request, source: BlobSource, headers: Dict[str, str]) -> web.StreamResponse:
    size = source.size
    try:
        rng = parse_range(request.headers.get("Range"), size)
    except ValueError:
        return web.Response(status=416, headers={"Content-Range": f"bytes */{size}"})
    start, stop = rng if rng is not None else (0, size)
    resp = web.StreamResponse(status=206 if rng is not None else 200, headers={**headers, "Accept-Ranges": "bytes"})
    if rng is not None:
        resp.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    resp.content_length = stop - start
    await resp.prepare(request)
    if request.method != "HEAD":
        async for chunk in source.chunks(start, stop):
            await resp.write(chunk)
    await resp.write_eof()
    return resp
