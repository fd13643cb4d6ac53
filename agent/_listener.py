"""The process-wide thread ("ml-dash-link") that reads what agents send to this process's runs.

Every :class:`~._link.AgentLink` registers its socket here; one thread polls them all and hands
each readable one to its link (``pump``). A fork service (``ml_dash._fork``): stopped before a
fork, started again at the next call into ml-dash; a child forgets the parent's links.
"""

from __future__ import annotations

import os
import select
import threading
from typing import TYPE_CHECKING, Dict, Optional

from ml_dash import _fork

if TYPE_CHECKING:
    from ._link import AgentLink

__all__ = ["LISTENER"]


class _Listener:
    """The process-wide thread that reads every link's socket (one instance: :data:`LISTENER`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: Dict[int, "AgentLink"] = {}
        self._thread: Optional[threading.Thread] = None
        self._run_token: Optional[object] = None
        self._wake_r, self._wake_w = -1, -1

    @property
    def running(self) -> bool:
        return self._thread is not None

    def add(self, link: "AgentLink") -> None:
        with self._lock:
            self._links[link.fileno] = link
            if self._thread is None and not _fork.dormant:
                self._start()
        self._wake()

    def remove(self, link: "AgentLink") -> None:
        with self._lock:
            if self._links.get(link.fileno) is link:
                del self._links[link.fileno]
        self._wake()

    def _wake(self) -> None:
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:  # full: it is awake already
                pass

    def _start(self) -> None:
        if self._wake_r < 0:
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        token = self._run_token = object()
        self._thread = _fork.start_thread(lambda: self._run(token), "ml-dash-link")

    def _run(self, token: object) -> None:
        while self._run_token is token:
            with self._lock:
                links = dict(self._links)
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            for fd in links:
                poller.register(fd, select.POLLIN)
            for fd, _ in poller.poll(1000):
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except OSError:
                        pass
                elif fd in links:
                    links[fd].pump()

    # -- fork (see ml_dash._fork) -------------------------------------------------------------------

    def pause_for_fork(self, deadline: float) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._run_token = None
        self._wake()
        _fork.stop_thread(thread, deadline)

    def go_dormant(self) -> None:
        pass  # the thread starts again at the next call into ml-dash (_fork.wake)

    def resume(self) -> None:
        with self._lock:
            if self._links and self._thread is None:
                self._start()

    def reset_in_child(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)  # the child's copies; the parent's pipe is untouched
        self.__init__()  # type: ignore[misc]  # the parent's links stay the parent's


#: The process's reader of agent sockets; its thread starts with the first link.
LISTENER = _Listener()
_fork.register_service(LISTENER)
