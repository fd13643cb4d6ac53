"""The spine: bounded in-process queues drained by one background worker into a sink.

Metric rows, by far the most frequent event, go to one deque per metric: the caller's cost is the
fields dict it already built plus one ``deque.append``, and the worker needs no sorting by name.
Every other event (``ml_dash._events``) goes to the main deque. The worker wakes once per
``batch_events`` events in any one deque (or every ``flush_interval``), takes everything queued,
and hands it to the sink (``ml_dash._sink.Sink``): each metric's rows as one list to
``write_metrics``, the other events in order to ``write``, so serialization and I/O never run in
the caller's thread. A :class:`~ml_dash._events.FlushMarker` in the main deque makes the worker
write and ``sync`` everything queued before it, then set its event.
"""

from __future__ import annotations

import collections
import threading
import time

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

    from ._sink import Sink

from ._config import Config
from ._errors import ExperimentStateError, QueueFull
from ._events import FlushMarker, LogEvent, SinkWriteError
from ._report import warn

__all__ = ["Pipeline"]


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
        #: Crossing this length takes the slow path, :meth:`overflow` (wake the worker; block when full).
        self.wake_at = self._batch
        self._bytes = 0
        self._woken = False
        #: Set when a caller waited the whole backpressure window in vain; cleared by the worker
        #: after each batch. While set, a full queue drops at once instead of blocking every call.
        self._stalled = False
        self._wake = threading.Event()
        self._space = threading.Condition(threading.Lock())
        self._thread: Optional[threading.Thread] = None
        #: MetricBuilders: each has its own deque in its ``queue`` attribute, swapped like ``_q``.
        self._metric_owners: List[Any] = []
        self.drops: Dict[str, int] = collections.Counter()
        self.errors: Dict[str, int] = collections.Counter()
        self.last_error: Optional[str] = None

    # -- caller side ---------------------------------------------------------------------------------

    def add_metric(self, owner: Any) -> None:
        """Give a metric its own deque (set as ``owner.queue``), following the pipeline's state."""
        owner.queue = collections.deque() if self.running else self._q
        self._metric_owners.append(owner)

    def _set_queues(self, make: Callable[[], Any]) -> None:
        self._q = make()
        for owner in self._metric_owners:
            owner.queue = make() if isinstance(self._q, collections.deque) else self._q

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._set_queues(collections.deque)
        self._thread = threading.Thread(target=self._run, name=f"ml-dash-worker:{self._name}", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return isinstance(self._q, collections.deque)

    def put(self, event: tuple) -> bool:
        """Queue an event; False when it was dropped (counted in ``drops``)."""
        q = self._q
        if len(q) >= self.wake_at:
            return self.overflow(q, event)
        q.append(event)
        return True

    def wake(self) -> None:
        """Ask the worker to write what is queued now, without waiting for it."""
        self._wake.set()

    def put_log(self, event: LogEvent) -> bool:
        """Queue a log event; its message counts against ``queue_max_bytes`` as well."""
        nbytes = len(event.message)
        if self._bytes + nbytes > self._config.queue_max_bytes and self.running:
            self._wake.set()
            if not self._wait_for_space(lambda: self._bytes + nbytes <= self._config.queue_max_bytes or not self._bytes):
                return self._drop(event, "queue_bytes_full")
        self._bytes += nbytes
        return self.put(event)

    def overflow(self, q: Any, item: Any) -> bool:
        """The slow path of a put into deque ``q`` (this pipeline's, or one of its metrics') once it
        holds ``wake_at`` items: wake the worker once; when full, apply the drop policy."""
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
                        warn(f"{self._name}: the queue has been full for {now - started:.0f} s; "
                             "the training loop is waiting for the writer (ML_DASH_DROP_POLICY=drop "
                             "drops instead, counted)")
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
            warn(f"{self._name}: dropping events ({reason}); counts are reported at close")
        return False

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Block until every item queued before this call has been handed to the sink and synced."""
        if not self.running or self._thread is None:
            return True
        done = threading.Event()
        self._q.append(FlushMarker(done))
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
            limit = None if any(type(e) is FlushMarker for e in batch) else self._batch
            metrics = [(o, _take(o.queue, limit)) for o in self._metric_owners]
            metrics = [(o, rows) for o, rows in metrics if rows]
            if any(len(o.queue) >= self._batch for o in self._metric_owners):
                wake.set()  # more than a batch is waiting: go round again without sleeping
            if batch or metrics:
                self._process(batch, metrics)
                self._stalled = False
                with self._space:
                    self._space.notify_all()

    def _process(self, batch: List[tuple], metrics: List[tuple]) -> None:
        sink = self._sink
        for owner, rows in metrics:
            try:
                # Metrics and track topics alike: the owner names its Sink method.
                getattr(sink, owner.sink_method)(owner.name, rows)
            except Exception as exc:
                self.drops["sink_error"] += len(rows)
                self._record_error("sink_write", exc)
        start = 0
        for i, event in enumerate(batch):
            if type(event) is FlushMarker:
                self._write(batch[start:i], sync=True)
                event.done.set()
                start = i + 1
        self._write(batch[start:], sync=False)

    def _write(self, events: List[tuple], sync: bool) -> None:
        if events:
            try:
                self._sink.write(events)
            except SinkWriteError as exc:
                self.drops["sink_error"] += exc.failed
                self._record_error("sink_write", exc.cause)
            except Exception as exc:
                # A sink that cannot write (disk full, permissions) must not kill the worker.
                self.drops["sink_error"] += len(events)
                self._record_error("sink_write", exc)
            if self._bytes:
                self._bytes -= sum(len(e.message) for e in events if type(e) is LogEvent)
        if sync:
            try:
                self._sink.sync()
            except Exception as exc:
                self._record_error("sink_sync", exc)

    def _record_error(self, where: str, exc: BaseException) -> None:
        self.errors[where] += 1
        self.last_error = f"{where}: {type(exc).__name__}: {exc}"
        if self.errors[where] == 1:
            warn(f"{self._name}: {self.last_error}")

    # -- fork ------------------------------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """In a forked child: drop the parent's queued events (the parent writes them) and restart
        with fresh queues and a worker of the child's own (the sink was reset by its owner)."""
        was_running = self.running
        self._wake = threading.Event()
        self._space = threading.Condition(threading.Lock())
        self._woken = False
        self._bytes = 0
        self._thread = None
        if was_running:
            self.start(self._sink)


def _take(q: Any, limit: Optional[int] = None) -> list:
    """Pop what is in ``q`` now (at most ``limit``); items appended meanwhile stay for the next round."""
    n = len(q) if limit is None else min(len(q), limit)
    pop = q.popleft
    return [pop() for _ in range(n)]
