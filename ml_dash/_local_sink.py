"""Local mode's sink: batches from the worker go straight into the layout under ``dash_root``."""

from __future__ import annotations

import time
from pathlib import Path

from ._events import (
    ExperimentEvent,
    FileDeleteEvent,
    FileEvent,
    FileUpdateEvent,
    LogEvent,
    ParamsEvent,
    SinkWriteError,
    StatusEvent,
)
from ._files import Source, snapshot
from ._names import Prefix
from ._store import ExperimentReader, ExperimentWriter

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple, Union

    from ._events import Event
    from ._readmodel import LayoutReadModel

__all__ = ["LocalSink", "LocalReader"]

#: While a metric's rows or a track topic's entries stream in, its metadata.json (counts derived
#: from data.jsonl) is rewritten at most once per this many seconds, and at every flush and close.
METADATA_INTERVAL = 1.0


class LocalSink:
    """Writes batches into ``<root>/<prefix>``; one inter-process lock per batch (a ``Sink``)."""

    def __init__(self, root: Path, prefix: Prefix):
        self._root = Path(root)
        self._prefix = prefix
        self._writer = ExperimentWriter(self._root, prefix, metadata_interval=METADATA_INTERVAL)
        #: Per topic, the last automatic track timestamp given (``_tracks.resolve_stamps``).
        self._track_stamps: Dict[str, List[float]] = {}

    @property
    def experiment_dir(self) -> Path:
        return self._writer.paths.dir

    def prepare(self) -> None:
        """Create the experiment folder now, so that a bad ``dash_root`` fails at start, not later."""
        self._writer.paths.dir.mkdir(parents=True, exist_ok=True)

    def stage_file(self, source: Source, entry: Dict[str, Any]) -> Tuple[int, str]:
        """Put the file's bytes at their final place (called in the caller's thread)."""
        dest = self._writer.paths.file_dir(entry["path"], entry["id"]) / entry["filename"]
        return snapshot(source, dest)

    def write_metrics(self, name: Optional[str], rows: List[dict[str, Any]]) -> None:
        w = self._writer
        with w.lock():
            w.append_metric(name, rows, time.time(), dicts_only=True)  # inside the caller's handover: no type scan

    def write_tracks(self, topic: str, rows: List[dict[str, Any]]) -> None:
        from ._tracks import resolve_stamps

        resolve_stamps(rows, self._track_stamps.setdefault(topic, [0.0]))
        w = self._writer
        with w.lock():
            w.append_track(topic, rows, time.time())

    def stored_track_topic(self, folder: str) -> Optional[str]:
        """The topic stored in ``tracks/<folder>`` (None when there is none): a new topic that maps
        to the same folder is refused at the call."""
        from ._store._jsonio import read_json

        meta = read_json(self._writer.paths.tracks_dir / folder / "metadata.json", {})
        topic = meta.get("topic") if isinstance(meta, dict) else None
        return topic if isinstance(topic, str) else None

    def write(self, events: List[Event]) -> None:
        """Apply a batch under one lock. Each file is written on its own, so a failure in one
        (say, a full disk while appending logs) does not lose the others; failures are reported
        together as one SinkWriteError with the count of events not stored.

        Order: parameters as they came, then the batch's log lines in one append, then its file
        entries in one rewrite, then its file updates and deletions, then the experiment record
        with every upsert and status change of the batch applied in order, in one write (one
        fsync), so that COMPLETED is written after the data it completes.
        """
        params: List[ParamsEvent] = []
        logs: List[LogEvent] = []
        files: List[Dict[str, Any]] = []
        deletes: List[tuple[Any, ...]] = []
        updates: List[tuple[Any, ...]] = []
        record: List[tuple[Any, ...]] = []
        failed = 0
        first_error: Optional[BaseException] = None
        for event in events:
            if type(event) is LogEvent:
                logs.append(event)
            elif type(event) is FileEvent:
                files.append(event.entry)
            elif type(event) is FileDeleteEvent:
                deletes.append((event.file_id, event.ts))
            elif type(event) is FileUpdateEvent:
                updates.append((event.file_id, event.changes, event.ts))
            elif type(event) is ParamsEvent:
                params.append(event)
            elif type(event) is ExperimentEvent or type(event) is StatusEvent:
                record.append(event)
            else:  # a kind this sink does not know: a bug, but it must not cost the rest of the batch
                failed += 1
                first_error = first_error or TypeError(f"LocalSink cannot store {type(event).__name__}")
        w = self._writer
        ops: List[tuple[Any, ...]] = [(_merge_params, e, 1) for e in params]
        if logs:
            ops.append((_append_logs, logs, len(logs)))
        if files:
            ops.append((_add_files, files, len(files)))
        if updates:
            ops.append((_update_files, updates, len(updates)))
        if deletes:
            ops.append((_delete_files, deletes, len(deletes)))
        if record:
            ops.append((_update_record, record, len(record)))
        with w.lock():
            for apply, arg, count in ops:
                try:
                    apply(w, arg)
                except Exception as exc:
                    failed += count
                    first_error = first_error or exc
        if first_error is not None:
            raise SinkWriteError(failed, first_error)

    def sync(self) -> None:
        """Data is written with write(2) per batch (the OS holds it across a crash of this
        process); here the metrics' metadata.json files are brought up to date."""
        w = self._writer
        with w.lock():
            w.write_pending_metadata()

    def wait_delivered(self, timeout: Optional[float]) -> bool:
        """Written is delivered in local mode: the files are where readers look."""
        return True

    def close(self, deadline: float) -> None:
        w = self._writer
        with w.lock():
            w.close()

    def after_fork_in_child(self) -> None:
        # The parent's open handles are shared with the child: close our copies, open our own.
        self._writer.forget_after_fork()
        self._writer = ExperimentWriter(self._root, self._prefix, metadata_interval=METADATA_INTERVAL)

    def reader(self) -> "LocalReader":
        return LocalReader(self._root, self._prefix)


