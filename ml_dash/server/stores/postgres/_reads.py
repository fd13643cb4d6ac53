"""The read API over PostgreSQL: the same bodies as the embedded store's :class:`ml_dash.server.reads.Reads`."""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

import orjson

from ...._errors import InvalidPrefix
from ...._names import check_filename, check_relpath
from ...._store._jsonio import iso_utc
from ...batch import parse_server_prefix
from ...errors import ApiError
from ._chunks import CHUNK_ROWS, decode_rows

if TYPE_CHECKING:
    from psycopg_pool import ConnectionPool

    from . import PgBlobs

__all__ = ["PgReads"]

_CHUNK_COLS = "c.first_index, c.n, c.created_at, c.layout, c.ts, c.floats, c.ints, c.json"


def _doc(raw: Optional[Union[str, bytes]]) -> Any:
    return None if raw is None else orjson.loads(raw)


def _prefix(prefix: str) -> str:
    try:
        return str(parse_server_prefix(prefix))
    except InvalidPrefix as exc:
        raise ApiError(400, "invalid_prefix", str(exc)) from None


def _metric_name(name: Optional[str]) -> str:
    if not name:
        return ""
    try:
        return check_relpath(name, "metric name")
    except InvalidPrefix as exc:
        raise ApiError(400, "invalid_name", str(exc)) from None


