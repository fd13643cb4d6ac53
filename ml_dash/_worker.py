"""The one background thread that drains every running experiment's queues into its sink.

Each :class:`~ml_dash._pipeline.Pipeline` (one per running experiment) registers here at start.
The thread drains a pipeline when the pipeline asks (:meth:`Worker.poke`: a queue crossed its
wake mark, or ``flush()``), and every pipeline once per ``flush_interval`` (the smallest of the
running experiments'); a flush therefore costs one pipeline's drain, not a round over all of
them. A pipeline drains under its own lock, so its events reach its sink in order whichever
thread drains it. One thread serves any number of experiments: the thread count stays constant
as they grow, and a slow sink delays the others by as long as its write takes.

After a fork the thread stays stopped (``ml_dash._fork``) and every pipeline's wake mark is 0, so
the next call that queues anything takes the pipeline's slow path, which starts it again. When no
thread can be started (Python 3.12+ refuses once the interpreter is shutting down) the worker is
not :attr:`~Worker.serving`, and pipelines drain inline, in the thread that flushes or closes them.
"""

from __future__ import annotations

import collections
import threading
import time

from . import _fork

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, List, Optional

    from ._pipeline import Pipeline

__all__ = ["WORKER", "Worker"]

_here = threading.local()


class Worker:
    """The process-wide drain thread (one instance: :data:`WORKER`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._poked: collections.deque[Any] = collections.deque()  # pipelines that asked to be drained
        self._pipes: List[Pipeline] = []  # replaced, never mutated: the thread iterates a snapshot
        self._interval = 0.5
        self._thread: Optional[threading.Thread] = None
        self._run_token: Optional[object] = None  # the running thread's; another value tells it to exit

    # -- callers -------------------------------------------------------------------------------------

    @property
    def serving(self) -> bool:
        """True while a thread drains; False: drain inline (call ``_fork.wake()`` first)."""
        return self._thread is not None

    @staticmethod
    def in_worker_thread() -> bool:
        return getattr(_here, "worker", False)

    def register(self, pipe: Pipeline) -> None:
        with self._lock:
            self._pipes = [*self._pipes, pipe]
            self._interval = min(p.interval for p in self._pipes)
            if _fork.dormant:
                pipe.set_wake_marks(0)  # its first call wakes every service
            elif self._thread is None:
                self._start()

    def unregister(self, pipe: Pipeline) -> None:
        with self._lock:
            self._pipes = [p for p in self._pipes if p is not pipe]
            if self._pipes:
                self._interval = min(p.interval for p in self._pipes)

    def poke(self, pipe: Pipeline) -> None:
        """Have ``pipe`` drained soon (thread-safe, cheap: one deque append and an event)."""
        self._poked.append(pipe)
        self._wake.set()

    def _start(self) -> None:
        token = self._run_token = object()
        self._thread = _fork.start_thread(lambda: self._run(token), "ml-dash-worker")

    # -- the thread ----------------------------------------------------------------------------------

    def _run(self, token: object) -> None:
        _here.worker = True
        wake, poked = self._wake, self._poked
        next_round = time.monotonic() + self._interval
        while True:
            wake.wait(max(0.0, next_round - time.monotonic()))
            wake.clear()
            stopping = self._run_token is not token  # paused for a fork: hand everything over, then exit
            now = time.monotonic()
            if stopping or now >= next_round:
                next_round = now + self._interval
                poked.clear()  # a poke from now on is seen next time round
                pipes = self._pipes
            else:
                pipes = []
                while poked:
                    pipe = poked.popleft()
                    if pipe not in pipes:
                        pipes.append(pipe)
            for pipe in pipes:
                try:
                    if pipe.drain(everything=stopping):
                        self.poke(pipe)  # more than a batch is waiting there: again, without sleeping
                except Exception as exc:  # a bug in one pipeline must not stop the others' writes
                    pipe.record_error("worker", exc)
            if stopping:
                return

    # -- fork (see ml_dash._fork) -----------------------------------------------------------------------

    def pause_for_fork(self, deadline: float) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._run_token = None
        if thread is not None:
            self._wake.set()
            # If it does not stop in time it exits after its round; a new one starts at the next
            # call, and the pipelines' drain locks keep each experiment's order meanwhile.
            _fork.stop_thread(thread, deadline)

    def go_dormant(self) -> None:
        for pipe in self._pipes:
            pipe.set_wake_marks(0)

    def resume(self) -> None:
        with self._lock:
            for pipe in self._pipes:
                pipe.set_wake_marks(None)
            if self._pipes and self._thread is None:
                self._start()

    def reset_in_child(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._poked = collections.deque()
        self._pipes = []  # the experiments that keep running in the child register again
        self._thread = None
        self._run_token = None


#: The process's worker; its thread starts with the first experiment.
WORKER = Worker()
_fork.register_service(WORKER)
