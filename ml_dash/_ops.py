"""The operations on a running experiment: ``exp.params``, ``exp.metrics``, ``exp.logs``, ``exp.files``.

Writes go through the experiment's pipeline (never waiting on I/O); reads flush first, then ask
the experiment's reader, which is the same interface in local and remote mode. Each operation
holds the experiment's :class:`~ml_dash._recorder.Recorder`, not the experiment.
"""

from __future__ import annotations

import os
import time

from ._errors import InvalidPrefix, InvalidValue
from ._events import LEVELS, FileEvent, LogEvent, ParamsEvent
from ._files import FileInfo, new_file_id
from ._names import check_filename, check_relpath
from ._values import FAST_TYPES, normalize_fields, normalize_value

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Union
    from pathlib import Path

    from ._files import Source
    from ._recorder import Recorder

_now = time.time

__all__ = ["Params", "Metrics", "MetricBuilder", "Logs", "Files", "FileScope", "flatten", "unflatten",
           "make_log_event"]


def flatten(d: Dict[str, Any], parent: str = "") -> Dict[str, Any]:
    """``{"model": {"layers": 2}}`` -> ``{"model.layers": 2}``."""
    out: Dict[str, Any] = {}
    for key, value in d.items():
        if not isinstance(key, str):
            raise InvalidValue(f"parameter names must be str, got {type(key).__name__}")
        full = f"{parent}.{key}" if parent else key
        if isinstance(value, dict) and value:
            out.update(flatten(value, full))
        else:
            out[full] = value
    return out


def unflatten(d: Dict[str, Any]) -> Dict[str, Any]:
    """Inverse of :func:`flatten`."""
    out: Dict[str, Any] = {}
    for key, value in d.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {}
            node = nxt
        node[last] = value
    return out


class Params:
    """``exp.params``: hyper-parameters, stored flattened with dots."""

    def __init__(self, rec: Recorder):
        self._rec = rec

    def set(self, **params: Any) -> "Params":
        """Merge parameters (nested dicts are flattened to ``a.b.c`` keys)."""
        flat = flatten(params)
        flat = normalize_fields(flat, self._rec.config.max_string_bytes, "params")
        self._rec.pipe.put(ParamsEvent(time.time(), flat))
        return self

    log = set  # upstream's alias

    def get(self, flatten: bool = True) -> Dict[str, Any]:
        """Every parameter stored so far (by any run of this experiment)."""
        data = self._rec.reader().params()
        return data if flatten else unflatten(data)


class MetricBuilder:
    """``exp.metrics(name)``: appends rows to one metric."""

    __slots__ = ("name", "queue", "_pipe", "_wake_at", "_rec", "_limit")

    def __init__(self, rec: Recorder, name: Optional[str]):
        self._rec = rec
        self.name = name
        #: This metric's own deque of rows; set (and swapped at start and close) by the pipeline.
        self.queue: Any = None
        self._pipe = rec.pipe
        self._wake_at = self._pipe.wake_at
        self._limit = rec.config.max_string_bytes
        self._pipe.add_metric(self)

    def log(self, **fields: Any) -> "MetricBuilder":
        """Append one row. Fields are stored as given, plus ``_ts`` (epoch seconds of this call)."""
        for v in fields.values():
            if type(v) not in FAST_TYPES:
                fields = normalize_fields(fields, self._limit, f"metric {self.name!r}")
                break
        fields["_ts"] = _now()
        q = self.queue
        if len(q) >= self._wake_at:
            self._pipe.overflow(q, fields)
        else:
            q.append(fields)
        return self

    def read(self, start: int = 0, limit: Optional[int] = None) -> List[Dict[str, Any]]:
        """Rows ``{"index", "data", "createdAt"}`` from ``start``, in index order."""
        return self._rec.reader().metric_rows(self.name, start, limit)

    def series(self, field: str, x: str = "index", start: Optional[float] = None, end: Optional[float] = None,
               buckets: int = 1000, *, after: Optional[int] = None, limit: Optional[int] = None) -> Dict[str, Any]:
        """One field for a chart: the rows of a range when it holds at most ``buckets`` rows, else
        per bucket the last, min and max value and the count (a spike always shows in ``max``).

        ``x``: ``"index"``, ``"_ts"`` (wall time) or any numeric field such as ``"step"``;
        ``start``/``end``: an inclusive range in x units. ``after``: instead, the rows whose index is
        greater (at most ``limit``), for following a live run; pass the answer's ``cursor`` next
        time. The answer is ``GET /api/v1/series``'s (PROTOCOL.md), with non-finite floats as
        floats. Raises NotFound when the metric or field does not exist.
        """
        return self._rec.reader().series(self.name, field, x, start, end, buckets, after, limit)


