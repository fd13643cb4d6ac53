"""The write routes, what an uploader sends: batches of events (``POST /api/v1/ingest``) and file
bytes (``HEAD``/``PUT /api/v1/blobs/{checksum}``).

Each runs under its pool's write slot (load shedding, :meth:`.state.State.write_slot`), applies
the test-only fault plan before storing (:mod:`.fault_routes`), and does the decoding, parsing,
hashing and storing in the server's thread pool.
"""

from __future__ import annotations

import gc
import logging
import threading
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

from aiohttp import web

from . import fault_routes
from .batch import parse_body
from .blobs import check_checksum, storage_error
from .decode import decoded_chunks
from .errors import ApiError
from .receive import read_body, receiving
from .state import STATE, State, json_response

__all__ = ["routes"]

log = logging.getLogger("ml_dash.server")

routes = web.RouteTableDef()


_gc_lock = threading.Lock()
_gc_holders = 0
_gc_was_enabled = False


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic GC while a batch is parsed and stored.

    A batch allocates one dict per event and keeps them all alive until it is written, which makes
    the collector walk a growing heap again and again for nothing (parsed JSON has no cycles);
    pausing it halves the cost of parsing. Counted, so overlapping batches in several threads nest.
    """
    global _gc_holders, _gc_was_enabled
    with _gc_lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0 and _gc_was_enabled:
                gc.enable()


def _store_batch(st: State, raw: bytes, encoding: str, owner: Optional[str], crash: bool = False) -> Dict[str, Any]:
    pieces = decoded_chunks(raw, encoding, st.limits.max_decoded_bytes)
    with _gc_paused():
        # 403 as soon as the header is read, before any event is looked at
        batch = parse_body(pieces, st.limits, authorize=lambda prefix: st.auth.require_write(owner, prefix))
        answer: Dict[str, Any] = st.store.ingest(batch, crash_before_commit=crash)
    if st.read_model is not None:
        st.read_model.stored(str(batch.prefix))  # the next table page shows it
    return answer


@routes.post("/api/v1/ingest")
async def ingest(request: web.Request) -> web.Response:
    st: State = request.app[STATE]
    owner = await st.run(st.auth.identify, request.headers.get("Authorization"))
    ctype = request.headers.get("Content-Type", "")
    if ctype and "json" not in ctype.lower():
        raise ApiError(415, "unsupported_media_type", "send the batch as Content-Type: application/x-ndjson")
    encoding = request.headers.get("Content-Encoding", "")
    async with st.write_slot("ingest"):
        try:
            after = await fault_routes.before_storage(request.app[STATE], "ingest")
        except fault_routes.Abort:
            return fault_routes.abort(request)
        raw = await read_body(request, st.limits.max_body_bytes, st.limits)
        crash = after is not None and after["action"] == "crash_before_commit"
        answer = await st.run(_store_batch, st, raw, encoding, owner, crash)
        if after is not None:  # drop_after_commit: stored and committed, but the client never hears
            return fault_routes.abort(request)
        return json_response(answer)


@routes.head("/api/v1/blobs/{checksum}")
async def blob_head(request: web.Request) -> web.Response:
    st: State = request.app[STATE]
    await st.run(st.auth.identify, request.headers.get("Authorization"))
    size = await st.run(st.blobs.size, check_checksum(request.match_info["checksum"]))
    if size is None:
        return web.Response(status=404)
    return web.Response(status=200, headers={"X-Blob-Size": str(size)})


@routes.put("/api/v1/blobs/{checksum}")
async def blob_put(request: web.Request) -> web.Response:
    st: State = request.app[STATE]
    await st.run(st.auth.identify, request.headers.get("Authorization"))
    checksum = check_checksum(request.match_info["checksum"])
    if request.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity"):
        raise ApiError(415, "unsupported_encoding", "blobs are sent as raw bytes (no Content-Encoding)")
    limit = st.limits.max_blob_bytes
    async with st.write_slot("blobs"):
        try:
            after = await fault_routes.before_storage(request.app[STATE], "blobs")
        except fault_routes.Abort:
            return fault_routes.abort(request)
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, "blob_too_large", f"blob is over the limit of {limit:,} bytes", limit=limit)
        size = await st.run(st.blobs.size, checksum)
        if size is not None:
            answer, status = {"checksum": checksum, "size": size, "created": False}, 200
        else:
            upload = None
            try:
                upload = st.blobs.upload(checksum, limit)
                async with receiving(request, st.limits, 1 << 20) as body:
                    async for chunk in body:
                        # Hashing a MiB takes milliseconds: hash and write in one hop to the pool, not on
                        # the loop. Measured against aiofiles (a write hop plus a hash hop per chunk): this
                        # uploads 15-22 % faster (README, "Server file I/O").
                        await st.run(upload.write, chunk)
                created = await st.run(upload.finish)
            except BaseException as exc:
                if upload is not None:
                    upload.abort()
                if isinstance(exc, OSError) and not isinstance(exc, ConnectionError):
                    log.warning("storage refused a blob upload: %s", exc)
                    raise storage_error(exc, limit) from None
                raise
            answer = {"checksum": checksum, "size": upload.size, "created": created}
            status = 201 if created else 200
        if after is not None:
            return fault_routes.abort(request)
        return json_response(answer, status)
