"""The data path's contract: every event that travels from the SDK to a sink, declared once.

::

    caller thread                     worker thread                       sink
    exp.metrics(n).log(**f) ─▶ deque of that metric ─┐
    exp.log / params / files / run ─▶ main deque ────┴─▶ Pipeline ─▶ write_metrics(name, rows)
                                                                   ─▶ write([event, ...])
                                                                   ─▶ sync()  (at a flush marker)

**Metric rows** are not events: a row is the user's fields dict plus ``"_ts"`` (epoch seconds of
the call), appended to that metric's own deque. Keeping them plain dicts is what keeps the
caller's cost at one ``deque.append``; a sink gets each metric's rows as one list in
``Sink.write_metrics(name, rows)``. **Track entries** (``exp.tracks(topic).append``) take the same
path: one deque per topic, rows of the user's fields plus ``"_ts"`` (the entry's timestamp),
handed to ``Sink.write_tracks(topic, rows)``.

**Everything else** is one of the event classes below: slotted tuples (``namedtuple``), built in
the caller's thread (``_ops``, ``_run``) and read by field name in the sinks. Consumers dispatch
on the class (``type(event) is LogEvent``, or a dict keyed by class), which costs what comparing a
tag costs. The pipeline handles :class:`FlushMarker` itself and never gives it to a sink.

Where each event is consumed (a new kind must be handled in every one of them, and a test
checks that each sink knows every kind declared in :data:`SINK_EVENTS`):

============================  ==================================  ===================================
event                         local mode (``_local_sink``)        remote mode (``agent/_wire``)
============================  ==================================  ===================================
:class:`ExperimentEvent`      ``experiment.json`` upsert          ``experiment`` event
:class:`StatusEvent`          ``experiment.json`` status, last    ``status`` event
:class:`ParamsEvent`          ``parameters.json`` merge           ``params`` event
:class:`LogEvent`             ``logs/logs.jsonl``                 ``log`` event
:class:`FileEvent`            ``files/.files_metadata.json``      ``file`` event (+ blob upload)
:class:`FileDeleteEvent`      ``deletedAt`` in the same file      ``file_delete`` event
:class:`FileUpdateEvent`      the entry in the same file          ``file_update`` event
metric rows                   ``metrics/<name>/data.jsonl``       columnar ``metrics`` records
track entries                 ``tracks/<topic>/data.jsonl``       ``track`` events, one per entry
============================  ==================================  ===================================

The server (``ml_dash/server/ingest.py``) checks the wire events against the same vocabularies:
:data:`LEVELS` and :data:`STATUSES` are defined here and imported there.

This module costs nothing at ``import ml_dash``: no ``typing`` (type checkers see
``typing.NamedTuple``; at run time the same class statements build plain ``namedtuple`` classes).
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    import threading
    from typing import Any, Dict, NamedTuple, Optional, Tuple, Type
else:

    class _EventMeta(type):
        """Builds ``class X(NamedTuple): a: int; b: str = ""`` as ``collections.namedtuple``.

        The same class statement is a ``typing.NamedTuple`` for type checkers; at run time it
        costs no ``typing`` import. Fields are the annotated names in order, defaults their
        values; other class attributes and methods are kept.
        """

        def __new__(mcls, name, bases, ns):
            if not bases:
                return super().__new__(mcls, name, bases, ns)
            fields = list(ns.get("__annotations__", {}))
            defaults = [ns[f] for f in fields if f in ns]
            cls = collections.namedtuple(name, fields, defaults=defaults, module=ns.get("__module__"))
            for key, value in ns.items():
                if key not in fields and key not in (
                    "__annotations__",
                    "__module__",
                    "__qualname__",
                    "__dict__",
                    "__weakref__",
                ):
                    setattr(cls, key, value)
            return cls

    class NamedTuple(metaclass=_EventMeta):
        """Run-time stand-in for ``typing.NamedTuple`` (see :class:`_EventMeta`)."""


__all__ = [
    "LogEvent",
    "ParamsEvent",
    "FileEvent",
    "FileDeleteEvent",
    "FileUpdateEvent",
    "ExperimentEvent",
    "StatusEvent",
    "FlushMarker",
    "SINK_EVENTS",
    "Event",
    "LEVELS",
    "LEVEL_NAMES",
    "STATUSES",
    "END_STATUSES",
    "SinkWriteError",
]

# -- vocabularies (shared with the server) ---------------------------------------------------------

#: Accepted log levels, with the stdlib spellings mapped onto the stored (upstream's) names.
LEVELS = {
    "debug": "debug",
    "info": "info",
    "warn": "warn",
    "warning": "warn",
    "error": "error",
    "fatal": "fatal",
    "critical": "fatal",
}
#: The stored level names, least severe first.
LEVEL_NAMES = ("debug", "info", "warn", "error", "fatal")
#: Run statuses; the first is the running state, the others end a run.
STATUSES = ("RUNNING", "COMPLETED", "FAILED", "CANCELLED")
END_STATUSES = STATUSES[1:]


# -- events ------------------------------------------------------------------------------------------


class LogEvent(NamedTuple):
    """``exp.log(message, level, **metadata)``: one log line."""

    ts: float
    level: str  # one of LEVEL_NAMES
    message: str
    metadata: Optional[Dict[str, Any]] = None  # normalized values, or None


class ParamsEvent(NamedTuple):
    """``exp.params.set(...)``: parameters to merge, already flattened (``"model.layers"``)."""

    ts: float
    data: Dict[str, Any]


class FileEvent(NamedTuple):
    """``exp.files(path).save(...)``: a file whose bytes the sink staged at the call.

    ``entry`` is the file record as stored in ``files/.files_metadata.json`` (id, path, filename,
    checksum, sizeBytes, contentType, description, tags, metadata, timestamps).
    """

    ts: float
    entry: Dict[str, Any]


class FileDeleteEvent(NamedTuple):
    """``exp.files(...).delete()``: a soft delete of a stored file by id (``deletedAt`` is set, the
    bytes stay). An id the experiment does not have, or a file already deleted, changes nothing."""

    ts: float
    file_id: str


class FileUpdateEvent(NamedTuple):
    """``exp.files(file_id=..., description=..., tags=..., metadata=...).update()``: replace those
    fields of a live file's entry (None: unchanged). Unknown or deleted ids change nothing."""

    ts: float
    file_id: str
    changes: Dict[str, Any]


