"""The group-commit thread stops for a fork whenever the pause comes (seen in CI: it stayed alive,
and Python 3.13 warned the user that the process was multi-threaded at ``os.fork()``)."""

import threading
import time

from ml_dash.agent._syncer import Syncer


class _Writer:
    """A spool writer as the group commit sees it: due at once, and its fsync takes a while."""

    def __init__(self) -> None:
        self.syncing = threading.Event()
        self.finish = threading.Event()
        self.synced = 0

    def sync_due(self):
        return None if self.synced else 0.0

    def sync_now(self) -> None:
        self.syncing.set()
        assert self.finish.wait(10)
        self.synced += 1


class _PauseFirstLock:
    """The syncer's lock, which lets a pause in just before the syncer thread takes it again after
    an fsync: the order that a loaded machine produces now and then, made certain."""

    def __init__(self, syncer_thread: "list[threading.Thread]") -> None:
        self._lock = threading.Lock()
        self._syncer_thread = syncer_thread
        self.hold_syncer = threading.Event()
        self.syncer_waits = threading.Event()
        self.pause_released = threading.Event()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self.hold_syncer.is_set() and threading.current_thread() in self._syncer_thread:
            self.syncer_waits.set()
            assert self.pause_released.wait(10)
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()
        if self.syncer_waits.is_set() and threading.current_thread() not in self._syncer_thread:
            self.pause_released.set()

    __enter__ = acquire

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_pause_that_comes_between_two_rounds_stops_the_thread():
    syncer = Syncer()
    threads: "list[threading.Thread]" = []
    lock = _PauseFirstLock(threads)
    syncer._cond = threading.Condition(lock)  # type: ignore[arg-type]
    writer = _Writer()
    syncer.note(writer)  # type: ignore[arg-type]
    assert syncer._thread is not None
    threads.append(syncer._thread)
    assert writer.syncing.wait(10)  # the thread is in its fsync, outside the lock

    lock.hold_syncer.set()
    writer.finish.set()
    assert lock.syncer_waits.wait(10)  # done syncing, about to take the lock for its next round
    pause = threading.Thread(target=syncer.pause_for_fork, args=(time.monotonic() + 5,))
    pause.start()
    pause.join(10)

    assert lock.pause_released.is_set()
    assert not pause.is_alive()
    assert not threads[0].is_alive()  # without the fix: waiting for a notification already given
    assert writer.synced == 1


def test_a_thread_that_does_not_stop_for_the_fork_is_named_in_the_debug_log(caplog):
    """When Python warns at a fork anyway, DEBUG on ``ml_dash`` says which thread of ours stayed."""
    from ml_dash import _fork

    release = threading.Event()
    stuck = threading.Thread(target=release.wait, name="ml-dash-stuck", daemon=True)
    stuck.start()
    try:
        with caplog.at_level("DEBUG", logger="ml_dash"):
            assert _fork.stop_thread(stuck, time.monotonic() + 0.05) is False
    finally:
        release.set()
        stuck.join(10)
    assert [r.getMessage() for r in caplog.records if r.name == "ml_dash"] == [
        "ml-dash-stuck did not stop for the fork in time; it goes on running in the parent"
    ]
    assert _fork.stop_thread(stuck, time.monotonic() + 5) is True
