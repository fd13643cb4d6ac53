"""The one event loop that uploads every session of this process, and its connection pools.

Every live session's :class:`~._sender.Sender` is a task on :data:`HUB`'s loop, which runs in one
daemon thread ("ml-dash-sender") started with the first session. Sessions writing to the same
server (URL and token) share one :class:`~._transport.Transport` (one aiohttp connection pool)
and its discovered limits; it is closed when its last session ends.

Other threads talk to the loop only through :meth:`Hub.call_soon` and wait through
:meth:`Hub.wait_until`. When no thread can be started (Python 3.12+ refuses once the interpreter
is shutting down: a forked child whose first upload starts in atexit) the loop is driven inline,
inside ``wait_until``, by the thread that closes or flushes the run.

Fork (``ml_dash._fork``): the loop is stopped between two steps before a fork and goes on in the
parent at its next call into ml-dash; the child gets a fresh loop and pools on first use, and
never touches the parent's (they are kept in ``left_by_parent``, never closed or finalized there).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Coroutine, Dict, Optional, Tuple, TypeVar

from ml_dash import _fork

__all__ = ["HUB", "Hub", "Server"]

T = TypeVar("T")


class Server:
    """One server as this process's sessions share it: a connection pool and its limits."""

    def __init__(self, url: str, token: Optional[str], timeout: float):
        from ._transport import Transport  # aiohttp loads here, in the loop's thread

        self.transport = Transport(url, token, read_timeout=timeout)
        self.info: Any = None  # the ServerInfo the first session discovered
        self.users = 0


class Hub:
    """The process-wide sender loop (one instance: :data:`HUB`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inline = threading.Lock()  # one thread drives the loop when no thread runs it
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._run_token: Optional[object] = None
        self._servers: Dict[Tuple[str, Optional[str]], Server] = {}
        self._here = False  # the agent service runs the loop in its main thread (run_here)

    # -- other threads ---------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            if self._thread is None and not self._here and not _fork.dormant:
                self._start()
            return self._loop

    def _start(self) -> None:
        token = self._run_token = object()
        self._thread = _fork.start_thread(lambda: self._run(token), "ml-dash-sender")

    @property
    def threaded(self) -> bool:
        """True while a thread runs the loop."""
        return self._thread is not None or self._here

    def run_here(self, main: "Coroutine[Any, Any, T]") -> T:
        """Run ``main`` on the hub's loop in the calling thread, which becomes the loop's thread
        (``ml-dash-agent serve``: the process does nothing else)."""
        with self._lock:
            self._here = True
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            loop = self._loop
        try:
            return loop.run_until_complete(main)
        finally:
            with self._lock:
                self._here = False

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` in the loop (thread-safe; queued until the loop runs)."""
        _fork.wake()
        try:
            self.loop.call_soon_threadsafe(fn)
        except RuntimeError:  # the loop is closed
            pass

    def wait_until(
        self, ready: Callable[[], bool], timeout: Optional[float], signal: "threading.Condition | threading.Event"
    ) -> bool:
        """Block until ``ready()`` (re-checked whenever ``signal`` is notified or set) or ``timeout``
        seconds; returns ``ready()``. Drives the loop itself when no thread runs it."""
        if ready():
            return True
        _fork.wake()
        if not self.threaded:
            return self._drive(ready, None if timeout is None else time.monotonic() + timeout)
        if isinstance(signal, threading.Event):
            signal.wait(timeout)
            return ready()
        with signal:
            return signal.wait_for(ready, timeout)

    def _drive(self, ready: Callable[[], bool], deadline: Optional[float]) -> bool:
        async def until() -> None:
            while not ready() and (deadline is None or time.monotonic() < deadline):
                await asyncio.sleep(0.01)

        with self._inline:
            loop = self.loop
            if not self.threaded and not loop.is_running():
                loop.run_until_complete(until())
                return ready()
        while not ready() and (deadline is None or time.monotonic() < deadline):  # a thread took over
            time.sleep(0.01)
        return ready()

    # -- servers (in the loop) ----------------------------------------------------------------------

    def server(self, url: str, token: Optional[str], timeout: float) -> Server:
        """The shared pool for (url, token); call :meth:`release` when done with it."""
        key = (url, token)
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = Server(url, token, timeout)
        server.users += 1
        return server

    async def release(self, server: Server) -> None:
        server.users -= 1
        # The agent service keeps its pools (and what discovery learned) for the next run.
        if server.users <= 0 and not self._here:
            for key, value in list(self._servers.items()):
                if value is server:
                    del self._servers[key]
            try:
                await asyncio.wait_for(server.transport.close(), 1.0)
            except BaseException:
                pass

    async def close_servers(self) -> None:
        """Close every pool (the agent service, when it stops)."""
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            try:
                await asyncio.wait_for(server.transport.close(), 1.0)
            except BaseException:
                pass

    # -- the thread --------------------------------------------------------------------------------

    def _run(self, token: object) -> None:
        loop = self._loop
        assert loop is not None
        while self._run_token is token:
            try:
                loop.run_forever()  # returns when paused for a fork
            except RuntimeError:  # a thread that did not stop in time still runs it: wait for it
                time.sleep(0.01)

    # -- fork (see ml_dash._fork) -------------------------------------------------------------------

    def pause_for_fork(self, deadline: float) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._run_token = None
            loop = self._loop
        if thread is not None and loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            _fork.stop_thread(thread, deadline)

    def go_dormant(self) -> None:
        pass  # the loop starts again at the next call_soon or wait_until, through _fork.wake()

    def resume(self) -> None:
        with self._lock:
            if self._loop is not None and self._thread is None:
                self._start()

    def reset_in_child(self) -> None:
        _fork.left_by_parent.append((self._loop, self._servers))
        self._lock = threading.Lock()
        self._inline = threading.Lock()
        self._loop = None
        self._thread = None
        self._run_token = None
        self._servers = {}


#: The process's sender loop; its thread starts with the first session that uploads.
HUB = Hub()
_fork.register_service(HUB)
