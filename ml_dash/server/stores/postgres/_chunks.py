"""Metric rows as chunks of columns: up to :data:`CHUNK_ROWS` rows of one metric in one table row.

A planned batch gives a metric's new rows as dicts (per-row ``metric`` events) and ``ColumnRows``
blocks (columnar ``metrics`` events). They become chunks whose columns are stored by type:

* a column of only floats: ``n`` little-endian float64 (no JSON at all: a float's shortest repr
  round-trips exactly, and strict JSON never carries a non-finite float, which arrive as strings);
* a column of only integers within 64 bits: ``n`` int64;
* anything else (strings, bools, nulls, nested values, mixed types, rows lacking the key): one
  orjson object ``{key: [n values]}``, rows lacking a key listed under :data:`ABSENT`.

Each chunk carries per key ``[rows with the key, numeric rows, min, max, last value]``, so summaries
and charts read one row per chunk instead of the rows. The work per value is C-level (``set(map(type,
...))``, ``array``, numpy), which is what keeps ingest near a million points a second.
"""

from __future__ import annotations

import math
from array import array
from itertools import repeat
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import orjson

from ...._store._encode import ColumnRows

__all__ = [
    "CHUNK_ROWS",
    "Chunk",
    "chunks_of",
    "decode_rows",
    "ABSENT",
    "combine_stats",
    "numeric_column",
    "numeric_values",
    "MISSING",
    "missing_mask",
    "summarize",
]

CHUNK_ROWS = 4096
ABSENT = "\u0000absent"
_INT64 = (-(2**63), 2**63 - 1)
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_NUMERIC = (int, float)


_MISSING_BITS = np.uint64(0x7FF8DEADBEEF0001)
#: A row without a number in a field: a quiet NaN with a payload of its own, so a stored NaN (a
#: real value) and "no value" stay apart (the same sentinel as the local read model's).
MISSING = np.array([_MISSING_BITS], dtype=np.uint64).view(np.float64)[0]
_NUMBERS = frozenset((float, int, bool))


def missing_mask(values: np.ndarray) -> np.ndarray:
    return values.view(np.uint64) == _MISSING_BITS


def _text_number(v: str) -> Optional[float]:
    f = _NONFINITE.get(v)
    if f is not None:
        return f
    body = v[1:] if v[:1] == "-" else v
    return float(v) if body.isdigit() and body.isascii() else None  # an integer beyond 64 bits


def numeric_column(col: list[Any], absent: Optional[List[int]] = None) -> np.ndarray:
    """A column as float64: numbers as they are, "NaN"/"Infinity" strings as floats, anything
    else (null, text, nested, a row without the key) as :data:`MISSING`."""
    if not absent and set(map(type, col)) <= _NUMBERS:
        return np.array(col, dtype=np.float64)
    out: np.ndarray = np.empty(len(col), dtype=np.float64)
    for i, v in enumerate(col):
        t = type(v)
        if t is float or t is int or t is bool:
            out[i] = v
        elif t is str:
            f = _text_number(v)
            out[i] = MISSING if f is None else f
        else:
            out[i] = MISSING
    if absent:
        out[absent] = MISSING
    return out


def summarize(values: np.ndarray) -> np.ndarray:
    """[rows with a number, non-NaN numbers, min, max, last number] of a float64 column."""
    present = ~missing_mask(values)
    finite = present & ~np.isnan(values)
    n = int(present.sum())
    out = np.array([0.0, 0.0, np.inf, -np.inf, np.nan])  # min/max of nothing: +inf/-inf, as the read model's
    out[0], out[1] = n, int(finite.sum())
    if out[1]:
        out[2], out[3] = values[finite].min(), values[finite].max()
    if n:
        out[4] = values[np.flatnonzero(present)[-1]]
    return out


def _json_number(v: float) -> Any:
    if math.isfinite(v):
        return v
    return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")


