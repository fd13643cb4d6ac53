"""The spine: bounded in-process queues drained by one background worker into a sink.

Metric rows, by far the most frequent event, go to one deque per metric: the caller's cost is the
fields dict it already built plus one ``deque.append``, and the worker needs no sorting by name.
Everything else goes to the main deque as a tuple. The worker wakes once per ``batch_events``
events in any one deque (or every ``flush_interval``), takes everything queued, and hands it to
the sink, so serialization and I/O never run in the caller's thread.

A sink with ``write_metrics(name, rows)`` gets each metric's rows as one list (rows are the user's
fields plus ``"_ts"``); a sink without it gets them as ``("m", name, fields)`` items in ``write``.

Main queue items are tuples whose first element is the kind:

    ("m", name, fields)                     metric row (only for sinks without write_metrics)
    ("l", ts, level, message, metadata)     log line
    ("p", ts, flat_params)                  parameters (already flattened)
    ("f", ts, entry)                        file entry (bytes already snapshotted)
    ("e", ts, fields)                       experiment upsert (description, tags, ...)
    ("s", ts, status, reason)               status change
    ("x", threading.Event)                  flush marker, handled here and never given to the sink
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import time

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Protocol

from ._config import Config
from ._errors import ExperimentStateError, QueueFull

__all__ = ["Pipeline", "SinkWriteError", "FLUSH"]

FLUSH = "x"


class Sink:  # the interface a sink implements (documentation; no base class is required)
    """Where the worker puts batches. Local mode writes the layout; remote mode writes the spool."""

    def write(self, items: List[tuple]) -> None:
        """Store a batch (called in the worker thread only). Must not raise for one bad item."""

    # Optional: ``write_metrics(name, rows)``, called before ``write`` with each metric's rows.

    def sync(self) -> None:
        """Make everything written so far as durable as the sink promises (called at flush)."""

    def close(self, deadline: float) -> None:
        """Release resources; may upload until ``deadline`` (a ``time.monotonic()`` value)."""

    def after_fork_in_child(self) -> None:
        """Forget the parent's state in a forked child."""


class SinkWriteError(Exception):
    """Raised by a sink that stored part of a batch: ``failed`` items were not stored."""

    def __init__(self, failed: int, cause: BaseException):
        super().__init__(f"{failed} item(s) not stored: {type(cause).__name__}: {cause}")
        self.failed = failed
        self.cause = cause


class _Refusing:
    """Stands in for the deque before start and after close, so the hot path needs no state check."""

    __slots__ = ("_why",)

    def __init__(self, why: str):
        self._why = why

    def __len__(self) -> int:
        return 0

    def append(self, item) -> None:
        raise ExperimentStateError(self._why)


