"""Series for charts from :class:`~._columns.MetricColumns`: O(pixels), not O(rows).

A query picks the rows of a range (by index, ``_ts`` or any numeric field) and answers either the
rows themselves (``raw``: the range holds at most ``buckets`` rows) or per bucket the last, min
and max value and the count (``buckets``). min and max keep every spike visible, which sampling
and LTTB do not.

How a bucket query is answered, for a range of R rows and B buckets:

* R / B >= CHUNK: buckets are whole chunks (``ceil(chunks / B)`` each), answered from the chunk
  summaries; only the partial chunks at the two ends of the range are read (at most 2 x CHUNK
  values). The cost grows with the number of chunks (rows / CHUNK) at a few nanoseconds each.
* otherwise: the R values are read and reduced in equal buckets (R < CHUNK x B, whatever the
  metric's length).

x values: ``index`` is the row index; any other name is a field of the metric (``_ts``: the wall
time the SDK adds to every row, epoch seconds). Ranges on a field use binary search and assume it
never decreases in index order (the answer says ``x_sorted``); when it does decrease, a range
query selects the rows whose x lies in the range by looking at every row, so its cost grows with
the metric. Rows without a number in the x field have no place on the chart: raw answers leave
them out; in buckets they count, and a bucket whose rows have no x at all is left out.

A bucket's x is the x of its last row that has one; ``last`` is the last number of the field in
the bucket, ``min``/``max`` ignore NaN (a bucket of only NaN has NaN min and max), ``n`` counts the
rows with a number. Buckets with no number (n = 0) are left out, so a bucket query answers at most
``buckets`` buckets.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ._columns import CHUNK, MetricColumns, missing_mask

__all__ = ["series", "increments", "metric_summary", "QueryError", "MAX_BUCKETS"]

MAX_BUCKETS = 10_000
_NAMES = {math.inf: "Infinity", -math.inf: "-Infinity"}


class QueryError(ValueError):
    """A query the data cannot answer: ``status`` 400 (a bad argument) or 404 (no such field)."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


# -- small helpers -------------------------------------------------------------------------------------


def _floats(arr: np.ndarray, strict: bool, missing: Optional[np.ndarray] = None) -> List[Any]:
    """A list of Python numbers (ints when every value is a whole number, as steps and epochs
    are); None where ``missing``; non-finite as strings when ``strict``."""
    finite = np.isfinite(arr)
    whole = arr[finite]
    if (
        whole.size
        and whole.size == arr.size - (0 if missing is None else int(missing.sum()))
        and np.all(np.abs(whole) < 2.0**53)
        and np.all(whole == np.floor(whole))
    ):
        out = np.where(finite, arr, 0).astype(np.int64).tolist()
    else:
        out = arr.tolist()
    if missing is not None:
        for i in np.flatnonzero(missing).tolist():
            out[i] = None
    if strict:
        bad = ~np.isfinite(arr)
        if missing is not None:
            bad &= ~missing
        for i in np.flatnonzero(bad).tolist():
            v = out[i]
            out[i] = "NaN" if v != v else _NAMES[v]
    return out


