"""One experiment's write path and lifecycle: its pipeline, its sink, its status.

``Experiment`` is the public face; the operations (``exp.params``, ``exp.metrics``, ``exp.logs``,
``exp.files``) and the process-wide hooks (``_lifecycle``) talk to the :class:`Recorder` through
the methods below, never to the experiment's or the pipeline's private state.
"""

from __future__ import annotations

import time

from ._errors import ExperimentStateError
from ._events import END_STATUSES, ExperimentEvent, StatusEvent
from ._pipeline import Pipeline, collect_once

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Tuple

    from ._config import Config
    from ._files import Source
    from ._names import Prefix
    from ._ops import Metrics
    from ._sink import Reader, Sink
    from ._summary import SummaryBuffer

__all__ = ["Recorder"]


#: How long a local run's start waits for its record to be written, seconds.
START_WAIT = 2.0


class Recorder:
    """Starts, feeds, flushes and closes one experiment."""

    def __init__(self, prefix: Prefix, config: Config, fields: Dict[str, Any]):
        self.parts = prefix
        self.prefix = str(prefix)
        self.config = config
        self.fields = fields
        self.status: Optional[str] = None
        self.pipe = Pipeline(config, self.prefix)
        self._sink: Optional[Sink] = None
        #: False in a forked child: the child writes its events but never changes the run's status.
        self._owns_status = True
        #: Hybrid mode: the Experiment was given both dash_url and dash_root (see ``mode``).
        self.hybrid = False
        #: The automatic captures (``_capture.start``), set once the run started; stopped first at close.
        self.captures: Optional[Any] = None
        self._stored = False  # known to exist in the store: reads check once
        #: The last explicit ``_ts`` or track timestamp, which ``_ts=-1`` repeats (upstream's rule).
        self.last_ts: Optional[float] = None
        self._summary_buffer: Optional[SummaryBuffer] = None
        #: ``exp.metrics`` (set by it): what ``metrics.buffer.log_summary()`` logs through.
        self.metrics: Optional[Metrics] = None

    @property
    def mode(self) -> str:
        """ "local", "remote", or "hybrid" (both: set by the Experiment when given dash_url and dash_root)."""
        if not self.config.dash_url:
            return "local"
        return "hybrid" if self.hybrid else "remote"

    @property
    def running(self) -> bool:
        return self.pipe.running

    # -- the sink ------------------------------------------------------------------------------------

    def _get_sink(self) -> Sink:
        if self._sink is None:
            if self.mode == "remote":
                from .agent import open_remote_sink  # imports the agent: only in remote mode

                self._sink = open_remote_sink(self.config, self.parts)
            elif self.mode == "hybrid":
                from pathlib import Path

                from ._hybrid import HybridSink
                from ._local_sink import LocalSink
                from .agent import open_remote_sink

                self._sink = HybridSink(
                    LocalSink(Path(self.config.dash_root), self.parts), open_remote_sink(self.config, self.parts)
                )
            else:
                from pathlib import Path

                from ._local_sink import LocalSink  # the store modules load at the first start, not at import

                self._sink = LocalSink(Path(self.config.dash_root), self.parts)
        return self._sink

    def stage_file(self, source: Source, entry: Dict[str, Any]) -> Tuple[int, str]:
        """Copy a file's bytes where the sink keeps them (caller's thread); returns (size, sha256)."""
        return self._get_sink().stage_file(source, entry)

    def stored_track_topic(self, folder: str) -> Optional[str]:
        """The topic the local store keeps in ``tracks/<folder>``, if any (None in remote mode)."""
        return self._get_sink().stored_track_topic(folder)

    def reader(self) -> Reader:
        """The read interface, after everything logged so far is stored. Raises NotFound when
        nothing was ever stored under this prefix (reads never answer {} or [] for it)."""
        if self.running:
            self.flush()
        reader = self._get_sink().reader()
        if not self._stored:
            if not reader.exists():
                from ._errors import NotFound

                where = self.config.dash_url or self.config.dash_root
                raise NotFound(f"no experiment {self.prefix} in {where}: nothing was stored under this prefix")
            self._stored = True
        return reader

    def summary_buffer(self) -> SummaryBuffer:
        """The experiment's ``metrics.buffer`` (values kept for ``log_summary``), made on first use."""
        if self._summary_buffer is None:
            from ._summary import SummaryBuffer

            self._summary_buffer = SummaryBuffer(lambda name: self.metrics(name))  # type: ignore[misc]  # set by then
        return self._summary_buffer

    # -- lifecycle -----------------------------------------------------------------------------------

    def require_running(self) -> None:
        if not self.running:
            state = "closed" if self.status in END_STATUSES else "not started"
            raise ExperimentStateError(f"experiment {self.prefix} is {state}: use `with exp.run:` or exp.run.start()")

    def start(self) -> None:
        from . import _lifecycle

        if self.running:
            raise ExperimentStateError(f"experiment {self.prefix} is already running")
        sink = self._get_sink()
        sink.prepare()
        _lifecycle.register(self)
        self.pipe.start(sink)
        now = time.time()
        self.pipe.put(ExperimentEvent(now, dict(self.fields)))
        self.pipe.put(StatusEvent(now, "RUNNING"))
        self.status = "RUNNING"
        if self.mode == "remote":
            from ._urls import announce_run

            announce_run(self.config, self.prefix)
        else:
            # The run is on disk (and on the dashboard) when start returns, and its first batch
            # of rows does not wait behind the record's fsync.
            self.pipe.flush(START_WAIT)
        if self.config.gc_at_start:
            collect_once()  # last: what starting the run made is collected too

    def end(self, status: str, reason: Optional[str]) -> None:
        """``run.complete()`` / ``fail()`` / ``cancel()``: drain, record ``status``, close."""
        self.require_running()
        self.close(status, reason, time.monotonic() + self.config.shutdown_timeout)

    def close(self, status: str, reason: Optional[str], deadline: float) -> None:
        """Drain and close by ``deadline`` (a ``time.monotonic()`` value); a no-op when not running."""
        from . import _lifecycle

        if not self.running:
            return
        with _lifecycle.closing():
            if self.captures is not None:  # what they captured lands before the final status
                captures, self.captures = self.captures, None
                captures.stop(deadline)
            if self._owns_status:
                self.pipe.put(StatusEvent(time.time(), status, reason))
                self.status = status
            self.pipe.close(deadline)
            _lifecycle.unregister(self)
        drops = {k: v for k, v in self.pipe.drops.items() if v}
        if drops:
            from ._report import warn

            warn(f"{self.prefix}: events not stored: {drops}")

    def merge_metadata(self, metadata: Dict[str, Any]) -> None:
        """Merge keys into the experiment's stored metadata while the run is open (environment capture)."""
        self.pipe.put(ExperimentEvent(time.time(), {"metadata": metadata}))

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Everything queued before the call stored (and, remotely, acknowledged); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.pipe.flush(timeout):
            return False
        if self._sink is None:
            return True
        return self._sink.wait_delivered(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def after_fork_in_child(self) -> None:
        """In a forked child: the parent's queued events are the parent's; the child writes its own
        events through a fresh pipeline and sink state, and never changes the run's status."""
        self._owns_status = False
        if self.running and self._sink is not None:
            self._sink.after_fork_in_child()
        self.pipe.after_fork_in_child()
