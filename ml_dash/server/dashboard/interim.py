"""Stand-ins for the read-model routes the dashboard uses (``/api/v1/table``, ``/series``,
``/summary``), mounted only where the server does not already have them.

They answer the agreed shapes by reading whole files each time (cost grows with the data), which
is fine for a handful of small runs and nothing more: the server's read model replaces them, and
then they are never mounted.
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any, Dict, List, Optional

from aiohttp import web

from ..._store import list_experiments
from ..errors import ApiError

__all__ = ["mount_missing"]

_STATUSES = ("RUNNING", "COMPLETED", "FAILED", "CANCELLED")


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if v in ("NaN", "Infinity", "-Infinity"):
        return float(v.replace("Infinity", "inf"))
    return None


def _json_num(v: Optional[float]) -> Any:
    if v is None:
        return None
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _flatten(d: Dict[str, Any], into: Dict[str, Any], base: str = "") -> Dict[str, Any]:
    for k, v in d.items():
        key = f"{base}.{k}" if base else str(k)
        if isinstance(v, dict):
            _flatten(v, into, key)
        else:
            into[key] = v
    return into


def _iso_seconds(v: Any) -> Optional[float]:
    from datetime import datetime

    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


class _Interim:
    def __init__(self, state):
        self.st = state

    def _prefixes(self) -> List[str]:
        return sorted(set(self.st.index.experiments()) | set(list_experiments(self.st.root)))

    def summary(self, prefix: str) -> Dict[str, Any]:
        reader = self.st.reads.reader(prefix)
        if not reader.experiment():
            raise ApiError(404, "not_found", f"no experiment {prefix!r}")
        metrics = []
        for name in reader.metric_names():
            rows = reader.metric_rows(name)
            fields: Dict[str, Dict[str, Any]] = {}
            for row in rows:
                for k, v in (row.get("data") or {}).items():
                    f = fields.setdefault(k, {"last": None, "min": None, "max": None, "numeric": True})
                    f["last"] = v
                    x = _num(v)
                    if x is None:
                        if v is not None:
                            f["numeric"] = False
                        continue
                    if math.isfinite(x):
                        f["min"] = x if f["min"] is None else min(f["min"], x)
                        f["max"] = x if f["max"] is None else max(f["max"], x)
            metrics.append({"name": name, "count": len(rows), "last_index": rows[-1]["index"] if rows else None,
                            "fields": fields})
        return {"prefix": prefix, "metrics": metrics, "logs": len(reader.logs()), "files": len(reader.files())}

    def series(self, q) -> Dict[str, Any]:
        prefix = q.get("prefix")
        if not prefix:
            raise ApiError(400, "bad_query", "the 'prefix' query parameter is required")
        name, field, x = q.get("name") or None, q.get("field"), q.get("x") or "index"
        if not field:
            raise ApiError(400, "bad_query", "the 'field' query parameter is required")
        try:
            buckets = int(q.get("buckets") or 1000)
            start = float(q["start"]) if q.get("start") not in (None, "") else None
            end = float(q["end"]) if q.get("end") not in (None, "") else None
            after = int(q["after"]) if q.get("after") not in (None, "") else None
            limit = int(q.get("limit") or 10000)
        except ValueError:
            raise ApiError(400, "bad_query", "start, end, buckets, after and limit must be numbers") from None
        rows = self.st.reads.reader(prefix).metric_rows(name)
        total, last_index = len(rows), (rows[-1]["index"] if rows else None)
        xs: List[float] = []
        ys: List[Any] = []
        for row in rows:
            if after is not None and row["index"] <= after:
                continue
            data = row.get("data") or {}
            xv = row["index"] if x == "index" else _num(data.get(x))
            if xv is None or (start is not None and xv < start) or (end is not None and xv > end):
                continue
            xs.append(xv)
            ys.append(_num(data.get(field)))
            if after is not None and len(xs) >= limit:
                break
        head = {"name": name, "field": field, "x": x, "total": total, "last_index": last_index, "count": len(xs)}
        if after is not None or len(xs) <= buckets:
            return {**head, "mode": "raw", "points": {"x": xs, "y": [_json_num(v) for v in ys]}}
        out: Dict[str, list] = {"x": [], "last": [], "min": [], "max": [], "n": []}
        per = len(xs) / buckets
        for b in range(buckets):
            lo, hi = int(b * per), int((b + 1) * per)
            if hi <= lo:
                continue
            vals = [v for v in ys[lo:hi] if v is not None and math.isfinite(v)]
            out["x"].append(xs[hi - 1])
            out["last"].append(_json_num(ys[hi - 1]))
            out["min"].append(min(vals) if vals else None)
            out["max"].append(max(vals) if vals else None)
            out["n"].append(hi - lo)
        return {**head, "mode": "buckets", "points": out}

    def table(self, q) -> Dict[str, Any]:
        glob, text = q.get("glob") or None, (q.get("q") or "").lower()
        statuses = [s for s in q.getall("status", []) if s]
        for s in statuses:
            if s not in _STATUSES:
                raise ApiError(400, "bad_query", f"status must be one of {', '.join(_STATUSES)}")
        try:
            offset, limit = int(q.get("offset") or 0), min(int(q.get("limit") or 50), 1000)
        except ValueError:
            raise ApiError(400, "bad_query", "offset and limit must be integers") from None
        columns = [c for c in (q.get("columns") or "").split(",") if c]
        rows, avail_m, avail_p = [], set(), set()
        for prefix in self._prefixes():
            if glob and not fnmatch.fnmatchcase(prefix, glob):
                continue
            reader = self.st.reads.reader(prefix)
            exp = reader.experiment()
            if statuses and exp.get("status") not in statuses:
                continue
            tags = exp.get("tags") or []
            if text and text not in prefix.lower() and text not in str(exp.get("description") or "").lower() \
                    and not any(text in str(t).lower() for t in tags):
                continue
            params = _flatten(reader.params(), {})
            avail_p.update("p:" + k for k in params)
            summ = self.summary(prefix)
            last = {}
            for m in summ["metrics"]:
                for f, info in m["fields"].items():
                    key = f"m:{m['name'] or ''}:{f}"
                    avail_m.add(key)
                    last[key] = info["last"]
            started_at = exp.get("started_at") or exp.get("startedAt")
            ended_at = exp.get("ended_at") or exp.get("endedAt")
            started, ended = _iso_seconds(started_at), _iso_seconds(ended_at)
            values = {}
            for c in columns:
                values[c] = params.get(c[2:]) if c.startswith("p:") else last.get(c)
            owner, project, *_ = prefix.split("/")
            rows.append({
                "prefix": prefix, "owner": owner, "project": project, "name": prefix.rsplit("/", 1)[-1],
                "status": exp.get("status"), "tags": tags, "description": exp.get("description"),
                "startedAt": started_at, "endedAt": ended_at,
                "duration": (ended - started) if started is not None and ended is not None else None,
                "counts": {"metric_rows": sum(m["count"] for m in summ["metrics"]), "logs": summ["logs"],
                           "files": summ["files"]},
                "values": values,
            })
        sort, desc = q.get("sort") or "startedAt", (q.get("order") or "desc") == "desc"

        def key(r):
            v = r["values"].get(sort) if ":" in sort else r.get(sort)
            n = _num(v)
            return (v is None, n if n is not None else str(v))

        present = [r for r in rows if (r["values"].get(sort) if ":" in sort else r.get(sort)) is not None]
        absent = [r for r in rows if r not in present]
        try:
            present.sort(key=key, reverse=desc)
        except TypeError:
            present.sort(key=lambda r: str(key(r)[1]), reverse=desc)
        rows = present + absent
        return {"total": len(rows), "offset": offset, "limit": limit, "rows": rows[offset: offset + limit],
                "available": {"metrics": sorted(avail_m)[:500], "params": sorted(avail_p)[:500]}}


def mount_missing(app: web.Application, state) -> List[str]:
    """Add the stand-in routes the app does not have yet; the paths added."""
    from ..app import _json, read_auth

    have = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    interim = _Interim(state)

    def route(fn):
        async def handler(request: web.Request) -> web.Response:
            read_auth(request)
            return _json(await state.run(fn, request.query))
        return handler

    table = {
        "/api/v1/table": route(interim.table),
        "/api/v1/series": route(interim.series),
        "/api/v1/summary": route(lambda q: interim.summary(q.get("prefix") or "")),
    }
    added = []
    for path, handler in table.items():
        if path not in have:
            app.router.add_get(path, handler)
            added.append(path)
    return added
