"""Hybrid mode (``dash_url`` and ``dash_root`` both given): every event is stored locally and
uploaded, as upstream's hybrid mode does.

:class:`HybridSink` hands each batch to the local sink, then to the remote one (spool and server);
a problem on one side never keeps a batch from the other. File bytes are copied once, into the
local store, and the spool's copy is taken from there, so both sides hold the same bytes even if
the user's file changes meanwhile. Reads go to the local store (complete and fast); ``flush()``
returns once the server has acknowledged.
"""

from __future__ import annotations

from ._events import SinkWriteError

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from ._files import Source
    from ._local_sink import LocalSink
    from ._sink import Reader, Sink

__all__ = ["HybridSink"]


class HybridSink:
    """A Sink that writes to a local sink and a remote sink (``ml_dash._sink.Sink``)."""

    def __init__(self, local: LocalSink, remote: Sink):
        self.local = local
        self.remote = remote
        self._track_stamps: Dict[str, List[float]] = {}

    def stored_track_topic(self, folder: str) -> Optional[str]:
        return self.local.stored_track_topic(folder)

    def _both(self, call: Callable[[Sink], None]) -> None:
        error: Optional[BaseException] = None
        for sink in (self.local, self.remote):
            try:
                call(sink)
            except Exception as exc:  # one side's trouble must not cost the other side the batch
                error = error or exc
        if error is not None:
            raise error

    def prepare(self) -> None:
        self.local.prepare()
        self.remote.prepare()

    def stage_file(self, source: Source, entry: Dict[str, Any]) -> Tuple[int, str]:
        size, checksum = self.local.stage_file(source, entry)
        staged = self.local.reader().file_path(entry)
        self.remote.stage_file(str(staged), entry)
        return size, checksum

    def write_metrics(self, name: Optional[str], rows: List[Dict[str, Any]]) -> None:
        self._both(lambda s: s.write_metrics(name, rows))

    def write_tracks(self, topic: str, rows: List[Dict[str, Any]]) -> None:
        from ._tracks import resolve_stamps

        resolve_stamps(rows, self._track_stamps.setdefault(topic, [0.0]))  # once: both sides get the same
        self._both(lambda s: s.write_tracks(topic, rows))

    def write(self, events: List[Any]) -> None:
        failed: List[SinkWriteError] = []
        for sink in (self.local, self.remote):
            try:
                sink.write(events)
            except SinkWriteError as exc:
                failed.append(exc)
        if failed:
            raise SinkWriteError(max(f.failed for f in failed), failed[0].cause)

    def sync(self) -> None:
        self._both(lambda s: s.sync())

    def wait_delivered(self, timeout: Optional[float]) -> bool:
        return self.remote.wait_delivered(timeout)

    def close(self, deadline: float) -> None:
        self._both(lambda s: s.close(deadline))

    def after_fork_in_child(self) -> None:
        self.local.after_fork_in_child()
        self.remote.after_fork_in_child()

    def reader(self) -> Reader:
        return self.local.reader()
