"""Decoding a request body under limits: chunk by chunk, so nothing ever holds the whole of it.

:func:`decoded_chunks` yields the decoded body in pieces of at most 1 MiB and refuses with 413
as soon as the output passes ``max_decoded_bytes``: a zstd or gzip bomb costs one piece of
memory before it is refused. The batch parser (:mod:`.batch`) takes the pieces one at a time and
weighs each before it parses the lines in it. aiohttp's own request decompression is switched off
by the app (see :mod:`.launch`): bodies are decoded here, where the limits are.
"""

from __future__ import annotations

import zlib
from typing import Iterator, List

from .errors import ApiError

try:  # optional: zstd is advertised only when the module is there
    import zstandard as _zstd
except ImportError:  # pragma: no cover - exercised only without the extra
    _zstd = None  # type: ignore[assignment]

__all__ = ["accepted_encodings", "decoded_chunks", "too_large", "STEP"]

#: Largest piece the decoders yield.
STEP = 1 << 20
#: Largest zstd window we allocate for a client's frame (levels <= 19 stay within it).
ZSTD_MAX_WINDOW = 1 << 23


def accepted_encodings() -> List[str]:
    """What ``Content-Encoding`` the ingest route takes, best first."""
    return (["zstd"] if _zstd is not None else []) + ["gzip", "identity"]


def too_large(what: str, limit: int, code: str = "too_large") -> ApiError:
    return ApiError(413, code, f"{what} is over the limit of {limit:,} bytes", limit=limit)


def decoded_chunks(raw: bytes, content_encoding: str, limit: int) -> Iterator[bytes]:
    """The decoded body of ``raw``, in pieces of at most :data:`STEP` bytes.

    413 ``decoded_too_large`` once the output passes ``limit``, 415 for an encoding we do not take,
    400 ``bad_encoding`` for a stream that is not what it says. The encoding is checked at the call,
    the bytes as the pieces are taken.
    """
    enc = (content_encoding or "").strip().lower() or "identity"
    if enc == "identity":
        if len(raw) > limit:
            raise too_large("decoded body", limit, "decoded_too_large")
        return _slices(raw)
    if enc in ("gzip", "x-gzip"):
        return _capped(_inflate(raw), limit)
    if enc == "zstd" and _zstd is not None:
        return _capped(_unzstd(raw), limit)
    raise ApiError(
        415,
        "unsupported_encoding",
        f"Content-Encoding {content_encoding!r} is not accepted; use one of {accepted_encodings()}",
        accepted=accepted_encodings(),
    )


def _slices(raw: bytes) -> Iterator[bytes]:
    if len(raw) <= STEP:
        yield raw
        return
    for i in range(0, len(raw), STEP):
        yield raw[i : i + STEP]


def _capped(pieces: Iterator[bytes], limit: int) -> Iterator[bytes]:
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > limit:
            raise too_large("decoded body", limit, "decoded_too_large")
        yield piece


def _inflate(raw: bytes) -> Iterator[bytes]:
    """gzip (several members allowed), at most STEP bytes of output per step."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    data = raw
    try:
        while True:
            chunk = d.decompress(data, STEP)
            if chunk:
                yield chunk
            data = d.unconsumed_tail
            if d.eof:
                if not d.unused_data:
                    return
                data = d.unused_data  # a further gzip member
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            elif not data and len(chunk) < STEP:
                raise ApiError(400, "bad_encoding", "the gzip stream is truncated")
    except zlib.error as exc:
        raise ApiError(400, "bad_encoding", f"the body is not valid gzip: {exc}") from None


def _unzstd(raw: bytes) -> Iterator[bytes]:
    """zstd (several frames allowed) with a cap on the window it may allocate.

    A truncated stream decodes to its complete blocks only; the NDJSON parser then refuses a cut
    line, and a cut between lines simply stores fewer events (the answer's acked_seq says which).
    """
    try:
        dctx = _zstd.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW)
        reader = dctx.stream_reader(raw, read_across_frames=True)
        while True:
            chunk = reader.read(STEP)
            if not chunk:
                return
            yield chunk
    except _zstd.ZstdError as exc:
        raise ApiError(400, "bad_encoding", f"the body is not valid zstd: {exc}") from None
