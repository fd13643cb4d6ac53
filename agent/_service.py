"""``ml-dash-agent serve``: one long-lived uploader per user and spool, shared by every run.

A run whose spool an agent serves still writes its events to the spool itself (the spool stays
the only copy until the server acknowledges); instead of starting a sender of its own it hands its
session to the agent over ``<spool>/agent.sock`` (``_link``). The agent uploads it with the same
:class:`~._sender.Sender` the run would have used, on one event loop with one connection pool per
server, so the run pays neither the HTTP client's import nor its CPU, and a sweep of short runs
shares one discovery and one pool.

The protocol is JSON lines on a Unix stream socket::

    run -> agent  {"op": "hello", "v": 1, "session", "url", "token", "next_seq",
                   "request_timeout", "retry_max_wait"}
                  {"op": "data", "next_seq": n}      records up to n - 1 are on disk
                  {"op": "want", "seq": n}           someone waits for seq n (exp.flush())
                  {"op": "close", "next_seq": n}     the writer closed: deliver the rest now
                  {"op": "leave"}                    the run's exit deadline passed: it leaves,
                                                     the agent goes on delivering
                  {"op": "abort"}                    stop (the run's user interrupted the close)
    agent -> run  {"op": "ready"} or {"op": "refused", "why": ...}
                  {"op": "acked", "seq": n, "bytes": b}
                  {"op": "trimmed", "records": b, "blobs": b}
                  {"op": "say", "message": m}        a warning for the run's user
                  {"op": "kept", "last_error", "reachable"}
                                                     the server is down at close: the agent keeps
                                                     the session and goes on trying; the run may leave
                  {"op": "done", "delivered_all", "stopped", "last_error", "reachable",
                   "events", "bytes", "duplicates", "quarantined"}

A run that disconnects without ``close`` (it was killed): once its writer lock is free the agent
delivers what is on disk, as ``ml-dash-agent flush`` would. A session the run left to the agent
(``kept``, or ``leave`` at the run's exit deadline) is retried at the live pace, keeping the run's
token in memory for it, until it is delivered or the agent stops (it then stays in the spool for
``ml-dash-agent flush``). An agent that goes away (killed,
stopped): each of its runs claims the sender lock and goes on in process; the server's
per-session sequence numbers keep every event stored once.

Trust: the socket lives in the spool folder, which is the user's alone (checked as for every use
of a spool), is created 0600, and the agent talks only to peers of its own uid (``SO_PEERCRED``).
The token travels in the hello message only: never in the agent's argv, environment, files or
log. One agent per spool (``agent.lock``); a second one exits at once. It stops on SIGTERM or
SIGINT, or after ``idle`` seconds without a run connected when ``idle`` > 0; sessions it still
keeps for runs that left then stay in the spool for ``ml-dash-agent flush``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import struct
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Set, Tuple

import orjson

from ml_dash._config import Config

from ._hub import HUB
from ._session import (
    AGENT_LOCK,
    AGENT_SOCKET,
    FileLock,
    SessionDir,
    check_spool,
    ensure_private_dir,
    public_url,
    session_problem,
)

__all__ = ["serve", "serving_pid", "AGENT_BATCH_INTERVAL"]


#: The agent sends the next batch as soon as the previous one is acknowledged and this long has
#: passed: it has a CPU of its own to spend, and a run that ends finds little left to send.
AGENT_BATCH_INTERVAL = 0.02

#: How long after a run hangs up its writer lock may take to be freed by its exit, seconds.
WRITER_EXIT_GRACE = 1.0

#: The agent runs at this lower scheduling priority (``nice``) than the shell that started it.
NICENESS = 10

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_HELLO_LIMIT = 64 * 1024


class _Written:
    """The run's writer as the agent sees it: the seqs it reported, trims sent back to it."""

    def __init__(self, next_seq: int, send: Callable[[Dict[str, Any]], None]):
        self.next_seq = next_seq
        self._send = send

    def note_trimmed(self, record_bytes: int, blob_bytes: int = 0) -> None:
        self._send({"op": "trimmed", "records": record_bytes, "blobs": blob_bytes})