class Metrics(dict):
    """``exp.metrics``: ``exp.metrics("train").log(...)``, or ``exp.metrics.log(...)`` for the unnamed metric.

    A dict of name -> MetricBuilder whose call is ``dict.__getitem__``: looking up a metric in a
    training loop is then one C call instead of a Python method call (about half the per-step
    cost); ``__missing__`` validates and creates a metric on first use.
    """

    __call__ = dict.__getitem__

    def __init__(self, rec: Recorder):
        super().__init__()
        self._rec = rec

    def __missing__(self, name: Optional[str]) -> MetricBuilder:
        key = name
        if name is not None:
            check_relpath(name, "metric name")
            name = name.strip("/")
            if name == "None":
                raise InvalidPrefix("metric name 'None' is reserved for the unnamed metric")
        b = self.get(name)
        if b is None:
            b = MetricBuilder(self._rec, name)
            self[name] = b
        self[key] = b
        return b

    def log(self, **fields: Any) -> MetricBuilder:
        """Append a row to the unnamed metric (stored in the folder ``None``)."""
        return self[None].log(**fields)

    def names(self) -> List[Optional[str]]:
        """Every metric of the experiment that has rows."""
        return self._rec.reader().metric_names()

    def __repr__(self) -> str:
        return f"<Metrics of {self._rec.prefix}: {sorted(str(k) for k in self)}>"


class Logs:
    """``exp.logs``: read log records back (``exp.log(...)`` writes them)."""

    def __init__(self, rec: Recorder):
        self._rec = rec

    def read(self, start: int = 0, limit: Optional[int] = None, level: Optional[str] = None) -> List[Dict[str, Any]]:
        """Records ``{"sequenceNumber", "timestamp", "level", "message"[, "metadata"]}`` in order."""
        if level is not None:
            level = LEVELS.get(level.lower(), level)
        return self._rec.reader().logs(start, limit, level)

    __call__ = read


def make_log_event(message: str, level: str, metadata: Dict[str, Any], limit: int) -> LogEvent:
    if not isinstance(message, str):
        raise InvalidValue(f"log message must be str, got {type(message).__name__}")
    lvl = LEVELS.get(level.lower()) if isinstance(level, str) else None
    if lvl is None:
        raise ValueError(f"unknown log level {level!r}; use one of debug, info, warn(ing), error, fatal")
    normalize_value(message, limit, "log message")
    md = normalize_fields(metadata, limit, "log metadata") if metadata else None
    return LogEvent(time.time(), lvl, message, md)


class FileScope:
    """``exp.files(path)``: files under one logical folder such as ``"models"``."""

    def __init__(self, rec: Recorder, path: str):
        self._rec = rec
        self._path = "/" + check_relpath(path, "file path") if path.strip("/") else "/"

    def save(
        self,
        source: Source,
        *,
        name: Optional[str] = None,
        description: Optional[str] = None,
        tags: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> FileInfo:
        """Store a file (a path, or bytes with ``name=``). The content is copied now; returns its FileInfo."""
        rec = self._rec
        rec.require_running()
        if isinstance(source, (bytes, bytearray, memoryview)):
            if name is None:
                raise ValueError("saving bytes needs a file name: files(...).save(data, name='weights.bin')")
        elif isinstance(source, (str, os.PathLike)):
            if not os.path.isfile(source):
                raise FileNotFoundError(f"no such file: {source}")
            name = name or os.path.basename(os.fspath(source))
        else:
            raise InvalidValue(f"files.save takes a path or bytes, got {type(source).__name__}")
        check_filename(name)
        md = normalize_fields(metadata, rec.config.max_string_bytes, "file metadata") if metadata else None
        import mimetypes  # lazily: it reads the system's type tables

        file_id = new_file_id()
        entry: Dict[str, Any] = {
            "id": file_id,
            "experimentId": rec.prefix,
            "path": self._path,
            "filename": name,
            "description": description,
            "tags": list(tags or []),
            "bindrs": [],
            "contentType": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "sizeBytes": 0,
            "checksum": "",
            "metadata": md,
        }
        size, checksum = rec.stage_file(source, entry)
        from ._store._jsonio import iso_utc

        now = iso_utc()
        entry.update(sizeBytes=size, checksum=checksum, uploadedAt=now, updatedAt=now, deletedAt=None)
        rec.pipe.put(FileEvent(time.time(), entry))
        return FileInfo.from_entry(entry)

    def list(self) -> List[FileInfo]:
        """Files under this folder (and its sub-folders), oldest first."""
        return [FileInfo.from_entry(e) for e in self._rec.reader().files(self._path)]

    def download(self, file: Union[FileInfo, str], dest: Union[str, os.PathLike, None] = None) -> Path:
        """Copy a stored file to ``dest`` (a path or folder; default: its file name in the working folder)."""
        from pathlib import Path

        reader = self._rec.reader()
        wanted = file.id if isinstance(file, FileInfo) else str(file)
        for entry in reader.files(None):
            if str(entry.get("id")) == wanted:
                target = Path(dest) if dest is not None else Path(entry["filename"])
                if target.is_dir():
                    target = target / entry["filename"]
                return reader.download(entry, target)
        raise FileNotFoundError(f"no file with id {wanted} in {self._rec.prefix}")


class Files(FileScope):
    """``exp.files``: ``exp.files("models").save(...)``; ``exp.files.save(...)`` stores at the top."""

    def __init__(self, rec: Recorder):
        super().__init__(rec, "")

    def __call__(self, path: str = "") -> FileScope:
        return FileScope(self._rec, path)
