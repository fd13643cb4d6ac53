"""The experiments table: filter, search, sort and page catalogue entries, with chosen columns.

Sorting: rows without a value in the sort key come last in either order (then by prefix); numbers
sort before strings when a column holds both. Column keys are ``m:<metric>:<field>`` (the field is
what follows the last ``:``; ``m::loss`` is the unnamed metric) and ``p:<flattened param key>``.
"""

from __future__ import annotations

import fnmatch
import math
import re
import time
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .._values import encode_nonfinite
from ._entry import Entry
from ._series import QueryError

__all__ = ["TableQuery", "TableCache", "run_table", "SORT_KEYS", "STATUSES", "MAX_LIMIT", "MAX_AVAILABLE"]

STATUSES = ("RUNNING", "COMPLETED", "FAILED", "CANCELLED")
SORT_KEYS = (
    "prefix",
    "name",
    "status",
    "createdAt",
    "startedAt",
    "endedAt",
    "duration",
    "rows",
    "logs",
    "files",
    "lastActivity",
)
MAX_LIMIT = 1000
#: Column keys listed in ``available`` for column pickers, at most, of each kind.
MAX_AVAILABLE = 500
_MAX_COLUMNS = 100


@dataclass(frozen=True)
class TableQuery:
    """One page of the experiments table (every part optional)."""

    glob: Optional[str] = None
    q: Optional[str] = None
    status: Tuple[str, ...] = ()
    sort: str = "prefix"
    order: str = "asc"
    offset: int = 0
    limit: int = 50
    columns: Tuple[str, ...] = field(default=())

    @classmethod
    def from_query(cls, get: Callable[[str], Optional[str]], get_all: Callable[[str], Sequence[str]]) -> "TableQuery":
        """Parse HTTP query parameters (``get``: one value, ``get_all``: every value of a name);
        raises QueryError(400) naming what is wrong."""
        status = tuple(s.strip().upper() for v in get_all("status") for s in v.split(",") if s.strip())
        columns = tuple(c.strip() for v in get_all("columns") for c in v.split(",") if c.strip())

        def integer(name: str, default: int) -> int:
            raw = get(name)
            if raw is None or raw == "":
                return default
            try:
                return int(raw)
            except ValueError:
                raise QueryError(400, "bad_query", f"'{name}' must be an integer, got {raw!r}") from None

        return cls(
            glob=get("glob") or None,
            q=get("q") or None,
            status=status,
            sort=get("sort") or "prefix",
            order=(get("order") or "asc").lower(),
            offset=integer("offset", 0),
            limit=integer("limit", 50),
            columns=columns,
        ).checked()

    def checked(self) -> "TableQuery":
        bad = [s for s in self.status if s not in STATUSES]
        if bad:
            raise QueryError(400, "bad_query", f"unknown status {bad[0]!r}; use {', '.join(STATUSES)}")
        if self.order not in ("asc", "desc"):
            raise QueryError(400, "bad_query", "'order' must be 'asc' or 'desc'")
        if self.offset < 0 or not 1 <= self.limit <= MAX_LIMIT:
            raise QueryError(400, "bad_query", f"'offset' must be >= 0 and 'limit' from 1 to {MAX_LIMIT}")
        if len(self.columns) > _MAX_COLUMNS:
            raise QueryError(400, "bad_query", f"at most {_MAX_COLUMNS} columns")
        for c in self.columns + (() if self.sort in SORT_KEYS else (self.sort,)):
            if not (c.startswith("p:") and len(c) > 2) and not (c.startswith("m:") and ":" in c[2:]):
                what = "column" if c in self.columns else "sort key"
                raise QueryError(
                    400,
                    "bad_query",
                    f"bad {what} {c!r}: use m:<metric>:<field>, p:<param>"
                    + ("" if what == "column" else f", or one of {', '.join(SORT_KEYS)}"),
                )
        return self


def _getter(key: str, now: float) -> Callable[[Entry], Any]:
    """The sort value of an entry under ``key`` (resolved once per query, not per row)."""
    fixed = {
        "prefix": lambda e: e.prefix,
        "name": lambda e: e.name,
        "status": lambda e: e.status,
        "createdAt": lambda e: e.created_at,
        "startedAt": lambda e: e.started,
        "endedAt": lambda e: e.ended,
        "duration": lambda e: e.duration(now),
        "rows": lambda e: e.metric_rows,
        "logs": lambda e: e.logs,
        "files": lambda e: e.files,
        "lastActivity": lambda e: e.last_activity,
    }
    if key in fixed:
        return fixed[key]
    if key.startswith("p:"):
        param = key[2:]
        return lambda e: e.params.get(param)
    name, _, field = key[2:].rpartition(":")

    def metric_value(e: Entry) -> Any:
        m = e.metrics.get(name)
        return None if m is None else m["last"].get(field)

    return metric_value