def _stats(y: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Summaries ``[n, m, min, max, last]`` (as in the chunk summaries) of the segments of ``y``
    that begin at ``starts`` (strictly increasing, the first 0)."""
    present = ~missing_mask(y)
    finite = present & ~np.isnan(y)
    out = np.empty((len(starts), 5))
    out[:, 0] = np.add.reduceat(present.astype(np.int64), starts)
    out[:, 1] = np.add.reduceat(finite.astype(np.int64), starts)
    out[:, 2] = np.minimum.reduceat(np.where(finite, y, np.inf), starts)
    out[:, 3] = np.maximum.reduceat(np.where(finite, y, -np.inf), starts)
    lastpos = np.maximum.reduceat(np.where(present, np.arange(len(y)), -1), starts)
    out[:, 4] = np.where(lastpos >= 0, y[np.maximum(lastpos, 0)], np.nan)
    return out


def _combine(stats: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Summaries of groups of consecutive summaries (groups begin at ``starts``)."""
    out = np.empty((len(starts), 5))
    out[:, 0] = np.add.reduceat(stats[:, 0], starts)
    out[:, 1] = np.add.reduceat(stats[:, 1], starts)
    out[:, 2] = np.minimum.reduceat(stats[:, 2], starts)
    out[:, 3] = np.maximum.reduceat(stats[:, 3], starts)
    lastpos = np.maximum.reduceat(np.where(stats[:, 0] > 0, np.arange(len(stats)), -1), starts)
    out[:, 4] = np.where(lastpos >= 0, stats[np.maximum(lastpos, 0), 4], np.nan)
    return out


def _buckets_answer(st: np.ndarray, xs: np.ndarray, x_is_index: bool, strict: bool) -> Dict[str, Any]:
    keep = st[:, 0] > 0
    if not x_is_index:
        keep &= np.isfinite(xs)
    st, xs = st[keep], xs[keep]
    nan_only = st[:, 1] == 0
    mn = np.where(nan_only, np.nan, st[:, 2])
    mx = np.where(nan_only, np.nan, st[:, 3])
    return {
        "x": xs.astype(np.int64).tolist() if x_is_index else _floats(xs, strict),
        "last": _floats(st[:, 4], strict),
        "min": _floats(mn, strict),
        "max": _floats(mx, strict),
        "n": st[:, 0].astype(np.int64).tolist(),
    }


def _raw_answer(y: np.ndarray, xs: np.ndarray, x_is_index: bool, strict: bool) -> Dict[str, Any]:
    if x_is_index:
        return {"x": xs.tolist(), "y": _floats(y, strict, missing_mask(y))}
    keep = ~missing_mask(xs) & ~np.isnan(xs)
    y, xs = y[keep], xs[keep]
    return {"x": _floats(xs, strict), "y": _floats(y, strict, missing_mask(y))}


# -- ranges ------------------------------------------------------------------------------------------------


def _position_of_x(cols: MetricColumns, x: str, value: float, side: str) -> int:
    """First position whose x is >= value ('left') or > value ('right'); x never decreases."""
    if x == "index":
        return cols.position_of_index(value, side)
    sums = cols.summaries(x)
    running_max = np.maximum.accumulate(sums[:, 3]) if len(sums) else sums[:, 3]
    c = int(np.searchsorted(running_max, value, side=side))
    lo = c * CHUNK
    hi = min(lo + CHUNK, cols.rows) if c < cols.sealed else cols.rows
    v = cols.values(x, lo, hi)
    ok = ~missing_mask(v) & ~np.isnan(v)
    hit = ok & ((v >= value) if side == "left" else (v > value))
    return lo + (int(np.argmax(hit)) if hit.any() else hi - lo)


def _x_values(cols: MetricColumns, x: str, lo: int, hi: int) -> np.ndarray:
    return cols.index(lo, hi) if x == "index" else cols.values(x, lo, hi)


def _number(value: Any, what: str) -> Optional[float]:
    if value is None or value == "":
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise QueryError(400, "bad_query", f"'{what}' must be a number, got {value!r}") from None
    if math.isnan(f):
        raise QueryError(400, "bad_query", f"'{what}' must not be NaN")
    return f


def _check(cols: MetricColumns, field: str, x: str) -> None:
    if not field:
        raise QueryError(400, "bad_query", "'field' is required")
    if cols.field(field) is None:
        raise QueryError(404, "not_found", f"the metric has no field {field!r}")
    if x != "index" and cols.field(x) is None:
        raise QueryError(
            404, "not_found", f"the metric has no field {x!r} to use as x (use 'index' or a numeric field)"
        )


# -- the queries -------------------------------------------------------------------------------------------


def series(
    cols: MetricColumns,
    field: str,
    x: str = "index",
    start: Any = None,
    end: Any = None,
    buckets: Any = 1000,
    *,
    strict: bool = False,
) -> Dict[str, Any]:
    """One field of a metric over a range, downsampled to at most ``buckets`` (see the module doc).

    ``strict``: non-finite floats as the strings "NaN", "Infinity", "-Infinity" (JSON answers).
    """
    x = x or "index"
    try:
        b = int(buckets if buckets not in (None, "") else 1000)
    except (TypeError, ValueError):
        raise QueryError(400, "bad_query", f"'buckets' must be an integer, got {buckets!r}") from None
    if not 1 <= b <= MAX_BUCKETS:
        raise QueryError(400, "bad_query", f"'buckets' must be from 1 to {MAX_BUCKETS}")
    lo_x, hi_x = _number(start, "start"), _number(end, "end")
    with cols.lock:
        _check(cols, field, x)
        answer: Dict[str, Any] = {"field": field, "x": x, "total": cols.rows, "last_index": cols.last_index}
        x_is_index = x == "index"
        if not x_is_index:
            answer["x_sorted"] = bool(cols.fields[x].sorted)
        if not x_is_index and not cols.fields[x].sorted and (lo_x is not None or hi_x is not None):
            return {**answer, **_selected(cols, field, x, lo_x, hi_x, b, strict)}
        p0 = 0 if lo_x is None else _position_of_x(cols, x, lo_x, "left")
        p1 = cols.rows if hi_x is None else _position_of_x(cols, x, hi_x, "right")
        p1 = max(p0, p1)
        count = p1 - p0
        answer["count"] = count
        if count <= b:
            y, xs = cols.values(field, p0, p1), _x_values(cols, x, p0, p1)
            return {**answer, "mode": "raw", "points": _raw_answer(y, xs, x_is_index, strict)}
        if count // b >= CHUNK:
            got = _from_chunks(cols, field, x, p0, p1, b)
            if got is not None:
                st, xs = got
                return {**answer, "mode": "buckets", "points": _buckets_answer(st, xs, x_is_index, strict)}
        y, xs = cols.values(field, p0, p1), _x_values(cols, x, p0, p1)
        return {**answer, "mode": "buckets", "points": _reduce(y, xs, x_is_index, b, strict)}


def _reduce(y: np.ndarray, xs: np.ndarray, x_is_index: bool, b: int, strict: bool) -> Dict[str, Any]:
    """Equal buckets over rows already read (more rows than buckets)."""
    count = len(y)
    starts = (np.arange(b, dtype=np.int64) * count) // b
    st = _stats(y, starts)
    if x_is_index:
        xl = xs[np.r_[starts[1:], count] - 1]
    else:
        xl = _stats(xs, starts)[:, 4]
    return _buckets_answer(st, xl, x_is_index, strict)


def _from_chunks(
    cols: MetricColumns, field: str, x: str, p0: int, p1: int, b: int
) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(bucket summaries, bucket x) from whole chunks plus the partial chunks at both ends."""
    c0 = -(-p0 // CHUNK)
    c1 = min(p1 // CHUNK, cols.sealed)
    k = c1 - c0
    if k <= 0:
        return None
    head = (p0, c0 * CHUNK) if p0 < c0 * CHUNK else None
    tail = (c1 * CHUNK, p1) if c1 * CHUNK < p1 else None
    per = -(-k // b)
    h = 1 if head else 0
    starts = np.r_[0, h + np.arange(per, k, per)].astype(np.int64)

    def segments(name: str) -> np.ndarray:
        parts = []
        if head:
            parts.append(_stats(cols.values(name, *head), np.zeros(1, dtype=np.int64)))
        parts.append(cols.summaries(name, c0, c1))
        if tail:
            parts.append(_stats(cols.values(name, *tail), np.zeros(1, dtype=np.int64)))
        return np.concatenate(parts)

    st = _combine(segments(field), starts)
    if x == "index":
        seg_last = [cols.index(head[1] - 1, head[1])] if head else []
        seg_last.append(cols.chunk_index(c0, c1)[:, 1])
        if tail:
            seg_last.append(cols.index(p1 - 1, p1))
        seg_last_x = np.concatenate(seg_last)
        xs = seg_last_x[np.r_[starts[1:], len(seg_last_x)] - 1].astype(np.float64)
    else:
        xs = _combine(segments(x), starts)[:, 4]
    return st, xs


def _selected(
    cols: MetricColumns, field: str, x: str, lo_x: Optional[float], hi_x: Optional[float], b: int, strict: bool
) -> Dict[str, Any]:
    """A range on an x that decreases somewhere: every row is looked at (cost grows with the metric)."""
    xs = cols.values(x, 0, cols.rows)
    sel = ~missing_mask(xs) & ~np.isnan(xs)
    if lo_x is not None:
        sel &= xs >= lo_x
    if hi_x is not None:
        sel &= xs <= hi_x
    pos = np.flatnonzero(sel)
    y = cols.values(field, 0, cols.rows)[pos]
    xs = xs[pos]
    out: Dict[str, Any] = {"count": len(pos)}
    if len(pos) <= b:
        return {**out, "mode": "raw", "points": _raw_answer(y, xs, False, strict)}
    return {**out, "mode": "buckets", "points": _reduce(y, xs, False, b, strict)}


def increments(
    cols: MetricColumns, field: str, x: str = "index", after: Any = -1, limit: int = 10_000, *, strict: bool = False
) -> Dict[str, Any]:
    """The raw rows whose index is > ``after`` (at most ``limit``): a live chart's next points.

    ``cursor`` is the index to pass as ``after`` next time (the last row looked at, shown or not).
    """
    x = x or "index"
    after_f = _number(after, "after")
    after_f = -1.0 if after_f is None else after_f
    with cols.lock:
        _check(cols, field, x)
        p = cols.position_of_index(after_f, "right")
        q = min(cols.rows, p + max(1, int(limit)))
        y, xs = cols.values(field, p, q), _x_values(cols, x, p, q)
        cursor = int(cols.index(q - 1, q)[0]) if q > p else (int(after_f) if after_f >= -1 else -1)
        answer = {
            "field": field,
            "x": x,
            "total": cols.rows,
            "last_index": cols.last_index,
            "count": q - p,
            "after": int(after_f),
            "cursor": cursor,
            "more": q < cols.rows,
            "mode": "raw",
            "points": _raw_answer(y, xs, x == "index", strict),
        }
        if x != "index":
            answer["x_sorted"] = bool(cols.fields[x].sorted)
        return answer


def metric_summary(name: Optional[str], cols: MetricColumns) -> Dict[str, Any]:
    """Rows, last index and per field: last value, min, max, whether it holds numbers."""
    with cols.lock:
        fields = {}
        for f in cols.fields.values():
            has = f.min <= f.max
            fields[f.name] = {
                "last": f.last,
                "min": f.min if has else None,
                "max": f.max if has else None,
                "numeric": f.numeric > 0,
                "count": f.count,
                "sorted": bool(f.sorted),
            }
        return {"name": name, "count": cols.rows, "last_index": cols.last_index, "fields": fields}
