"""Into the scale-out store: a local layout folder imported into PostgreSQL and the blob store
(``ml-dash server migrate --from DIR``; the overview is :mod:`.portability`).

Every experiment of the folder (an embedded server root or any ``dash_root``, upstream's included)
goes in with its file bytes; from a server root also its tokens (hashes) and writer sessions with
their ``acked_seq``. An experiment the database already has is skipped (and reported). Metric rows
are streamed, in runs of contiguous indices: at most one chunk of rows per metric is in memory.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import orjson

from ..._names import parse_prefix
from ..._store import ExperimentReader, list_experiments
from ..._store._jsonio import read_json
from ..._values import encode_nonfinite
from ..index import server_dir
from .postgres._ingest import CHUNK_TYPES, COPY_CHUNKS, COPY_LOGS, LOG_TYPES

if TYPE_CHECKING:
    from .postgres import PgBackend

__all__ = ["import_root"]


def _epoch(value: Any, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return default


# -- into PostgreSQL -----------------------------------------------------------------------------------


def _metric_runs(reader: ExperimentReader, name: Optional[str]) -> Iterator[Tuple[int, float, List[dict[str, Any]]]]:
    """(first index, createdAt, data rows) runs of contiguous indices, at most CHUNK_ROWS each."""
    from .postgres._chunks import CHUNK_ROWS

    path = reader.paths.metric_dir(name) / "data.jsonl"

    def runs(records: Iterator[dict[str, Any]]) -> Iterator[Tuple[int, float, List[dict[str, Any]]]]:
        first, created = 0, 0.0  # set with the first row of each run
        rows: List[Dict[str, Any]] = []
        for rec in records:
            idx, data = rec["index"], rec["data"]
            if rows and (idx != first + len(rows) or len(rows) >= CHUNK_ROWS):
                yield first, created, rows
                rows = []
            if not rows:
                first, created = idx, _epoch(rec.get("createdAt"), time.time())
            data = dict(data) if isinstance(data, dict) else {}
            data.setdefault("_ts", created)
            rows.append(data)
        if rows:
            yield first, created, rows

    def streamed() -> Iterator[dict[str, Any]]:
        last = -1
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise _Irregular() from None
                idx = rec.get("index") if isinstance(rec, dict) else None
                if type(idx) is not int or idx <= last:
                    raise _Irregular()
                last = idx
                yield rec

    try:
        yield from runs(streamed())
    except _Irregular:  # an upstream tree (duplicates, NaN literals, torn lines): the tolerant reader
        rows = reader.metric_rows(name)
        yield from runs(
            {"index": r["index"], "data": encode_nonfinite(r["data"]), "createdAt": r.get("createdAt")} for r in rows
        )


class _Irregular(Exception):
    pass


def _upload_file(raw: Any, path: Path, limit: int = 1 << 62) -> Tuple[str, int]:
    """Hash ``path``, then store it in the raw blob store (streamed); (checksum, size)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    checksum = h.hexdigest()
    up = raw.upload(checksum, limit)
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                up.write(chunk)
        up.finish()
    except BaseException:
        up.abort()
        raise
    return checksum, up.size


