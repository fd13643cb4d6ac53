"""Applying a batch to PostgreSQL, exactly once across any number of server processes.

One transaction per batch:

1. the session row is created if new and locked (``SELECT ... FOR UPDATE``): two processes holding
   the same resend wait for each other here, and the second sees the first one's ``acked_seq``;
2. the same planning as the embedded store (:func:`ml_dash.server.ingest.plan_batch`) decides which
   events are new;
3. the experiment row is locked, so metric indices and log sequence numbers are taken from counters
   that only one batch at a time can move: contiguous with many writers on many processes;
4. chunks of metric rows and log rows go in with binary ``COPY``; params, files and the documents
   with plain statements; then ``acked_seq`` moves;
5. COMMIT. The answer is sent only after it returns, and PostgreSQL's commit is durable
   (``synchronous_commit`` on, the default), so an acknowledged batch survives ``kill -9`` of the
   server process; a process killed before the commit leaves nothing (its connection ends, the
   transaction is rolled back) and the client's resend stores the batch once.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

import orjson

from ...._store._jsonio import iso_utc
from ...._store._track_meta import add_to_track_meta, entries_from_rows, new_track_meta
from ...._values import encode_nonfinite
from ....server.batch import Batch
from ....server.errors import ApiError
from ....server.ingest import Plan, plan_batch
from ....server.limits import Limits
from . import _docs
from ._chunks import chunks_of
from ._rows import one

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["ingest_batch", "COPY_CHUNKS", "CHUNK_TYPES", "COPY_LOGS", "LOG_TYPES"]

#: The COPY statements and column types of the bulk paths (ingest here, ``pg_import`` too).
COPY_CHUNKS = (
    "COPY metric_chunks (metric_id, first_index, n, created_at, layout, ts, floats, ints, json, stats,"
    " num_stats) FROM STDIN (FORMAT BINARY)"
)
CHUNK_TYPES = ["int8", "int8", "int4", "float8", "bytea", "bytea", "bytea", "bytea", "bytea", "bytea", "bytea"]
COPY_LOGS = "COPY logs (experiment_id, seq, ts, level, message, metadata) FROM STDIN (FORMAT BINARY)"
LOG_TYPES = ["int8", "int8", "float8", "text", "bytea", "bytea"]


def _jsonb(value: Any) -> Optional[bytes]:
    """A document as stored (orjson bytes in a bytea: see migrations/0001_initial.sql)."""
    return None if value is None else orjson.dumps(value)


def _doc(raw: Optional[bytes]) -> Any:
    return None if raw is None else orjson.loads(raw)


def ingest_batch(
    pool: ConnectionPool,
    batch: Batch,
    limits: Limits,
    crash_before_commit: bool = False,
    targets_for: Optional[Callable[[psycopg.Cursor[Any], str], Any]] = None,
) -> Dict[str, Any]:
    """Store the new events of ``batch``; the answer body. Raises ApiError (409) as PROTOCOL.md says."""
    prefix = str(batch.prefix)
    now = time.time()
    with pool.connection() as conn, conn.transaction():
        cur = conn.cursor()
        cur.execute(
            "INSERT INTO sessions (session, prefix, acked_seq, created_at, updated_at)"
            " VALUES (%s, %s, -1, %s, %s) ON CONFLICT (session) DO NOTHING",
            (batch.session, prefix, now, now),
        )
        owner_prefix, acked = one(
            cur.execute(
                "SELECT prefix, acked_seq FROM sessions WHERE session = %s FOR UPDATE", (batch.session,)
            ).fetchone()
        )
        if owner_prefix != prefix:
            raise ApiError(
                409,
                "session_prefix_mismatch",
                f"session {batch.session} writes {owner_prefix!r}, not {prefix!r}",
                acked_seq=acked,
            )

        def blob_size(checksum: str) -> Optional[int]:
            row = cur.execute("SELECT size FROM blobs WHERE checksum = %s", (checksum,)).fetchone()
            return None if row is None else row[0]

        extra = {} if targets_for is None else {"targets": targets_for(cur, prefix)}
        plan = plan_batch(batch, acked, limits, prefix, blob_size, **extra)
        if plan.last_seq > acked:
            _apply(cur, batch, plan, now)
            cur.execute(
                "UPDATE sessions SET acked_seq = %s, updated_at = %s WHERE session = %s",
                (plan.last_seq, now, batch.session),
            )
        if crash_before_commit:
            os._exit(70)  # fault injection: the process dies before the commit
    return plan.answer(batch.session)


def _apply(cur: psycopg.Cursor[Any], batch: Batch, plan: Plan, now: float) -> None:
    prefix = batch.prefix
    key = str(prefix)
    cur.execute(
        "INSERT INTO experiments (prefix, owner, project, doc, created_at, updated_at)"
        " VALUES (%s, %s, %s, NULL, %s, %s) ON CONFLICT (prefix) DO NOTHING",
        (key, prefix.owner, prefix.project, now, now),
    )
    exp_id, doc, next_log = one(
        cur.execute("SELECT id, doc, next_log_seq FROM experiments WHERE prefix = %s FOR UPDATE", (key,)).fetchone()
    )
    doc = _doc(doc)
    doc_changed = doc is None
    if doc is None and not any(op[0] in ("experiment", "status") for op in plan.ops):
        doc = _docs.new_experiment(prefix, now)  # the first stored batch creates the experiment
    params = None
    for op in plan.ops:
        if op[0] == "experiment":
            created = doc is None
            if created:
                doc = _docs.new_experiment(prefix, op[2])
            _docs.upsert_experiment(doc, op[1], op[2], created)
            doc_changed = True
        elif op[0] == "status":
            if doc is None:
                doc = _docs.new_experiment(prefix, op[3])
            _docs.set_status(doc, op[1], op[2], op[3])
            doc_changed = True
        elif op[0] == "params":
            if params is None:
                row = cur.execute(
                    "SELECT doc FROM params WHERE experiment_id = %s ORDER BY version DESC LIMIT 1", (exp_id,)
                ).fetchone()
                params = _doc(row[0]) if row else None
            params = _docs.merge_params(params, op[1], op[2])
            cur.execute(
                "INSERT INTO params (experiment_id, version, doc) VALUES (%s, %s, %s)",
                (exp_id, params["version"], _jsonb(params)),
            )
    if plan.metrics:
        _metrics(cur, exp_id, plan, now)
    if plan.logs:
        with cur.copy(COPY_LOGS) as cp:
            cp.set_types(LOG_TYPES)
            for seq, (ts, level, message, metadata) in enumerate(plan.logs, next_log):
                cp.write_row(
                    (
                        exp_id,
                        seq,
                        ts,
                        level,
                        message.encode("utf-8", "surrogatepass"),
                        _jsonb(metadata) if metadata else None,
                    )
                )
        next_log += len(plan.logs)
    for entry, _checksum in plan.files:  # idempotent by id: the first upload of an id stays
        place = file_place(entry)
        if cur.execute("SELECT 1 FROM files WHERE experiment_id = %s AND id = %s", (exp_id, entry["id"])).fetchone():
            continue
        # a new file where a live one is replaces it as upstream's overwrite does, softly: the
        # older entry gets deletedAt and its bytes stay (as the local writer's add_files)
        for old_id, raw in cur.execute(
            "SELECT id, entry FROM files WHERE experiment_id = %s AND place = %s AND NOT deleted", (exp_id, place)
        ).fetchall():
            old = _doc(raw)
            old["deletedAt"] = old["updatedAt"] = entry.get("uploadedAt") or iso_utc(now)
            cur.execute(
                "UPDATE files SET entry = %s, deleted = true WHERE experiment_id = %s AND id = %s",
                (_jsonb(old), exp_id, old_id),
            )
        cur.execute(
            "INSERT INTO files (experiment_id, id, entry, place) VALUES (%s, %s, %s, %s)",
            (exp_id, entry["id"], _jsonb(entry), place),
        )
    for topic, rows in plan.tracks.items():
        _track(cur, exp_id, topic, rows, now)
    for file_id, changes, ts in getattr(plan, "updates", ()):  # description, tags, metadata of live files
        row = cur.execute("SELECT entry FROM files WHERE experiment_id = %s AND id = %s", (exp_id, file_id)).fetchone()
        live = _doc(row[0]) if row else None
        if live is not None and not live.get("deletedAt"):
            live.update({k: v for k, v in changes.items() if k in ("description", "tags", "metadata")})
            live["updatedAt"] = iso_utc(ts)
            cur.execute(
                "UPDATE files SET entry = %s WHERE experiment_id = %s AND id = %s", (_jsonb(live), exp_id, file_id)
            )
    for file_id, ts in plan.deletes:  # soft delete: deletedAt set, the bytes kept
        row = cur.execute("SELECT entry FROM files WHERE experiment_id = %s AND id = %s", (exp_id, file_id)).fetchone()
        live = _doc(row[0]) if row else None
        if live is not None and not live.get("deletedAt"):
            live["deletedAt"] = live["updatedAt"] = iso_utc(ts)
            cur.execute(
                "UPDATE files SET entry = %s, deleted = true WHERE experiment_id = %s AND id = %s",
                (_jsonb(live), exp_id, file_id),
            )
    if doc_changed:
        cur.execute(
            "UPDATE experiments SET doc = %s, next_log_seq = %s, updated_at = %s WHERE id = %s",
            (_jsonb(doc), next_log, now, exp_id),
        )
    else:
        cur.execute("UPDATE experiments SET next_log_seq = %s, updated_at = %s WHERE id = %s", (next_log, now, exp_id))


def file_place(entry: Dict[str, Any]) -> str:
    """Where a file entry lives: its normalized path and its name (one live file per place)."""
    return "/" + str(entry.get("path") or "").strip("/") + "\x1f" + str(entry.get("filename") or "")


def _track(cur: psycopg.Cursor[Any], exp_id: int, topic: str, rows: List[Dict[str, Any]], now: float) -> None:
    """Append a topic's entries as the local writer does (one batch's same-timestamp entries merged,
    flattened, in timestamp order) and keep its metadata document."""
    entries = entries_from_rows(rows)
    folder = topic.replace("/", "_")
    cur.execute(
        "INSERT INTO tracks (experiment_id, topic, folder, doc) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (experiment_id, topic) DO NOTHING",
        (
            exp_id,
            topic,
            folder,
            _jsonb(new_track_meta(folder, topic, iso_utc(now))),
        ),
    )
    track_id, meta = one(
        cur.execute("SELECT id, doc FROM tracks WHERE experiment_id = %s AND topic = %s", (exp_id, topic)).fetchone()
    )
    meta = _doc(meta)
    seq = meta.get("totalEntries") or 0
    with cur.copy("COPY track_entries (track_id, seq, timestamp, entry) FROM STDIN (FORMAT BINARY)") as cp:
        cp.set_types(["int8", "int8", "float8", "bytea"])
        for i, e in enumerate(entries, seq):
            cp.write_row((track_id, i, e["timestamp"], orjson.dumps(e)))
    add_to_track_meta(meta, entries, iso_utc(now))
    cur.execute("UPDATE tracks SET doc = %s WHERE id = %s", (_jsonb(encode_nonfinite(meta)), track_id))


def _metrics(cur: psycopg.Cursor[Any], exp_id: int, plan: Plan, now: float) -> None:
    from ...._readmodel._columns import FieldInfo

    created = iso_utc(now)
    targets = []  # no other statement may run while the COPY is open: look the metrics up first
    for name, parts in plan.metrics.items():
        stored_name = "" if name is None else name
        cur.execute(
            "INSERT INTO metrics (experiment_id, name, doc) VALUES (%s, %s, %s)"
            " ON CONFLICT (experiment_id, name) DO NOTHING",
            (exp_id, stored_name, _jsonb(_docs.new_metric_doc(name, now))),
        )
        metric_id, first, mdoc, summary = one(
            cur.execute(
                "SELECT id, next_index, doc, summary FROM metrics WHERE experiment_id = %s AND name = %s",
                (exp_id, stored_name),
            ).fetchone()
        )
        fields = {k: FieldInfo.from_json(v) for k, v in orjson.loads(summary).items()}
        targets.append((metric_id, first, _doc(mdoc), fields, parts))
    ends = []
    with cur.copy(COPY_CHUNKS) as cp:
        cp.set_types(CHUNK_TYPES)
        for metric_id, index, _mdoc, fields, parts in targets:
            for chunk in chunks_of(parts):
                cp.write_row(chunk.copy_row(metric_id, index, now))
                index += chunk.n
                for key, arr, nonnull, last in chunk.fields:
                    info = fields.get(key)
                    if info is None:
                        info = fields[key] = FieldInfo(key, len(fields))
                    info.update(arr, nonnull, last)
            ends.append(index)
    for (metric_id, _first, mdoc, fields, _parts), index in zip(targets, ends):
        mdoc["totalDataPoints"] = index
        mdoc["nextIndex"] = index
        mdoc["updatedAt"] = created
        summary = orjson.dumps({k: f.as_json() for k, f in fields.items()})
        cur.execute(
            "UPDATE metrics SET next_index = %s, doc = %s, summary = %s WHERE id = %s",
            (index, _jsonb(mdoc), summary, metric_id),
        )
