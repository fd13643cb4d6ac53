"""Charts from PostgreSQL: one field of a metric over a range of indices, as raw points or as
per-bucket last/min/max/n (the shapes of ``GET /api/v1/series``, PROTOCOL.md), in O(chunks + pixels).

A range of R rows in B buckets:

* R <= B: the rows' values (``raw``);
* R / B >= :data:`~._chunks.CHUNK_ROWS`/4 (a bucket spans whole chunks): buckets are groups of
  consecutive chunks, answered from the chunks' numeric summaries (``num_stats``: one small row per
  4,096 points); only the chunks cut by the two ends of the range are read. 10M rows are 2,442
  summaries, whatever the zoom;
* otherwise (a zoom): the range's values (fewer than B x CHUNK_ROWS) are read and reduced in B
  equal buckets.

A bucket's x is the index of its last row; ``last`` is the bucket's last number, ``min``/``max``
ignore NaN, ``n`` counts the rows with a number; buckets without one are left out.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._chunks import CHUNK_ROWS, MISSING, missing_mask, numeric_values

__all__ = ["column", "series_by_index", "reduce_buckets"]

_RECORD = "c.n, c.layout, c.ts, c.floats, c.ints, c.json"


def _metric(conn, prefix: str, name: str) -> Optional[Tuple[int, int]]:
    """(metric id, rows) of a metric, or None."""
    return conn.execute("SELECT m.id, m.next_index FROM metrics m JOIN experiments e ON e.id = m.experiment_id"
                        " WHERE e.prefix = %s AND m.name = %s", (prefix, name)).fetchone()


def column(conn, metric_id: int, key: str, lo: int, hi: int) -> np.ndarray:
    """Rows lo..hi of one key as float64 (:data:`MISSING` where a row has no number).

    Only that key's bytes travel: the chunks' layouts are read first (a few bytes each), then for
    each column position one query takes ``substring`` of the column bytes, which PostgreSQL reads
    from the out-of-line storage without the other columns' pages.
    """
    if hi <= lo:
        return np.empty(0)
    import orjson

    cur = conn.cursor(binary=True)
    where = " FROM metric_chunks c WHERE c.metric_id = %s AND c.first_index > %s AND c.first_index < %s"
    args = (metric_id, lo - CHUNK_ROWS, hi)
    chunks = cur.execute("SELECT c.first_index, c.n, c.layout" + where, args).fetchall()
    out = np.full(hi - lo, MISSING)
    where_kind: Dict[bytes, Tuple[str, int]] = {}
    groups: Dict[Tuple[str, int], List[int]] = {}
    sizes = {}
    for first, n, layout in chunks:
        layout = bytes(layout)
        kind = where_kind.get(layout)
        if kind is None:
            parsed = orjson.loads(layout)
            keys = parsed["keys"]
            pos = keys.index(key) if key in keys else -1
            if key == "_ts":
                kind = ("ts", 0)
            elif pos in parsed["floats"]:
                kind = ("floats", parsed["floats"].index(pos))
            elif pos in parsed["ints"]:
                kind = ("ints", parsed["ints"].index(pos))
            else:
                kind = ("json", 0) if pos >= 0 else ("absent", 0)
            where_kind[layout] = kind
        groups.setdefault(kind, []).append(first)
        sizes[first] = n
    for (kind, j), firsts in groups.items():
        if kind == "absent":
            continue
        if kind == "json":
            got = cur.execute(f"SELECT c.first_index, {_RECORD}" + where + " AND c.first_index = ANY(%s)",
                              (*args, firsts)).fetchall()
            for first, n, *record in got:
                a, b = max(lo, first), min(hi, first + n)
                if a < b:
                    out[a - lo:b - lo] = numeric_values((n, *record), key, a - first, b - first)
            continue
        got = cur.execute(f"SELECT c.first_index, substring(c.{kind} from %s * c.n * 8 + 1 for c.n * 8)" + where
                          + " AND c.first_index = ANY(%s)", (j, *args, firsts)).fetchall()
        dtype = "<i8" if kind == "ints" else "<f8"
        for first, raw in got:
            n = sizes[first]
            a, b = max(lo, first), min(hi, first + n)
            if a < b:
                out[a - lo:b - lo] = np.frombuffer(raw, dtype, count=b - a, offset=(a - first) * 8)
    return out


def _stats(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """[n, m, min, max, last] of the segments of ``values`` beginning at ``starts``."""
    present = ~missing_mask(values)
    finite = present & ~np.isnan(values)
    out = np.empty((len(starts), 5))
    out[:, 0] = np.add.reduceat(present.astype(np.int64), starts)
    out[:, 1] = np.add.reduceat(finite.astype(np.int64), starts)
    out[:, 2] = np.minimum.reduceat(np.where(finite, values, np.inf), starts)
    out[:, 3] = np.maximum.reduceat(np.where(finite, values, -np.inf), starts)
    lastpos = np.maximum.reduceat(np.where(present, np.arange(len(values)), -1), starts)
    out[:, 4] = np.where(lastpos >= 0, values[np.maximum(lastpos, 0)], np.nan)
    return out


def _combine(stats: np.ndarray, starts: np.ndarray) -> np.ndarray:
    out = np.empty((len(starts), 5))
    out[:, 0] = np.add.reduceat(stats[:, 0], starts)
    out[:, 1] = np.add.reduceat(stats[:, 1], starts)
    mins = np.where(stats[:, 1] > 0, stats[:, 2], np.inf)
    maxs = np.where(stats[:, 1] > 0, stats[:, 3], -np.inf)
    out[:, 2] = np.minimum.reduceat(mins, starts)
    out[:, 3] = np.maximum.reduceat(maxs, starts)
    lastpos = np.maximum.reduceat(np.where(stats[:, 0] > 0, np.arange(len(stats)), -1), starts)
    out[:, 4] = np.where(lastpos >= 0, stats[np.maximum(lastpos, 0), 4], np.nan)
    return out


def _numbers(arr: np.ndarray) -> List[Any]:
    """Python numbers (ints where every value is whole); non-finite as the protocol's strings."""
    finite = np.isfinite(arr)
    if arr.size and finite.all() and np.all(np.abs(arr) < 2.0 ** 53) and np.all(arr == np.floor(arr)):
        return arr.astype(np.int64).tolist()
    out = arr.tolist()
    for i in np.flatnonzero(~finite).tolist():
        v = out[i]
        out[i] = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return out


