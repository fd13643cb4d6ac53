"""Events (``ml_dash._events``) to wire events (``ml_dash/server/PROTOCOL.md``).

One wire event per event and seq; metric rows handed over by ``write_metrics`` take the columnar
path in ``_columns`` instead.

Every payload starts with ``{"seq":n,"kind":"..."`` (dict order is kept by orjson); the framing
and the sender rely on that to read ``seq`` and ``kind`` without parsing.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import orjson

from ml_dash._events import (
    ExperimentEvent,
    FileDeleteEvent,
    FileEvent,
    FileUpdateEvent,
    LogEvent,
    ParamsEvent,
    StatusEvent,
)
from ml_dash._values import encode_nonfinite

__all__ = ["encode_items", "encode_track_rows", "gap_event", "batch_body", "compress", "ENCODINGS", "BUILDERS"]

_dumps = orjson.dumps


def _log(seq: int, e: LogEvent) -> Dict[str, Any]:
    return {"seq": seq, "kind": "log", "ts": e.ts, "level": e.level, "message": e.message, "metadata": e.metadata}


def _params(seq: int, e: ParamsEvent) -> Dict[str, Any]:
    return {"seq": seq, "kind": "params", "ts": e.ts, "data": e.data}


def _file(seq: int, ev: FileEvent) -> Dict[str, Any]:
    e = ev.entry
    return {
        "seq": seq,
        "kind": "file",
        "ts": ev.ts,
        "id": str(e["id"]),
        "path": e.get("path") or "/",
        "filename": e["filename"],
        "checksum": e["checksum"],
        "size": e.get("sizeBytes", 0),
        "content_type": e.get("contentType"),
        "description": e.get("description"),
        "tags": list(e.get("tags") or []),
        "metadata": e.get("metadata"),
        "bindrs": list(e.get("bindrs") or []),
    }


def _file_update(seq: int, e: FileUpdateEvent) -> Dict[str, Any]:
    return {"seq": seq, "kind": "file_update", "ts": e.ts, "id": e.file_id, **e.changes}


def _file_delete(seq: int, e: FileDeleteEvent) -> Dict[str, Any]:
    return {"seq": seq, "kind": "file_delete", "ts": e.ts, "id": e.file_id}


def _experiment(seq: int, e: ExperimentEvent) -> Dict[str, Any]:
    event = {"seq": seq, "kind": "experiment", "ts": e.ts}
    event.update(e.fields)
    return event


def _status(seq: int, e: StatusEvent) -> Dict[str, Any]:
    return {"seq": seq, "kind": "status", "ts": e.ts, "status": e.status, "reason": e.reason}


#: The wire event of each event class (metric rows go through ``_columns``).
BUILDERS: Dict[type, Callable[[int, Any], Dict[str, Any]]] = {
    LogEvent: _log,
    ParamsEvent: _params,
    FileEvent: _file,
    ExperimentEvent: _experiment,
    StatusEvent: _status,
    FileDeleteEvent: _file_delete,
    FileUpdateEvent: _file_update,
}


def encode_track_rows(
    first_seq: int, topic: str, rows: Sequence[Dict[str, Any]]
) -> Tuple[List[bytes], None, List[Tuple[Any, str]]]:
    """One ``track`` wire event per entry (the user's fields plus ``_ts``, the entry's timestamp),
    seqs from ``first_seq``; returns (payloads, None: a seq each, [(bad row, why)])."""
    wire = []
    for seq, row in enumerate(rows, first_seq):
        data = dict(row)
        wire.append({"seq": seq, "kind": "track", "topic": topic, "timestamp": data.pop("_ts"), "data": data})
    payloads, bad = _serialize(first_seq, wire, [])
    return payloads, None, bad


def _has_nonfinite(value: Any) -> bool:
    t = type(value)
    if t is float:
        return value != value or value in (math.inf, -math.inf)
    if t is dict:
        return any(_has_nonfinite(v) for v in value.values())
    if t is list:
        return any(_has_nonfinite(v) for v in value)
    return False


def encode_items(first_seq: int, events: Sequence[tuple[Any, ...]]) -> Tuple[List[bytes], List[Tuple[Any, str]]]:
    """Wire events for ``events`` with seqs from ``first_seq`` on; returns (payloads, [(bad event, why)]).

    One ``orjson.dumps`` serializes the whole list and the output is cut into events: one call per
    event costs several times more (each output is a separate allocation of orjson's initial
    buffer). The cut is exact only if no event holds the text ``,{"seq":`` as JSON structure; then,
    and only then, there is one part per event, which is checked. Anything else (an event that
    cannot be encoded, such nested data) takes the per-event path. Events that fail are returned
    and take no seq.
    """
    wire, bad = [], []
    seq = first_seq
    for event in events:
        build = BUILDERS.get(type(event))
        if build is None:
            bad.append((event, f"unknown event kind {type(event).__name__}"))
            continue
        try:
            wire.append(build(seq, event))
        except Exception as exc:  # a malformed event: its own problem, not the batch's
            bad.append((event, f"{type(exc).__name__}: {exc}"))
            continue
        seq += 1
    return _serialize(first_seq, wire, bad)


def _serialize(
    first_seq: int, events: List[Dict[str, Any]], bad: List[Tuple[Any, str]]
) -> Tuple[List[bytes], List[Tuple[Any, str]]]:
    if not events:
        return [], bad
    try:
        blob = _dumps(events)
    except orjson.JSONEncodeError:
        return _one_by_one(first_seq, events, bad)
    parts = blob[1:-1].replace(b',{"seq":', b'\n{"seq":').split(b"\n")
    if len(parts) != len(events):
        return _one_by_one(first_seq, events, bad)
    if b"null" not in blob:
        return parts, bad  # no NaN or infinity anywhere
    for i, part in enumerate(parts):
        # orjson writes NaN and infinities as null: only then look closer (the protocol names them).
        if b"null" in part and _has_nonfinite(events[i]):
            parts[i] = _dumps(encode_nonfinite(events[i]))
    return parts, bad


def _one_by_one(
    first_seq: int, events: List[Dict[str, Any]], bad: List[Tuple[Any, str]]
) -> Tuple[List[bytes], List[Tuple[Any, str]]]:
    payloads: List[bytes] = []
    for event in events:
        event["seq"] = first_seq + len(payloads)
        try:
            out = _dumps(event)
        except orjson.JSONEncodeError as exc:
            bad.append((event, f"cannot encode {event.get('kind')!r} event: {exc}"))
            continue
        if b"null" in out and _has_nonfinite(event):
            out = _dumps(encode_nonfinite(event))
        payloads.append(out)
    return payloads, bad


def gap_event(seq: int, reason: str) -> bytes:
    """A ``gap`` event: tells the server this seq is lost on the client, so it consumes it."""
    return _dumps({"seq": seq, "kind": "gap", "ts": time.time(), "reason": reason})


def batch_body(session: str, prefix: str, payloads: List[bytes]) -> bytes:
    """The NDJSON body of one ingest request (header line, then one event per line)."""
    header = _dumps({"v": 1, "session": session, "prefix": prefix})
    return b"\n".join([header, *payloads]) + b"\n"


#: Encodings this client can produce, best first.
ENCODINGS = ("zstd", "gzip", "identity")


#: zstd level 1: on metric JSONL it is both faster and smaller than level 3 (measured in benchmarks/).
ZSTD_LEVEL = 1
GZIP_LEVEL = 1


def compress(body: bytes, offered: Tuple[str, ...]) -> Tuple[bytes, Optional[str]]:
    """Compress ``body`` with the best encoding the server offers; returns (data, Content-Encoding)."""
    if "zstd" in offered:
        try:
            import zstandard
        except ImportError:  # optional dependency: gzip is the fallback
            zstandard = None  # type: ignore[assignment]
        if zstandard is not None:
            # A compressor per call: they are not thread-safe, and making one costs microseconds.
            return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body), "zstd"
    if "gzip" in offered or not offered:
        # Level 1: on metric JSONL it is several times faster than 6 for a few % more bytes.
        import gzip  # only when sending, and only without zstd

        return gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0), "gzip"
    return body, None
