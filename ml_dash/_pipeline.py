"""The spine: one experiment's bounded in-process queues, drained into its sink.

Metric rows, by far the most frequent event, go to one deque per metric: the caller's cost is the
fields dict it already built plus one ``deque.append``, and the drain needs no sorting by name.
Every other event (``ml_dash._events``) goes to the main deque. The process's one worker thread
(``ml_dash._worker``) drains every running pipeline once per ``batch_events`` events in any one
deque (or every ``flush_interval``; the call that fills the batch waits for that drain, see
``HANDOVER_WAIT``): it takes what is queued and hands it to the sink
(``ml_dash._sink.Sink``), each metric's rows as one list to ``write_metrics`` and the other
events in order to ``write``, so serialization and I/O never run in the caller's thread. A
:class:`~ml_dash._events.FlushMarker` in the main deque makes the drain write and ``sync``
everything queued before it, then set its event.
"""

from __future__ import annotations

import collections
import threading
import time
from itertools import repeat

from . import _fork
from ._errors import ExperimentStateError, QueueFull
from ._events import FlushMarker, LogEvent, SinkWriteError
from ._report import warn
from ._worker import WORKER

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

    from ._config import Config
    from ._sink import Sink

__all__ = ["Pipeline", "collect_once"]

#: How long a caller that filled a batch waits for the worker to write it, seconds (``_drained``).
HANDOVER_WAIT = 0.005
#: The wake mark of a metric before its first drain (see ``add_metric``).
FIRST_BATCH = 256


class _Refusing:
    """Stands in for the deque before start and after close, so the hot path needs no state check."""

    __slots__ = ("_why",)

    def __init__(self, why: str):
        self._why = why

    def __len__(self) -> int:
        return 0

    def append(self, item: object) -> None:
        raise ExperimentStateError(self._why)


