"""Metric rows and log records to JSONL bytes, in chunks, with as little Python per row as possible.

Rows arrive as dicts (the user's fields plus ``_ts``) or, from the server's columnar events, as
:class:`ColumnRows` blocks that never become dicts on the fast path. Non-finite floats become the
strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; one row orjson cannot encode never fails the
others.
"""

from __future__ import annotations

import math
from itertools import chain, repeat

import orjson

from .._values import encode_nonfinite

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Iterator, List, Sequence

__all__ = ["ColumnRows", "count_rows", "encode_lines", "encode_metric_rows", "encode_metric_parts"]

_NL = orjson.OPT_APPEND_NEWLINE
_CHUNK_ROWS = 1024  # records per dumps: bounds the copies a chunk of large log messages holds at once
_INT_RANGE = (-(2**63), 2**64 - 1)


def _sanitize(value: Any) -> Any:
    """Last resort for a row orjson refused: non-finite floats named, huge ints as strings."""
    t = type(value)
    if t is int and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
        return str(value)
    if t is dict:
        return {str(k): _sanitize(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [_sanitize(v) for v in value]
    return encode_nonfinite(value)


def _has_nonfinite(value: Any) -> bool:
    t = type(value)
    if t is float:
        return not math.isfinite(value)
    if t is dict:
        return any(_has_nonfinite(v) for v in value.values())
    if t is list:
        return any(_has_nonfinite(v) for v in value)
    return False


def encode_lines(records: Sequence[dict[str, Any]]) -> Iterator[bytes]:
    """JSONL chunks for ``records``; non-finite floats become strings; one bad record never fails the rest."""
    dumps = orjson.dumps
    for start in range(0, len(records), _CHUNK_ROWS):
        chunk = records[start : start + _CHUNK_ROWS]
        try:
            # One dumps for the chunk, its records' separators made newlines: exact when "},{"
            # occurs only between records (n - 1 times; more means a nested list of objects or a
            # string holding it). One dumps per record costs ~5x as much: each output starts as a
            # 1 KB allocation, shrunk, which fragments the heap while a chunk's outputs are alive.
            blob = dumps(chunk)
            # orjson writes NaN/inf as null: only then look closer.
            if b"null" not in blob and blob.count(b"},{") == len(chunk) - 1:
                yield blob[1:-1].replace(b"},{", b"}\n{") + b"\n"
                continue
        except orjson.JSONEncodeError:
            pass
        parts = []
        for r in chunk:
            if _has_nonfinite(r):
                r = encode_nonfinite(r)
            try:
                parts.append(dumps(r, option=_NL))
            except orjson.JSONEncodeError:
                parts.append(dumps(_sanitize(r), option=_NL, default=repr))
        yield b"".join(parts)


_FAST_CHUNK = 4096


def encode_metric_rows(rows: Sequence[Dict[str, Any]], first: int, created: str) -> Iterator[bytes]:
    """JSONL chunks of ``{"index", "data", "createdAt"}`` for metric rows, without a dict per row.

    One ``orjson.dumps`` serializes a whole chunk of rows; the output is split on ``},{``. That split
    is exact only when no row holds a nested object or a string with ``},{``: then, and only then,
    it yields exactly one part per row, which is checked. Anything else (or a non-finite float,
    which orjson writes as null) takes the per-row path of :func:`encode_lines`.
    """
    # One %-format over the whole chunk: the C formatter loops over the rows, not the interpreter.
    line = b'{"index":%d,"data":{%b},"createdAt":"' + created.encode().replace(b"%", b"%%") + b'"}\n'
    dumps = orjson.dumps
    for start in range(0, len(rows), _FAST_CHUNK):
        chunk = rows[start : start + _FAST_CHUNK]
        try:
            blob = dumps(chunk)
        except orjson.JSONEncodeError:
            blob = b"null"
        parts = blob[2:-2].split(b"},{") if b"null" not in blob else ()
        if len(parts) == len(chunk):
            first_index = start + first
            yield (line * len(parts)) % tuple(
                chain.from_iterable(zip(range(first_index, first_index + len(parts)), parts))
            )
        else:
            records = [{"index": i, "data": r, "createdAt": created} for i, r in enumerate(chunk, start + first)]
            yield from encode_lines(records)


class ColumnRows:
    """Metric rows given by columns: ``keys[j]`` of row ``i`` is ``columns[j][i]``, its ``_ts`` is ``ts[i]``."""

    __slots__ = ("keys", "columns", "ts")

    def __init__(self, keys: Iterable[str], columns: Sequence[list[Any]], ts: list[Any]):
        self.keys = tuple(keys)
        self.columns = list(columns)
        self.ts = ts

    def __len__(self) -> int:
        return len(self.ts)

    def rows(self) -> List[Dict[str, Any]]:
        """The same rows as dicts (built in C)."""
        return list(map(dict, map(zip, repeat((*self.keys, "_ts")), zip(*self.columns, self.ts))))

    def sliced(self, start: int, stop: int) -> "ColumnRows":
        return ColumnRows(self.keys, [c[start:stop] for c in self.columns], self.ts[start:stop])


def count_rows(parts: Sequence[Any]) -> int:
    """Rows in a sequence of row dicts and ColumnRows blocks."""
    if ColumnRows not in set(map(type, parts)):
        return len(parts)
    return sum(len(p) if type(p) is ColumnRows else 1 for p in parts)


def _value_texts(column: list[Any]) -> Any:
    """Each value's JSON text, from one dumps of the column split on commas; None when that
    split is not exact (a string or nested value with a comma) or a null may hide a NaN."""
    blob = orjson.dumps(column)
    if b"null" in blob:
        return None
    texts = blob[1:-1].split(b",")
    return texts if len(texts) == len(column) else None


def _encode_block(block: ColumnRows, first: int, created: str) -> Iterator[bytes]:
    for start in range(0, len(block), _FAST_CHUNK):
        part = block.sliced(start, start + _FAST_CHUNK) if len(block) > _FAST_CHUNK else block
        try:
            texts = [_value_texts(c) for c in (*part.columns, part.ts)]
        except orjson.JSONEncodeError:
            texts = [None]
        if any(t is None for t in texts):
            yield from encode_metric_rows(part.rows(), first + start, created)
            continue
        # Line i = '{"index":' i ',"data":{' k0 ':' v0_i ... '"_ts":' ts_i '},"createdAt":...}', made by
        # one %-format over the chunk: the C formatter loops over the rows, not the interpreter.
        labels = b",".join(orjson.dumps(k).replace(b"%", b"%%") + b":%b" for k in (*part.keys, "_ts"))
        line = b'{"index":%d,"data":{' + labels + b'},"createdAt":"' + created.encode().replace(b"%", b"%%") + b'"}\n'
        first_index = first + start
        yield (line * len(part)) % tuple(chain.from_iterable(zip(range(first_index, first_index + len(part)), *texts)))


def encode_metric_parts(parts: Sequence[Any], first: int, created: str) -> Iterator[bytes]:
    """JSONL for a sequence of row dicts and ColumnRows blocks, indices from ``first`` in order."""
    if ColumnRows not in set(map(type, parts)):
        yield from encode_metric_rows(parts, first, created)
        return
    run: List[Dict[str, Any]] = []
    for p in parts:
        if type(p) is ColumnRows:
            if run:
                yield from encode_metric_rows(run, first, created)
                first += len(run)
                run = []
            yield from _encode_block(p, first, created)
            first += len(p)
        else:
            run.append(p)
    if run:
        yield from encode_metric_rows(run, first, created)
