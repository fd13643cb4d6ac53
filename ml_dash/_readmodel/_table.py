"""The experiments table: filter, search, sort and page catalogue entries, with chosen columns.

Sorting: rows without a value in the sort key come last in either order (then by prefix); numbers
sort before strings when a column holds both. Column keys are ``m:<metric>:<field>`` (the field is
what follows the last ``:``; ``m::loss`` is the unnamed metric) and ``p:<flattened param key>``.
"""

from __future__ import annotations

import fnmatch
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .._values import encode_nonfinite
from ._catalog import Entry
from ._series import QueryError

__all__ = ["TableQuery", "run_table", "SORT_KEYS", "STATUSES", "MAX_LIMIT", "MAX_AVAILABLE"]

STATUSES = ("RUNNING", "COMPLETED", "FAILED", "CANCELLED")
SORT_KEYS = ("prefix", "name", "status", "createdAt", "startedAt", "endedAt", "duration", "rows", "logs", "files")
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
            if raw in (None, ""):
                return default
            try:
                return int(raw)
            except ValueError:
                raise QueryError(400, "bad_query", f"'{name}' must be an integer, got {raw!r}") from None

        return cls(glob=get("glob") or None, q=get("q") or None, status=status, sort=get("sort") or "prefix",
                   order=(get("order") or "asc").lower(), offset=integer("offset", 0), limit=integer("limit", 50),
                   columns=columns).checked()

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
                raise QueryError(400, "bad_query", f"bad {what} {c!r}: use m:<metric>:<field>, p:<param>"
                                 + ("" if what == "column" else f", or one of {', '.join(SORT_KEYS)}"))
        return self


def _sort_value(e: Entry, key: str, now: float) -> Any:
    if key == "prefix":
        return e.prefix
    if key == "name":
        return e.name
    if key == "status":
        return e.status
    if key == "createdAt":
        return e.created_at
    if key == "startedAt":
        return e.started
    if key == "endedAt":
        return e.ended
    if key == "duration":
        return e.duration(now)
    if key == "rows":
        return e.metric_rows
    if key == "logs":
        return e.logs
    if key == "files":
        return e.files
    return e.value(key)


def _rank(v: Any) -> Tuple[int, Any]:
    if isinstance(v, bool):
        return (0, float(v))
    if isinstance(v, (int, float)):
        return (0, v if v == v else float("inf"))  # NaN after every number
    return (1, str(v))


def _row(e: Entry, columns: Sequence[str], now: float) -> Dict[str, Any]:
    return {
        "prefix": e.prefix, "owner": e.owner, "project": e.project, "name": e.name, "status": e.status,
        "tags": e.tags, "description": e.description, "createdAt": e.created_at, "startedAt": e.started_at,
        "endedAt": e.ended_at, "duration": e.duration(now),
        "counts": {"metric_rows": e.metric_rows, "logs": e.logs, "files": e.files},
        "values": {c: e.value(c) for c in columns},
    }


def run_table(entries: Sequence[Entry], query: TableQuery, *, strict: bool = False,
              now: Optional[float] = None) -> Dict[str, Any]:
    """One page of the table over ``entries`` (sorted by prefix, as the catalogue gives them)."""
    now = time.time() if now is None else now
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
    total = len(rows)
    desc = query.order == "desc"
    if query.sort == "prefix":
        if desc:
            rows.reverse()
    else:
        keyed = [(_sort_value(e, query.sort, now), e) for e in rows]
        have = [(_rank(v), e) for v, e in keyed if v is not None]
        have.sort(key=lambda t: t[0], reverse=desc)  # stable: ties keep prefix order
        rows = [e for _, e in have] + [e for v, e in keyed if v is None]
    page = [_row(e, query.columns, now) for e in rows[query.offset : query.offset + query.limit]]
    metric_keys: set = set()
    param_keys: set = set()
    for e in rows:
        metric_keys.update(e.metric_keys)
        param_keys.update(e.param_keys)
    available = {"metrics": sorted(metric_keys)[:MAX_AVAILABLE], "params": sorted(param_keys)[:MAX_AVAILABLE],
                 "truncated": len(metric_keys) > MAX_AVAILABLE or len(param_keys) > MAX_AVAILABLE}
    answer = {"total": total, "offset": query.offset, "limit": query.limit, "rows": page, "available": available}
    return encode_nonfinite(answer) if strict else answer
