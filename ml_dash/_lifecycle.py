"""Process-wide hooks that keep data safe: atexit, SIGTERM, uncaught exceptions and fork.

* **atexit**: every experiment still running is drained and closed (COMPLETED, or FAILED when an
  uncaught exception ended the program). One deadline, ``Config.shutdown_timeout``, covers all.
* **SIGTERM**: installed on the first start, from the main thread only, and only when the
  program has not chosen to ignore SIGTERM. With the default disposition we drain, mark runs
  CANCELLED, then re-deliver SIGTERM with the default action so the exit status stays 143. With a
  handler of the program's own, we flush everything and then call that handler, which decides.
* **fork**: in the child the parent's queued events are dropped (the parent writes them), the
  worker is restarted, and the child never changes the experiment's status.
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

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import List, Optional

    from ._recorder import Recorder

__all__ = ["register", "unregister", "running"]

_lock = threading.Lock()
_live: "weakref.WeakSet[Recorder]" = weakref.WeakSet()
_installed = False
_uncaught: Optional[BaseException] = None
_previous_sigterm = None


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
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_after_fork_in_child)


def unregister(rec: Recorder) -> None:
    with _lock:
        _live.discard(rec)


def _close_all(status: str, reason: Optional[str]) -> None:
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

    def hook(exc_type, exc, tb):
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


def _on_sigterm(signum, frame) -> None:
    previous = _previous_sigterm
    if callable(previous):
        deadline = time.monotonic() + 10.0
        for rec in running():
            rec.pipe.flush(max(0.0, deadline - time.monotonic()))
        previous(signum, frame)
        return
    _close_all("CANCELLED", "terminated by SIGTERM")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()
    for rec in list(_live):
        rec.after_fork_in_child()
