"""Fork, in one place: one ``os.register_at_fork`` registration for the whole package.

ml-dash runs a few background threads per process, however many experiments it runs, each a
*service* registered here: the worker that drains every experiment's queues
(``ml_dash._worker``), and in remote mode the spool's group commit (``ml_dash.agent._syncer``)
and the sender's event loop (``ml_dash.agent._hub``) or, for sessions an agent uploads, the
reader of the agent's replies (``ml_dash.agent._listener``; both when an agent went away); a
``multiprocessing`` child also has ``ml_dash._sigwatch``. Around ``os.fork()``:

* **before** (in the forking thread): the worker hands everything queued to the sinks (local
  files, or the spool), the group commit fsyncs the spool, and every service's thread exits.
  The process forks with no thread of ours alive: no lock of ours can be held in the child, a
  ``kill -9`` of either process after the fork loses nothing logged before it, and Python 3.12+
  does not warn that the process is multi-threaded on our account (its ``DeprecationWarning``
  counts every thread; other libraries' threads still count). A service that does not stop
  within :data:`PAUSE_TIMEOUT` is left running and the fork goes ahead (logged at DEBUG on
  ``ml_dash``, with the thread's name: the place to look when Python warns anyway).
* **after, in the parent and in the child**: our threads stay stopped (*dormant*) until the
  process next logs, flushes or closes; that call starts them again (:func:`wake`). Python
  3.13+ counts threads after the fork hooks have run, so starting them right away would bring
  the warning back. In the parent nothing is lost or written twice; uploads of what was spooled
  before the fork go on at that next call.
* **SIGTERM**, when ml-dash's handler is installed, is blocked in the forking thread across the
  fork and unblocked on each side once it is ready: the interpreter drops a signal that reaches a
  child before it is ready, which would leave a child sent SIGTERM at once running.
* **in the child**, first: every service forgets the parent's state without touching it (the
  parent's objects are kept, never closed or finalized, in :data:`left_by_parent`); then every
  experiment running in the parent resets (``_lifecycle.after_fork_in_child``): what the child
  logs goes through fresh queues and, in remote mode, a spool session of the child's own. The
  child never changes the run's status.

Every thread of ours starts with the process's asynchronous signals blocked
(:func:`start_without_signals`), so that a signal sent to the process reaches the main thread,
the only one that runs Python's handlers, and interrupts whatever it waits on.

Python 3.12+ refuses to start a thread once the interpreter is shutting down (atexit included),
so each service also does its work inline, in the thread that flushes or closes the run: a
forked child that logs only just before it exits loses nothing either.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

TYPE_CHECKING = False  # typing costs ~3 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, List, Optional, Protocol

    class Service(Protocol):
        def pause_for_fork(self, deadline: float) -> None:
            """In the forking thread: finish what is pending, stop the thread."""

        def go_dormant(self) -> None:
            """After a fork (either side): stay stopped until :meth:`resume`."""

        def resume(self) -> None:
            """At the next call after a fork: start the thread again if there is work for it."""

        def reset_in_child(self) -> None:
            """In the child, before ``go_dormant``: forget the parent's state without touching it."""


__all__ = [
    "register_service",
    "wake",
    "dormant",
    "left_by_parent",
    "start_thread",
    "start_without_signals",
    "stop_thread",
    "PAUSE_TIMEOUT",
]

#: How long the forking thread waits for our threads to stop before it forks anyway, seconds.
PAUSE_TIMEOUT = 2.0

_services: List[Service] = []
_lock = threading.RLock()  # wake() holds it while services start threads, which may install the hooks
_installed = False
#: True after a fork until the next call into a pipeline (:func:`wake`): our threads are stopped.
dormant = False
#: The parent's objects in a forked child: kept alive so that their finalizers never run there.
left_by_parent: List[Any] = []


def register_service(service: Service) -> None:
    """Have ``service`` paused around every fork and reset in the child (in registration order)."""
    with _lock:
        _services.append(service)


def _install() -> None:
    """Register the fork hooks; called before the first thread of ours starts."""
    global _installed
    with _lock:
        if _installed or not hasattr(os, "register_at_fork"):
            return
        _installed = True
    # logging's own hook takes its module lock before a fork. Hooks run in reverse order of
    # registration, so logging's must be registered first: then ours runs first, and our threads
    # can finish what they are doing (which may touch logging) before that lock is taken.
    import logging  # noqa: F401

    os.register_at_fork(before=_before, after_in_parent=_after_in_parent, after_in_child=_after_in_child)


