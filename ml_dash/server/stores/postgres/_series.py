"""Charts from PostgreSQL: one field of a metric over a range, as raw points or as per-bucket
last/min/max/n, in O(chunks + pixels). The answers' shapes and rules are the read model's
(:mod:`ml_dash._readmodel._series`, whose formatting helpers this module uses); what differs is
where the numbers come from.

A range of R rows in B buckets:

* R <= B: the rows' values (``raw``);
* R / B >= :data:`CHUNK_ROWS` / 4 (a bucket spans whole chunks): buckets are groups of consecutive
  chunks, answered from the chunks' numeric summaries (``num_stats``: 40 bytes per field per chunk
  of up to 4,096 rows); only the chunks cut by the two ends of the range are read. 10M rows are
  about 2,442 summaries, whatever the zoom;
* otherwise (a zoom): the range's values (fewer than B x CHUNK_ROWS / 4) are read and reduced in B
  equal buckets.

x is the row index, ``_ts`` or a numeric field. A range on a field finds its ends through the
chunks' min/max when the field never decreases (the metric's summary says ``sorted``), else by
looking at every row (cost grows with the metric, as in the read model).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np
import orjson

from ...._readmodel._series import _buckets_answer, _combine, _raw_answer, _reduce, _stats
from ._chunks import CHUNK_ROWS, MISSING, missing_mask, numeric_values

if TYPE_CHECKING:
    import psycopg

__all__ = ["column", "chunk_stats", "series_rows", "series_by_index"]

_RECORD = "c.n, c.layout, c.ts, c.floats, c.ints, c.json"
_WHERE = " FROM metric_chunks c WHERE c.metric_id = %s AND c.first_index > %s AND c.first_index < %s"


def _kind(layout: bytes, key: str, cache: Dict[bytes, Tuple[str, int]]) -> Tuple[str, int]:
    """Where a key's values are in chunks of this layout: ("floats"|"ints", position), ("ts", 0),
    ("json", 0) or ("absent", 0)."""
    got = cache.get(layout)
    if got is None:
        parsed = orjson.loads(layout)
        keys = parsed["keys"]
        pos = keys.index(key) if key in keys else -1
        if key == "_ts":
            got = ("ts", 0)
        elif pos in parsed["floats"]:
            got = ("floats", parsed["floats"].index(pos))
        elif pos in parsed["ints"]:
            got = ("ints", parsed["ints"].index(pos))
        else:
            got = ("json", pos) if pos >= 0 else ("absent", -1)
        cache[layout] = got
    return got


def column(conn: psycopg.Connection[Any], metric_id: int, key: str, lo: int, hi: int) -> np.ndarray:
    """Rows lo..hi of one key as float64 (:data:`MISSING` where a row has no number).

    Only that key's bytes travel: the chunks' layouts are read first (a few bytes each), then for
    each column position one query takes ``substring`` of the column bytes, which PostgreSQL reads
    from the out-of-line storage without the other columns' pages.
    """
    if hi <= lo:
        return np.empty(0)
    cur = conn.cursor(binary=True)
    args = (metric_id, lo - CHUNK_ROWS, hi)
    chunks = cur.execute("SELECT c.first_index, c.n, c.layout" + _WHERE, args).fetchall()
    out = np.full(hi - lo, MISSING)
    kinds: Dict[bytes, Tuple[str, int]] = {}
    groups: Dict[Tuple[str, int], List[int]] = {}
    sizes = {}
    for first, n, layout in chunks:
        groups.setdefault(_kind(bytes(layout), key, kinds), []).append(first)
        sizes[first] = n
    for (kind, j), firsts in groups.items():
        if kind == "absent":
            continue
        if kind == "json":
            got = cur.execute(
                f"SELECT c.first_index, {_RECORD}" + _WHERE + " AND c.first_index = ANY(%s)", (*args, firsts)
            ).fetchall()
            for first, n, *record in got:
                a, b = max(lo, first), min(hi, first + n)
                if a < b:
                    out[a - lo : b - lo] = numeric_values((n, *record), key, a - first, b - first)
            continue
        column = f"substring(c.{kind} from %s * c.n * 8 + 1 for c.n * 8)"  # kind: one of _kind's names
        sql = f"SELECT c.first_index, {column}{_WHERE} AND c.first_index = ANY(%s)"
        got = cur.execute(sql, (j, *args, firsts)).fetchall()
        dtype = "<i8" if kind == "ints" else "<f8"
        for first, raw in got:
            a, b = max(lo, first), min(hi, first + sizes[first])
            if a < b:
                out[a - lo : b - lo] = np.frombuffer(raw, dtype, count=b - a, offset=(a - first) * 8)
    return out


def chunk_stats(
    conn: psycopg.Connection[Any], metric_id: int, keys: List[str], lo: int, hi: int
) -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    """(first index, rows) of the chunks that meet lo..hi, and for each key their summaries
    ``[n, m, min, max, last]`` (a chunk cut by lo or hi: over its rows inside the range)."""
    rows = (
        conn.cursor(binary=True)
        .execute(
            "SELECT c.first_index, c.n, c.layout, c.num_stats" + _WHERE + " ORDER BY c.first_index",
            (metric_id, lo - CHUNK_ROWS, hi),
        )
        .fetchall()
    )
    rows = [r for r in rows if r[0] + r[1] > lo]
    firsts = np.array([max(lo, r[0]) for r in rows], dtype=np.int64)
    lasts = np.array([min(hi, r[0] + r[1]) - 1 for r in rows], dtype=np.int64)
    out: Dict[str, np.ndarray] = {}
    positions: Dict[bytes, Dict[str, int]] = {}
    for key in keys:
        st = np.empty((len(rows), 5))
        for i, (first, n, layout, num) in enumerate(rows):
            layout = bytes(layout)
            pos = positions.get(layout)
            if pos is None:
                pos = positions[layout] = {k: j for j, k in enumerate(orjson.loads(layout)["keys"])}
            if first < lo or first + n > hi:  # cut by an end of the range
                a, b = max(lo, first), min(hi, first + n)
                st[i] = _stats(column(conn, metric_id, key, a, b), np.zeros(1, dtype=np.int64))[0]
            elif key == "_ts":  # the rows' time: summarised after the keys
                st[i] = np.frombuffer(num, "<f8", count=5, offset=len(pos) * 40)
            elif key in pos:
                st[i] = np.frombuffer(num, "<f8", count=5, offset=pos[key] * 40)
            else:
                st[i] = (0, 0, np.inf, -np.inf, np.nan)
        out[key] = st
    return firsts, lasts, out


def series_rows(
    conn: psycopg.Connection[Any], metric_id: int, field: str, x: str, p0: int, p1: int, b: int, strict: bool
) -> Dict[str, Any]:
    """The ``mode`` and ``points`` of rows p0..p1 (positions = indices) in at most ``b`` buckets."""
    x_is_index = x == "index"
    count = p1 - p0

    def xs_of(lo: int, hi: int) -> np.ndarray:
        return np.arange(lo, hi, dtype=np.int64) if x_is_index else column(conn, metric_id, x, lo, hi)

    if count <= b:
        return {
            "mode": "raw",
            "points": _raw_answer(column(conn, metric_id, field, p0, p1), xs_of(p0, p1), x_is_index, strict),
        }
    if count // b < CHUNK_ROWS // 4:
        return {
            "mode": "buckets",
            "points": _reduce(column(conn, metric_id, field, p0, p1), xs_of(p0, p1), x_is_index, b, strict),
        }
    keys = [field] if x_is_index else [field, x]
    firsts, lasts, stats = chunk_stats(conn, metric_id, keys, p0, p1)
    bucket: np.ndarray = ((firsts - p0) * b) // count  # a chunk goes to the bucket of its first row
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    st = _combine(stats[field], starts)
    if x_is_index:
        xs = lasts[np.r_[starts[1:], len(firsts)] - 1].astype(np.float64)
    else:
        xs = _combine(stats[x], starts)[:, 4]
    return {"mode": "buckets", "points": _buckets_answer(st, xs, x_is_index, strict)}


def series_by_index(
    conn: psycopg.Connection[Any],
    prefix: str,
    name: str,
    key: str,
    start: Optional[int],
    end: Optional[int],
    b: int,
    strict: bool = True,
) -> Optional[Dict[str, Any]]:
    """The series of one key over indices start..end (inclusive; None: the ends); None when there
    is no such metric. (The read model's ``series`` adds the checks and the other x.)"""
    got = conn.execute(
        "SELECT m.id, m.next_index FROM metrics m JOIN experiments e ON e.id = m.experiment_id"
        " WHERE e.prefix = %s AND m.name = %s",
        (prefix, name),
    ).fetchone()
    if got is None:
        return None
    metric_id, rows = got
    p0 = 0 if start is None else max(0, int(start))
    p1 = max(p0, rows if end is None else min(rows, int(end) + 1))
    answer = {"field": key, "x": "index", "total": rows, "last_index": rows - 1 if rows else None, "count": p1 - p0}
    return {**answer, **series_rows(conn, metric_id, key, "index", p0, p1, b, strict)}


def position_of_x(conn: psycopg.Connection[Any], metric_id: int, x: str, rows: int, value: float, side: str) -> int:
    """First row whose x is >= value ('left') or > value ('right'); x never decreases."""
    firsts, lasts, stats = chunk_stats(conn, metric_id, [x], 0, rows)
    if not len(firsts):
        return 0
    st = stats[x]
    chunk_max = np.where(st[:, 1] > 0, st[:, 3], -np.inf)
    running = np.maximum.accumulate(chunk_max)
    c = int(np.searchsorted(running, value, side=side))
    if c >= len(firsts):
        return rows
    lo, hi = int(firsts[c]), int(lasts[c]) + 1
    v = column(conn, metric_id, x, lo, hi)
    ok = ~missing_mask(v) & ~np.isnan(v)
    hit = ok & ((v >= value) if side == "left" else (v > value))
    return lo + (int(np.argmax(hit)) if hit.any() else hi - lo)
