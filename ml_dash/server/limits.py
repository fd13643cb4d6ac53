"""Size limits, and reading/decoding a request body without ever holding more than a limit.

Bodies are read from the socket in chunks and refused as soon as they pass ``max_body_bytes``.
Compressed bodies are inflated incrementally with an output cap, so a zstd or gzip bomb costs at
most ``max_decoded_bytes`` of memory (plus one chunk) before it is refused with 413.
aiohttp's own request decompression is switched off by the app (see ``app.make_runner``): we decode
here, where the limits are.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from typing import Any, Dict, List

from .errors import ApiError

try:  # optional: zstd is advertised only when the module is there
    import zstandard as _zstd
except ImportError:  # pragma: no cover - exercised only without the extra
    _zstd = None

__all__ = ["Limits", "accepted_encodings", "read_body", "decode_body"]

_MiB = 1024 * 1024
_STEP = 1 << 20  # output chunk of the incremental decoders
#: Largest zstd window we allocate for a client's frame (levels <= 19 stay within it).
ZSTD_MAX_WINDOW = 1 << 23


@dataclass(frozen=True)
class Limits:
    """Every size limit of the server; all are advertised in ``GET /api/v1/info``."""

    max_body_bytes: int = 8 * _MiB
    max_decoded_bytes: int = 64 * _MiB
    max_event_bytes: int = 1 * _MiB
    #: Events per batch, counting each row of a columnar ``metrics`` event (each takes a seq).
    max_events_per_batch: int = 100_000
    #: Rows (``n``) of one columnar ``metrics`` event; the event as a whole stays within max_event_bytes.
    max_event_rows: int = 10_000
    max_fields: int = 1000
    max_name_bytes: int = 255
    max_blob_bytes: int = 5 * 1024 * _MiB
    max_page: int = 10_000
    #: Ingest/blob requests handled at once; more are answered 503 with Retry-After.
    max_concurrent_writes: int = 16

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def accepted_encodings() -> List[str]:
    """What ``Content-Encoding`` the ingest route takes, best first."""
    return (["zstd"] if _zstd is not None else []) + ["gzip", "identity"]


def too_large(what: str, limit: int, code: str = "too_large") -> ApiError:
    return ApiError(413, code, f"{what} is over the limit of {limit:,} bytes", limit=limit)


async def read_body(request, limit: int) -> bytes:
    """The raw body, refused with 413 once it passes ``limit`` (before reading it all when declared)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large("request body", limit, "body_too_large")
    chunks = []
    total = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        total += len(chunk)
        if total > limit:
            raise too_large("request body", limit, "body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_encoding(header: str) -> str:
    enc = (header or "").strip().lower()
    return enc or "identity"


def decode_body(raw: bytes, content_encoding: str, limit: int) -> bytes:
    """Decode ``raw`` per its Content-Encoding; 413 once the output passes ``limit``, 415 if unknown."""
    enc = _parse_encoding(content_encoding)
    if enc == "identity":
        if len(raw) > limit:
            raise too_large("decoded body", limit, "decoded_too_large")
        return raw
    if enc in ("gzip", "x-gzip"):
        return _inflate(raw, limit)
    if enc == "zstd" and _zstd is not None:
        return _unzstd(raw, limit)
    raise ApiError(
        415,
        "unsupported_encoding",
        f"Content-Encoding {content_encoding!r} is not accepted; use one of {accepted_encodings()}",
        accepted=accepted_encodings(),
    )


def _inflate(raw: bytes, limit: int) -> bytes:
    """gzip (several members allowed) with a cap on the output."""
    out: List[bytes] = []
    total = 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = raw
    try:
        while True:
            chunk = d.decompress(data, _STEP)
            total += len(chunk)
            if total > limit:
                raise too_large("decoded body", limit, "decoded_too_large")
            out.append(chunk)
            data = d.unconsumed_tail
            if d.eof:
                if not d.unused_data:
                    break
                data = d.unused_data  # a further gzip member
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif not data and len(chunk) < _STEP:
                raise ApiError(400, "bad_encoding", "the gzip stream is truncated")
    except zlib.error as exc:
        raise ApiError(400, "bad_encoding", f"the body is not valid gzip: {exc}") from None
    return b"".join(out)


def _unzstd(raw: bytes, limit: int) -> bytes:
    """zstd (several frames allowed) with a cap on the output and on the window it may allocate.

    A truncated stream decodes to its complete blocks only; the NDJSON parser then refuses a cut
    line, and a cut between lines simply stores fewer events (the answer's acked_seq says which).
    """
    out: List[bytes] = []
    total = 0
    try:
        dctx = _zstd.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        reader = dctx.stream_reader(raw, read_across_frames=True)
        while True:
            chunk = reader.read(_STEP)
            if not chunk:
                break
            total += len(chunk)
            if total > limit:
                raise too_large("decoded body", limit, "decoded_too_large")
            out.append(chunk)
    except _zstd.ZstdError as exc:
        raise ApiError(400, "bad_encoding", f"the body is not valid zstd: {exc}") from None
    return b"".join(out)
