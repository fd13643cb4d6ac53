"""The read model's interface, and its implementation over a local layout folder.

:class:`ReadModel` is what a store must answer for the dashboard and the read side of the CLI (the
routes ``/api/v1/series``, ``/api/v1/summary`` and ``/api/v1/table`` call nothing else).
:class:`LayoutReadModel` answers from the files of a layout folder (a ``dash_root``, or the
reference server's root), with column caches and a catalogue kept current as the files grow. A
store with another backend implements :class:`ReadModel` its own way; the answers' shapes are in
``ml_dash/server/PROTOCOL.md``.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Optional

from .._errors import InvalidPrefix
from .._names import Prefix, parse_prefix
from .._store._jsonio import last_value_of, read_json
from .._store._layout import ExperimentPaths
from .._store._nofollow import is_plain_chain
from .._values import encode_nonfinite
from ._catalog import Catalog
from ._columns import MetricColumns
from ._entry import is_stale
from ._series import QueryError, increments, metric_summary, series
from ._table import TableCache, TableQuery, run_table

__all__ = ["ReadModel", "LayoutReadModel", "QueryError"]


class ReadModel:
    """What a store answers for charts, run summaries and the experiments table.

    Every method raises :class:`QueryError` with ``status`` 404 (no such experiment, metric or
    field) or 400 (a bad argument). ``strict``: non-finite floats as the strings "NaN",
    "Infinity", "-Infinity" (for JSON answers); else as floats.
    """

    def series(
        self,
        prefix: str,
        name: Optional[str],
        field: str,
        x: str = "index",
        start: Any = None,
        end: Any = None,
        buckets: Any = 1000,
        *,
        strict: bool = False,
    ) -> Dict[str, Any]:
        """One field of a metric over a range, downsampled (see ``_series.series``)."""
        raise NotImplementedError

    def increments(
        self,
        prefix: str,
        name: Optional[str],
        field: str,
        x: str = "index",
        after: Any = -1,
        limit: int = 10_000,
        *,
        strict: bool = False,
    ) -> Dict[str, Any]:
        """The rows of a metric after an index, for live charts (see ``_series.increments``)."""
        raise NotImplementedError

    def summary(self, prefix: str, *, strict: bool = False) -> Dict[str, Any]:
        """Every metric of an experiment with its count, last index and per field last/min/max;
        the number of logs and files."""
        raise NotImplementedError

    def table(self, query: TableQuery, *, strict: bool = False, owner: Optional[str] = None) -> Dict[str, Any]:
        """One page of the experiments table; ``owner``: only that owner's experiments (a server
        whose tokens read only their owner's)."""
        raise NotImplementedError

    def stored(self, prefix: str) -> None:
        """A hint from the store: it just stored data of ``prefix`` (the next table shows it)."""

    def warm(self) -> None:
        """Prepare what the first queries need (called in the background when a server starts)."""

    def close(self) -> None:
        """Stop background work."""


def _last_activity(paths: Iterable[Path]) -> Optional[float]:
    """The newest mtime of these paths (those that exist), epoch seconds: what the catalogue's
    entries say too (see ``_catalog``)."""
    newest = -1
    for p in paths:
        try:
            newest = max(newest, os.lstat(p).st_mtime_ns)
        except (FileNotFoundError, NotADirectoryError):
            pass
    return newest / 1e9 if newest >= 0 else None


def read_prefix(prefix: str) -> Prefix:
    """The prefix rules of reads: the SDK's (upstream's two-segment ``owner/name`` included), and no
    segment may start with ``.`` (the server keeps its own data in ``<root>/.ml-dash-server/``)."""
    parsed = parse_prefix(prefix, 2)
    if any(part.startswith(".") for part in parsed.parts):
        raise InvalidPrefix(f"prefix {prefix!r}: a segment may not start with '.'")
    return parsed


