"""Moving data between the embedded layout and the scale-out store.

* :func:`import_root` (``ml-dash server migrate --from DIR``): every experiment of a local layout
  folder (an embedded server root or any ``dash_root``, upstream's included) into PostgreSQL, with
  the file bytes into the blob store; from a server root also its tokens (hashes) and writer
  sessions with their ``acked_seq``, so an agent that resumes a session after the move stores
  nothing twice. An experiment the database already has is skipped (and reported), so a move that
  was cut short can simply be run again.
* :func:`export_store` (``ml-dash server export --to DIR``): the scale-out store written back out as
  a ``dash_root`` (the files a local run writes), which the SDK and upstream read.

Metric rows are streamed: at most one chunk of rows per metric is in memory on the way in, one
chunk on the way out. A row keeps its index, data and ``_ts``; its ``createdAt`` (the server's time
of storing) becomes that of the first row of its chunk (chunks are at most 4,096 rows).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Tuple

import orjson

from ..._names import parse_prefix
from ..._store import ExperimentReader, list_experiments
from ..._store._encode import encode_lines, encode_metric_rows
from ..._store._jsonio import atomic_write_json, iso_utc, read_json
from ..._store._layout import ExperimentPaths
from ..._values import encode_nonfinite
from ..index import server_dir

if TYPE_CHECKING:
    import psycopg

    from .postgres import PgBackend

__all__ = ["import_root", "export_store"]

log = logging.getLogger("ml_dash.server")

_COPY_CHUNKS = (
    "COPY metric_chunks (metric_id, first_index, n, created_at, layout, ts, floats, ints, json, stats,"
    " num_stats) FROM STDIN (FORMAT BINARY)"
)
_CHUNK_TYPES = ["int8", "int8", "int4", "float8", "bytea", "bytea", "bytea", "bytea", "bytea", "bytea", "bytea"]
_COPY_LOGS = "COPY logs (experiment_id, seq, ts, level, message, metadata) FROM STDIN (FORMAT BINARY)"
_LOG_TYPES = ["int8", "int8", "float8", "text", "bytea", "bytea"]


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
    pool, raw = backend.pool, backend._blobs.raw
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
            with cur.copy(_COPY_LOGS) as cp:
                cp.set_types(_LOG_TYPES)
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
                with cur.copy(_COPY_CHUNKS) as cp:
                    cp.set_types(_CHUNK_TYPES)
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


# -- out of PostgreSQL ---------------------------------------------------------------------------------


def export_store(backend: PgBackend, dest: Path | str, say: Callable[[str], None] = print) -> Dict[str, int]:
    """Write every experiment of the PostgreSQL ``backend`` under ``dest`` as a local layout."""
    from .postgres._chunks import decode_rows

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pool, raw = backend.pool, backend._blobs.raw
    counts = {"experiments": 0, "rows": 0, "logs": 0, "files": 0}
    with pool.connection() as conn:
        experiments = conn.execute("SELECT id, prefix, doc, next_log_seq FROM experiments ORDER BY prefix").fetchall()
    for exp_id, prefix_str, doc, next_log in experiments:
        paths = ExperimentPaths(dest, parse_prefix(prefix_str))
        paths.dir.mkdir(parents=True, exist_ok=True)
        with pool.connection() as conn:
            atomic_write_json(paths.experiment_json, orjson.loads(doc) if doc else {})
            row = conn.execute(
                "SELECT doc FROM params WHERE experiment_id = %s ORDER BY version DESC LIMIT 1", (exp_id,)
            ).fetchone()
            if row:
                atomic_write_json(paths.parameters_json, orjson.loads(row[0]))
            n_logs = _export_logs(conn, exp_id, paths)
            counts["logs"] += n_logs
            if n_logs or next_log:
                paths.log_sequence.write_text(str(next_log))
            for metric_id, name, mdoc in conn.execute(
                "SELECT id, name, doc FROM metrics WHERE experiment_id = %s", (exp_id,)
            ).fetchall():
                mdir = paths.metric_dir(name or None)
                mdir.mkdir(parents=True, exist_ok=True)
                with open(mdir / "data.jsonl", "wb") as fh, conn.cursor(name=f"chunks{metric_id}") as cur:
                    cur.execute(
                        "SELECT first_index, n, created_at, layout, ts, floats, ints, json FROM metric_chunks"
                        " WHERE metric_id = %s ORDER BY first_index",
                        (metric_id,),
                    )
                    for first, n, created, *record in cur:
                        rows = decode_rows((n, *record), 0, n)
                        for blob in encode_metric_rows(rows, first, iso_utc(created)):
                            fh.write(blob)
                        counts["rows"] += n
                    fh.flush()
                    os.fsync(fh.fileno())
                atomic_write_json(mdir / "metadata.json", orjson.loads(mdoc))
            for track_id, topic, tdoc in conn.execute(
                "SELECT id, topic, doc FROM tracks WHERE experiment_id = %s", (exp_id,)
            ).fetchall():
                tdir = paths.track_dir(topic)
                tdir.mkdir(parents=True, exist_ok=True)
                with open(tdir / "data.jsonl", "wb") as fh, conn.cursor(name=f"track{track_id}") as cur:
                    cur.execute("SELECT entry FROM track_entries WHERE track_id = %s ORDER BY seq", (track_id,))
                    for (line,) in cur:
                        fh.write(bytes(line) + b"\n")
                atomic_write_json(tdir / "metadata.json", orjson.loads(tdoc))
            entries = [
                orjson.loads(r[0])
                for r in conn.execute(
                    "SELECT entry FROM files WHERE experiment_id = %s ORDER BY seq", (exp_id,)
                ).fetchall()
            ]
        for entry in entries:
            out = paths.file_dir(str(entry.get("path") or ""), str(entry["id"])) / entry["filename"]
            out.parent.mkdir(parents=True, exist_ok=True)
            _export_blob(raw, entry["checksum"], out)
            counts["files"] += 1
        if entries:
            atomic_write_json(paths.files_metadata, {"files": entries})
        counts["experiments"] += 1
        say(f"exported {prefix_str}")
    return counts


def _export_logs(conn: psycopg.Connection[Any], exp_id: int, paths: ExperimentPaths) -> int:
    count = 0
    with conn.cursor(name=f"logs{exp_id}") as cur:
        cur.execute(
            "SELECT seq, ts, level, message, metadata FROM logs WHERE experiment_id = %s ORDER BY seq", (exp_id,)
        )
        batch: List[dict[str, Any]] = []
        for seq, ts, level, message, metadata in cur:
            rec = {
                "sequenceNumber": seq,
                "timestamp": iso_utc(ts),
                "level": level,
                "message": bytes(message).decode("utf-8", "surrogatepass"),
            }
            if metadata:
                rec["metadata"] = orjson.loads(metadata)
            batch.append(rec)
        if batch:
            paths.logs_dir.mkdir(parents=True, exist_ok=True)
            with open(paths.logs_jsonl, "wb") as fh:
                for blob in encode_lines(batch):
                    fh.write(blob)
            count = len(batch)
    return count


def _export_blob(raw: Any, checksum: str, out: Path) -> None:
    source = raw.source(checksum, None) if hasattr(raw, "source") else None
    tmp = out.with_name(f".{out.name}.export")
    if source is None:  # a blob folder
        shutil.copyfile(raw.path(checksum), tmp)
    else:
        import asyncio

        import aiofiles

        async def pull() -> None:
            # The chunks stream from the bucket on this loop: the local writes go to aiofiles'
            # threads, so a slow disk never holds up the download (a write of a MiB blocked it).
            async with aiofiles.open(tmp, "wb") as fh:
                async for chunk in source.chunks(0, source.size):
                    await fh.write(chunk)

        asyncio.run(pull())
    os.replace(tmp, out)
