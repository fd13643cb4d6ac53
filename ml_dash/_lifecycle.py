"""Process-wide hooks that keep data safe: atexit, SIGTERM, uncaught exceptions and fork.

* **atexit**: every experiment still running is drained and closed (COMPLETED, or FAILED when an
  uncaught exception ended the program). One deadline, ``Config.shutdown_timeout``, covers all.
  ``multiprocessing`` children end with ``os._exit`` (fork and forkserver start methods), which
  skips atexit: there the same close runs as a ``multiprocessing`` exit finalizer instead, both
  for experiments inherited through a fork and for experiments the child started itself.
* **SIGTERM**: installed on the first start, from the main thread only, and only when the
  program has not chosen to ignore SIGTERM. With the default disposition we drain, mark runs
  CANCELLED, then re-deliver SIGTERM with the default action so the exit status stays 143. With a
  handler of the program's own, we flush everything and then call that handler, which decides.
  In a ``multiprocessing`` child (default disposition) ``ml_dash._sigwatch`` also watches for a
  SIGTERM the main thread cannot handle (it waits in C code: a pool worker waiting for its next
  task), and then closes the runs from its thread and ends the process (exit status 143); where
  it cannot watch, the child keeps SIGTERM's default action (ended at once, never hung).
* **fork**: see ``ml_dash._fork``; in the child every running experiment's recorder resets.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
import weakref

from ._report import warn
from ._sigwatch import WATCH

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from types import FrameType, TracebackType
    from typing import Any, Callable, List, Optional

    from ._recorder import Recorder

__all__ = ["register", "unregister", "running"]

_lock = threading.Lock()
_live: "weakref.WeakSet[Recorder]" = weakref.WeakSet()
_installed = False
_uncaught: Optional[BaseException] = None
_previous_sigterm = None
_closing = 0  # closes in progress (see closing)
_deferred_sigterm: Optional[tuple[Any, ...]] = None
#: Taken (never released) by whoever closes the runs for a SIGTERM and ends the process: the main
#: thread's handler or the watcher (``_sigwatch``). A lock taken without blocking: safe in a handler.
_sigterm_claim = threading.Lock()
_watcher_claimed = False  # the watcher took it


def running() -> List[Recorder]:
    """The recorders of every experiment running in this process."""
    with _lock:
        return [r for r in _live if r.running]


def register(rec: Recorder) -> None:
    global _installed
    with _lock:
        _live.add(rec)
        if _installed:
            return
        _installed = True
    atexit.register(_at_exit)
    _wrap_excepthook()
    _install_sigterm()
    mp = sys.modules.get("multiprocessing")
    if mp is not None and mp.parent_process() is not None:
        _in_multiprocessing_child()


def unregister(rec: Recorder) -> None:
    with _lock:
        _live.discard(rec)


def _close_all(status: str, reason: Optional[str]) -> None:
    with closing():  # a SIGTERM meanwhile waits for the end (it may interrupt this very frame)
        recs = running()
        if not recs:
            return
        deadline = time.monotonic() + max(r.config.shutdown_timeout for r in recs)
        for rec in recs:
            try:
                rec.close(status, reason, deadline)
            except Exception as exc:  # one experiment's trouble must not stop the others draining
                warn(f"closing {rec.prefix} failed: {exc}")


def _at_exit() -> None:
    if _uncaught is not None:
        _close_all("FAILED", f"uncaught {type(_uncaught).__name__}: {_uncaught}")
    else:
        _close_all("COMPLETED", "process exited without complete()")


def _wrap_excepthook() -> None:
    previous = sys.excepthook

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Optional[TracebackType]) -> None:
        global _uncaught
        _uncaught = exc
        previous(exc_type, exc, tb)

    sys.excepthook = hook


def _install_sigterm() -> None:
    global _previous_sigterm
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return
    if previous in (signal.SIG_IGN, None):
        return  # the program ignores SIGTERM (or it was set outside Python): not ours to change
    _previous_sigterm = previous
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
    global _deferred_sigterm
    WATCH.entered()
    if _closing:
        # A close is under way (maybe in the very frame this handler interrupted, holding its
        # locks): let it finish; the signal is handled when it ends (see closing()).
        _deferred_sigterm = (signum, frame)
        return
    previous = _previous_sigterm
    if callable(previous):
        _off_main_thread(_flush_all, 10.0)
        previous(signum, frame)
        return
    longest = _longest_shutdown()
    if _sigterm_claim.acquire(False) or not _watcher_claimed:
        # (A claim this thread made already: a SIGTERM again, which ends the process now.)
        _off_main_thread(lambda: _close_all("CANCELLED", "terminated by SIGTERM"), longest + 1.0)
    else:
        # The watcher began first (this thread was slow to get here): it closes the runs and
        # ends the process; this thread waits for that instead of going on with the program.
        time.sleep(longest + 2.0)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def sigterm_is_ours() -> bool:
    """True when SIGTERM's handler is ml-dash's (``ml_dash._fork`` blocks SIGTERM while forking)."""
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def _longest_shutdown() -> float:
    # Without the lock: the frame a handler interrupted may hold it.
    return max((r.config.shutdown_timeout for r in list(_live)), default=0.0)


def _on_missed_sigterm() -> None:
    """The watcher's (``_sigwatch``): a SIGTERM came and the main thread could not begin its
    handler. Close the runs from here, then end the process as SIGTERM would have."""
    global _watcher_claimed
    if not _sigterm_claim.acquire(False):
        return  # the main thread's handler began after all and does it
    _watcher_claimed = True
    deadline = time.monotonic() + _longest_shutdown() + 1.0
    while _closing and time.monotonic() < deadline:  # a close under way elsewhere ends first
        time.sleep(0.01)
    _off_main_thread(lambda: _close_all("CANCELLED", "terminated by SIGTERM"), max(0.0, deadline - time.monotonic()))
    os._exit(128 + signal.SIGTERM)  # only the main thread may restore SIGTERM's default action


def _watch_sigterm() -> None:
    """In a multiprocessing child whose SIGTERM handler is ours (with the default action behind it):
    watch for a SIGTERM the main thread misses; where that cannot be, keep the default action."""
    if not sigterm_is_ours() or callable(_previous_sigterm):
        return
    if threading.current_thread() is not threading.main_thread() or WATCH.arm(_on_missed_sigterm):
        return
    signal.signal(signal.SIGTERM, _previous_sigterm if _previous_sigterm is not None else signal.SIG_DFL)


def _flush_all() -> None:
    deadline = time.monotonic() + 10.0
    for rec in running():
        rec.pipe.flush(max(0.0, deadline - time.monotonic()))


def _off_main_thread(work: Callable[[], object], timeout: float) -> None:
    """Run ``work`` in a helper thread and wait at most ``timeout`` seconds for it.

    A signal handler runs in the main thread between two steps of whatever it interrupted,
    which may hold one of our locks; the helper never waits on the interrupted frame, so at
    worst the handler gives up after ``timeout`` instead of hanging.
    """
    from ._fork import start_thread

    thread = start_thread(work, "ml-dash-sigterm")
    if thread is None:  # the interpreter is shutting down: no thread, do it here
        work()
    else:
        thread.join(timeout)


class closing:
    """Context of a close in progress: a SIGTERM that arrives meanwhile waits for its end."""

    def __enter__(self) -> None:
        global _closing
        _closing += 1

    def __exit__(self, *exc: object) -> None:
        global _closing, _deferred_sigterm
        _closing -= 1
        if _closing == 0 and _deferred_sigterm is not None:
            signum = _deferred_sigterm[0]
            _deferred_sigterm = None
            os.kill(os.getpid(), signum)  # again, for the main thread's handler (from any thread)


def after_fork_in_child() -> None:
    """Called by ``ml_dash._fork`` in a forked child, after the background services were reset."""
    global _lock, _sigterm_claim, _watcher_claimed
    _lock = threading.Lock()
    _sigterm_claim = threading.Lock()
    _watcher_claimed = False
    for rec in list(_live):
        rec.after_fork_in_child()
    mp = sys.modules.get("multiprocessing")
    if mp is not None and (_live or sigterm_is_ours()):
        # A multiprocessing child runs this once it has cleared the finalizers it inherited.
        import multiprocessing.util

        multiprocessing.util.register_after_fork(_after_fork_in_child_marker, _in_multiprocessing_child)


class _Marker:
    """A weak-referenceable key for multiprocessing's after-fork registry."""


_after_fork_in_child_marker = _Marker()


def _in_multiprocessing_child(_: object = None) -> None:
    """In a multiprocessing child: close the runs at its exit, and watch for SIGTERM."""
    import multiprocessing.util

    # Run by multiprocessing.util._exit_function before the child's os._exit; after the
    # library's own finalizers (priority 0 and above run from the highest).
    multiprocessing.util.Finalize(None, _at_exit, exitpriority=-100)
    _watch_sigterm()