class ExperimentEvent(NamedTuple):
    """The experiment's own record at start (create or merge): description, tags, bindrs, metadata."""

    ts: float
    fields: Dict[str, Any]


class StatusEvent(NamedTuple):
    """A status change (one of STATUSES) with an optional reason."""

    ts: float
    status: str
    reason: Optional[str] = None


class FlushMarker(NamedTuple):
    """Queued by ``flush()``: the pipeline writes and syncs everything before it, then sets ``done``.

    Handled by the pipeline; never given to a sink.
    """

    done: threading.Event


#: Every kind a sink's ``write`` receives (a test checks that each sink handles all of them).
SINK_EVENTS: Tuple[Type[tuple[Any, ...]], ...] = (
    ExperimentEvent,
    StatusEvent,
    ParamsEvent,
    LogEvent,
    FileEvent,
    FileDeleteEvent,
    FileUpdateEvent,
)

if TYPE_CHECKING:
    from typing import Union

    Event = Union[ExperimentEvent, StatusEvent, ParamsEvent, LogEvent, FileEvent, FileDeleteEvent, FileUpdateEvent]
else:
    Event = tuple


class SinkWriteError(Exception):
    """Raised by a sink's ``write`` that stored part of a batch: ``failed`` events were not stored."""

    def __init__(self, failed: int, cause: BaseException):
        super().__init__(f"{failed} event(s) not stored: {type(cause).__name__}: {cause}")
        self.failed = failed
        self.cause = cause
