"""``exp.metrics``: the hot path (``exp.metrics(name).log(...)``) and what upstream offers around it.

Writes go through the experiment's pipeline (never waiting on I/O); reads flush first, then ask
the experiment's reader, which is the same interface in local and remote mode. Each operation
holds the experiment's :class:`~ml_dash._recorder.Recorder`, not the experiment. The other
operations live in ``_params``, ``_logs``, ``_file_ops`` and ``_tracks``; they are re-exported here.
"""

from __future__ import annotations

import math
import time

from ._errors import InvalidValue
from ._file_ops import Files, FileScope
from ._logs import Logs, make_log_event
from ._names import check_metric_name
from ._params import Params, flatten, unflatten
from ._values import FAST_TYPES, normalize_fields

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, KeysView, List, Optional

    from ._recorder import Recorder
    from ._sink import Sink
    from ._summary import SummaryBuffer, SummaryCache

    # The bases of MetricRows and Metrics, parametrized for type checkers only (typing stays unimported)
    _RowList = List[Dict[str, Any]]
    _BuilderDict = Dict[Optional[str], "MetricBuilder"]
else:
    _RowList = list
    _BuilderDict = dict

_now = time.time

__all__ = [
    "Params",
    "Metrics",
    "MetricBuilder",
    "MetricRows",
    "Logs",
    "Files",
    "FileScope",
    "flatten",
    "unflatten",
    "make_log_event",
    "explicit_ts",
]


def explicit_ts(rec: Recorder, value: Any, what: str) -> float:
    """A caller-given ``_ts``: epoch seconds, or -1 for the previous explicit or track timestamp."""
    if type(value) not in (int, float) or not math.isfinite(value):
        raise InvalidValue(f"{what}: _ts must be a finite number of seconds, got {value!r}")
    if value == -1:
        if rec.last_ts is None:
            raise InvalidValue(f"{what}: _ts=-1 repeats the previous timestamp, and there is none yet")
        return rec.last_ts
    rec.last_ts = float(value)
    return rec.last_ts


def metrics_list(rec: Recorder) -> List[Dict[str, Any]]:
    """Upstream's ``list_all()``: one summary per metric with rows."""
    reader = rec.reader()
    out: List[Dict[str, Any]] = []
    for name in reader.metric_names():
        rows = reader.metric_rows(name)
        out.append(
            {
                "metricId": f"{rec.prefix}/metrics/{name}",
                "name": name,
                "description": None,
                "tags": [],
                "totalDataPoints": str(len(rows)),
                "createdAt": rows[0].get("createdAt") if rows else None,
            }
        )
    return out


class MetricRows(_RowList):
    """What ``metrics(name).read()`` returns: the rows ``{"index", "data", "createdAt"}`` as a list,
    also readable as upstream's page dict: ``rows["data"]``, ``rows["total"]``, ``rows["hasMore"]``,
    ``rows["startIndex"]``, ``rows["endIndex"]``."""

    __slots__ = ("start_index", "has_more")
    start_index: int
    has_more: bool

    def page(self) -> Dict[str, Any]:
        """Upstream's page: ``{"data", "startIndex", "endIndex", "total", "hasMore"}``."""
        return {
            "data": list(self),
            "startIndex": self.start_index,
            "endIndex": self.start_index + len(self) - 1,
            "total": len(self),
            "hasMore": self.has_more,
        }

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self.page()[key]
        return list.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self.page().get(key, default)

    def keys(self) -> KeysView[str]:
        return self.page().keys()