class Chunk:
    """One chunk ready for COPY: see the module doc and ``migrations/0001_initial.sql``."""

    __slots__ = ("n", "keys", "ts", "float_keys", "floats", "int_keys", "ints", "json", "stats", "num_stats", "fields")

    def __init__(
        self,
        keys: Sequence[str],
        columns: Sequence[list[Any]],
        ts: list[Any],
        absent: Optional[Dict[str, List[int]]] = None,
    ):
        from ...._readmodel._numeric import column_of

        n = len(ts)
        self.n = n
        self.keys = list(keys)
        ts_arr = np.array(ts, dtype=np.float64)
        self.ts = ts_arr.tobytes()
        self.float_keys: List[str] = []
        self.int_keys: List[str] = []
        floats: List[bytes] = []
        ints: List[bytes] = []
        other: Dict[str, Any] = {}
        stats: Dict[str, list[Any]] = {}
        nums = np.empty((len(self.keys) + 1, 5))
        #: (key, float64 values, rows with a non-null value, last non-null value): the metric's
        #: field summaries are updated from these (FieldInfo.update of the read model)
        self.fields = []
        for j, (key, col) in enumerate(zip(self.keys, columns)):
            kinds = set(map(type, col))
            gone = absent.get(key) if absent else None
            if gone is None and kinds == {float}:
                arr = np.array(col, dtype=np.float64)
                floats.append(arr.tobytes())
                self.float_keys.append(key)
                lo, hi = float(arr.min()), float(arr.max())
                stats[key] = [n, n, lo, hi, col[-1]]
                nums[j] = (n, n, lo, hi, col[-1])
                self.fields.append((key, arr, n, col[-1]))
                continue
            if gone is None and kinds == {int}:
                lo, hi = min(col), max(col)
                if _INT64[0] <= lo and hi <= _INT64[1]:
                    ints.append(array("q", col).tobytes())
                    self.int_keys.append(key)
                    stats[key] = [n, n, lo, hi, col[-1]]
                    nums[j] = (n, n, lo, hi, col[-1])
                    self.fields.append((key, np.array(col, dtype=np.float64), n, col[-1]))
                    continue
            other[key] = col
            stats[key] = _json_stats(col, gone)
            arr, nonnull, last = column_of(col)  # an absent key reads as null there
            if gone:
                arr[gone] = MISSING
            nums[j] = summarize(arr)
            self.fields.append((key, arr, nonnull, last))
        nums[len(self.keys)] = summarize(ts_arr)  # the rows' time, last
        if n:
            self.fields.append(("_ts", ts_arr, n, ts[-1]))
        self.num_stats = nums.tobytes()
        self.floats = b"".join(floats)
        self.ints = b"".join(ints)
        if absent:
            other[ABSENT] = absent
        self.json = orjson.dumps(other) if other else None
        self.stats = stats

    def copy_row(self, metric_id: int, first_index: int, created: float) -> tuple[Any, ...]:
        pos = {k: i for i, k in enumerate(self.keys)}
        layout = {
            "keys": self.keys,
            "floats": [pos[k] for k in self.float_keys],
            "ints": [pos[k] for k in self.int_keys],
        }
        return (
            metric_id,
            first_index,
            self.n,
            created,
            orjson.dumps(layout),
            self.ts,
            self.floats,
            self.ints,
            self.json,
            orjson.dumps(self.stats),
            self.num_stats,
        )


def _json_stats(col: list[Any], absent: Optional[List[int]]) -> list[Any]:
    """[rows with the key, numeric rows, min, max, last value] of a column of any JSON values."""
    skip = set(absent) if absent else ()
    present = len(col) - len(skip)
    nums = []
    last = None
    for i, v in enumerate(col):
        if i in skip:
            continue
        last = v
        t = type(v)
        if t is float or t is int:
            nums.append(v)
        elif t is str and v in _NONFINITE:
            nums.append(_NONFINITE[v])
    finite = [v for v in nums if v == v]
    lo = _json_number(min(finite)) if finite else None
    hi = _json_number(max(finite)) if finite else None
    return [present, len(nums), lo, hi, last]


def combine_stats(a: Optional[list[Any]], b: list[Any]) -> list[Any]:
    """The stats of two runs of rows, ``a`` before ``b`` (either may lack numbers)."""
    if a is None:
        return list(b)

    def num(v: Any) -> Any:
        return _NONFINITE[v] if type(v) is str else v

    lo = [num(v) for v in (a[2], b[2]) if v is not None]
    hi = [num(v) for v in (a[3], b[3]) if v is not None]
    return [
        a[0] + b[0],
        a[1] + b[1],
        _json_number(min(lo)) if lo else None,
        _json_number(max(hi)) if hi else None,
        b[4] if b[0] else a[4],
    ]


def _from_dicts(rows: List[dict[str, Any]]) -> Chunk:
    shapes = set(map(tuple, map(dict.keys, rows)))
    if len(shapes) == 1:
        keys = [k for k in next(iter(shapes)) if k != "_ts"]
        columns = [list(map(dict.get, rows, repeat(k))) for k in keys]
        return Chunk(keys, columns, list(map(dict.get, rows, repeat("_ts"))))
    every: Dict[str, None] = {}  # every key, in first-seen order
    for shape in sorted(shapes, key=lambda s: -len(s)):
        every.update(dict.fromkeys(shape))
    every.pop("_ts", None)
    absent: Dict[str, List[int]] = {}
    columns = []
    for k in every:
        col = list(map(dict.get, rows, repeat(k)))
        missing = [i for i, r in enumerate(rows) if k not in r]
        if missing:
            absent[k] = missing
        columns.append(col)
    return Chunk(list(every), columns, list(map(dict.get, rows, repeat("_ts"))), absent)


