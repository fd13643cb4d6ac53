"""Out of the scale-out store: PostgreSQL and its blobs written back out as a local layout, a
``dash_root`` that the SDK and upstream read (``ml-dash server export --to DIR``; the overview is
:mod:`.portability`).

Metric rows and track entries stream through server-side cursors (one chunk of metric rows in
memory at a time); an experiment's logs are gathered, then written in one go. File bytes are
copied from a blob folder or streamed from the bucket.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List

import orjson

from ..._names import parse_prefix
from ..._store._encode import encode_lines, encode_metric_rows
from ..._store._jsonio import atomic_write_json, iso_utc
from ..._store._layout import ExperimentPaths

if TYPE_CHECKING:
    import psycopg

    from .postgres import PgBackend

__all__ = ["export_store"]


def export_store(backend: PgBackend, dest: Path | str, say: Callable[[str], None] = print) -> Dict[str, int]:
    """Write every experiment of the PostgreSQL ``backend`` under ``dest`` as a local layout."""
    from .postgres._chunks import decode_rows

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pool, raw = backend.pool, backend.raw_blobs
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