def wake() -> None:
    """Start the services again after a fork (a no-op unless :data:`dormant`)."""
    global dormant
    if not dormant:
        return
    with _lock:
        if not dormant:
            return
        dormant = False
        for service in _services:
            service.resume()


def _before() -> None:
    deadline = time.monotonic() + PAUSE_TIMEOUT
    for service in _services:  # the worker first: what it writes, the others send and sync
        try:
            service.pause_for_fork(deadline)
        except Exception:  # never fail the user's fork
            pass
    _forking.sigterm_blocked = _block_sigterm()


def _after_in_parent() -> None:
    global dormant
    try:
        dormant = True
        for service in _services:
            service.go_dormant()
    finally:
        _unblock_sigterm()


def _after_in_child() -> None:
    global _lock, dormant
    try:
        _lock = threading.RLock()
        dormant = True
        for service in _services:
            service.reset_in_child()
        for service in _services:
            service.go_dormant()
        from . import _lifecycle

        _lifecycle.after_fork_in_child()
    finally:
        _unblock_sigterm()  # a SIGTERM that came since the fork is handled now, by the child's handler


#: ``sigterm_blocked``: SIGTERM is blocked in this (forking) thread from just before the fork
#: until each side is ready.
_forking = threading.local()


def _block_sigterm() -> bool:
    """Block SIGTERM in this thread for the fork, when ml-dash's handler is installed.

    A signal that reaches the child before the interpreter is ready there is dropped by it (it
    clears what its signal handlers have not handled yet), so a SIGTERM sent to a child that was
    just forked (``Pool.terminate()`` right after the pool started) would be lost and leave the
    child running. Blocked, it waits in the kernel until the child unblocks it, ready.
    """
    lifecycle = sys.modules.get(__name__.rpartition(".")[0] + "._lifecycle")
    if lifecycle is None or not lifecycle.sigterm_is_ours():
        return False
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    except (AttributeError, OSError, ValueError):
        return False
    return True


def _unblock_sigterm() -> None:
    if getattr(_forking, "sigterm_blocked", False):
        _forking.sigterm_blocked = False
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def start_thread(target: Callable[[], object], name: str) -> Optional[threading.Thread]:
    """Start a daemon thread; None when the interpreter refuses (it is shutting down: the caller
    then does the work inline)."""
    _install()
    thread = threading.Thread(target=target, name=name, daemon=True)
    return thread if start_without_signals(thread) else None


#: Signals the kernel raises in the thread that caused them (a fault); never blocked.
_SYNCHRONOUS = ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS", "SIGABRT")


def start_without_signals(thread: threading.Thread) -> bool:
    """Start ``thread`` with the process's asynchronous signals (SIGTERM, SIGINT, SIGALRM, ...)
    blocked in it; False when the interpreter refuses to start threads (it is shutting down).

    Python runs signal handlers in the main thread only, but the kernel hands a signal sent to the
    process to any thread that does not block it. When that is one of ours, the C-level handler
    only sets a flag, and a main thread waiting in C (``Event.wait(60)``, a queue's ``get``) is not
    woken: the program's own SIGTERM handler would wait until that wait ends. Blocked in every
    thread of ours, such signals reach the main thread, whose wait they interrupt. A new thread
    inherits the mask of the thread that starts it, so the mask is set around ``start()``: there is
    no moment in which the new thread could take a signal.
    """
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _asynchronous_signals())
    except (AttributeError, OSError, ValueError):  # no pthread_sigmask (Windows)
        previous = None
    try:
        thread.start()
    except RuntimeError:  # "can't create new thread at interpreter shutdown" (3.12+)
        return False
    finally:
        if previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return True


def _asynchronous_signals() -> "set[signal.Signals]":
    synchronous = {getattr(signal, name) for name in _SYNCHRONOUS if hasattr(signal, name)}
    return {s for s in signal.valid_signals() if s not in synchronous}


def stop_thread(thread: Optional[threading.Thread], deadline: float) -> bool:
    """Wait until ``thread`` (told to stop) has exited, down to the operating system's thread,
    which Python 3.12's ``join`` does not wait for; False if it is still alive at ``deadline``."""
    if thread is None:
        return True
    if thread is not threading.current_thread():
        thread.join(max(0.0, deadline - time.monotonic()))
    if thread.is_alive():
        from ._report import logger

        logger().debug("%s did not stop for the fork in time; it goes on running in the parent", thread.name)
        return False
    task = f"/proc/self/task/{thread.native_id}"
    while os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.0002)
    return True