def _buckets(st: np.ndarray, xs: np.ndarray) -> Dict[str, Any]:
    keep = st[:, 0] > 0
    st, xs = st[keep], xs[keep]
    nan_only = st[:, 1] == 0
    return {"x": xs.astype(np.int64).tolist(), "last": _numbers(st[:, 4]),
            "min": _numbers(np.where(nan_only, np.nan, st[:, 2])), "max": _numbers(np.where(nan_only, np.nan, st[:, 3])),
            "n": st[:, 0].astype(np.int64).tolist()}


def reduce_buckets(values: np.ndarray, first_index: int, b: int) -> Dict[str, Any]:
    """Equal buckets over values already read (more values than buckets)."""
    count = len(values)
    starts = (np.arange(b, dtype=np.int64) * count) // b
    xs = first_index + np.r_[starts[1:], count] - 1
    return _buckets(_stats(values, starts), xs)


def series_by_index(conn, prefix: str, name: str, key: str, start: Optional[int], end: Optional[int],
                    b: int) -> Optional[Dict[str, Any]]:
    """The series of one key over indices start..end (inclusive; None: the ends); None when there
    is no such metric."""
    got = _metric(conn, prefix, name)
    if got is None:
        return None
    metric_id, rows = got
    p0 = 0 if start is None else max(0, int(start))
    p1 = rows if end is None else min(rows, int(end) + 1)
    p1 = max(p0, p1)
    count = p1 - p0
    answer: Dict[str, Any] = {"field": key, "x": "index", "total": rows, "last_index": rows - 1 if rows else None,
                              "count": count}
    if count <= b:
        y = column(conn, metric_id, key, p0, p1)
        miss = missing_mask(y)
        ys = _numbers(np.where(miss, 0.0, y)) if len(y) else []
        for i in np.flatnonzero(miss).tolist():
            ys[i] = None
        return {**answer, "mode": "raw", "points": {"x": list(range(p0, p1)), "y": ys}}
    if count // b < CHUNK_ROWS // 4:  # a zoom: buckets smaller than a chunk
        return {**answer, "mode": "buckets", "points": reduce_buckets(column(conn, metric_id, key, p0, p1), p0, b)}
    return {**answer, "mode": "buckets", "points": _from_chunks(conn, metric_id, key, p0, p1, b)}


def _from_chunks(conn, metric_id: int, key: str, p0: int, p1: int, b: int) -> Dict[str, Any]:
    rows = conn.cursor(binary=True).execute(
        "SELECT c.first_index, c.n, c.layout, c.num_stats FROM metric_chunks c WHERE c.metric_id = %s"
        " AND c.first_index > %s AND c.first_index < %s ORDER BY c.first_index",
        (metric_id, p0 - CHUNK_ROWS, p1)).fetchall()
    import orjson

    positions: Dict[bytes, int] = {}
    firsts = np.empty(len(rows), dtype=np.int64)
    lasts = np.empty(len(rows), dtype=np.int64)
    stats = np.full((len(rows), 5), np.nan)
    cut = []  # chunks the range's ends cut: read their values
    for i, (first, n, layout, num) in enumerate(rows):
        layout = bytes(layout)
        pos = positions.get(layout)
        if pos is None:
            keys = orjson.loads(layout)["keys"]
            pos = positions[layout] = keys.index(key) if key in keys else -1
        a, z = max(p0, first), min(p1, first + n)
        firsts[i], lasts[i] = a, z - 1
        if a != first or z != first + n:
            cut.append((i, a, z))
        elif pos >= 0:
            stats[i] = np.frombuffer(num, "<f8", count=5, offset=pos * 40)
        else:
            stats[i] = (0, 0, np.nan, np.nan, np.nan)
    for i, a, z in cut:
        stats[i] = _stats(column(conn, metric_id, key, a, z), np.zeros(1, dtype=np.int64))[0]
    # chunk i goes to the bucket of its first row: B buckets of (about) equal rows
    bucket = ((firsts - p0) * b) // (p1 - p0)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    st = _combine(stats, starts)
    xs = lasts[np.r_[starts[1:], len(rows)] - 1]
    return _buckets(st, xs)
