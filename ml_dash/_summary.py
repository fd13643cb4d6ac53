"""Summaries of many values logged as one row: ``metrics(name).summary_cache`` and ``metrics.buffer``.

Both keep raw numbers in memory and log statistics (``loss.mean``, ``loss.std``, ...) as one
ordinary metric row when asked, as upstream does. NaN (and None, taken as NaN) are left out of
the statistics; a window holding only NaN logs nothing for that key. A value that is not a number
raises ``InvalidValue`` at the call.
"""

from __future__ import annotations

import math

from ._errors import InvalidValue

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

__all__ = ["SummaryCache", "SummaryBuffer", "AGGREGATIONS"]

#: Upstream's aggregation names.
AGGREGATIONS = ("mean", "std", "min", "max", "count", "median", "sum", "p50", "p90", "p95", "p99", "last", "first")


def _number(key: str, value: Any) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidValue(
            f"summaries take numbers: {key}={value!r} ({type(value).__name__}); "
            "log other values with metrics(...).log()"
        ) from None


def _percentile(values: List[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    f = int(k)
    c = min(f + 1, len(ordered) - 1)
    return ordered[f] + (k - f) * (ordered[c] - ordered[f])


def aggregate(values: List[float], agg: str) -> float:
    """One statistic of a non-empty list of finite-or-infinite numbers (NaN already removed)."""
    import statistics  # only when a summary is logged

    if agg == "mean":
        return statistics.fmean(values)
    if agg == "std":
        return statistics.stdev(values) if len(values) >= 2 else 0.0
    if agg == "min":
        return min(values)
    if agg == "max":
        return max(values)
    if agg == "count":
        return len(values)
    if agg in ("median", "p50"):
        return statistics.median(values)
    if agg == "sum":
        return math.fsum(values)
    if agg in ("p90", "p95", "p99"):
        return _percentile(values, int(agg[1:]))
    if agg == "last":
        return values[-1]
    if agg == "first":
        return values[0]
    raise ValueError(f"unknown aggregation {agg!r}; use one of {', '.join(AGGREGATIONS)}")


def summarize(store: Dict[str, List[float]], aggs: tuple[Any, ...]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for key, values in store.items():
        clean = [v for v in values if v == v]
        if clean:
            for agg in aggs:
                out[f"{key}.{agg}"] = aggregate(clean, agg)
    return out


def _peek(store: Dict[str, List[float]], keys: tuple[Any, ...], limit: Optional[int]) -> Dict[str, List[float]]:
    return {k: (store[k][-limit:] if limit else list(store[k])) for k in (keys or store.keys()) if store.get(k)}


class SummaryCache:
    """``metrics(name).summary_cache``: ``store(**values)`` per step, ``set(**fields)`` for context,
    ``summarize()`` logs ``{fields..., key.mean, key.min, key.max, key.count, key.std}`` as one row."""

    AGGS = ("mean", "min", "max", "count", "std")

    def __init__(self, log: Callable[..., Any]):
        self._log = log
        self._values: Dict[str, List[float]] = {}
        self._fields: Dict[str, Any] = {}

    @property
    def pending(self) -> int:
        """Values stored since the last summary."""
        return sum(len(v) for v in self._values.values())

    def store(self, **values: Any) -> None:
        """Keep numbers for the next summary (None counts as NaN and is left out of it)."""
        converted = {k: _number(k, v) for k, v in values.items()}
        for key, value in converted.items():
            self._values.setdefault(key, []).append(value)

    def set(self, **fields: Any) -> None:
        """Fields logged as they are with the next summary (replacing earlier ones of the same name)."""
        self._fields.update(fields)

    def peek(self, *keys: str, limit: int = 5) -> Dict[str, List[float]]:
        """The last ``limit`` stored values per key, without consuming them."""
        return _peek(self._values, keys, limit)

    def summarize(self, clear: bool = True) -> None:
        """Log the statistics and fields as one row; with ``clear`` start a new window."""
        if not self._values and not self._fields:
            return
        row = {**self._fields, **summarize(self._values, self.AGGS)}
        if row:
            self._log(**row)
        if clear:
            self._values.clear()
            self._fields.clear()


class SummaryBuffer:
    """``metrics.buffer``: ``metrics(name).buffer(**values)`` collects per metric; ``log_summary(*aggs,
    **fields)`` logs one row per metric (``key.agg`` for each aggregation, default ``mean``) and clears."""

    def __init__(self, metric: Callable[[Optional[str]], Any]):
        self._metric = metric
        self._values: Dict[Optional[str], Dict[str, List[float]]] = {}

    @property
    def pending(self) -> int:
        return sum(len(v) for store in self._values.values() for v in store.values())

    def store(self, name: Optional[str], **values: Any) -> None:
        converted = {k: _number(k, v) for k, v in values.items()}
        store = self._values.setdefault(name, {})
        for key, value in converted.items():
            store.setdefault(key, []).append(value)

    def log_summary(self, *aggs: str, **fields: Any) -> None:
        """One row per buffered metric: ``fields`` plus ``key.agg`` per aggregation; then clear."""
        aggs = aggs or ("mean",)
        for agg in aggs:
            if agg not in AGGREGATIONS:
                raise ValueError(f"unknown aggregation {agg!r}; use one of {', '.join(AGGREGATIONS)}")
        buffered, self._values = self._values, {}
        for name, store in buffered.items():
            row = {**fields, **summarize(store, aggs)}
            if row:
                self._metric(name).log(**row)

    def peek(self, prefix: Optional[str] = None, *keys: str, limit: int = 5) -> Dict[str, List[float]]:
        """Buffered values without consuming them: one metric's, or all as ``"name/key"``."""
        if prefix is not None:
            return _peek(self._values.get(prefix, {}), keys, limit)
        out: Dict[str, List[float]] = {}
        for name, store in self._values.items():
            for key, values in _peek(store, keys, limit).items():
                out[f"{name if name is not None else '(default)'}/{key}"] = values
        return out