def _sorted(rows: List[Entry], key: str, desc: bool, now: float) -> List[Entry]:
    """Numbers (NaN after them), then strings, then rows without a value; reversed but for the last
    group when ``desc``. Ties keep the prefix order."""
    get = _getter(key, now)
    nums: List[Tuple[float, Entry]] = []
    texts: List[Tuple[str, Entry]] = []
    none: List[Entry] = []
    for e in rows:
        v = get(e)
        if v is None:
            none.append(e)
        elif type(v) in (int, float, bool):
            nums.append((v if v == v else math.inf, e))
        else:
            texts.append((str(v), e))
    first = itemgetter(0)
    nums.sort(key=first, reverse=desc)
    texts.sort(key=first, reverse=desc)
    ordered = texts + nums if desc else nums + texts
    return [e for _, e in ordered] + none


def _row(e: Entry, columns: Sequence[str], now: float) -> Dict[str, Any]:
    return {
        "prefix": e.prefix,
        "owner": e.owner,
        "project": e.project,
        "name": e.name,
        "status": e.status,
        "tags": e.tags,
        "description": e.description,
        "createdAt": e.created_at,
        "startedAt": e.started_at,
        "endedAt": e.ended_at,
        "duration": e.duration(now),
        "lastActivity": e.last_activity,
        "stale": e.stale(now),
        "counts": {"metric_rows": e.metric_rows, "logs": e.logs, "files": e.files},
        "values": {c: e.value(c) for c in columns},
    }


class TableCache:
    """What the last queries over one catalogue snapshot computed (the matching rows, their
    available keys, their order): paging through a table, or polling it, costs one page."""

    def __init__(self) -> None:
        self._snapshot: Any = None
        self._filtered: Dict[Any, Tuple[List[Entry], Dict[str, Any]]] = {}
        self._ordered: Dict[Any, List[Entry]] = {}

    def get(self, snapshot: Any, kind: str, key: Any) -> Any:
        if snapshot is not self._snapshot:
            self._snapshot, self._filtered, self._ordered = snapshot, {}, {}
        return (self._filtered if kind == "filtered" else self._ordered).get(key)

    def put(self, kind: str, key: Any, value: Any) -> None:
        store = self._filtered if kind == "filtered" else self._ordered
        if len(store) >= 16:
            store.clear()
        store[key] = value


def _filtered(entries: Sequence[Entry], query: TableQuery) -> Tuple[List[Entry], Dict[str, Any]]:
    rows: List[Entry] = list(entries)
    if query.glob:
        match = re.compile(fnmatch.translate(query.glob)).match
        rows = [e for e in rows if match(e.prefix)]
    if query.status:
        wanted = set(query.status)
        rows = [e for e in rows if e.status in wanted]
    if query.q:
        needle = query.q.lower()
        rows = [e for e in rows if needle in e.text]
    metric_keys: set[Any] = set()
    param_keys: set[Any] = set()
    for e in rows:
        metric_keys.update(e.metric_keys)
        param_keys.update(e.param_keys)
    available = {
        "metrics": sorted(metric_keys)[:MAX_AVAILABLE],
        "params": sorted(param_keys)[:MAX_AVAILABLE],
        "truncated": len(metric_keys) > MAX_AVAILABLE or len(param_keys) > MAX_AVAILABLE,
    }
    return rows, available


def run_table(
    entries: Sequence[Entry],
    query: TableQuery,
    *,
    strict: bool = False,
    now: Optional[float] = None,
    cache: Optional[TableCache] = None,
) -> Dict[str, Any]:
    """One page of the table over ``entries`` (sorted by prefix, as the catalogue gives them).
    ``cache``: reuse what earlier queries over the same ``entries`` object computed."""
    now = time.time() if now is None else now
    fkey = (query.glob, query.q, query.status)
    got = cache.get(entries, "filtered", fkey) if cache is not None else None
    if got is None:
        got = _filtered(entries, query)
        if cache is not None:
            cache.put("filtered", fkey, got)
    rows, available = got
    desc = query.order == "desc"
    okey = fkey + (query.sort, desc)
    ordered = cache.get(entries, "ordered", okey) if cache is not None and query.sort != "duration" else None
    if ordered is None:
        if query.sort == "prefix":
            ordered = rows[::-1] if desc else rows
        else:
            ordered = _sorted(rows, query.sort, desc, now)
        if cache is not None and query.sort != "duration":  # a running experiment's duration grows
            cache.put("ordered", okey, ordered)
    page = [_row(e, query.columns, now) for e in ordered[query.offset : query.offset + query.limit]]
    answer = {"total": len(rows), "offset": query.offset, "limit": query.limit, "rows": page, "available": available}
    return encode_nonfinite(answer) if strict else answer