class MetricBuilder:
    """``exp.metrics(name)``: appends rows to one metric."""

    __slots__ = ("name", "queue", "wake_at", "_pipe", "_rec", "_limit", "_summary", "description", "tags", "metadata")

    def write_to(self, sink: Sink, rows: List[Dict[str, Any]]) -> None:
        """Hand rows taken from ``queue`` to the sink (the pipeline's drain calls this)."""
        sink.write_metrics(self.name, rows)

    def __init__(self, rec: Recorder, name: Optional[str]):
        self._rec = rec
        self.name = name
        #: This metric's own deque of rows and its wake mark: both set by the pipeline.
        self.queue: Any = None
        self.wake_at = 0
        self._pipe = rec.pipe
        self._limit = rec.config.max_string_bytes
        self._summary: Optional[SummaryCache] = None
        #: Given with upstream's ``metrics(name, description=..., tags=..., metadata=...)``.
        self.description: Optional[str] = None
        self.tags: List[str] = []
        self.metadata: Optional[Dict[str, Any]] = None
        self._pipe.add_metric(self)

    def log(self, **fields: Any) -> "MetricBuilder":
        """Append one row. Fields are stored as given, plus ``_ts`` (epoch seconds of this call;
        ``_ts=<seconds>`` sets it, ``_ts=-1`` repeats the previous explicit or track timestamp)."""
        for v in fields.values():
            if type(v) not in FAST_TYPES:
                fields = normalize_fields(fields, self._limit, f"metric {self.name!r}")
                break
        if "_ts" in fields or "_flush" in fields:
            return self._log_controlled(fields)
        fields["_ts"] = _now()
        q = self.queue
        if len(q) >= self.wake_at:
            self._pipe.overflow(q, fields)
        else:
            q.append(fields)
        return self

    def _log_controlled(self, fields: Dict[str, Any]) -> "MetricBuilder":
        """``log`` with upstream's control keys: ``_ts`` (explicit time) and ``_flush`` (never stored)."""
        fields = dict(fields)
        flush = fields.pop("_flush", False)
        fields["_ts"] = explicit_ts(self._rec, fields["_ts"], f"metric {self.name!r}") if "_ts" in fields else _now()
        q = self.queue
        if len(q) >= self.wake_at:
            self._pipe.overflow(q, fields)
        else:
            q.append(fields)
        if flush:
            self.flush()
        return self

    def flush(self) -> "MetricBuilder":
        """Ask the background writer to store what is queued now; returns at once (chainable).
        ``exp.flush()`` is the call that waits until it is stored."""
        self._pipe.wake()
        return self

    def read(
        self, start: Optional[int] = None, limit: Optional[int] = None, *, start_index: Optional[int] = None
    ) -> MetricRows:
        """Rows ``{"index", "data", "createdAt"}`` from ``start`` (upstream: ``start_index``), in
        index order, at most ``limit``. The list also reads as upstream's page dict (``["data"]``)."""
        first = start_index if start_index is not None else (start or 0)
        rows = self._rec.reader().metric_rows(self.name, first, None if limit is None else limit + 1)
        out = MetricRows(rows if limit is None else rows[:limit])
        out.start_index = first
        out.has_more = limit is not None and len(rows) > limit
        return out

    def stats(self) -> Dict[str, Any]:
        """Upstream's metric summary: ``totalDataPoints`` (a string, as upstream), first and last
        times, and the name, description, tags and metadata. FileNotFoundError when it has no rows."""
        rows = self._rec.reader().metric_rows(self.name)
        if not rows:
            raise FileNotFoundError(f"metric {self.name!r} of {self._rec.prefix} has no rows")
        n = str(len(rows))
        first, last = rows[0].get("createdAt"), rows[-1].get("createdAt")
        return {
            "metricId": f"{self._rec.prefix}/metrics/{self.name}",
            "name": self.name,
            "description": self.description,
            "tags": list(self.tags),
            "metadata": self.metadata,
            "totalDataPoints": n,
            "bufferedDataPoints": n,
            "chunkedDataPoints": "0",
            "totalChunks": 0,
            "chunkSize": 10000,
            "firstDataAt": first,
            "lastDataAt": last,
            "createdAt": first,
            "updatedAt": last,
        }

    def list_all(self) -> List[Dict[str, Any]]:
        """Every metric of the experiment, as upstream lists them (``name``, ``totalDataPoints``, ...)."""
        return metrics_list(self._rec)

    @property
    def summary_cache(self) -> SummaryCache:
        """Statistics over a window of values, logged as one row: ``store()``, ``set()``, ``summarize()``."""
        if self._summary is None:
            from ._summary import SummaryCache

            self._summary = SummaryCache(self.log)
        return self._summary

    def buffer(self, **values: Any) -> "MetricBuilder":
        """Collect numbers for ``exp.metrics.buffer.log_summary()``."""
        self._rec.summary_buffer().store(self.name, **values)
        return self

    def series(
        self,
        field: str,
        x: str = "index",
        start: Optional[float] = None,
        end: Optional[float] = None,
        buckets: int = 1000,
        *,
        after: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> Dict[str, Any]:
        """One field for a chart: the rows of a range when it holds at most ``buckets`` rows, else
        per bucket the last, min and max value and the count (a spike always shows in ``max``).

        ``x``: ``"index"``, ``"_ts"`` (wall time) or any numeric field such as ``"step"``;
        ``start``/``end``: an inclusive range in x units. ``after``: instead, the rows whose index is
        greater (at most ``limit``), for following a live run; pass the answer's ``cursor`` next
        time. The answer is ``GET /api/v1/series``'s (PROTOCOL.md), with non-finite floats as
        floats. Raises NotFound when the metric or field does not exist.
        """
        return self._rec.reader().series(self.name, field, x, start, end, buckets, after, limit)


class Metrics(_BuilderDict):
    """``exp.metrics``: ``exp.metrics("train").log(...)``, or ``exp.metrics.log(...)`` for the unnamed metric.

    A dict of name -> MetricBuilder; ``__missing__`` validates and creates a metric on first use.
    """

    def __init__(self, rec: Recorder):
        super().__init__()
        self._rec = rec
        rec.metrics = self

    def __call__(
        self,
        name: Optional[str] = None,
        description: Optional[str] = None,
        tags: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> MetricBuilder:
        """The metric ``name``; ``description``, ``tags``, ``metadata`` describe it (upstream's arguments)."""
        if description is None and tags is None and metadata is None:
            return self[name]
        b = self[name]
        if description is not None:
            b.description = description
        if tags is not None:
            b.tags = list(tags)
        if metadata is not None:
            b.metadata = normalize_fields(metadata, self._rec.config.max_string_bytes, "metric metadata")
        return b

    def __missing__(self, name: Optional[str]) -> MetricBuilder:
        key = name
        if name is not None:
            name = check_metric_name(name)
        b = self.get(name)
        if b is None:
            b = MetricBuilder(self._rec, name)
            self[name] = b
        self[key] = b
        return b

    def log(self, _flush: bool = False, **fields: Any) -> "Metrics":
        """Append a row to the unnamed metric (stored in the folder ``None``).

        Upstream's nested form: ``log(epoch=3, train=dict(loss=0.1), eval=dict(loss=0.2))`` logs
        ``{"epoch": 3}`` to the unnamed metric and ``{"epoch": 3, "loss": ...}`` to ``train`` and
        ``eval``. ``_flush=True`` wakes the writer (it is never stored)."""
        nested = [k for k, v in fields.items() if isinstance(v, dict)]
        if not nested:
            self[None].log(**fields)
        else:
            ts = fields.pop("_ts", None)
            parts = {k: fields.pop(k) for k in nested}
            targets = [(self[k], d) for k, d in parts.items()]  # every name checked before anything is logged
            timed = {} if ts is None else {"_ts": ts}
            if fields:
                self[None].log(**fields, **timed)
            for builder, data in targets:
                builder.log(**{**fields, **data, **timed})
        if _flush:
            self.flush()
        return self

    def flush(self) -> "Metrics":
        """Ask the background writer to store what is queued now; returns at once (chainable)."""
        self._rec.pipe.wake()
        return self

    @property
    def buffer(self) -> SummaryBuffer:
        """``metrics(name).buffer(**values)`` collects; ``metrics.buffer.log_summary(*aggs)`` logs."""
        return self._rec.summary_buffer()

    def names(self) -> List[Optional[str]]:
        """Every metric of the experiment that has rows."""
        return self._rec.reader().metric_names()

    def list_all(self) -> List[Dict[str, Any]]:
        """Every metric of the experiment, as upstream lists them."""
        return metrics_list(self._rec)

    def __repr__(self) -> str:
        return f"<Metrics of {self._rec.prefix}: {sorted(str(k) for k in self)}>"
