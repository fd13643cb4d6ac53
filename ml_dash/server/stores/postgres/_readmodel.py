"""The dashboard's reads over PostgreSQL: :class:`ml_dash._readmodel.ReadModel` (series, live
increments, run summaries, the experiments table), with the answers' shapes and rules of the local
read model (its helpers format them), from the chunks' summaries and the metrics' field summaries.

The table is run over a snapshot of every experiment (one query each for experiments, newest params,
metric summaries and file counts), rebuilt when older than ``max_age`` seconds or when this
process stored something; other processes' writes show within ``max_age``.

Last activity (``lastActivity``): ``experiments.updated_at``, which every stored batch that brings
new events sets (server clock, in the batch's transaction): no query or column of its own.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np
import orjson

from ...._errors import InvalidPrefix
from ...._names import check_relpath
from ...._readmodel import ReadModel
from ...._readmodel._columns import missing_mask
from ...._readmodel._entry import Entry, is_stale, short_value
from ...._readmodel._series import MAX_BUCKETS, QueryError, _number, _raw_answer
from ...._readmodel._table import TableCache, TableQuery, run_table
from ...._values import decode_nonfinite, encode_nonfinite
from ...batch import parse_server_prefix
from ._rows import one
from ._series import column, position_of_x, series_rows

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PgReadModel"]


class PgReadModel(ReadModel):
    def __init__(self, pool: ConnectionPool, max_age: float = 1.0) -> None:
        self.pool = pool
        self.max_age = max_age
        self._snapshot: Optional[List[Entry]] = None
        self._built = 0.0
        self._stale = True
        self._lock = threading.Lock()
        self._cache = TableCache()

    # -- finding things --------------------------------------------------------------------------------

    def _experiment(self, conn: psycopg.Connection[Any], prefix: str) -> Tuple[str, Tuple[Any, ...]]:
        try:
            prefix = str(parse_server_prefix(prefix))
        except InvalidPrefix as exc:
            raise QueryError(400, "invalid_prefix", str(exc)) from None
        row = conn.execute(
            "SELECT id, doc, next_log_seq, updated_at FROM experiments WHERE prefix = %s", (prefix,)
        ).fetchone()
        if row is None or row[1] is None:
            raise QueryError(404, "not_found", f"no experiment {prefix!r}")
        return prefix, row

    def _metric(
        self, conn: psycopg.Connection[Any], exp_id: int, prefix: str, name: Optional[str]
    ) -> Tuple[int, int, Dict[str, Any]]:
        try:
            stored = check_relpath(name, "metric name") if name else ""
        except InvalidPrefix as exc:
            raise QueryError(400, "invalid_name", str(exc)) from None
        row = conn.execute(
            "SELECT id, next_index, summary FROM metrics WHERE experiment_id = %s AND name = %s", (exp_id, stored)
        ).fetchone()
        if row is None or not row[1]:
            raise QueryError(404, "not_found", f"no metric {name!r} in {prefix!r}")
        return row[0], row[1], orjson.loads(row[2])

    @staticmethod
    def _check(fields: Dict[str, Any], field: str, x: str) -> None:
        if not field:
            raise QueryError(400, "bad_query", "'field' is required")
        if field not in fields:
            raise QueryError(404, "not_found", f"the metric has no field {field!r}")
        if x not in ("index", "_ts") and x not in fields:
            raise QueryError(
                404, "not_found", f"the metric has no field {x!r} to use as x (use 'index' or a numeric field)"
            )

    @staticmethod
    def _sorted(fields: Dict[str, Any], x: str) -> bool:
        return True if x == "_ts" else bool(fields[x].get("sorted"))

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
        x = x or "index"
        try:
            b = int(buckets if buckets not in (None, "") else 1000)
        except (TypeError, ValueError):
            raise QueryError(400, "bad_query", f"'buckets' must be an integer, got {buckets!r}") from None
        if not 1 <= b <= MAX_BUCKETS:
            raise QueryError(400, "bad_query", f"'buckets' must be from 1 to {MAX_BUCKETS}")
        lo_x, hi_x = _number(start, "start"), _number(end, "end")
        with self.pool.connection() as conn:
            prefix, (exp_id, _doc, _logs, _at) = self._experiment(conn, prefix)
            metric_id, rows, fields = self._metric(conn, exp_id, prefix, name)
            self._check(fields, field, x)
            answer: Dict[str, Any] = {
                "name": name or None,
                "field": field,
                "x": x,
                "total": rows,
                "last_index": rows - 1,
            }
            x_is_index = x == "index"
            if not x_is_index:
                answer["x_sorted"] = self._sorted(fields, x)
            if not x_is_index and not answer["x_sorted"] and (lo_x is not None or hi_x is not None):
                return {**answer, **self._selected(conn, metric_id, rows, field, x, lo_x, hi_x, b, strict)}
            if x_is_index:
                p0 = 0 if lo_x is None else min(rows, max(0, math.ceil(lo_x)))
                p1 = rows if hi_x is None else min(rows, max(0, math.floor(hi_x) + 1))
            else:
                p0 = 0 if lo_x is None else position_of_x(conn, metric_id, x, rows, lo_x, "left")
                p1 = rows if hi_x is None else position_of_x(conn, metric_id, x, rows, hi_x, "right")
            p1 = max(p0, p1)
            answer["count"] = p1 - p0
            return {**answer, **series_rows(conn, metric_id, field, x, p0, p1, b, strict)}

    def _selected(
        self,
        conn: psycopg.Connection[Any],
        metric_id: int,
        rows: int,
        field: str,
        x: str,
        lo_x: Optional[float],
        hi_x: Optional[float],
        b: int,
        strict: bool,
    ) -> Dict[str, Any]:
        """A range on an x that decreases somewhere: every row is looked at."""
        from ...._readmodel._series import _reduce

        xs = column(conn, metric_id, x, 0, rows)
        sel = ~missing_mask(xs) & ~np.isnan(xs)
        if lo_x is not None:
            sel &= xs >= lo_x
        if hi_x is not None:
            sel &= xs <= hi_x
        pos = np.flatnonzero(sel)
        y = column(conn, metric_id, field, 0, rows)[pos]
        xs = xs[pos]
        out: Dict[str, Any] = {"count": len(pos)}
        if len(pos) <= b:
            return {**out, "mode": "raw", "points": _raw_answer(y, xs, False, strict)}
        return {**out, "mode": "buckets", "points": _reduce(y, xs, False, b, strict)}

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
        x = x or "index"
        after_f = _number(after, "after")
        after_f = -1.0 if after_f is None else after_f
        with self.pool.connection() as conn:
            prefix, (exp_id, _doc, _logs, _at) = self._experiment(conn, prefix)
            metric_id, rows, fields = self._metric(conn, exp_id, prefix, name)
            self._check(fields, field, x)
            p = min(rows, max(0, math.floor(after_f) + 1))
            q = min(rows, p + max(1, int(limit)))
            y = column(conn, metric_id, field, p, q)
            xs = np.arange(p, q, dtype=np.int64) if x == "index" else column(conn, metric_id, x, p, q)
            cursor = q - 1 if q > p else (int(after_f) if after_f >= -1 else -1)
            answer = {
                "name": name or None,
                "field": field,
                "x": x,
                "total": rows,
                "last_index": rows - 1,
                "count": q - p,
                "after": int(after_f),
                "cursor": cursor,
                "more": q < rows,
                "mode": "raw",
                "points": _raw_answer(y, xs, x == "index", strict),
            }
            if x != "index":
                answer["x_sorted"] = self._sorted(fields, x)
            return answer

    def summary(self, prefix: str, *, strict: bool = False) -> Dict[str, Any]:
        with self.pool.connection() as conn:
            prefix, (exp_id, doc, next_log, updated_at) = self._experiment(conn, prefix)
            metrics = []
            for name, rows, summary in conn.execute(
                "SELECT name, next_index, summary FROM metrics WHERE experiment_id = %s AND next_index > 0"
                " ORDER BY name",
                (exp_id,),
            ).fetchall():
                fields = {}
                for key, f in decode_nonfinite(orjson.loads(summary)).items():
                    has = f["min"] <= f["max"]
                    fields[key] = {
                        "last": f["last"],
                        "min": f["min"] if has else None,
                        "max": f["max"] if has else None,
                        "numeric": f["numeric"] > 0,
                        "count": f["count"],
                        "sorted": bool(f["sorted"]),
                    }
                metrics.append({"name": name or None, "count": rows, "last_index": rows - 1, "fields": fields})
            files = one(
                conn.execute(
                    "SELECT count(*) FROM files WHERE experiment_id = %s AND NOT deleted", (exp_id,)
                ).fetchone()
            )[0]
        exp = orjson.loads(doc)
        status = exp.get("status") if isinstance(exp, dict) else None
        answer = {
            "prefix": prefix,
            "status": status,
            "metrics": metrics,
            "logs": next_log,
            "files": files,
            "lastActivity": updated_at,
            "stale": is_stale(status, updated_at, time.time()),
        }
        return encode_nonfinite(answer) if strict else answer

    def _entries(self) -> List[Entry]:
        with self._lock:
            if self._snapshot is not None and not self._stale and time.monotonic() - self._built < self.max_age:
                return self._snapshot
            self._stale = False
            with self.pool.connection() as conn:
                exps = conn.execute(
                    "SELECT id, prefix, doc, next_log_seq, updated_at FROM experiments WHERE doc IS NOT NULL"
                    " ORDER BY prefix"
                ).fetchall()
                params = dict(
                    conn.execute(
                        "SELECT DISTINCT ON (experiment_id) experiment_id, doc FROM params"
                        " ORDER BY experiment_id, version DESC"
                    ).fetchall()
                )
                files = dict(
                    conn.execute(
                        "SELECT experiment_id, count(*) FROM files WHERE NOT deleted GROUP BY experiment_id"
                    ).fetchall()
                )
                metrics: Dict[int, Dict[str, Any]] = {}
                for exp_id, name, rows, summary in conn.execute(
                    "SELECT experiment_id, name, next_index, summary FROM metrics WHERE next_index > 0"
                ).fetchall():
                    last = {k: short_value(f.get("last")) for k, f in decode_nonfinite(orjson.loads(summary)).items()}
                    metrics.setdefault(exp_id, {})[name] = {"rows": rows, "last_index": rows - 1, "last": last}
            entries = []
            for exp_id, prefix, doc, next_log, updated_at in exps:
                p = params.get(exp_id)
                data = orjson.loads(p).get("data") if p is not None else None
                flat = {k: short_value(v) for k, v in decode_nonfinite(data).items()} if isinstance(data, dict) else {}
                entries.append(
                    Entry(
                        prefix,
                        orjson.loads(doc),
                        flat,
                        metrics.get(exp_id, {}),
                        next_log,
                        files.get(exp_id, 0),
                        updated_at,
                    )
                )
            self._snapshot, self._built = entries, time.monotonic()
            return entries

    def table(self, query: TableQuery, *, strict: bool = False, owner: Optional[str] = None) -> Dict[str, Any]:
        entries = self._entries()
        if owner is not None:  # an owner-scoped token: never through the shared cache, which holds every owner's
            return run_table([e for e in entries if e.owner == owner], query, strict=strict)
        with self._lock:
            return run_table(entries, query, strict=strict, cache=self._cache)

    def stored(self, prefix: str) -> None:
        self._stale = True
