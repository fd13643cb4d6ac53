"""Appends to one experiment's local layout. Safe for several threads and processes at once.

Every public method expects the caller to hold :meth:`ExperimentWriter.lock` (one lock per batch,
not per row). The next metric index and log sequence number are read from the data files
themselves (their last complete line), so a crash, another process, or an upstream tree can never
make us repeat or skip a number; a cached value is used only while the file is exactly as we left it.
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from .._names import Prefix
from .._values import encode_nonfinite
from . import _files_listing
from ._encode import ColumnRows, count_rows, encode_lines, encode_metric_parts, encode_metric_rows
from ._jsonio import atomic_write_json, ensure_newline_end, iso_utc, last_value_of, locked, read_json
from ._layout import ExperimentPaths
from ._track_meta import add_to_track_meta, entries_from_rows, mark_counted, new_track_meta, recount_tail

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple

__all__ = [
    "ExperimentWriter",
    "LogRow",
    "ColumnRows",
    "TrackConflict",
]


class TrackConflict(ValueError):
    """Two track topics that map to one folder (``a/b`` and ``a_b``)."""


#: (epoch seconds, level, message, metadata or None)
if TYPE_CHECKING:
    LogRow = Tuple[float, str, str, Optional[Dict[str, Any]]]
else:  # importable, without importing typing at run time
    LogRow = "Tuple[float, str, str, Optional[Dict[str, Any]]]"


class _Appender:
    """An append handle on one JSONL file plus what we know of its end."""

    __slots__ = ("path", "fh", "size", "next", "foreign")

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.fh = open(path, "a+b")  # readable too: the torn-tail check preads the last byte
        self.size = -1
        self.next = 0
        #: True when the last next_number() found the file not as we left it (first use, or
        #: another writer): what we cached about it is stale.
        self.foreign = True

    def next_number(self, key: str, floor: int = 0) -> int:
        size = os.fstat(self.fh.fileno()).st_size
        self.foreign = size != self.size
        if self.foreign:  # someone else wrote, or first use: ask the file
            last = last_value_of(self.path, key)
            self.next = floor if last is None else last + 1
            ensure_newline_end(self.fh)
        return self.next

    def write(self, chunks: Iterable[bytes], count: int) -> None:
        for chunk in chunks:
            self.fh.write(chunk)
        self.fh.flush()
        self.size = os.fstat(self.fh.fileno()).st_size
        self.next += count

    def close(self) -> None:
        self.fh.close()

    def forget_after_fork(self) -> None:
        """In a forked child: close this process's copy of the descriptor, never flushing the
        buffer (closing the raw file under it skips the buffer; write() leaves it empty anyway)."""
        self.fh.raw.close()


class ExperimentWriter:
    """Writes one experiment in the upstream-compatible layout. Hold :meth:`lock` around calls."""

    def __init__(self, root: os.PathLike[str] | str, prefix: Prefix, metadata_interval: float = 0.0):
        self.paths = ExperimentPaths(root, prefix)
        self._appenders: Dict[Path, _Appender] = {}
        #: A metric's metadata.json (derived from its data.jsonl) is rewritten at most once per
        #: this many seconds, and by write_pending_metadata(); 0 rewrites it with every append.
        self._metadata_interval = metadata_interval
        self._metas: Dict[Path, Dict[str, Any]] = {}  # metadata.json path -> its content, as we wrote it
        self._meta_written: Dict[Path, float] = {}  # ... -> time.monotonic() of our last write
        self._meta_pending: Dict[Path, Dict[str, Any]] = {}  # ... -> content not written yet
        #: A metric's (or a topic's) data.jsonl and metadata.json paths, made once (~30 us each
        #: time: the name's check and three joins, inside the handover the caller waits for).
        self._files: Dict[Tuple[str, Optional[str]], Tuple[Path, Path]] = {}

    @contextmanager
    def lock(self) -> Iterator[None]:
        with locked(self.paths.lock):
            yield

    def _appender(self, path: Path) -> _Appender:
        app = self._appenders.get(path)
        if app is None:
            app = self._appenders[path] = _Appender(path)
        return app

    def _files_of(self, kind: str, name: Optional[str]) -> Tuple[Path, Path]:
        """``data.jsonl`` and ``metadata.json`` of a metric (``kind`` "metric") or a track topic."""
        files = self._files.get((kind, name))
        if files is None:
            if kind == "metric":
                folder = self.paths.metric_dir(name)
            else:
                assert name is not None
                folder = self.paths.track_dir(name)
            files = self._files[(kind, name)] = (folder / "data.jsonl", folder / "metadata.json")
        return files

    def close(self) -> None:
        """Write what metadata is pending (hold :meth:`lock`), and close the open files."""
        self.write_pending_metadata()
        for app in self._appenders.values():
            app.close()
        self._appenders.clear()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's open files without writing anything (no pending
        metadata: that is the parent's to write), so that none is left to the garbage collector."""
        for app in self._appenders.values():
            app.forget_after_fork()
        self._appenders.clear()
        self._meta_pending.clear()

    def write_pending_metadata(self) -> None:
        """Bring every metric's and track topic's metadata.json up to date (see ``metadata_interval``)."""
        pending, self._meta_pending = self._meta_pending, {}
        for path, meta in pending.items():
            self._catch_up(path, meta)
            atomic_write_json(path, encode_nonfinite(meta), fsync=False)
            self._meta_written[path] = time.monotonic()

    def _catch_up(self, meta_path: Path, meta: Dict[str, Any]) -> None:
        """Before a pending document is written: count what another writer (a second process of
        the same run) appended to its data file since our last append. Written as it stood, it
        would count less than the file holds, and upstream, which numbers a metric's next point
        from ``nextIndex``, would give that index a second time."""
        app = self._appenders.get(meta_path.parent / "data.jsonl")
        if app is None:
            return
        fd = app.fh.fileno()
        size = os.fstat(fd).st_size
        if size == app.size:
            return
        if "topic" in meta:  # a track topic's document
            recount_tail(meta, fd, size)
        else:
            following = app.next_number("index")
            meta["nextIndex"] = following
            meta["totalDataPoints"] = max(following, int(meta.get("totalDataPoints") or 0))

    # -- experiment.json ---------------------------------------------------------------------------

    def upsert_experiment(
        self, fields: Dict[str, Any], ts: float, current: Any = None, write: bool = True
    ) -> Dict[str, Any]:
        """Create experiment.json, or merge the given non-None fields into it (``metadata`` merges by key).

        ``current``: the record to start from (default: read the file); ``write=False`` returns the
        new record without writing it, so that several changes cost one write (``write_experiment``).
        """
        p = self.paths
        if current is None:
            current = read_json(p.experiment_json)
        now = iso_utc(ts)
        record: Dict[str, Any]
        if not isinstance(current, dict):
            record = current = {
                "name": p.prefix.name,
                "project": p.prefix.project,
                "description": None,
                "tags": [],
                "bindrs": [],
                "prefix": str(p.prefix),
                "metadata": None,
                "created_at": now,
                "write_protected": False,
            }
        else:
            record = current
            current["updated_at"] = now
        for key, value in fields.items():
            if value is None:
                continue
            if key == "metadata" and isinstance(current.get("metadata"), dict):
                current["metadata"] = {**current["metadata"], **value}
            else:
                current[key] = value
        if write:
            atomic_write_json(p.experiment_json, current)
        return record

    def set_status(
        self,
        status: str,
        ts: float,
        reason: Optional[str] = None,
        current: Optional[Dict[str, Any]] = None,
        write: bool = True,
    ) -> Dict[str, Any]:
        """Record a status change with its time; RUNNING also records ``started_at``, the others
        ``ended_at``. ``current`` and ``write`` as for :meth:`upsert_experiment`."""
        p = self.paths
        if current is None:
            current = read_json(p.experiment_json)
        if not isinstance(current, dict):
            current = self.upsert_experiment({}, ts, write=False)
        when = iso_utc(ts)
        current["status"] = status
        current["status_updated_at"] = when
        if status == "RUNNING":
            current["started_at"] = when
            current.pop("ended_at", None)
            current.pop("status_reason", None)
        else:
            current["ended_at"] = when
        if reason:
            current["status_reason"] = reason
        if write:
            atomic_write_json(p.experiment_json, current)
        return current

    def write_experiment(self, record: Dict[str, Any]) -> None:
        """Replace experiment.json with ``record`` (atomically, fsynced)."""
        atomic_write_json(self.paths.experiment_json, record)

    # -- metrics -----------------------------------------------------------------------------------

    def append_metric(self, name: Optional[str], rows: Sequence[Any], ts: float, *, dicts_only: bool = False) -> int:
        """Append rows, each the user's fields plus ``_ts`` (or a ColumnRows block of such rows,
        in order among them); returns the first index given. ``dicts_only``: the caller knows
        there is no ColumnRows block (local mode's batches), so they are not looked for."""
        data_path, meta_path = self._files_of("metric", name)
        app = self._appender(data_path)
        first = app.next_number("index")
        created = iso_utc(ts)
        if not dicts_only and ColumnRows in set(map(type, rows)):  # the server's columnar blocks among them
            app.write(encode_metric_parts(rows, first, created), count_rows(rows))
        else:  # plain row dicts: local mode's batches
            app.write(encode_metric_rows(rows, first, created), len(rows))
        meta = None if app.foreign else self._metas.get(meta_path)
        if meta is None:
            meta = read_json(meta_path)
        if not isinstance(meta, dict):
            label = "None" if name is None else name
            meta = {
                "metricId": f"local-metric-{label}",
                "name": name,
                "description": None,
                "tags": [],
                "metadata": None,
                "createdAt": created,
            }
        meta["totalDataPoints"] = max(app.next, int(meta.get("totalDataPoints") or 0))
        meta["nextIndex"] = app.next
        meta["updatedAt"] = created
        self._keep_meta(meta_path, meta)
        return first

    def _keep_meta(self, path: Path, meta: Dict[str, Any]) -> None:
        """Remember a metadata document derived from a data file and write it now, or, while rows
        stream in, within ``metadata_interval`` (no fsync: the data file is the truth on resume)."""
        self._metas[path] = meta
        now = time.monotonic()
        if now - self._meta_written.get(path, -1e9) >= self._metadata_interval:
            self._meta_pending.pop(path, None)
            atomic_write_json(path, encode_nonfinite(meta), fsync=False)
            self._meta_written[path] = now
        else:
            self._meta_pending[path] = meta

    # -- logs --------------------------------------------------------------------------------------

    def append_logs(self, rows: Sequence[LogRow]) -> int:
        """Append log rows; returns the first sequence number given."""
        p = self.paths
        app = self._appender(p.logs_jsonl)
        try:  # upstream's counter, used only when the file has no readable line
            floor = int(p.log_sequence.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            floor = 0
        first = app.next_number("sequenceNumber", floor)
        records = []
        for seq, (ts, level, message, metadata) in enumerate(rows, first):
            rec = {"sequenceNumber": seq, "timestamp": iso_utc(ts), "level": level, "message": message}
            if metadata:
                rec["metadata"] = metadata
            records.append(rec)
        app.write(encode_lines(records), len(records))
        tmp = p.log_sequence.with_name(".log_sequence.tmp")
        tmp.write_text(str(app.next))
        os.replace(tmp, p.log_sequence)
        return first

    # -- parameters --------------------------------------------------------------------------------

    def merge_params(self, flat: Dict[str, Any], ts: float) -> Dict[str, Any]:
        """Merge dot-flattened parameters into parameters.json, adding 1 to its version."""
        p = self.paths
        current = read_json(p.parameters_json)
        now = iso_utc(ts)
        if not isinstance(current, dict) or not isinstance(current.get("data"), dict):
            current = {"version": 0, "data": {}, "createdAt": now}
        current.setdefault("createdAt", now)  # upstream dropped it on update
        current["data"].update(encode_nonfinite(flat))
        current["version"] = int(current.get("version") or 0) + 1
        current["updatedAt"] = now
        atomic_write_json(p.parameters_json, current)
        return current

    # -- files (files/.files_metadata.json: ``_files_listing``) -----------------------------------

    def add_files(self, entries: Sequence[Dict[str, Any]]) -> None:
        """Append file entries (the bytes are already in place); see ``_files_listing.add``."""
        _files_listing.add(self.paths.files_metadata, entries)

    def delete_files(self, deletions: Sequence[Tuple[str, float]]) -> int:
        """Soft-delete files by id; returns how many were deleted now."""
        return _files_listing.delete(self.paths.files_metadata, deletions)

    def update_files(self, updates: Sequence[Tuple[str, Dict[str, Any], float]]) -> int:
        """Replace description, tags or metadata of live files by id; returns how many changed."""
        return _files_listing.update(self.paths.files_metadata, updates)

    def delete_file(self, file_id: str, ts: float) -> bool:
        """Soft delete: set ``deletedAt``. Returns False when there is no such live file."""
        return _files_listing.delete(self.paths.files_metadata, [(file_id, ts)]) == 1

    # -- tracks ------------------------------------------------------------------------------------

    def append_track(self, topic: str, rows: Sequence[Dict[str, Any]], ts: float) -> int:
        """Append a topic's entries (the user's fields plus ``_ts``, the entry's timestamp) in
        upstream's layout. Entries of this batch with the same timestamp merge (later fields win);
        the batch is written in timestamp order. Raises TrackConflict when the folder holds another
        topic (``a/b`` and ``a_b`` share ``tracks/a_b``). Returns the entries written."""
        data_path, meta_path = self._files_of("track", topic)
        tdir = data_path.parent
        app = self._appender(data_path)
        app.next_number("timestamp")  # ends a torn last line before ours; tells if another writer wrote
        meta = None if app.foreign else self._metas.get(meta_path)
        if meta is None:
            meta = read_json(meta_path)
            if isinstance(meta, dict):  # entries past what it counts: written after its last rewrite
                recount_tail(meta, app.fh.fileno(), os.fstat(app.fh.fileno()).st_size)
        if isinstance(meta, dict) and meta.get("topic") not in (None, topic):
            raise TrackConflict(f"track topic {topic!r} would share the folder {tdir.name} with {meta.get('topic')!r}")
        now = iso_utc(ts)
        if not isinstance(meta, dict):
            meta = new_track_meta(tdir.name, topic, now)
        entries = entries_from_rows(rows)
        app.write(encode_lines(entries), len(entries))
        add_to_track_meta(meta, entries, now)
        mark_counted(meta, app.size)
        self._keep_meta(meta_path, meta)
        return len(entries)
