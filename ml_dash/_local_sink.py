"""Local mode's sink: batches from the worker go straight into the layout under ``dash_root``."""

from __future__ import annotations

import time
from pathlib import Path

from ._files import Source, snapshot
from ._names import Prefix
from ._pipeline import SinkWriteError
from ._store import ExperimentReader, ExperimentWriter

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional

__all__ = ["LocalSink"]


class LocalSink:
    """Writes batches into ``<root>/<prefix>``; one inter-process lock per batch."""

    def __init__(self, root: Path, prefix: Prefix):
        self._root = Path(root)
        self._prefix = prefix
        self._writer = ExperimentWriter(self._root, prefix)

    @property
    def experiment_dir(self) -> Path:
        return self._writer.paths.dir

    def prepare(self) -> None:
        """Create the experiment folder now, so that a bad ``dash_root`` fails at start, not later."""
        self._writer.paths.dir.mkdir(parents=True, exist_ok=True)

    def stage_file(self, source: Source, entry: Dict[str, Any]):
        """Put the file's bytes at their final place (called in the caller's thread)."""
        dest = self._writer.paths.file_dir(entry["path"], entry["id"]) / entry["filename"]
        return snapshot(source, dest)

    def write_metrics(self, name: Optional[str], rows: List[dict]) -> None:
        w = self._writer
        with w.lock():
            w.append_metric(name, rows, time.time())

    def write(self, items: List[tuple]) -> None:
        """Apply a batch under one lock. Each file is written on its own, so a failure in one
        (say, a full disk while appending logs) does not lose the others; failures are reported
        together as one SinkWriteError with the count of items not stored."""
        logs, files, rest = [], [], []
        for item in items:
            kind = item[0]
            if kind == "l":
                logs.append(item[1:])
            elif kind == "f":
                files.append(item[2])
            else:
                rest.append(item)
        w = self._writer
        failed, first_error = 0, None
        # Status changes go last so that COMPLETED is written after the data it completes.
        ops = [(item, 1) for item in rest if item[0] != "s"]
        ops += [(("l*", logs), len(logs))] if logs else []
        ops += [(("f*", files), len(files))] if files else []
        ops += [(item, 1) for item in rest if item[0] == "s"]
        with w.lock():
            for op, count in ops:
                try:
                    self._apply(op)
                except Exception as exc:
                    failed += count
                    first_error = first_error or exc
        if first_error is not None:
            raise SinkWriteError(failed, first_error)

    def _apply(self, op: tuple) -> None:
        w, kind = self._writer, op[0]
        if kind == "l*":
            w.append_logs(op[1])
        elif kind == "f*":
            w.add_files(op[1])
        elif kind == "e":
            w.upsert_experiment(op[2], op[1])
        elif kind == "p":
            w.merge_params(op[2], op[1])
        elif kind == "s":
            w.set_status(op[2], op[1], op[3])

    def sync(self) -> None:
        """Data is written with write(2) per batch; the OS holds it across a crash of this process."""

    def close(self, deadline: float) -> None:
        self._writer.close()

    def after_fork_in_child(self) -> None:
        # The parent's open handles are shared with the child; reopen our own.
        self._writer = ExperimentWriter(self._root, self._prefix)

    def reader(self) -> "LocalReader":
        return LocalReader(self._root, self._prefix)


class LocalReader(ExperimentReader):
    """ExperimentReader plus download and series, the read interface the SDK uses in both modes."""

    def exists(self) -> bool:
        """Whether anything was stored under this prefix (its experiment.json is there)."""
        return self.paths.experiment_json.is_file()

    def download(self, entry: Dict[str, Any], dest: Path) -> Path:
        import shutil

        shutil.copyfile(self.file_path(entry), dest)
        return dest

    def series(self, name: Optional[str], field: str, x: str = "index", start: Any = None, end: Any = None,
               buckets: int = 1000, after: Optional[int] = None, limit: Optional[int] = None) -> Dict[str, Any]:
        """``GET /api/v1/series`` computed here, by the same code as the server (see PROTOCOL.md)."""
        model = _read_model(self.paths.root)
        prefix = str(self.paths.prefix)
        if after is not None:
            return _local_query(model.increments, prefix, name, field, x, after, limit or 10_000)
        return _local_query(model.series, prefix, name, field, x, start, end, buckets)

    def summary(self) -> Dict[str, Any]:
        """``GET /api/v1/summary`` computed here."""
        return _local_query(_read_model(self.paths.root).summary, str(self.paths.prefix))


_MODELS: "Dict[str, Any]" = {}


def _read_model(root: Path):
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


def _local_query(fn, *args: Any) -> Dict[str, Any]:
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
