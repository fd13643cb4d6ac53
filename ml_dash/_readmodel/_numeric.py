"""How one field's values become a float64 column, and what is kept of a field as a whole.

A value is a number (bools as 0/1, the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` as
those floats, integers stored as decimal strings as their value) or :data:`MISSING` where the row
has no number. Chunks of a column are summarised as ``[n, m, min, max, last]`` (see
:func:`chunk_stats`); :class:`FieldInfo` holds the whole-metric figures.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .._values import decode_nonfinite, encode_nonfinite

__all__ = ["MISSING", "FieldInfo", "chunk_stats", "column_of", "missing_mask"]

_MISSING_BITS = np.uint64(0x7FF8DEADBEEF0001)
#: The value of a row that has no number in a field: a quiet NaN with a payload of its own, so a
#: stored NaN (a real value) and "no value" stay apart.
MISSING = np.array([_MISSING_BITS], dtype=np.uint64).view(np.float64)[0]
_MISSING_PY = float(MISSING)

_NONE = type(None)
_NUMERIC_TYPES = frozenset((float, int, bool, _NONE))
_NONFINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_MAX_TEXT = 200  # characters of a string field kept as its last value


def missing_mask(values: np.ndarray) -> np.ndarray:
    """True where a column holds :data:`MISSING`."""
    return values.view(np.uint64) == _MISSING_BITS


def chunk_stats(block: np.ndarray) -> np.ndarray:
    """Summaries ``[n, m, min, max, last]`` of each row of a (chunks x CHUNK) block of values."""
    k = block.shape[0]
    present = ~missing_mask(block)
    finite = present & ~np.isnan(block)
    out = np.empty((k, 5), dtype=np.float64)
    out[:, 0] = present.sum(axis=1)
    out[:, 1] = finite.sum(axis=1)
    out[:, 2] = np.where(finite, block, np.inf).min(axis=1)
    out[:, 3] = np.where(finite, block, -np.inf).max(axis=1)
    lastpos = block.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
    out[:, 4] = np.where(out[:, 0] > 0, block[np.arange(k), lastpos], np.nan)
    return out


def _number_text(v: str) -> Optional[float]:
    f = _NONFINITE.get(v)
    if f is not None:
        return f
    body = v[1:] if v[:1] == "-" else v
    if body.isdigit() and body.isascii():  # an integer beyond 64 bits, stored as its digits
        return float(v)
    return None


def column_of(vals: List[Any]) -> Tuple[np.ndarray, int, Any]:
    """(float64 column, rows with a non-null value, the last non-null value or _NONE)."""
    types = set(map(type, vals))
    if types <= _NUMERIC_TYPES:
        arr = np.array(vals, dtype=np.float64)
        nonnull = len(vals)
        if _NONE in types:
            none = np.equal(np.array(vals, dtype=object), None)
            arr[none] = MISSING
            nonnull -= int(none.sum())
            if not nonnull:
                return arr, 0, _NONE
            return arr, nonnull, vals[len(vals) - 1 - int(np.argmax(~none[::-1]))]
        return arr, nonnull, vals[-1]
    out: List[float] = []
    nonnull, last = 0, _NONE
    for v in vals:
        t = type(v)
        if t is float or t is int or t is bool:
            out.append(v)
        elif v is None:
            out.append(_MISSING_PY)
            continue
        elif t is str:
            f = _number_text(v)
            out.append(_MISSING_PY if f is None else f)
            if f is not None:
                v = f
        else:
            out.append(_MISSING_PY)
        nonnull += 1
        last = v
    return np.array(out, dtype=np.float64), nonnull, last


class FieldInfo:
    """Whole-metric figures of one field."""

    __slots__ = ("name", "slot", "count", "numeric", "min", "max", "last", "sorted", "prev")

    def __init__(self, name: str, slot: int):
        self.name = name
        self.slot = slot
        self.count = 0  # rows with a non-null value
        self.numeric = 0  # rows with a number (NaN included)
        self.min = math.inf  # over numbers that are not NaN
        self.max = -math.inf
        self.last: Any = None  # the last non-null value (a number, a short string, or None)
        self.sorted = True  # its numbers never decrease, in row order
        self.prev: Optional[float] = None  # the last number that is not NaN

    def update(self, arr: np.ndarray, nonnull: int, last: Any) -> None:
        present = ~missing_mask(arr)
        self.count += nonnull
        numeric = int(present.sum())
        self.numeric += numeric
        if last is not _NONE:
            if type(last) is str:
                last = last[:_MAX_TEXT]
            elif type(last) in (list, dict):
                last = None
            self.last = last
        if not numeric:
            return
        vals = arr[present]
        vals = vals[~np.isnan(vals)]
        if not vals.size:
            return
        self.min = min(self.min, float(vals.min()))
        self.max = max(self.max, float(vals.max()))
        if self.sorted:
            ok = self.prev is None or vals[0] >= self.prev
            self.sorted = bool(ok and (vals.size < 2 or np.all(vals[1:] >= vals[:-1])))
        self.prev = float(vals[-1])

    def as_json(self) -> Dict[str, Any]:
        return encode_nonfinite({k: getattr(self, k) for k in self.__slots__})

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "FieldInfo":
        d = decode_nonfinite(d)
        f = cls(str(d["name"]), int(d["slot"]))
        for k in cls.__slots__[2:]:
            if k in d:
                setattr(f, k, d[k])
        return f