def _peer_uid(writer: asyncio.StreamWriter) -> Optional[int]:
    sock = writer.get_extra_info("socket")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return int(struct.unpack("3i", raw)[1])


class _Agent:
    def __init__(self, root: Path, idle: float, config: Config):
        self.root = root
        self.idle = idle
        self.config = config
        self.idle_since = time.monotonic()
        self.stopping = False
        self.tasks: Set["asyncio.Task[Any]"] = set()
        #: The connections whose run is still at the other end (the idle timer waits for none).
        self.runs: Set["asyncio.Task[Any]"] = set()
        self.senders: Set[Any] = set()

    # -- one run's connection ------------------------------------------------------------------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.runs.add(task)
        try:
            if _peer_uid(writer) == os.geteuid():
                await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # one bad connection must never stop the agent
            print(f"ml-dash-agent: a run's connection failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        finally:
            self.tasks.discard(task)
            self._run_gone(task)
            writer.close()

    def _run_gone(self, task: "asyncio.Task[Any]") -> None:
        if task in self.runs:
            self.runs.discard(task)
            self.idle_since = time.monotonic()

    def _open(self, hello: Dict[str, Any]) -> Tuple[Optional[SessionDir], str]:
        session, url = hello.get("session"), hello.get("url")
        if hello.get("op") != "hello" or hello.get("v") != 1:
            return None, "not a hello of protocol version 1"
        if not isinstance(session, str) or not _SESSION_ID.fullmatch(session):
            return None, "bad session id"
        if not isinstance(url, str):
            return None, "no server URL"
        sdir = SessionDir(self.root / session)
        problem = session_problem(sdir.path)
        if problem is not None:
            return None, problem
        manifest = sdir.manifest
        if manifest is None:
            return None, "no such session"
        if manifest.get("url") != public_url(url):
            return None, "the session was made for another server"
        if not sdir.claim_sender("agent"):
            return None, "another process uploads this session"
        return sdir, ""

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from ._sender import Sender  # imported by serve() already

        line = await reader.readline()
        try:
            hello = orjson.loads(line) if 0 < len(line) <= _HELLO_LIMIT else None
        except orjson.JSONDecodeError:
            hello = None
        if not isinstance(hello, dict):
            return
        sdir, why = self._open(hello)

        def send(msg: Dict[str, Any]) -> None:
            if not writer.is_closing():
                writer.write(orjson.dumps(msg) + b"\n")

        if sdir is None:
            send({"op": "refused", "why": why})
            await writer.drain()
            return
        done = asyncio.Event()
        written = _Written(_int(hello.get("next_seq"), 0), send)
        config = replace(
            self.config,
            request_timeout=_float(hello.get("request_timeout"), self.config.request_timeout),
            retry_max_wait=_float(hello.get("retry_max_wait"), self.config.retry_max_wait),
        )
        token = hello.get("token") if isinstance(hello.get("token"), str) else None
        sender = Sender(
            config,
            sdir,
            written,
            str(hello["url"]),
            token,
            HUB,
            batch_interval=AGENT_BATCH_INTERVAL,
            on_progress=lambda: send({"op": "acked", "seq": sender.acked_seq, "bytes": sender.acked_bytes}),
            on_done=done.set,
            report=lambda message: send({"op": "say", "message": message}),
            keep_at_close=lambda: send({"op": "kept", "last_error": sender.last_error, "reachable": sender.reachable}),
        )
        self.senders.add(sender)
        following = None
        try:
            sender.start()
            send({"op": "ready"})
            following = asyncio.ensure_future(self._follow(reader, sdir, written, sender))
            session_task = asyncio.current_task()
            assert session_task is not None
            # The run hung up, left or was killed: the agent may go idle while it finishes the upload.
            following.add_done_callback(lambda _: self._run_gone(session_task))
            await done.wait()
            sdir.sender_lock.release()  # before the run hears anything: a fallback claims it at once
            if self.stopping and sender.stopped == "aborted":
                return  # said nothing: the run goes on in process
            t = sender.tally
            send(
                {
                    "op": "done",
                    "delivered_all": sender.delivered_all,
                    "stopped": sender.stopped,
                    "last_error": sender.last_error,
                    "reachable": sender.reachable,
                    "events": t.events,
                    "bytes": t.bytes,
                    "duplicates": t.duplicates,
                    "quarantined": t.quarantined,
                }
            )
            await writer.drain()
        finally:
            self.senders.discard(sender)
            if not sender.done.is_set():
                sender.abort()
                await done.wait()
            sdir.sender_lock.release()
            if following is not None:
                following.cancel()

    async def _follow(self, reader: asyncio.StreamReader, sdir: SessionDir, written: _Written, sender: Any) -> None:
        """Apply the run's messages. After "close" the run may still say "want", "leave" or
        "abort"; at end of stream after "close" the rest is delivered as usual. At end of stream
        without "close": a run that is gone (its writer lock is free) leaves what it spooled to
        us; a run still alive hung up to upload itself, so stop and let it have the session."""
        closed = False
        while True:
            line = await reader.readline()
            if not line:
                break
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            op = msg.get("op") if isinstance(msg, dict) else None
            if op in ("data", "close"):
                written.next_seq = max(written.next_seq, _int(msg.get("next_seq"), 0))
                if op == "close":
                    closed = True
                    sender.begin_close()
                else:
                    sender.notify_data()
            elif op == "leave":
                sender.outlive_run()
                return
            elif op == "want":
                sender.want(_int(msg.get("seq"), -1))
            elif op == "abort":
                sender.abort()
                return
        if closed:
            return
        # A killed run's socket and lock are released as its process exits, in no set order.
        deadline = time.monotonic() + WRITER_EXIT_GRACE
        while not sdir.writer_finished():
            if time.monotonic() >= deadline:
                sender.abort()
                return
            await asyncio.sleep(0.02)
        sender.begin_close()

    # -- the agent's life --------------------------------------------------------------------------

    async def run(self, path: Path, ready: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        old_umask = os.umask(0o177)  # the socket is born 0600: no window where others may connect
        try:
            server = await asyncio.start_unix_server(self.handle, path=str(path), limit=_HELLO_LIMIT)
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        ready()
        try:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                if self.idle > 0 and not self.runs and time.monotonic() - self.idle_since >= self.idle:
                    break
        finally:
            self.stopping = True
            server.close()
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            for sender in list(self.senders):
                sender.abort()
            if self.tasks:
                await asyncio.wait(list(self.tasks), timeout=5.0)
            await HUB.close_servers()


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _float(value: Any, default: float) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
    return float(value) if ok else default


def serving_pid(root: Path) -> Optional[int]:
    """The process id of the agent serving spool ``root``, or None when none answers (it is asked
    by the kernel: the peer credentials of a connection that says nothing)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(root / AGENT_SOCKET))
            raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        except OSError:
            return None
    return int(struct.unpack("3i", raw)[0])


def serve(root: Path, idle: float, config: Config) -> int:
    """Serve the runs of spool ``root`` until stopped (or ``idle`` seconds without one); 0 when
    another agent already serves it, 2 when the spool is not the user's own."""
    from ml_dash._errors import SpoolNotPrivate

    try:
        ensure_private_dir(root)
        check_spool(root)
    except SpoolNotPrivate as exc:
        print(f"ml-dash-agent: refused: {exc}", file=sys.stderr)
        return 2
    lock = FileLock(root / AGENT_LOCK)
    if not lock.acquire():
        print(f"ml-dash-agent: an agent already serves {root}", file=sys.stderr)
        return 0
    path = root / AGENT_SOCKET
    try:
        path.unlink()  # left by an agent that was killed (we hold the lock: nobody serves it)
    except FileNotFoundError:
        pass
    from . import _sender, _transport  # noqa: F401  (aiohttp and tenacity now, not on a run's clock)

    try:
        os.nice(NICENESS)  # the runs' training loops first: uploading can wait a moment for a CPU
    except OSError:
        pass

    agent = _Agent(root, idle, config)

    def ready() -> None:
        print(f"ml-dash-agent: serving {path} (pid {os.getpid()})", flush=True)

    try:
        HUB.run_here(agent.run(path, ready))
    finally:
        lock.release()
    return 0