class PgReads:
    """Read operations, each returning the JSON body of its route (see PROTOCOL.md, "Read API")."""

    def __init__(self, pool: ConnectionPool, max_page: int, blobs: PgBlobs) -> None:
        self.pool = pool
        self.max_page = max_page
        self.blobs = blobs

    def _one(self, sql: str, args: tuple[Any, ...]) -> Optional[tuple[Any, ...]]:
        with self.pool.connection() as conn:
            return conn.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...]) -> List[tuple[Any, ...]]:
        with self.pool.connection() as conn:
            return conn.execute(sql, args).fetchall()

    def page_args(self, start: Any, limit: Any) -> Tuple[int, int]:
        try:
            start = int(start or 0)
            limit = int(limit) if limit not in (None, "") else self.max_page
        except (TypeError, ValueError):
            raise ApiError(400, "bad_query", "'start' and 'limit' must be integers") from None
        if start < 0 or limit < 1:
            raise ApiError(400, "bad_query", "'start' must be >= 0 and 'limit' >= 1")
        return start, min(limit, self.max_page)

    def _exp_id(self, prefix: str) -> Optional[int]:
        row = self._one("SELECT id FROM experiments WHERE prefix = %s", (_prefix(prefix),))
        return None if row is None else row[0]

    # -- the routes ------------------------------------------------------------------------------------

    def experiments(self, owner: Optional[str], project: Optional[str], glob: Optional[str]) -> Dict[str, Any]:
        sql, args, conds = "SELECT prefix, doc FROM experiments", [], []
        if owner:
            conds.append("owner = %s")
            args.append(owner)
        if project:
            conds.append("project = %s")
            args.append(project)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        rows = self._all(sql + " ORDER BY prefix", tuple(args))
        return {
            "experiments": [
                {**(_doc(doc) or {}), "prefix": prefix}
                for prefix, doc in rows
                if not glob or fnmatch.fnmatchcase(prefix, glob)
            ]
        }

    def experiment_prefixes(self) -> List[str]:
        return [r[0] for r in self._all("SELECT prefix FROM experiments ORDER BY prefix", ())]

    def experiment(self, prefix: str) -> Dict[str, Any]:
        row = self._one("SELECT doc FROM experiments WHERE prefix = %s", (_prefix(prefix),))
        if row is None or not row[0]:
            raise ApiError(404, "not_found", f"no experiment {prefix!r}")
        return _doc(row[0])

    def params(self, prefix: str) -> Dict[str, Any]:
        row = self._one(
            "SELECT p.doc FROM params p JOIN experiments e ON e.id = p.experiment_id"
            " WHERE e.prefix = %s ORDER BY p.version DESC LIMIT 1",
            (_prefix(prefix),),
        )
        return {"data": _doc(row[0]).get("data", {}) if row else {}}

    def params_doc(self, prefix: str) -> Optional[Dict[str, Any]]:
        row = self._one(
            "SELECT p.doc FROM params p JOIN experiments e ON e.id = p.experiment_id"
            " WHERE e.prefix = %s ORDER BY p.version DESC LIMIT 1",
            (_prefix(prefix),),
        )
        return _doc(row[0]) if row else None

    def logs(self, prefix: str, start: Any, limit: Any, level: Optional[str]) -> Dict[str, Any]:
        start, limit = self.page_args(start, limit)
        sql = (
            "SELECT l.seq, l.ts, l.level, l.message, l.metadata FROM logs l JOIN experiments e"
            " ON e.id = l.experiment_id WHERE e.prefix = %s AND l.seq >= %s"
        )
        args: list[Any] = [_prefix(prefix), start]
        if level:
            sql += " AND l.level = %s"
            args.append(level)
        rows = self._all(sql + " ORDER BY l.seq LIMIT %s", (*args, limit))
        out = []
        for seq, ts, lvl, message, metadata in rows:
            rec = {
                "sequenceNumber": seq,
                "timestamp": iso_utc(ts),
                "level": lvl,
                "message": bytes(message).decode("utf-8", "surrogatepass"),
            }
            if metadata:
                rec["metadata"] = _doc(metadata)
            out.append(rec)
        return {"logs": out, "next": out[-1]["sequenceNumber"] + 1 if len(out) >= limit else None}

    def metric_names(self, prefix: str) -> Dict[str, Any]:
        rows = self._all(
            "SELECT m.name FROM metrics m JOIN experiments e ON e.id = m.experiment_id"
            " WHERE e.prefix = %s AND m.next_index > 0 ORDER BY m.name",
            (_prefix(prefix),),
        )
        return {"metrics": [name or None for (name,) in rows]}

    def metric_doc(self, prefix: str, name: Optional[str]) -> Optional[Dict[str, Any]]:
        row = self._one(
            "SELECT m.doc FROM metrics m JOIN experiments e ON e.id = m.experiment_id"
            " WHERE e.prefix = %s AND m.name = %s",
            (_prefix(prefix), _metric_name(name)),
        )
        return _doc(row[0]) if row else None

    def metric_rows(self, prefix: str, name: Optional[str], start: Any, limit: Any) -> Dict[str, Any]:
        start, limit = self.page_args(start, limit)
        rows = self.metric_range(prefix, name, start, start + limit)
        return {"rows": rows, "next": rows[-1]["index"] + 1 if len(rows) >= limit else None}

    def metric_range(self, prefix: str, name: Optional[str], start: int, stop: Optional[int]) -> List[dict[str, Any]]:
        """Rows ``{"index", "data", "createdAt"}`` with start <= index < stop (None: to the end)."""
        sql = (
            f"SELECT {_CHUNK_COLS} FROM metric_chunks c JOIN metrics m ON m.id = c.metric_id"  # noqa: S608
            " JOIN experiments e ON e.id = m.experiment_id"
            " WHERE e.prefix = %s AND m.name = %s AND c.first_index > %s"
        )
        args: list[Any] = [_prefix(prefix), _metric_name(name), start - CHUNK_ROWS]
        if stop is not None:
            sql += " AND c.first_index < %s"
            args.append(stop)
        out: List[dict[str, Any]] = []
        for first, n, created, *record in self._all(sql + " ORDER BY c.first_index", tuple(args)):
            lo = max(0, start - first)
            hi = n if stop is None else min(n, stop - first)
            if lo >= hi:
                continue
            when = iso_utc(created)
            for i, data in enumerate(decode_rows((n, *record), lo, hi), first + lo):
                out.append({"index": i, "data": data, "createdAt": when})
        return out

    def track_topics(self, prefix: str) -> Dict[str, Any]:
        rows = self._all(
            "SELECT t.topic FROM tracks t JOIN experiments e ON e.id = t.experiment_id"
            " WHERE e.prefix = %s ORDER BY t.folder",
            (_prefix(prefix),),
        )
        return {"tracks": [r[0] for r in rows]}

    def track_entries(self, prefix: str, topic: Optional[str], start: Any, limit: Any) -> Dict[str, Any]:
        """One page of a topic's entries in timestamp order (same-timestamp rows merged, later
        winning). The database picks the page's timestamps and counts them, so a page (the
        dashboard's live tail) moves only its own rows, not the whole topic."""
        start, limit = self.page_args(start, limit)
        try:
            topic = check_relpath(topic or "", "track topic")
        except InvalidPrefix as exc:
            raise ApiError(400, "invalid_name", str(exc)) from None
        rows = self._all(
            "WITH tr AS (SELECT t.id FROM tracks t JOIN experiments e ON e.id = t.experiment_id"
            "   WHERE e.prefix = %s AND t.topic = %s),"
            " st AS (SELECT DISTINCT te.timestamp FROM track_entries te WHERE te.track_id = (SELECT id FROM tr)),"
            " pg AS (SELECT min(p.timestamp) AS lo, max(p.timestamp) AS hi FROM"
            "   (SELECT timestamp FROM st ORDER BY timestamp OFFSET %s LIMIT %s) p)"
            " SELECT (SELECT count(*) FROM st), te.timestamp, te.entry FROM pg LEFT JOIN track_entries te"
            "   ON te.track_id = (SELECT id FROM tr) AND te.timestamp BETWEEN pg.lo AND pg.hi"
            " ORDER BY te.timestamp, te.seq",
            (_prefix(prefix), topic, start, limit),
        )
        total = int(rows[0][0]) if rows else 0
        merged: Dict[float, dict[str, Any]] = {}
        for _, stamp, raw in rows:
            if raw is None:
                continue  # past the end: the one row of the outer join, with the count alone
            rec = orjson.loads(raw)
            if stamp in merged:
                merged[stamp].update(rec)
            else:
                merged[stamp] = rec
        nxt = start + limit if start + limit < total else None
        return {"entries": list(merged.values()), "next": nxt, "total": total}

    def files(self, prefix: str, path: Optional[str], include_deleted: bool = False) -> Dict[str, Any]:
        want = None
        if path and path.strip("/"):
            try:
                want = "/" + check_relpath(path, "file path")
            except InvalidPrefix as exc:
                raise ApiError(400, "invalid_name", str(exc)) from None
        rows = self._all(
            "SELECT f.entry FROM files f JOIN experiments e ON e.id = f.experiment_id"
            " WHERE e.prefix = %s ORDER BY f.seq",
            (_prefix(prefix),),
        )
        out = []
        for (raw,) in rows:
            entry = _doc(raw)
            if entry.get("deletedAt") and not include_deleted:
                continue
            p = str(entry.get("path", ""))
            if want is not None and not (p == want or p.startswith(want + "/")):
                continue
            out.append(entry)
        return {"files": out}

    def file(self, prefix: str, file_id: Optional[str]) -> Tuple[Any, Dict[str, Any]]:
        """(the blob to send, the entry) of a file by id; 404 when there is none."""
        row = self._one(
            "SELECT f.entry FROM files f JOIN experiments e ON e.id = f.experiment_id"
            " WHERE e.prefix = %s AND f.id = %s",
            (_prefix(prefix), file_id or ""),
        )
        entry = _doc(row[0]) if row is not None else None
        if entry is not None and not entry.get("deletedAt"):
            try:
                check_filename(entry.get("filename"))
            except InvalidPrefix:
                pass
            else:
                return self.blobs.source(entry["checksum"], entry.get("sizeBytes")), entry
        raise ApiError(404, "not_found", f"no file with id {file_id!r} in {prefix!r}")