class Pipeline:
    """One experiment's bounded queues, drained by the process's worker (or inline, see ``_worker``)."""

    def __init__(self, config: Config, name: str):
        self._sink: Any = None  # given by start()
        self._config = config
        self._name = name
        self._max = config.queue_max_events
        self._batch = max(1, min(config.batch_events, self._max))
        #: How often the worker drains at the latest, seconds.
        self.interval = config.flush_interval
        self._q: Any = _Refusing(f"experiment {name} is not started: call exp.run.start() or use `with exp.run:`")
        #: Crossing this length takes the slow path, :meth:`overflow` (wake the worker; block when full).
        self.wake_at = self._batch
        #: MetricBuilders: each has its own deque in its ``queue`` attribute, swapped like ``_q``, and
        #: its own copy of the wake mark in ``wake_at`` (one attribute read on the hot path).
        self._metric_owners: List[Any] = []
        self.drops: Dict[str, int] = collections.Counter()
        self.errors: Dict[str, int] = collections.Counter()
        self.last_error: Optional[str] = None
        self._init_sync_state()

    def _init_sync_state(self) -> None:
        self._bytes = 0
        self._woken = False
        #: Set at the end of each drain. A caller that filled a batch waits on it (HANDOVER_WAIT at
        #: most): the worker then gets the GIL at once instead of after the interpreter's 5 ms
        #: switch interval, writes the batch in one stretch, and the two alternate in short steps
        #: instead of the worker falling behind until the queue is full.
        self._drained = threading.Event()
        self._handover_until = 0.0
        #: Set when a caller waited the whole backpressure window in vain; cleared after each
        #: drain. While set, a full queue drops at once instead of blocking every call.
        self._stalled = False
        self._space = threading.Condition(threading.Lock())
        #: Held while taking from the queues and writing what was taken: one drain at a time, so
        #: events reach the sink in order whichever thread drains.
        self._drain_lock = threading.Lock()

    # -- caller side ---------------------------------------------------------------------------------

    def add_metric(self, owner: Any) -> None:
        """Give a metric its own deque (``owner.queue``) and wake mark (``owner.wake_at``)."""
        owner.queue = collections.deque() if self.running else self._q
        # A new metric's first drain also creates its files: a smaller first batch keeps that
        # drain (which the call filling the batch waits for) as short as the ones after it.
        owner.wake_at = min(self.wake_at, FIRST_BATCH)
        self._metric_owners.append(owner)

    def set_wake_marks(self, mark: Optional[int]) -> None:
        """Set every queue's wake mark: 0 sends the next call of any kind to :meth:`overflow`
        (after a fork, to start the threads again); None restores the batch size."""
        self.wake_at = self._batch if mark is None else mark
        for owner in self._metric_owners:
            owner.wake_at = self.wake_at

    def _set_queues(self, make: Callable[[], Any]) -> List[Any]:
        """Swap every queue for ``make()``; returns the previous deques (main first)."""
        old = [self._q, *(o.queue for o in self._metric_owners)]
        self._q = make()
        for owner in self._metric_owners:
            owner.queue = make() if isinstance(self._q, collections.deque) else self._q
        return [q for q in old if isinstance(q, collections.deque)]

    def start(self, sink: Sink) -> None:
        self._sink = sink
        self._set_queues(collections.deque)
        WORKER.register(self)

    @property
    def running(self) -> bool:
        return isinstance(self._q, collections.deque)

    def put(self, event: tuple[Any, ...]) -> bool:
        """Queue an event; False when it was dropped (counted in ``drops``)."""
        q = self._q
        if len(q) >= self.wake_at:
            return self.overflow(q, event)
        q.append(event)
        return True

    def wake(self) -> None:
        """Ask the worker to write what is queued now, without waiting for it."""
        _fork.wake()
        WORKER.poke(self)

    def put_log(self, event: LogEvent) -> bool:
        """Queue a log event; its message counts against ``queue_max_bytes`` as well."""
        nbytes = len(event.message)
        if self._bytes + nbytes > self._config.queue_max_bytes and self.running:
            WORKER.poke(self)
            if not self._wait_for_space(
                lambda: self._bytes + nbytes <= self._config.queue_max_bytes or not self._bytes
            ):
                return self._drop(event, "queue_bytes_full")
        self._bytes += nbytes
        return self.put(event)

    def overflow(self, q: Any, item: Any) -> bool:
        """The slow path of a put into deque ``q`` (this pipeline's, or one of its metrics') once it
        holds ``wake_at`` items: wake the worker once; when full, apply the drop policy."""
        if _fork.dormant:  # the first call after a fork: start the threads again
            _fork.wake()
            if len(q) < self._batch:
                q.append(item)
                return True
        if not self._woken:
            self._woken = True
            self._drained.clear()
            self._handover_until = time.monotonic() + HANDOVER_WAIT
            WORKER.poke(self)
        # Every caller that finds the batch full waits for its drain (other threads too, or they
        # would keep the worker from the GIL), all until one shared deadline: a worker stuck in
        # slow I/O costs each batch HANDOVER_WAIT once, not every call.
        if not self._drained.is_set() and WORKER.serving and not WORKER.in_worker_thread():
            left = self._handover_until - time.monotonic()
            if left > 0:
                self._drained.wait(left)
        if len(q) >= self._max and isinstance(q, collections.deque):
            if not WORKER.serving:
                self.drain()  # no worker thread (interpreter shutdown): make room in this thread
            elif WORKER.in_worker_thread():
                return self._drop(item, "queue_full")  # the worker cannot wait for itself
            elif self._stalled and self._config.drop_policy != "block":
                return self._drop(item, "queue_full")
            elif not self._wait_for_space(lambda: len(q) < self._max):
                self._stalled = True
                return self._drop(item, "queue_full" if WORKER.serving else "worker_stopped")
        q.append(item)
        return True

    def _wait_for_space(self, ready: Callable[[], bool]) -> bool:
        """Wait until ``ready()``; False when the policy's patience or the worker ran out first."""
        block = self._config.drop_policy == "block"
        started = time.monotonic()
        deadline = started + self._config.backpressure_timeout
        warned = False
        with self._space:
            while not ready():
                now = time.monotonic()
                if not WORKER.serving:
                    return ready()
                if now >= deadline:
                    if not block:
                        return ready()
                    if not warned:
                        warned = True
                        warn(
                            f"{self._name}: the queue has been full for {now - started:.0f} s; "
                            "the training loop is waiting for the writer (ML_DASH_DROP_POLICY=drop "
                            "drops instead, counted)"
                        )
                WORKER.poke(self)
                self._space.wait(0.1 if block else min(deadline - now, 0.1))
        return True

    def _drop(self, item: Any, reason: str) -> bool:
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
        """Block until every event queued before this call has been handed to the sink and synced."""
        if not self.running:
            return True
        done = threading.Event()
        self._q.append(FlushMarker(done))
        if WORKER.serving and not _fork.dormant:
            WORKER.poke(self)
            return done.wait(timeout)
        # No worker thread (stopped since a fork, or the interpreter is shutting down): drain here.
        while not done.is_set() and self.drain():
            pass
        return done.is_set()

    def close(self, deadline: float) -> bool:
        """Drain the queues, stop taking events, close the sink; True when everything was written in time."""
        if not self.running:
            return True
        drained = self.flush(max(0.0, deadline - time.monotonic()))
        closed = _Refusing(f"experiment {self._name} is closed")
        left = self._set_queues(lambda: closed)
        WORKER.unregister(self)
        if any(left):
            self._settle(left, drained, deadline)
        try:
            self._sink.close(deadline)
        except Exception as exc:  # closing must never raise into the user's exit path
            self.record_error("sink_close", exc)
        return drained

    def _settle(self, left: List[Any], drained: bool, deadline: float) -> None:
        """At close, the deques just swapped out still hold events: queued by other threads after
        the flush (stored now), or left behind because the deadline passed (counted as dropped)."""
        locked = drained and self._drain_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        try:
            events = [e for e in _take(left[0]) if type(e) is not FlushMarker]
            metrics = [(o, rows) for o, rows in zip(self._metric_owners, map(_take, left[1:])) if rows]
            if locked:
                self._process(events, metrics)
            else:
                self.drops["close_deadline"] += len(events) + sum(len(rows) for _, rows in metrics)
        finally:
            if locked:
                self._drain_lock.release()

    # -- drain (the worker thread, or inline) ----------------------------------------------------------

    def drain(self, everything: bool = False) -> bool:
        """Take what is queued (at most a batch per metric, unless ``everything``) and hand it to
        the sink; True when more than a batch is still waiting."""
        with self._drain_lock:
            self._woken = False
            q = self._q
            if not isinstance(q, collections.deque):
                return False
            # Take the main queue first: a flush marker in it then covers every metric row
            # that was queued before it, because those are taken right after.
            batch = _take(q)
            # One round takes at most a batch of rows per metric, so the rows being written and
            # the rows still queued together stay near queue_max_events. A flush marker needs
            # every row queued before it, so then the round takes everything.
            limit = None if everything or any(type(e) is FlushMarker for e in batch) else self._batch
            owners = self._metric_owners
            metrics = [(o, _take(o.queue, limit)) for o in owners]
            metrics = [(o, rows) for o, rows in metrics if rows]
            for o, _ in metrics:
                o.wake_at = self.wake_at
            more = any(len(o.queue) >= self._batch for o in owners)
            if batch or metrics:
                self._process(batch, metrics)
                self._stalled = False
                with self._space:
                    self._space.notify_all()
            self._drained.set()
            return more

    def _process(self, batch: List[tuple[Any, ...]], metrics: List[tuple[Any, ...]]) -> None:
        sink = self._sink
        for owner, rows in metrics:
            try:
                owner.write_to(sink, rows)  # a metric's rows to write_metrics, a topic's to write_tracks
            except Exception as exc:
                self.drops["sink_error"] += len(rows)
                self.record_error("sink_write", exc)
        start = 0
        for i, event in enumerate(batch):
            if type(event) is FlushMarker:
                self._write(batch[start:i], sync=True)
                event.done.set()
                start = i + 1
        self._write(batch[start:], sync=False)

    def _write(self, events: List[tuple[Any, ...]], sync: bool) -> None:
        if events:
            try:
                self._sink.write(events)
            except SinkWriteError as exc:
                self.drops["sink_error"] += exc.failed
                self.record_error("sink_write", exc.cause)
            except Exception as exc:
                # A sink that cannot write (disk full, permissions) must not kill the worker.
                self.drops["sink_error"] += len(events)
                self.record_error("sink_write", exc)
            if self._bytes:
                self._bytes -= sum(len(e.message) for e in events if type(e) is LogEvent)
        if sync:
            try:
                self._sink.sync()
            except Exception as exc:
                self.record_error("sink_sync", exc)

    def record_error(self, where: str, exc: BaseException) -> None:
        """Count a failure; the first of each kind is reported at once."""
        self.errors[where] += 1
        self.last_error = f"{where}: {type(exc).__name__}: {exc}"
        if self.errors[where] == 1:
            warn(f"{self._name}: {self.last_error}")

    # -- fork ------------------------------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """In a forked child: drop the parent's queued events (the parent writes them) and go on
        with fresh queues, drained by the child's worker (the sink was reset by its owner)."""
        self._init_sync_state()
        if self.running:
            self._set_queues(collections.deque)
            WORKER.register(self)


