"""Columnar ``metrics`` records: one metric's rows as one wire event covering ``n`` seqs.

A record (PROTOCOL.md, kind ``metrics``) is
``{"seq":s,"kind":"metrics","n":N,"name":...,"ts":[...],"cols":{"loss":[...],...}}`` and stands
for seqs ``s .. s+N-1``, one per row in order. Every row of a record has the same key set, so a
field missing from a row and a field that is None stay distinct: a change of key set starts a
new record. Records hold at most :data:`MAX_ROWS` rows and are cut in halves until they are at
most :data:`MAX_RECORD_BYTES`, well under the server's ``max_event_bytes``.

Why columns: the per-row work left is one key-set comparison and C-level passes (``itemgetter``,
``zip``); one ``orjson.dumps`` per record of up to a thousand rows, and column names once per
record on the wire instead of once per row.
"""

from __future__ import annotations

import math
from itertools import compress
from operator import itemgetter, ne
from typing import Any, Dict, List, Optional, Tuple

import orjson

from ml_dash._values import encode_nonfinite

__all__ = ["encode_metric_rows", "slice_record", "MAX_ROWS", "MAX_RECORD_BYTES"]

#: Rows per record: big enough that per-record costs vanish, small enough that a record refused
#: as a whole (then split by the client) is cheap to resend.
MAX_ROWS = 1024
#: A record over this many bytes is cut in halves (the server's default max_event_bytes is 1 MiB).
MAX_RECORD_BYTES = 256 * 1024

_dumps = orjson.dumps


def _has_nonfinite(value: Any) -> bool:
    t = type(value)
    if t is float:
        return value != value or value in (math.inf, -math.inf)
    if t is dict:
        return any(map(_has_nonfinite, value.values()))
    if t is list:
        return any(map(_has_nonfinite, value))
    return False


def _columns(rows: List[Dict[str, Any]]) -> Optional[Dict[str, list[Any]]]:
    """The rows as columns, or None when they do not all have the first row's key set.

    Same size and every key of the first row present means the same key set; both are checked
    in C (``map(len)``, and ``itemgetter`` raising KeyError), with no Python step per row.
    """
    keys = list(rows[0])
    if set(map(len, rows)) != {len(keys)}:
        return None
    try:
        return {k: list(map(itemgetter(k), rows)) for k in keys}
    except KeyError:
        return None


def _runs(rows: List[Dict[str, Any]]) -> List[Tuple[int, int]]:
    """(start, end) of the runs of rows sharing one key set (a rarer, slower look)."""
    keys = list(map(dict.keys, rows))
    cuts = [0, *compress(range(1, len(rows)), map(ne, keys[1:], keys[:-1])), len(rows)]  # dict_keys compare as sets
    return list(zip(cuts, cuts[1:]))


def _record(seq: int, name: Optional[str], n: int, cols: Dict[str, list[Any]]) -> Dict[str, Any]:
    ts = cols.pop("_ts", None)
    return {"seq": seq, "kind": "metrics", "n": n, "name": name, "ts": ts, "cols": cols}


def _dump(record: Dict[str, Any]) -> bytes:
    out = _dumps(record)
    # orjson writes NaN and infinities as null: look closer only when there are more nulls than
    # the record's own (a null name or ts); the protocol names them as strings.
    known = (record["name"] is None) + (record["ts"] is None)
    if out.count(b"null") > known and (_has_nonfinite(record["cols"]) or _has_nonfinite(record["ts"])):
        out = _dumps(encode_nonfinite(record))
    return out


def _encode(
    seq: int,
    name: Optional[str],
    rows: List[Dict[str, Any]],
    payloads: List[bytes],
    counts: List[int],
    bad: List[Tuple[Any, str]],
    cols: Optional[Dict[str, list[Any]]] = None,
) -> int:
    """Append the records of ``rows`` (one key set; ``cols`` if already made) from ``seq`` on;
    returns the next seq."""
    try:
        out = _dump(_record(seq, name, len(rows), cols or _columns(rows)))  # type: ignore[arg-type]  # one key set: not None
    except (orjson.JSONEncodeError, TypeError) as exc:
        if len(rows) == 1:  # one row that cannot be encoded: it takes no seq
            bad.append((rows[0], f"cannot encode metric row: {exc}"))
            return seq
        out = None
    if out is not None and (len(out) <= MAX_RECORD_BYTES or len(rows) == 1):
        payloads.append(out)
        counts.append(len(rows))
        return seq + len(rows)
    # Too big, or a row in it cannot be encoded: halves, down to the culprit.
    mid = len(rows) // 2
    seq = _encode(seq, name, rows[:mid], payloads, counts, bad)
    return _encode(seq, name, rows[mid:], payloads, counts, bad)


def encode_metric_rows(
    first_seq: int, name: Optional[str], rows: List[Dict[str, Any]]
) -> Tuple[List[bytes], List[int], List[Tuple[Any, str]]]:
    """Columnar records for one metric's rows (the user's fields plus ``_ts``), seqs from ``first_seq``.

    Returns (payloads, rows per payload, [(bad row, why)]); a row that cannot be encoded takes no
    seq, so the seqs used are ``first_seq .. first_seq + sum(counts) - 1``.
    """
    payloads: List[bytes] = []
    counts: List[int] = []
    bad: List[Tuple[Any, str]] = []
    seq = first_seq
    for start in range(0, len(rows), MAX_ROWS):
        part = rows[start : start + MAX_ROWS]
        cols = _columns(part)
        if cols is not None:  # one key set: the common case
            seq = _encode(seq, name, part, payloads, counts, bad, cols)
            continue
        for a, b in _runs(part):
            seq = _encode(seq, name, part[a:b], payloads, counts, bad)
    return payloads, counts, bad


def slice_record(payload: bytes, lo: int, hi: int) -> Optional[bytes]:
    """The record for seqs ``lo .. hi`` of the columnar record ``payload`` (None if it cannot be read).

    Used rarely: to split a record the server refused as a whole, and to quarantine single rows.
    """
    try:
        rec = orjson.loads(payload)
        first, n = rec["seq"], rec["n"]
        a, b = lo - first, hi - first + 1
        if not 0 <= a < b <= n:
            return None
        ts = rec.get("ts")
        out = {
            "seq": lo,
            "kind": "metrics",
            "n": b - a,
            "name": rec.get("name"),
            "ts": ts[a:b] if isinstance(ts, list) else ts,
            "cols": {k: v[a:b] for k, v in rec["cols"].items()},
        }
        return _dumps(out)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, KeyError, TypeError, AttributeError):
        return None
