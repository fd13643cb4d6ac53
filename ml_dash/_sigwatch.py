"""A SIGTERM that the main thread cannot handle, noticed by a thread of ours (multiprocessing children).

Python runs a signal handler in the main thread, between two steps of its Python code. A main
thread that waits in C code (a lock, a pipe) runs it when that wait is interrupted; but when the
signal lands just before the wait begins, nothing interrupts the wait, and the handler waits with
it. The kernel would have ended the process at once without a handler; with ours, the process
lives on. In a ``multiprocessing`` child that is a hang of the parent: ``Pool.terminate()`` (which
leaving a ``with Pool(...)`` block calls) holds the task queue's lock, sends SIGTERM to workers
that are on their way to wait for that lock, and then waits for them to end.

:data:`WATCH` closes that gap where the parent manages the process: the interpreter's C-level
handler writes each signal's number to the fd given to :func:`signal.set_wakeup_fd`, at once and
from whichever thread got the signal. A daemon thread reads it; when the main thread's handler has
not begun :data:`GRACE` seconds after a SIGTERM, the thread calls ``on_missed`` (which closes the
runs and ends the process). It arms only where nobody else uses the wakeup fd (an asyncio loop
with signal handlers in the main thread does); the caller then falls back to SIGTERM's default
action, which never hangs. Fork (``ml_dash._fork``): the thread stops before it and starts again at
the next call into ml-dash; a child forgets the parent's pipe (and the child's wakeup fd is unset).
"""

from __future__ import annotations

import os
import signal
import threading

from . import _fork

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Callable, Optional

__all__ = ["WATCH", "Watch", "GRACE"]

#: How long the main thread has to begin its handler after a SIGTERM before the watcher acts, s.
#: It normally begins within microseconds; the watcher acting early costs nothing but the order.
GRACE = 0.5

_STOP = b"\0"  # no signal has number 0: written by pause_for_fork to wake the thread


class Watch:
    """The process's SIGTERM watcher (one instance: :data:`WATCH`)."""

    def __init__(self) -> None:
        # Reentrant: entered() runs in a signal handler, which another handler may interrupt.
        self._cond = threading.Condition(threading.RLock())
        self._entered = 0  # times the main thread's SIGTERM handler began
        self._delivered = 0  # SIGTERMs the C-level handler wrote to the wakeup fd
        self._fds: Optional[tuple[int, int]] = None  # (read, write) of the wakeup pipe, once armed
        self._on_missed: Optional[Callable[[], None]] = None
        self._thread: Optional[threading.Thread] = None
        self._run_token: Optional[object] = None

    @property
    def armed(self) -> bool:
        return self._fds is not None

    def arm(self, on_missed: Callable[[], None]) -> bool:
        """Watch for SIGTERMs the main thread misses; from the main thread. False (and nothing
        changed) when the wakeup fd is someone else's or cannot be set."""
        if self._fds is not None:
            self._on_missed = on_missed
            return True
        r, w = os.pipe()  # non-inheritable (PEP 446)
        os.set_blocking(w, False)  # the C-level handler must never block on it
        try:
            previous = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (ValueError, OSError):  # not the main thread
            os.close(r)
            os.close(w)
            return False
        if previous != -1:  # someone else's (an asyncio loop's): theirs to keep
            signal.set_wakeup_fd(previous)
            os.close(r)
            os.close(w)
            return False
        self._fds, self._on_missed = (r, w), on_missed
        self._start()
        return True

    def entered(self) -> None:
        """Called by the main thread's SIGTERM handler as it begins."""
        with self._cond:
            self._entered += 1
            self._cond.notify_all()

    # -- the thread --------------------------------------------------------------------------------

    def _start(self) -> None:
        token = self._run_token = object()
        self._thread = _fork.start_thread(lambda: self._run(token), "ml-dash-sigterm-watch")

    def _run(self, token: object) -> None:
        assert self._fds is not None
        r = self._fds[0]
        term = bytes([signal.SIGTERM])
        while self._run_token is token:
            try:
                data = os.read(r, 512)
            except OSError:
                return
            if not data:
                return
            n = data.count(term)
            if not n:
                continue  # another signal's number, or the stop byte (the loop's test decides)
            if self._main_thread_began(n):
                continue
            on_missed = self._on_missed
            if on_missed is not None:
                on_missed()

    def _main_thread_began(self, signals: int) -> bool:
        """Count ``signals`` more SIGTERMs; True once the main thread's handler began as often."""
        with self._cond:
            self._delivered += signals
            target = self._delivered
            return self._cond.wait_for(lambda: self._entered >= target, GRACE)

    # -- fork (see ml_dash._fork) -----------------------------------------------------------------

    def pause_for_fork(self, deadline: float) -> None:
        thread, self._thread = self._thread, None
        self._run_token = None
        if thread is not None and self._fds is not None:
            try:
                os.write(self._fds[1], _STOP)
            except OSError:  # the pipe is full of signal numbers: the thread is awake anyway
                pass
            _fork.stop_thread(thread, deadline)

    def go_dormant(self) -> None:
        pass  # the thread starts again at the next call into ml-dash (_fork.wake)

    def resume(self) -> None:
        if self._fds is not None and self._thread is None:
            self._start()

    def reset_in_child(self) -> None:
        fds, self._fds = self._fds, None
        if fds is not None:
            try:
                signal.set_wakeup_fd(-1)  # the parent's pipe: never the child's (the fd may be reused)
            except (ValueError, OSError):
                pass
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._cond = threading.Condition(threading.RLock())
        self._entered = self._delivered = 0
        self._on_missed = None
        self._thread = None
        self._run_token = None


#: The process's watcher; armed in multiprocessing children that run our SIGTERM handler.
WATCH = Watch()
_fork.register_service(WATCH)
