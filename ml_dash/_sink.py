"""The interfaces between the pipeline and where data goes: ``Sink`` and ``Reader``.

For type checkers and tests only: import it under ``TYPE_CHECKING`` (it imports ``typing``, which
``import ml_dash`` does not pay for). Local mode implements them in ``ml_dash._local_sink``
(``LocalSink``, ``LocalReader``), remote mode in ``ml_dash.agent._sink`` (``RemoteSink``) and
``ml_dash._remote_read`` (``RemoteReader``). The events are declared in ``ml_dash._events``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Tuple, runtime_checkable

from ._events import Event
from ._files import Source

__all__ = ["Sink", "Reader"]


@runtime_checkable
class Reader(Protocol):
    """What the SDK reads back through, the same in local and remote mode."""

    def experiment(self) -> Dict[str, Any]: ...

    def params(self) -> Dict[str, Any]: ...

    def logs(
        self, start: int = 0, limit: Optional[int] = None, level: Optional[str] = None
    ) -> List[Dict[str, Any]]: ...

    def metric_names(self) -> List[Optional[str]]: ...

    def metric_rows(self, name: Optional[str], start: int = 0, limit: Optional[int] = None) -> List[Dict[str, Any]]: ...

    def files(self, path: Optional[str] = None) -> List[Dict[str, Any]]: ...

    def track_topics(self) -> List[str]: ...

    def track_entries(
        self, topic: str, start: Optional[float] = None, end: Optional[float] = None
    ) -> List[Dict[str, Any]]: ...

    def download(self, entry: Dict[str, Any], dest: Path) -> Path: ...

    def exists(self) -> bool: ...

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
    ) -> Dict[str, Any]: ...

    def summary(self) -> Dict[str, Any]: ...


@runtime_checkable
class Sink(Protocol):
    """Where one experiment's events go. Called by the pipeline's worker thread, except where noted."""

    def prepare(self) -> None:
        """At run start (caller's thread): create what the run needs, so a bad setting fails here."""

    def stage_file(self, source: Source, entry: Dict[str, Any]) -> Tuple[int, str]:
        """In the caller's thread, before the FileEvent is queued: copy the bytes where the sink
        keeps them (later changes to the user's file must not matter); returns (size, sha256)."""

    def write_metrics(self, name: Optional[str], rows: List[Dict[str, Any]]) -> None:
        """Store one metric's rows (the user's fields plus ``"_ts"``), in order."""

    def write_tracks(self, topic: str, rows: List[Dict[str, Any]]) -> None:
        """Store one track topic's entries (the user's fields plus ``"_ts"``, the entry's timestamp)."""

    def stored_track_topic(self, folder: str) -> Optional[str]:
        """Caller's thread: the topic already stored in the track folder ``folder``, so that a new
        topic mapping to the same folder is refused at the call; None when unknown (remote mode:
        the server checks)."""

    def write(self, events: List[Event]) -> None:
        """Store a batch of events, in order. One bad event must not lose the others: store the
        rest and raise ``SinkWriteError(failed, cause)``, or count it and return."""

    def sync(self) -> None:
        """Make everything written so far as durable as the sink promises (at a flush marker)."""

    def wait_delivered(self, timeout: Optional[float]) -> bool:
        """Caller's thread (``exp.flush()``): True once everything written is where it is read from
        (local: at once; remote: acknowledged by the server); False if ``timeout`` passed first."""

    def close(self, deadline: float) -> None:
        """Caller's thread, after the last write: release resources; may deliver until ``deadline``
        (a ``time.monotonic()`` value). Never raises for data it could not deliver: it reports."""

    def after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's state without touching it (the parent owns it)."""

    def reader(self) -> Reader:
        """The read interface for this experiment."""