_collected = False


def collect_once() -> None:
    """One full garbage collection, at the first run start of the process (``Config.gc_at_start``).

    CPython runs a full collection when ten middle ones have passed and the objects that
    survived into the oldest generation since the last full one exceed a quarter of it. A fresh
    process owes one: everything its imports made survived there. Queued rows are dicts, and a
    dict counts toward the young generation's threshold while it is alive (tracked or not), so a
    run's rows bring the middle collections, and with them the owed full one, into a ``log``
    call: 3 to 4 ms in a bare process, far more with a framework loaded. Paid here, it is paid
    where nobody times a step; queued rows add almost nothing to the oldest generation (rows of
    numbers are untracked), so they never make another full collection fall due on their own.
    Once per process: a sweep's later runs find nothing owed by us.
    """
    global _collected
    if _collected:
        return
    _collected = True
    import gc

    if gc.isenabled():  # a program that disabled the collector runs it itself, when it chooses
        gc.collect()


def _take(q: Any, limit: Optional[int] = None) -> list[Any]:
    """Pop what is in ``q`` now (at most ``limit``); items appended meanwhile stay for the next round."""
    n = len(q) if limit is None else min(len(q), limit)
    # map() calls popleft from C: a quarter of a Python loop's time, inside the caller's handover.
    return list(map(collections.deque.popleft, repeat(q, n)))
