"""Group commit for every spool writer of this process: one thread fsyncs each writer's new data
at most ``fsync_interval`` after its first unsynced write (see ``_spool``), so a steady stream
costs one fsync per window per session and the worker never waits for the disk.

When no thread can be started (interpreter shutdown) a writer is synced at once, in the thread
that wrote. Fork (``ml_dash._fork``): before it, every writer with unsynced data is synced and
the thread exits; it starts again with the next write.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Dict, Optional

from ml_dash import _fork

if TYPE_CHECKING:
    from ._spool import SpoolWriter

__all__ = ["SYNCER", "Syncer"]


class Syncer:
    """The process-wide group-commit thread (one instance: :data:`SYNCER`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._dirty: Dict["SpoolWriter", None] = {}  # an ordered set
        self._thread: Optional[threading.Thread] = None
        self._run_token: Optional[object] = None

    def note(self, writer: "SpoolWriter") -> None:
        """``writer`` has data not yet fsynced (called after each write)."""
        with self._cond:
            if writer in self._dirty:
                return
            self._dirty[writer] = None
            if self._thread is None and not _fork.dormant:
                self._start()
            self._cond.notify()
            inline = self._thread is None
        if inline:  # no thread can be started: sync here
            self.forget(writer)
            writer.sync()

    def forget(self, writer: "SpoolWriter") -> None:
        """``writer`` closed (it synced itself)."""
        with self._cond:
            self._dirty.pop(writer, None)

    def _start(self) -> None:
        token = self._run_token = object()
        self._thread = _fork.start_thread(lambda: self._run(token), "ml-dash-fsync")

    def _run(self, token: object) -> None:
        cond = self._cond
        while True:
            with cond:
                # Tested under the lock that pause_for_fork notifies under: tested before taking
                # it, a pause between the test and the wait below would be missed, and the
                # thread would wait for good (seen: alive at the fork, Python's warning).
                if self._run_token is not token:
                    return
                now = time.monotonic()
                due, wait = [], None
                for w in list(self._dirty):
                    at = w.sync_due()
                    if at is None:
                        del self._dirty[w]  # synced meanwhile (flush, close)
                    elif at <= now:
                        del self._dirty[w]
                        due.append(w)
                    else:
                        wait = at - now if wait is None else min(wait, at - now)
                if not due:
                    cond.wait(wait)
                    continue
            for w in due:
                w.sync_now()

    # -- fork (see ml_dash._fork) -------------------------------------------------------------------

    def pause_for_fork(self, deadline: float) -> None:
        with self._cond:
            thread, self._thread = self._thread, None
            self._run_token = None
            self._cond.notify()
            dirty, self._dirty = list(self._dirty), {}
        _fork.stop_thread(thread, deadline)
        for w in dirty:  # on disk before the fork
            w.sync_now()

    def go_dormant(self) -> None:
        pass  # the thread starts again with the next write

    def resume(self) -> None:
        with self._cond:
            if self._dirty and self._thread is None:
                self._start()

    def reset_in_child(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._dirty = {}
        self._thread = None
        self._run_token = None


#: The process's group-commit thread; it starts with the first spooled write.
SYNCER = Syncer()
_fork.register_service(SYNCER)
