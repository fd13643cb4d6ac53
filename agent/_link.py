"""A run's end of the agent's socket (the agent is ``_service``; used when one serves the spool).

:class:`AgentLink` stands in for a :class:`~._sender.Sender` in :class:`~._sink.RemoteSink`: the
same calls and fields, answered by the agent's messages instead of an upload of its own. Its
reading and writing are a task on the process's hub loop (asyncio only: aiohttp is never
imported while the agent does the work). When the agent goes away before saying "done", the link
claims the session's sender lock and starts an in-process sender on the same session, which goes
on from the last acknowledgement; the server's sequence numbers make anything sent twice a
counted duplicate, never a second copy.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional

import orjson

from ml_dash._config import Config

from ._hub import HUB, Hub
from ._report import progress, say
from ._session import SessionDir
from ._tally import Tally

if TYPE_CHECKING:
    from ._sender import Sender
    from ._spool import SpoolWriter

__all__ = ["AgentLink", "spawn_agent"]

#: How long a run waits for the agent to take its session before uploading in process, seconds.
CONNECT_TIMEOUT = 1.0
#: How long a run whose agent went away waits for the agent's sender lock to be free, seconds.
TAKEOVER_TIMEOUT = 10.0

_spawned = False


def _read_line(sock: socket.socket, limit: int = 4096) -> bytes:
    data = b""
    while not data.endswith(b"\n") and len(data) < limit:
        chunk = sock.recv(limit)
        if not chunk:
            break
        data += chunk
    return data


class AgentLink:
    """Hands one session to the agent; the sender interface for the run's sink."""

    _task: "asyncio.Task[Any]"

    def __init__(
        self,
        sock: socket.socket,
        config: Config,
        sdir: SessionDir,
        writer: "SpoolWriter",
        url: str,
        token: Optional[str],
        hub: Hub = HUB,
    ):
        self._sock: Optional[socket.socket] = sock
        self._config, self._sdir, self._writer = config, sdir, writer
        self._url, self._token, self._hub = url, token, hub
        self._cond = threading.Condition(threading.Lock())
        self._stream: Optional[asyncio.StreamWriter] = None
        self._closing = False
        self._aborted = False
        self._wanted = -1
        self._fallback: Optional["Sender"] = None
        self._fallback_base = 0  # acked_bytes counted before the fallback took over
        self._last_error: Optional[str] = None
        self._reachable: Optional[bool] = None
        self.done = threading.Event()
        self.acked_seq = -1
        self.acked_bytes = 0
        self.tally = Tally()
        self.stopped: Optional[str] = None
        self.delivered_all = False

    @classmethod
    def connect(
        cls, config: Config, sdir: SessionDir, writer: "SpoolWriter", url: str, token: Optional[str]
    ) -> Optional["AgentLink"]:
        """A link when the spool's agent takes the session within ``CONNECT_TIMEOUT``, else None."""
        path = sdir.root / "agent.sock"
        if not path.exists():
            return None
        hello = {
            "op": "hello",
            "v": 1,
            "session": sdir.id,
            "url": url,
            "token": token,
            "next_seq": writer.next_seq,
            "request_timeout": config.request_timeout,
            "retry_max_wait": config.retry_max_wait,
        }
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(str(path))
            sock.sendall(orjson.dumps(hello) + b"\n")
            reply = orjson.loads(_read_line(sock) or b"{}")
        except (OSError, orjson.JSONDecodeError):
            sock.close()
            return None
        if not isinstance(reply, dict) or reply.get("op") != "ready":
            sock.close()
            return None
        sock.setblocking(False)
        link = cls(sock, config, sdir, writer, url, token)
        link._hub.call_soon(link._begin)
        return link

    # -- the sender interface (other threads) -----------------------------------------------------

    def start(self) -> None:
        """Nothing to start: ``connect`` already handed the session over."""

    def notify_data(self) -> None:
        self._call(self._send_data)

    def want(self, seq: int) -> None:
        if seq > self._wanted:
            self._wanted = seq
            self._call(self._send_want)

    def begin_close(self) -> None:
        def closing() -> None:
            self._closing = True
            if self._fallback is not None:
                self._fallback.begin_close()
            else:
                self._send({"op": "close", "next_seq": self._writer.next_seq})

        self._call(closing)

    def abort(self) -> None:
        def aborting() -> None:
            self._aborted = True
            if self._fallback is not None:
                self._fallback.abort()
            else:
                # The run leaves now: it does not wait for the agent to wind down.
                self._send({"op": "abort"})
                self._finish("aborted")

        self._call(aborting)

    def wait_done(self, timeout: Optional[float]) -> bool:
        return self._hub.wait_until(self.done.is_set, timeout, self.done)

    def wait_acked(self, seq: int, timeout: Optional[float]) -> bool:
        self.want(seq)
        self._hub.wait_until(lambda: self.acked_seq >= seq or self.done.is_set(), timeout, self._cond)
        return self.acked_seq >= seq

    @property
    def last_error(self) -> Optional[str]:
        return self._fallback.last_error if self._fallback is not None else self._last_error

    @property
    def reachable(self) -> Optional[bool]:
        return self._fallback.reachable if self._fallback is not None else self._reachable

    def forget_after_fork(self) -> None:
        """In a forked child: drop our copy of the socket without closing the parent's connection,
        so the agent sees the run end when the parent ends. The descriptor number stays valid (it
        now reads /dev/null), since the parent's stream objects kept for it may close it later."""
        sock = self._sock
        if sock is None or sock.fileno() < 0:
            return
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.dup2(null, sock.fileno())
        finally:
            os.close(null)

    # -- in the loop ------------------------------------------------------------------------------------

    def _call(self, fn: Any) -> None:
        if not self.done.is_set():
            self._hub.call_soon(fn)

    def _send(self, msg: Dict[str, Any]) -> None:
        stream = self._stream
        if stream is not None and not stream.is_closing():
            stream.write(orjson.dumps(msg) + b"\n")

    def _send_data(self) -> None:
        if self._fallback is not None:
            self._fallback.notify_data()
        else:
            self._send({"op": "data", "next_seq": self._writer.next_seq})

    def _send_want(self) -> None:
        if self._fallback is not None:
            self._fallback.want(self._wanted)
        else:
            self._send({"op": "want", "seq": self._wanted})

    def _begin(self) -> None:
        self._task = asyncio.get_event_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            assert self._sock is not None
            reader, self._stream = await asyncio.open_unix_connection(sock=self._sock)
            # What was asked before the stream existed, in order.
            self._send({"op": "data", "next_seq": self._writer.next_seq})
            if self._wanted >= 0:
                self._send_want()
            if self._aborted:
                self._send({"op": "abort"})
            elif self._closing:
                self._send({"op": "close", "next_seq": self._writer.next_seq})
            while True:
                line = await reader.readline()
                if not line:
                    break
                if self._apply(orjson.loads(line)):
                    return
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a broken or garbled connection is the agent going away
        except asyncio.CancelledError:
            self._finish("aborted")
            raise
        finally:
            if self._stream is not None:
                self._stream.close()
        await self._take_over()

    def _apply(self, msg: Any) -> bool:
        """One message from the agent; True after "done"."""
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "acked":
            with self._cond:
                self.acked_seq = max(self.acked_seq, int(msg["seq"]))
                self.acked_bytes = int(msg["bytes"])
                self._cond.notify_all()
        elif op == "say":
            say(str(msg["message"]))
        elif op == "trimmed":
            self._writer.note_trimmed(int(msg["records"]), int(msg["blobs"]))
        elif op == "done":
            for name in ("events", "bytes", "duplicates", "quarantined"):
                setattr(self.tally, name, int(msg.get(name) or 0))
            self._last_error, self._reachable = msg.get("last_error"), msg.get("reachable")
            self.delivered_all = bool(msg.get("delivered_all"))
            self._finish(msg.get("stopped"))
            return True
        return False

    def _finish(self, stopped: Optional[str]) -> None:
        with self._cond:
            self.stopped = stopped
            self.done.set()
            self._cond.notify_all()

    async def _take_over(self) -> None:
        """The agent went away without finishing: upload the session from this process."""
        if self._aborted:
            self._finish("aborted")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TAKEOVER_TIMEOUT
        while not self._sdir.claim_sender("live"):
            if loop.time() >= deadline:
                self._last_error = "the agent went away and its sender lock is still held"
                self._finish("error")
                return
            await asyncio.sleep(0.02)
        progress(f"{(self._sdir.manifest or {}).get('prefix')}: the agent went away; uploading from this process")
        from ._sender import Sender

        base = self.acked_bytes

        def on_progress() -> None:
            assert sender is not None
            with self._cond:
                self.acked_seq = max(self.acked_seq, sender.acked_seq)
                self.acked_bytes = base + sender.acked_bytes
                self._cond.notify_all()

        def on_done() -> None:
            self.tally.add(sender.tally)
            self.delivered_all = sender.delivered_all
            self._finish(sender.stopped)

        sender = Sender(
            self._config, self._sdir, self._writer, self._url, self._token, self._hub,
            on_progress=on_progress, on_done=on_done,
        )  # fmt: skip
        self._fallback = sender
        sender.start()
        if self._wanted >= 0:
            sender.want(self._wanted)
        if self._closing:
            sender.begin_close()


def spawn_agent(root: Path, idle: float) -> None:
    """Start the spool's agent, detached, once per process (a run that found none uploads in
    process itself; the next run finds it). What it prints goes to ``<spool>/agent.log``; the token
    is not in its environment (each run sends its own over the socket)."""
    global _spawned
    if _spawned:
        return
    _spawned = True
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ML_DASH_TOKEN"}
    log = os.open(root / "agent.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        # sh starts the agent in the background and exits at once: the agent is nobody's child here
        # (no zombie while this run lives), in a session of its own (no Ctrl-C from this terminal).
        shell = subprocess.Popen(
            ["/bin/sh", "-c", '"$@" &', "sh", sys.executable, "-m", "ml_dash.agent.cli", "serve", str(root),
             "--idle", str(idle)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
        )  # fmt: skip
        shell.wait(5.0)
    except (OSError, subprocess.SubprocessError):
        pass  # uploading in process is always there
    finally:
        os.close(log)