def _merge_params(w: ExperimentWriter, e: ParamsEvent) -> None:
    w.merge_params(e.data, e.ts)


def _append_logs(w: ExperimentWriter, events: List[LogEvent]) -> None:
    w.append_logs(events)  # a LogEvent is the (ts, level, message, metadata) row append_logs takes


def _add_files(w: ExperimentWriter, entries: List[Dict[str, Any]]) -> None:
    w.add_files(entries)


def _update_files(w: ExperimentWriter, updates: List[tuple[Any, ...]]) -> None:
    w.update_files(updates)


def _delete_files(w: ExperimentWriter, deletions: List[tuple[Any, ...]]) -> None:
    w.delete_files(deletions)


def _update_record(w: ExperimentWriter, events: List[Union[ExperimentEvent, StatusEvent]]) -> None:
    current = None
    for e in events:
        if isinstance(e, ExperimentEvent):
            current = w.upsert_experiment(e.fields, e.ts, current, write=False)
        else:
            current = w.set_status(e.status, e.ts, e.reason, current, write=False)
    if current is not None:
        w.write_experiment(current)


class LocalReader(ExperimentReader):
    """ExperimentReader plus download and series, the read interface the SDK uses in both modes."""

    def exists(self) -> bool:
        """Whether anything was stored under this prefix (its experiment.json is there)."""
        return self.paths.experiment_json.is_file()

    def download(self, entry: Dict[str, Any], dest: Path) -> Path:
        """Copy a stored file to ``dest`` (folders made; replaced atomically), checking its sha256."""
        import hashlib

        from ._atomic import replacing

        dest = Path(dest)
        digest = hashlib.sha256()
        with open(self.file_path(entry), "rb") as src, replacing(dest) as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
            want = entry.get("checksum")
            if want and digest.hexdigest() != want:  # the block fails: dest is left as it was
                raise OSError(
                    f"stored file {entry.get('filename')!r} (id {entry.get('id')}) does not match "
                    f"its checksum; not copied"
                )
        return dest

    def series(
        self,
        name: Optional[str],
        field: str,
        x: str = "index",
        start: Any = None,
        end: Any = None,
        buckets: int = 1000,
        after: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> Dict[str, Any]:
        """``GET /api/v1/series`` computed here, by the same code as the server (see PROTOCOL.md)."""
        model = _read_model(self.paths.root)
        prefix = str(self.paths.prefix)
        if after is not None:
            return _local_query(model.increments, prefix, name, field, x, after, limit or 10_000)
        return _local_query(model.series, prefix, name, field, x, start, end, buckets)

    def summary(self) -> Dict[str, Any]:
        """``GET /api/v1/summary`` computed here."""
        return _local_query(_read_model(self.paths.root).summary, str(self.paths.prefix))


_MODELS: "Dict[str, LayoutReadModel]" = {}


def _read_model(root: Path) -> LayoutReadModel:
    """One in-memory read model per store folder, kept for the process: a second series call on a
    growing metric reads only the rows appended since the first."""
    import os

    key = os.path.abspath(root)
    model = _MODELS.get(key)
    if model is None:
        from ._readmodel import LayoutReadModel  # numpy: only when series are asked for

        if len(_MODELS) >= 4:
            _MODELS.pop(next(iter(_MODELS)))
        model = _MODELS[key] = LayoutReadModel(root)
    return model


def _local_query(fn: Callable[..., Dict[str, Any]], *args: Any) -> Dict[str, Any]:
    from ._errors import InvalidPrefix, NotFound
    from ._readmodel._series import QueryError

    try:
        return fn(*args)
    except QueryError as exc:
        if exc.status == 404:
            raise NotFound(str(exc)) from None
        if exc.code in ("invalid_prefix", "invalid_name"):
            raise InvalidPrefix(str(exc)) from None
        raise ValueError(str(exc)) from None