class LayoutReadModel(ReadModel):
    """The read model of a layout folder.

    ``cache_dir``: where metric column caches persist (the server: ``.ml-dash-server/series``);
    None keeps them in memory, building only the fields a query needs (the SDK, the CLI).
    ``parse``: how prefixes are checked (default :func:`read_prefix`).
    ``max_age``: the table's catalogue is refreshed when older than this, seconds; ``background``:
    in a thread of its own, so that a page never waits for it (the server).
    """

    def __init__(
        self,
        root: Path | str,
        cache_dir: Optional[Path | str] = None,
        parse: Callable[[str], Prefix] = read_prefix,
        max_age: float = 1.0,
        max_open: int = 256,
        background: bool = False,
    ):
        self.root = Path(root)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._parse = parse
        self.max_age = max_age
        self.catalog = Catalog(self.root, background=background)
        self._table_cache = TableCache()
        self._table_lock = threading.Lock()
        self._open: "OrderedDict[Any, MetricColumns]" = OrderedDict()
        self._max_open = max_open if cache_dir is not None else min(max_open, 8)
        self._guard = threading.Lock()

    # -- finding things ------------------------------------------------------------------------------

    def _paths(self, prefix: str) -> ExperimentPaths:
        try:
            paths = ExperimentPaths(self.root, self._parse(prefix))
        except InvalidPrefix as exc:
            raise QueryError(400, "invalid_prefix", str(exc)) from None
        if not paths.experiment_json.is_file() or not is_plain_chain(self.root, paths.experiment_json):
            raise QueryError(404, "not_found", f"no experiment {prefix!r}")  # a symlink is never followed
        return paths

    def _columns(
        self, paths: ExperimentPaths, name: Optional[str], fields: Optional[frozenset[Any]] = None
    ) -> MetricColumns:
        try:
            data = paths.metric_dir(name or None) / "data.jsonl"
        except InvalidPrefix as exc:
            raise QueryError(400, "invalid_name", str(exc)) from None
        if not data.is_file() or not is_plain_chain(self.root, data):
            raise QueryError(404, "not_found", f"no metric {name!r} in {str(paths.prefix)!r}")
        rel = data.relative_to(self.root).as_posix()
        key: Any = rel if self.cache_dir is not None else (rel, fields)
        with self._guard:
            cols = self._open.get(key)
            if cols is None:
                cache = None
                if self.cache_dir is not None:
                    cache = self.cache_dir / hashlib.sha256(rel.encode()).hexdigest()[:32]
                    fields = None
                cols = self._open[key] = MetricColumns(data, cache, fields, source=rel)
            self._open.move_to_end(key)
            while len(self._open) > self._max_open:
                self._open.popitem(last=False)
        cols.refresh()
        return cols

    # -- the interface ---------------------------------------------------------------------------------

    def series(
        self,
        prefix: str,
        name: Optional[str],
        field: str,
        x: str = "index",
        start: Any = None,
        end: Any = None,
        buckets: Any = 1000,
        *,
        strict: bool = False,
    ) -> Dict[str, Any]:
        paths = self._paths(prefix)
        cols = self._columns(paths, name, frozenset([field] + ([] if (x or "index") == "index" else [x])))
        return {"name": name or None, **series(cols, field, x, start, end, buckets, strict=strict)}

    def increments(
        self,
        prefix: str,
        name: Optional[str],
        field: str,
        x: str = "index",
        after: Any = -1,
        limit: int = 10_000,
        *,
        strict: bool = False,
    ) -> Dict[str, Any]:
        paths = self._paths(prefix)
        cols = self._columns(paths, name, frozenset([field] + ([] if (x or "index") == "index" else [x])))
        return {"name": name or None, **increments(cols, field, x, after, limit, strict=strict)}

    def summary(self, prefix: str, *, strict: bool = False) -> Dict[str, Any]:
        from .._store import ExperimentReader

        paths = self._paths(prefix)
        reader = ExperimentReader(self.root, paths.prefix)
        plain = [n for n in reader.metric_names() if is_plain_chain(self.root, paths.metric_dir(n) / "data.jsonl")]
        metrics = [metric_summary(n, self._columns(paths, n)) for n in plain]
        last_log = (
            last_value_of(paths.logs_jsonl, "sequenceNumber") if is_plain_chain(self.root, paths.logs_jsonl) else None
        )
        exp = read_json(paths.experiment_json, {})
        status = exp.get("status") if isinstance(exp, dict) else None
        activity = _last_activity(
            [paths.dir, paths.logs_jsonl, paths.files_metadata, *(paths.metric_dir(n) / "data.jsonl" for n in plain)]
        )
        answer = {
            "prefix": str(paths.prefix),
            "status": status,
            "metrics": metrics,
            "logs": 0 if last_log is None else last_log + 1,
            "files": len(reader.files()) if is_plain_chain(self.root, paths.files_metadata) else 0,
            "lastActivity": activity,
            "stale": is_stale(status, activity, time.time()),
        }
        return encode_nonfinite(answer) if strict else answer

    def table(self, query: TableQuery, *, strict: bool = False, owner: Optional[str] = None) -> Dict[str, Any]:
        entries = self.catalog.entries(self.max_age)
        if owner is not None:  # never through the shared cache: it holds every owner's rows
            return run_table([e for e in entries if e.owner == owner], query, strict=strict)
        with self._table_lock:
            return run_table(entries, query, strict=strict, cache=self._table_cache)

    def stored(self, prefix: str) -> None:
        self.catalog.mark_stale(prefix)

    def warm(self) -> None:
        self.catalog.refresh()

    def close(self) -> None:
        self.catalog.stop()
