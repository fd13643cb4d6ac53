"""Queue items (see ``ml_dash._pipeline``) to wire events (see ``ml_dash/server/PROTOCOL.md``).

Every payload starts with ``{"seq":n,"kind":"..."`` (dict order is kept by orjson); the framing
and the sender rely on that to read ``seq`` and ``kind`` without parsing.
"""

from __future__ import annotations

import gzip
import time
from typing import Any, Dict, List, Optional, Tuple

import orjson

from ml_dash._values import encode_nonfinite

__all__ = ["encode_item", "gap_event", "batch_body", "compress", "ENCODINGS"]

_dumps = orjson.dumps


def _metric(seq: int, item: tuple) -> Dict[str, Any]:
    data = dict(item[2])
    ts = data.pop("_ts", None)
    return {"seq": seq, "kind": "metric", "ts": ts, "name": item[1], "data": data}


def _log(seq: int, item: tuple) -> Dict[str, Any]:
    _, ts, level, message, metadata = item
    return {"seq": seq, "kind": "log", "ts": ts, "level": level, "message": message, "metadata": metadata}


def _params(seq: int, item: tuple) -> Dict[str, Any]:
    return {"seq": seq, "kind": "params", "ts": item[1], "data": item[2]}


def _file(seq: int, item: tuple) -> Dict[str, Any]:
    e = item[2]
    return {
        "seq": seq, "kind": "file", "ts": item[1], "id": str(e["id"]), "path": e.get("path") or "/",
        "filename": e["filename"], "checksum": e["checksum"], "size": e.get("sizeBytes", 0),
        "content_type": e.get("contentType"), "description": e.get("description"),
        "tags": list(e.get("tags") or []), "metadata": e.get("metadata"),
    }


def _experiment(seq: int, item: tuple) -> Dict[str, Any]:
    event = {"seq": seq, "kind": "experiment", "ts": item[1]}
    event.update(item[2])
    return event


def _status(seq: int, item: tuple) -> Dict[str, Any]:
    return {"seq": seq, "kind": "status", "ts": item[1], "status": item[2], "reason": item[3]}


_BUILDERS = {"m": _metric, "l": _log, "p": _params, "f": _file, "e": _experiment, "s": _status}


def encode_item(seq: int, item: tuple) -> bytes:
    """The wire event of one queue item as compact JSON; raises ValueError for an item it cannot encode."""
    build = _BUILDERS.get(item[0])
    if build is None:
        raise ValueError(f"unknown queue item kind {item[0]!r}")
    event = build(seq, item)
    try:
        out = _dumps(event)
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot encode {item[0]!r} event: {exc}") from None
    # orjson writes NaN and infinities as null; only then look closer (the protocol names them).
    if b"null" in out:
        out = _dumps(encode_nonfinite(event))
    return out


def gap_event(seq: int, reason: str) -> bytes:
    """A ``gap`` event: tells the server this seq is lost on the client, so it consumes it."""
    return _dumps({"seq": seq, "kind": "gap", "ts": time.time(), "reason": reason})


def batch_body(session: str, prefix: str, payloads: List[bytes]) -> bytes:
    """The NDJSON body of one ingest request (header line, then one event per line)."""
    header = _dumps({"v": 1, "session": session, "prefix": prefix})
    return b"\n".join([header, *payloads]) + b"\n"


#: Encodings this client can produce, best first.
ENCODINGS = ("zstd", "gzip", "identity")


def compress(body: bytes, offered: Tuple[str, ...]) -> Tuple[bytes, Optional[str]]:
    """Compress ``body`` with the best encoding the server offers; returns (data, Content-Encoding)."""
    if "zstd" in offered:
        try:
            import zstandard
        except ImportError:  # optional dependency: gzip is the fallback
            zstandard = None
        if zstandard is not None:
            # A compressor per call: they are not thread-safe, and making one costs microseconds.
            return zstandard.ZstdCompressor(level=3).compress(body), "zstd"
    if "gzip" in offered or not offered:
        # Level 1: on metric JSONL it is several times faster than 6 for a few % more bytes.
        return gzip.compress(body, compresslevel=1, mtime=0), "gzip"
    return body, None