def import_root(src: Path | str, backend: PgBackend, say: Callable[[str], None] = print) -> Dict[str, int]:
    """Import every experiment under ``src`` into the PostgreSQL ``backend`` (see the module doc)."""
    from ..._readmodel._columns import FieldInfo
    from .postgres._chunks import chunks_of
    from .postgres._ingest import file_place
    from .postgres._rows import one

    src = Path(src)
    pool, raw = backend.pool, backend.raw_blobs
    counts = {"experiments": 0, "skipped": 0, "rows": 0, "logs": 0, "files": 0, "tokens": 0, "sessions": 0}
    for prefix_str in list_experiments(src):
        try:
            prefix = parse_prefix(prefix_str)
        except ValueError as exc:
            say(f"skipped {prefix_str!r}: {exc}")
            counts["skipped"] += 1
            continue
        reader = ExperimentReader(src, prefix)
        with pool.connection() as conn, conn.transaction():
            cur = conn.cursor()
            now = time.time()
            got = cur.execute(
                "INSERT INTO experiments (prefix, owner, project, doc, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (prefix) DO NOTHING RETURNING id",
                (str(prefix), prefix.owner, prefix.project, orjson.dumps(reader.experiment()), now, now),
            ).fetchone()
            if got is None:
                say(f"skipped {prefix_str}: the database has it already")
                counts["skipped"] += 1
                continue
            exp_id = got[0]
            params = read_json(reader.paths.parameters_json)
            if isinstance(params, dict) and isinstance(params.get("data"), dict):
                cur.execute(
                    "INSERT INTO params (experiment_id, version, doc) VALUES (%s, %s, %s)",
                    (exp_id, int(params.get("version") or 1), orjson.dumps(params)),
                )
            logs = reader.logs()
            with cur.copy(COPY_LOGS) as cp:
                cp.set_types(LOG_TYPES)
                for rec in logs:
                    meta = rec.get("metadata")
                    cp.write_row(
                        (
                            exp_id,
                            rec["sequenceNumber"],
                            _epoch(rec.get("timestamp"), now),
                            str(rec.get("level") or "info"),
                            str(rec.get("message", "")).encode("utf-8", "surrogatepass"),
                            orjson.dumps(meta) if meta else None,
                        )
                    )
            next_log = logs[-1]["sequenceNumber"] + 1 if logs else 0
            cur.execute("UPDATE experiments SET next_log_seq = %s WHERE id = %s", (next_log, exp_id))
            counts["logs"] += len(logs)
            for name in reader.metric_names():
                doc = reader.metric_info(name)
                metric_id = one(
                    cur.execute(
                        "INSERT INTO metrics (experiment_id, name, doc) VALUES (%s, %s, %s) RETURNING id",
                        (exp_id, name or "", orjson.dumps(doc)),
                    ).fetchone()
                )[0]
                end = 0
                fields: Dict[str, Any] = {}
                with cur.copy(COPY_CHUNKS) as cp:
                    cp.set_types(CHUNK_TYPES)
                    for first, created, rows in _metric_runs(reader, name):
                        index = first
                        for chunk in chunks_of(rows):
                            cp.write_row(chunk.copy_row(metric_id, index, created))
                            index += chunk.n
                            for key, arr, nonnull, last in chunk.fields:
                                info = fields.get(key)
                                if info is None:
                                    info = fields[key] = FieldInfo(key, len(fields))
                                info.update(arr, nonnull, last)
                        end = index
                        counts["rows"] += len(rows)
                doc["nextIndex"] = doc["totalDataPoints"] = end
                cur.execute(
                    "UPDATE metrics SET next_index = %s, doc = %s, summary = %s WHERE id = %s",
                    (end, orjson.dumps(doc), orjson.dumps({k: f.as_json() for k, f in fields.items()}), metric_id),
                )
            for topic in reader.track_topics():
                tdoc = read_json(reader.paths.track_dir(topic) / "metadata.json", {})
                entries = reader.track_entries(topic)
                track_id = one(
                    cur.execute(
                        "INSERT INTO tracks (experiment_id, topic, folder, doc) VALUES (%s, %s, %s, %s) RETURNING id",
                        (exp_id, topic, topic.replace("/", "_"), orjson.dumps(tdoc if isinstance(tdoc, dict) else {})),
                    ).fetchone()
                )[0]
                with cur.copy("COPY track_entries (track_id, seq, timestamp, entry) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(["int8", "int8", "float8", "bytea"])
                    for i, e in enumerate(entries):
                        cp.write_row((track_id, i, e["timestamp"], orjson.dumps(encode_nonfinite(e))))
            for entry in reader.files(include_deleted=True):
                try:
                    path = reader.file_path(entry)
                except (KeyError, ValueError):
                    say(f"{prefix_str}: a file entry that cannot be placed was left out: {str(entry.get('id'))[:64]!r}")
                    continue
                if path.is_file():
                    checksum, size = _upload_file(raw, path)
                    cur.execute(
                        "INSERT INTO blobs (checksum, size, created_at) VALUES (%s, %s, %s)"
                        " ON CONFLICT (checksum) DO NOTHING",
                        (checksum, size, now),
                    )
                    entry = {**entry, "checksum": checksum, "sizeBytes": size}
                elif not entry.get("deletedAt"):
                    say(f"{prefix_str}: the bytes of file {entry.get('filename')!r} are missing; its entry is kept")
                cur.execute(
                    "INSERT INTO files (experiment_id, id, entry, deleted, place) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (exp_id, str(entry["id"]), orjson.dumps(entry), bool(entry.get("deletedAt")), file_place(entry)),
                )
                counts["files"] += 1
        counts["experiments"] += 1
        say(f"imported {prefix_str}")
    index_db = server_dir(src) / "index.sqlite3"
    if index_db.is_file():  # an embedded server root: its tokens and sessions too
        db = sqlite3.connect(f"file:{index_db}?mode=ro", uri=True)
        try:
            tokens = db.execute("SELECT hash, owner, label, created_at FROM tokens").fetchall()
            sessions = db.execute("SELECT session, prefix, acked_seq, created_at, updated_at FROM sessions").fetchall()
        finally:
            db.close()
        with pool.connection() as conn, conn.transaction():
            for row in tokens:
                counts["tokens"] += conn.execute(
                    "INSERT INTO tokens (hash, owner, label, created_at) VALUES (%s, %s, %s, %s)"
                    " ON CONFLICT (hash) DO NOTHING",
                    row,
                ).rowcount
            for row in sessions:
                counts["sessions"] += conn.execute(
                    "INSERT INTO sessions (session, prefix, acked_seq, created_at, updated_at) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (session) DO NOTHING",
                    row,
                ).rowcount
    return counts
