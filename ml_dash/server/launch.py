"""Running the server: in the foreground (the CLI), in a thread, or as a subprocess (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Optional, Sequence, Tuple

from aiohttp import web

from .app import STATE, make_app
from .connections import GuardedRunner
from .limits import Limits

if TYPE_CHECKING:
    from .settings import ServerSettings

__all__ = ["ServerHandle", "run_in_thread", "spawn_server", "serve_forever", "is_loopback", "tls_context", "LISTENING"]

#: The first line the CLI prints; ``spawn_server`` reads the URL from it.
LISTENING = "ml-dash server listening on "


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(host: str, port: int, tls: bool = False) -> str:
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def tls_context(cert: os.PathLike[str] | str, key: os.PathLike[str] | str) -> ssl.SSLContext:
    """The server side of TLS from a certificate chain and its private key (PEM files), TLS 1.2 or later."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    return ctx


async def _start(
    root: os.PathLike[str] | str,
    host: str,
    port: int,
    auth: bool,
    fault_injection: bool,
    limits: Optional[Limits],
    read_only: bool = False,
    settings: Optional[ServerSettings] = None,
    reuse_port: bool = False,
    ssl_context: Optional[ssl.SSLContext] = None,
    read_scope: str = "team",
) -> Tuple[web.AppRunner, str]:
    if not auth and not is_loopback(host):
        raise ValueError(f"refusing to run without auth on {host!r}: --insecure-no-auth binds only to loopback")
    if fault_injection and not is_loopback(host):
        raise ValueError(f"refusing to run with fault injection on {host!r}: --fault-injection binds only to loopback")
    app = make_app(
        root,
        auth=auth,
        fault_injection=fault_injection,
        limits=limits,
        read_only=read_only,
        settings=settings,
        read_scope=read_scope,
    )
    # auto_decompress=False: bodies are decoded by ml_dash.server.decode, under the size limits.
    runner = GuardedRunner(
        app,
        idle_timeout=app[STATE].limits.idle_timeout_s,
        auto_decompress=False,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=5,
    )
    await runner.setup()
    # reuse_port: several server processes listen on one port and the kernel spreads connections.
    site = web.TCPSite(runner, host, port, reuse_address=True, reuse_port=reuse_port or None, ssl_context=ssl_context)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, _url(host, bound, ssl_context is not None)


async def _cancel_leftovers() -> None:
    """Connection tasks a client left half-open outlive the runner; end them before the loop closes."""
    me = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not me]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class ServerHandle:
    """A server running in a background thread: ``.url``, ``.root``, ``.stop()``."""

    def __init__(
        self, url: str, root: Path, loop: asyncio.AbstractEventLoop, stop_event: asyncio.Event, thread: threading.Thread
    ):
        self.url = url
        self.root = root
        self._loop = loop
        self._stop_event = stop_event
        self._thread = thread

    def stop(self, timeout: float = 30) -> None:
        """Shut down cleanly (in-flight requests finish, files are closed) and wait for the thread."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop_event.set)
            self._thread.join(timeout)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(
    root: os.PathLike[str] | str,
    host: str = "127.0.0.1",
    port: int = 0,
    auth: bool = True,
    fault_injection: bool = False,
    limits: Optional[Limits] = None,
    read_only: bool = False,
    settings: Optional[ServerSettings] = None,
    ssl_context: Optional[ssl.SSLContext] = None,
    read_scope: str = "team",
) -> ServerHandle:
    """Start a server on ``root`` in a daemon thread and return once it listens (port 0: a free port).
    ``ssl_context``: serve https (:func:`tls_context`); ``read_scope``: "team" or "owner" (PROTOCOL.md)."""
    ready = threading.Event()
    box: Dict[str, object] = {}

    def main() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def run() -> None:
            stop_event = asyncio.Event()
            try:
                runner, url = await _start(
                    root,
                    host,
                    port,
                    auth,
                    fault_injection,
                    limits,
                    read_only,
                    settings,
                    ssl_context=ssl_context,
                    read_scope=read_scope,
                )
            except BaseException as exc:
                box["error"] = exc
                ready.set()
                return
            box.update(url=url, loop=loop, stop=stop_event)
            ready.set()
            try:
                await stop_event.wait()
            finally:
                await runner.cleanup()
                await _cancel_leftovers()

        try:
            loop.run_until_complete(run())
        finally:
            try:  # as asyncio.run does: the file-I/O threads end with the server, not the process
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    thread = threading.Thread(target=main, name="ml-dash-server", daemon=True)
    thread.start()
    ready.wait()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return ServerHandle(box["url"], Path(root), box["loop"], box["stop"], thread)  # type: ignore[arg-type]


def serve_forever(
    root: os.PathLike[str] | str,
    host: str,
    port: int,
    *,
    auth: bool,
    fault_injection: bool,
    limits: Optional[Limits],
    on_ready: Callable[[str], None],
    read_only: bool = False,
    settings: Optional[ServerSettings] = None,
    reuse_port: bool = False,
    ssl_context: Optional[ssl.SSLContext] = None,
    read_scope: str = "team",
) -> None:
    """Run until SIGTERM or SIGINT, then shut down cleanly. ``on_ready(url)`` is called once listening."""

    async def run() -> None:
        runner, url = await _start(
            root,
            host,
            port,
            auth,
            fault_injection,
            limits,
            read_only,
            settings,
            reuse_port,
            ssl_context=ssl_context,
            read_scope=read_scope,
        )
        stop_event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_event.set)
        on_ready(url)
        try:
            await stop_event.wait()
        finally:
            await runner.cleanup()
            await _cancel_leftovers()

    asyncio.run(run())


def spawn_server(
    root: os.PathLike[str] | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    auth: bool = True,
    fault_injection: bool = False,
    extra_args: Sequence[str] = (),
    env: Optional[Dict[str, str]] = None,
    timeout: float = 30,
    preexec_fn: Optional[Callable[[], None]] = None,
) -> Tuple[str, subprocess.Popen[Any]]:
    """Start ``python -m ml_dash.server`` as a subprocess; (its URL, the Popen) once it listens.

    For tests that need a real process (``kill -9``). The child's further output is drained by a
    daemon thread so it can never block on a full pipe (its first 64 KiB, stdout and stderr
    together, are kept: ``proc.output()``); stop it with ``proc.terminate()`` (clean) or ``proc.kill()``.
    """
    cmd = [sys.executable, "-m", "ml_dash.server", "--root", os.fspath(root), "--host", host, "--port", str(port)]
    if not auth:
        cmd.append("--insecure-no-auth")
    if fault_injection:
        cmd.append("--fault-injection")
    cmd.extend(extra_args)
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True, preexec_fn=preexec_fn
    )  # tests: resource limits of the child
    result: Dict[str, str] = {}
    got = threading.Event()
    kept = threading.Lock()

    def drain(stream: IO[str], first: bool) -> None:
        for line in stream:
            if first and "url" not in result:
                m = re.search(re.escape(LISTENING) + r"(\S+)", line)
                if m:
                    result["url"] = m.group(1)
                    got.set()
            with kept:  # two drains append to one text
                result.setdefault("output", "")
                if len(result["output"]) < 65536:
                    result["output"] += line
        got.set()  # the child closed its output: it exited

    threading.Thread(target=drain, args=(proc.stdout, True), daemon=True).start()
    threading.Thread(target=drain, args=(proc.stderr, False), daemon=True).start()
    proc.output = lambda: result.get("output", "")  # type: ignore[attr-defined]
    got.wait(timeout)
    if "url" not in result:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"the server did not start: {result.get('output', '')[-4000:]}")
    return result["url"], proc