def chunks_of(parts: Sequence[Any]) -> Iterator[Chunk]:
    """Chunks of at most CHUNK_ROWS rows from a metric's planned rows (dicts and ColumnRows blocks),
    in order. Consecutive blocks with the same keys share chunks."""
    keys: Optional[Tuple[str, ...]] = None
    cols: List[list[Any]] = []
    ts: List[Any] = []
    dicts: List[dict[str, Any]] = []

    def flush_columns() -> Iterator[Chunk]:
        nonlocal keys, cols, ts
        if keys is not None and ts:
            yield Chunk(keys, cols, ts)
        keys, cols, ts = None, [], []

    def flush_dicts() -> Iterator[Chunk]:
        nonlocal dicts
        for a in range(0, len(dicts), CHUNK_ROWS):
            yield _from_dicts(dicts[a : a + CHUNK_ROWS])
        dicts = []

    for part in parts:
        if type(part) is ColumnRows:
            yield from flush_dicts()
            if part.keys != keys:
                yield from flush_columns()
                keys, cols = part.keys, [[] for _ in part.keys]
            pos = 0
            while pos < len(part):
                take = min(CHUNK_ROWS - len(ts), len(part) - pos)
                for have, col in zip(cols, part.columns):
                    have.extend(col[pos : pos + take] if take < len(col) or pos else col)
                ts.extend(part.ts[pos : pos + take] if take < len(part.ts) or pos else part.ts)
                pos += take
                if len(ts) >= CHUNK_ROWS:
                    k = keys
                    yield from flush_columns()
                    keys, cols = k, [[] for _ in k]
        else:
            if ts:
                yield from flush_columns()
            dicts.append(part)
    yield from flush_dicts()
    yield from flush_columns()


def _columns(
    record: tuple[Any, ...], lo: int, hi: int
) -> Tuple[List[str], List[list[Any]], List[float], Dict[str, List[int]]]:
    """(keys, columns, ts, absent) of rows lo..hi of a stored chunk
    (record: n, layout, ts, floats, ints, json)."""
    n, layout, ts, floats, ints, js = record
    layout = orjson.loads(layout)
    keys = layout["keys"]
    float_keys = [keys[i] for i in layout["floats"]]
    int_keys = [keys[i] for i in layout["ints"]]
    by_key: Dict[str, list[Any]] = {}
    for i, k in enumerate(float_keys):
        by_key[k] = np.frombuffer(floats, "<f8", count=hi - lo, offset=(i * n + lo) * 8).tolist()
    for i, k in enumerate(int_keys):
        by_key[k] = np.frombuffer(ints, "<i8", count=hi - lo, offset=(i * n + lo) * 8).tolist()
    absent: Dict[str, List[int]] = {}
    if js is not None:
        other = orjson.loads(js)
        gone = other.pop(ABSENT, None) or {}
        for k, col in other.items():
            by_key[k] = col[lo:hi]
        for k, offs in gone.items():
            offs = [o - lo for o in offs if lo <= o < hi]
            if offs:
                absent[k] = offs
    ts_list = np.frombuffer(ts, "<f8", count=hi - lo, offset=lo * 8).tolist()
    return list(keys), [by_key[k] for k in keys], ts_list, absent


def numeric_values(
    record: tuple[Any, ...], key: str, lo: int, hi: int, layouts: Optional[dict[bytes, Any]] = None
) -> np.ndarray:
    """Rows lo..hi of one key of a stored chunk as float64 (see :func:`numeric_column`);
    ``key`` "_ts" is the rows' time. ``layouts`` caches parsed layouts between calls."""
    n, layout, ts, floats, ints, js = record
    if key == "_ts":
        return np.frombuffer(ts, "<f8", count=hi - lo, offset=lo * 8).copy()
    info = None if layouts is None else layouts.get(bytes(layout))
    if info is None:
        parsed = orjson.loads(layout)
        keys = parsed["keys"]
        info = (
            {keys[i]: j for j, i in enumerate(parsed["floats"])},
            {keys[i]: j for j, i in enumerate(parsed["ints"])},
            set(keys),
        )
        if layouts is not None:
            layouts[bytes(layout)] = info
    fpos, ipos, keys = info
    if key in fpos:
        return np.frombuffer(floats, "<f8", count=hi - lo, offset=(fpos[key] * n + lo) * 8).copy()
    if key in ipos:
        return np.frombuffer(ints, "<i8", count=hi - lo, offset=(ipos[key] * n + lo) * 8).astype(np.float64)
    if key not in keys or js is None:
        return np.full(hi - lo, MISSING)
    other = orjson.loads(js)
    gone = [o - lo for o in (other.get(ABSENT) or {}).get(key, []) if lo <= o < hi]
    return numeric_column(other[key][lo:hi], gone)


def decode_rows(record: tuple[Any, ...], lo: int, hi: int) -> List[dict[str, Any]]:
    """The data dicts (the user's fields + ``_ts``) of rows lo..hi of a stored chunk."""
    keys, columns, ts, absent = _columns(record, lo, hi)
    rows = list(map(dict, map(zip, repeat((*keys, "_ts")), zip(*columns, ts))))
    for k, offs in absent.items():
        for o in offs:
            del rows[o][k]
    return rows
