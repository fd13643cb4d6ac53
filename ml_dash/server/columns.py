"""A columnar ``metrics`` event (PROTOCOL.md) checked column by column and turned into rows.

The checks run per column with C-level passes (types, lengths, min/max of the timestamps); only
when a column holds something wrong does a per-row look find which rows. A problem with the
record's shape (``cols`` not an object of lists of ``n`` values, too many columns, ``ts`` not a
list of ``n``) rejects the whole record; a bad value in one row (its ``ts``, or a value nesting
too deep) rejects only that row, and the other rows are stored.
"""

from __future__ import annotations

from itertools import repeat
from typing import Any, Dict, List, Tuple, Union

from .._store._encode import ColumnRows
from .batch import depth_over

__all__ = ["RecordRejected", "expand_metrics", "TS_MAX"]

TS_MAX = 1e11  # year 5138: past it, datetime cannot render the timestamp
_TS_TYPES = frozenset((float, int))


class RecordRejected(Exception):
    """The whole record is refused (every seq it covers is consumed and reported once)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _bad_ts(ts: List[Any], now: float, bad: Dict[int, Tuple[str, str]]) -> List[Any]:
    """``ts`` with nulls as ``now``; rows whose ts is not epoch seconds go into ``bad``."""
    out = list(ts)
    for i, t in enumerate(out):
        if t is None:  # the client did not know the time of the call: store ours
            out[i] = now
        elif type(t) not in _TS_TYPES or not 0 <= t < TS_MAX:
            bad[i] = ("bad_ts", "'ts' must be epoch seconds (a number >= 0)")
    return out


def expand_metrics(
    ev: dict[str, Any], offset: int, max_fields: int, now: float, max_value_depth: int, deep: bool
) -> Tuple[Union[ColumnRows, List[dict[str, Any]]], List[Tuple[int, str, str]]]:
    """Rows ``offset ..`` of a ``metrics`` event (``n`` already checked): a ColumnRows block when
    every row is good, else the good rows as dicts with ``_ts``.

    Returns (rows to store, [(row position, code, message)] of the rows rejected). ``deep`` says
    the event nests deeply somewhere: then each value is checked against ``max_value_depth``, the
    nesting a value may have in a per-row event. Raises :class:`RecordRejected` for the record.
    """
    n = ev["n"]
    cols = ev.get("cols")
    if type(cols) is not dict:
        raise RecordRejected("bad_field", "a metrics event's 'cols' must be an object of columns")
    if len(cols) > max_fields:
        raise RecordRejected("too_many_fields", f"'cols' has {len(cols):,} columns; the limit is {max_fields:,}")
    if "_ts" in cols:
        raise RecordRejected("bad_field", "'_ts' is not a column: the timestamps go in 'ts'")
    columns = list(cols.values())
    if columns and (set(map(type, columns)) != {list} or set(map(len, columns)) != {n}):
        raise RecordRejected("bad_field", f"every column must be a list of n ({n:,}) values")
    bad: Dict[int, Tuple[str, str]] = {}
    ts = ev.get("ts")
    if ts is None:
        ts = repeat(now, n)
    elif type(ts) is not list or len(ts) != n:
        raise RecordRejected("bad_ts", f"'ts' must be a list of n ({n:,}) epoch seconds, or null")
    elif not set(map(type, ts)) <= _TS_TYPES or min(ts) < 0 or max(ts) >= TS_MAX:
        ts = _bad_ts(ts, now, bad)
    if deep:
        for col in columns:
            for i, v in enumerate(col):
                if type(v) in (dict, list) and depth_over(v, max_value_depth):
                    bad[i] = ("too_deep", f"the value nests deeper than a metric event may ({max_value_depth} levels)")
    if not bad:
        # The common case stays columns: the store writes JSONL from them without a dict per row.
        ts = ts if type(ts) is list else list(ts)
        block = ColumnRows(cols, columns, ts)
        return (block.sliced(offset, n) if offset else block), []
    keys = (*cols, "_ts")
    # One dict per row, built in C: zip the columns into row tuples, then each with the keys.
    rows = list(map(dict, map(zip, repeat(keys), zip(*columns, ts))))
    if offset:
        rows = rows[offset:]
    rejected = sorted((i, code, msg) for i, (code, msg) in bad.items() if i >= offset)
    drop = {i - offset for i, _, _ in rejected}
    return [r for i, r in enumerate(rows) if i not in drop], rejected