class Pipeline:
    """Bounded queue + background worker for one experiment."""

    def __init__(self, config: Config, name: str):
        self._sink: Any = None  # given by start()
        self._config = config
        self._name = name
        self._max = config.queue_max_events
        self._batch = max(1, min(config.batch_events, self._max))
        self._q: Any = _Refusing(f"experiment {name} is not started: call exp.run.start() or use `with exp.run:`")
        #: Crossing this length takes the slow path (wake the worker; block when full).
        self._wake_at = self._batch
        self._bytes = 0
        self._woken = False
        #: Set when a caller waited the whole backpressure window in vain; cleared by the worker
        #: after each batch. While set, a full queue drops at once instead of blocking every call.
        self._stalled = False
        self._wake = threading.Event()
        self._space = threading.Condition(threading.Lock())
        self._thread: Optional[threading.Thread] = None
        #: Objects with a ``_q`` attribute (MetricBuilder): one deque per metric, swapped like ``_q``.
        self._metric_owners: List[Any] = []
        self.drops: Dict[str, int] = collections.Counter()
        self.errors: Dict[str, int] = collections.Counter()
        self.last_error: Optional[str] = None

    # -- caller side ---------------------------------------------------------------------------------

    def add_metric(self, owner: Any) -> None:
        """Give a metric its own deque (set as ``owner._q``), following the pipeline's state."""
        owner._q = collections.deque() if self.running else self._q
        self._metric_owners.append(owner)

    def _set_queues(self, make: Callable[[], Any]) -> None:
        self._q = make()
        for owner in self._metric_owners:
            owner._q = make() if isinstance(self._q, collections.deque) else self._q

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._set_queues(collections.deque)
        self._thread = threading.Thread(target=self._run, name=f"ml-dash-worker:{self._name}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return isinstance(self._q, collections.deque)

    def put(self, item: tuple) -> bool:
        """Queue an item; False when it was dropped (counted in ``drops``)."""
        q = self._q
        if len(q) >= self._wake_at:
            return self._crowded(q, item)
        q.append(item)
        return True

    def put_log(self, item: tuple) -> bool:
        """Queue a log item; its message counts against ``queue_max_bytes`` as well."""
        nbytes = len(item[3])
        if self._bytes + nbytes > self._config.queue_max_bytes and self.running:
            self._wake.set()
            if not self._wait_for_space(lambda: self._bytes + nbytes <= self._config.queue_max_bytes or not self._bytes):
                return self._drop(item, "queue_bytes_full")
        self._bytes += nbytes
        return self.put(item)

    def _crowded(self, q: Any, item: Any) -> bool:
        """Slow path of a put into deque ``q``: wake the worker once; block briefly when full."""
        if not self._woken:
            self._woken = True
            self._wake.set()
        if len(q) >= self._max:
            if threading.current_thread() is self._thread:
                return self._drop(item, "queue_full")  # the worker cannot wait for itself
            if self._stalled and self._config.drop_policy != "block":
                return self._drop(item, "queue_full")
            if not self._wait_for_space(lambda: len(q) < self._max):
                self._stalled = True
                return self._drop(item, "queue_full" if self._thread_alive() else "worker_stopped")
        q.append(item)
        return True

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _wait_for_space(self, ready: Callable[[], bool]) -> bool:
        """Wait until ``ready()``; False when the policy's patience or the worker ran out first."""
        block = self._config.drop_policy == "block"
        started = time.monotonic()
        deadline = started + self._config.backpressure_timeout
        warned = False
        with self._space:
            while not ready():
                now = time.monotonic()
                if not self._thread_alive():
                    return ready()
                if now >= deadline:
                    if not block:
                        return ready()
                    if not warned:
                        warned = True
                        print(f"ml-dash: {self._name}: the queue has been full for {now - started:.0f} s; "
                              "the training loop is waiting for the writer (ML_DASH_DROP_POLICY=drop "
                              "drops instead, counted)", file=sys.stderr)
                self._wake.set()
                self._space.wait(0.1 if block else min(deadline - now, 0.1))
        return True

    def _drop(self, item: tuple, reason: str) -> bool:
        self.drops[reason] += 1
        if self._config.drop_policy == "raise":
            raise QueueFull(
                f"ml-dash queue for {self._name} stayed full for {self._config.backpressure_timeout}s "
                f"({reason}); the event was not stored"
            )
        if self.drops[reason] == 1:
            print(f"ml-dash: {self._name}: dropping events ({reason}); counts are reported at close", file=sys.stderr)
        return False

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Block until every item queued before this call has been handed to the sink and synced."""
        if not self.running or self._thread is None:
            return True
        done = threading.Event()
        self._q.append((FLUSH, done))
        self._wake.set()
        return done.wait(timeout)

    def close(self, deadline: float) -> bool:
        """Drain the queue, stop the worker, close the sink; True when everything was written in time."""
        if not self.running:
            return True
        drained = self.flush(max(0.0, deadline - time.monotonic()))
        closed = _Refusing(f"experiment {self._name} is closed")
        self._set_queues(lambda: closed)
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        try:
            self._sink.close(deadline)
        except Exception as exc:  # closing must never raise into the user's exit path
            self._record_error("sink_close", exc)
        return drained

    # -- worker side ---------------------------------------------------------------------------------

    def _run(self) -> None:
        wake, interval = self._wake, self._config.flush_interval
        while True:
            wake.wait(interval)
            wake.clear()
            self._woken = False
            q = self._q
            if not isinstance(q, collections.deque):
                return
            # Take the main queue first: a flush marker in it then covers every metric row
            # that was queued before it, because those are drained right after.
            batch = _take(q)
            # One round takes at most a batch of rows per metric, so the rows being written and
            # the rows still queued together stay near queue_max_events. A flush marker needs
            # every row queued before it, so then the round takes everything.
            limit = None if any(item[0] == FLUSH for item in batch) else self._batch
            metrics = [(o.name, _take(o._q, limit)) for o in self._metric_owners]
            metrics = [(name, rows) for name, rows in metrics if rows]
            if any(len(o._q) >= self._batch for o in self._metric_owners):
                wake.set()  # more than a batch is waiting: go round again without sleeping
            if batch or metrics:
                self._process(batch, metrics)
                self._stalled = False
                with self._space:
                    self._space.notify_all()

    def _process(self, batch: List[tuple], metrics: List[tuple]) -> None:
        if metrics:
            write_metrics = getattr(self._sink, "write_metrics", None)
            if write_metrics is None:
                batch = [("m", name, row) for name, rows in metrics for row in rows] + batch
            else:
                for name, rows in metrics:
                    try:
                        write_metrics(name, rows)
                    except Exception as exc:
                        self.drops["sink_error"] += len(rows)
                        self._record_error("sink_write", exc)
        start = 0
        for i, item in enumerate(batch):
            if item[0] == FLUSH:
                self._write(batch[start:i], sync=True)
                item[1].set()
                start = i + 1
        self._write(batch[start:], sync=False)

    def _write(self, items: List[tuple], sync: bool) -> None:
        if items:
            try:
                self._sink.write(items)
            except SinkWriteError as exc:
                self.drops["sink_error"] += exc.failed
                self._record_error("sink_write", exc.cause)
            except Exception as exc:
                # A sink that cannot write (disk full, permissions) must not kill the worker.
                self.drops["sink_error"] += len(items)
                self._record_error("sink_write", exc)
            if self._bytes:
                self._bytes -= sum(len(it[3]) for it in items if it[0] == "l")
        if sync:
            try:
                self._sink.sync()
            except Exception as exc:
                self._record_error("sink_sync", exc)

    def _record_error(self, where: str, exc: BaseException) -> None:
        self.errors[where] += 1
        self.last_error = f"{where}: {type(exc).__name__}: {exc}"
        if self.errors[where] == 1:
            print(f"ml-dash: {self._name}: {self.last_error}", file=sys.stderr)

    # -- fork ------------------------------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """In a forked child: drop the parent's queued items (the parent writes them) and restart."""
        was_running = self.running
        self._wake = threading.Event()
        self._space = threading.Condition(threading.Lock())
        self._woken = False
        self._bytes = 0
        self._thread = None
        if was_running:
            self._sink.after_fork_in_child()
            self.start(self._sink)  # fresh queues: the parent's queued items are the parent's


def _take(q: Any, limit: Optional[int] = None) -> list:
    """Pop what is in ``q`` now (at most ``limit``); items appended meanwhile stay for the next round."""
    n = len(q) if limit is None else min(len(q), limit)
    pop = q.popleft
    return [pop() for _ in range(n)]
