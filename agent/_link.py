"""A run's end of the agent's socket (the agent is ``_service``; used when one serves the spool).

:class:`AgentLink` stands in for a :class:`~._sender.Sender` in :class:`~._sink.RemoteSink`: the
same calls and fields, answered by the agent's messages instead of an upload of its own. A run
that hands its upload to an agent imports neither aiohttp nor asyncio: the calls that tell the
agent something write to the socket in the caller's thread (a line, no more than a few dozen
bytes), and one thread per process (``_listener``, "ml-dash-link") reads every link's socket.
When no thread can be started (interpreter shutdown) a waiting thread reads for itself.

When the agent goes away before saying "done", the link claims the session's sender lock and
starts an in-process sender on the same session (on the hub loop, which only then loads), which
goes on from the last acknowledgement; the server's sequence numbers make anything sent twice a
counted duplicate, never a second copy.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

import orjson

from ml_dash import _fork
from ml_dash._config import Config

from ._listener import LISTENER
from ._report import progress, say
from ._session import AGENT_SOCKET, SessionDir
from ._tally import Tally

if TYPE_CHECKING:
    from ._hub import Hub
    from ._sender import Sender
    from ._spool import SpoolWriter

__all__ = ["AgentLink"]

#: How long a run waits for the agent to take its session before uploading in process, seconds.
CONNECT_TIMEOUT = 1.0
#: A message the agent does not take within this long means the agent is stuck: take over, seconds.
SEND_TIMEOUT = 5.0
#: How long a run whose agent went away waits for the agent's sender lock to be free, seconds.
TAKEOVER_TIMEOUT = 10.0


def _read_line(sock: socket.socket, limit: int = 4096) -> Tuple[bytes, bytes]:
    """The first line from ``sock``, and whatever came after it in the same reads."""
    data = b""
    while b"\n" not in data and len(data) < limit:
        chunk = sock.recv(limit)
        if not chunk:
            break
        data += chunk
    line, _, rest = data.partition(b"\n")
    return line, rest


class AgentLink:
    """Hands one session to the agent; the sender interface for the run's sink."""

    def __init__(
        self,
        sock: socket.socket,
        config: Config,
        sdir: SessionDir,
        writer: "SpoolWriter",
        url: str,
        token: Optional[str],
    ):
        self._sock: Optional[socket.socket] = sock
        self.fileno = sock.fileno()
        self._config, self._sdir, self._writer = config, sdir, writer
        self._url, self._token = url, token
        self._cond = threading.Condition(threading.Lock())
        self._send_lock = threading.Lock()
        self._read_lock = threading.RLock()  # the listener's reads, and a failed send's last read
        self._buffer = b""
        self._closing = False
        self._aborted = False
        self._gone = False
        self._wanted = -1
        self._hub: Optional["Hub"] = None  # the sender loop, once the agent went away
        self._fallback: Optional["Sender"] = None
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
            sock.connect(str(sdir.root / AGENT_SOCKET))
            sock.sendall(orjson.dumps(hello) + b"\n")
            line, rest = _read_line(sock)
            reply = orjson.loads(line or b"{}")
        except (OSError, orjson.JSONDecodeError):
            sock.close()
            return None
        if not isinstance(reply, dict) or reply.get("op") != "ready":
            sock.close()
            return None
        sock.settimeout(SEND_TIMEOUT)
        link = cls(sock, config, sdir, writer, url, token)
        link._buffer = rest  # what the agent said right after "ready" is read with what follows
        LISTENER.add(link)
        return link

    # -- the sender interface (any thread) --------------------------------------------------------

    def start(self) -> None:
        """Nothing to start: ``connect`` already handed the session over."""

    def notify_data(self) -> None:
        fallback = self._fallback
        if fallback is not None:
            fallback.notify_data()
        else:
            self._send({"op": "data", "next_seq": self._writer.next_seq})

    def want(self, seq: int) -> None:
        if seq <= self._wanted:
            return
        self._wanted = seq
        fallback = self._fallback
        if fallback is not None:
            fallback.want(seq)
        else:
            self._send({"op": "want", "seq": seq})

    def begin_close(self) -> None:
        self._closing = True
        fallback = self._fallback
        if fallback is not None:
            fallback.begin_close()
        else:
            self._send({"op": "close", "next_seq": self._writer.next_seq})

    def abort(self) -> None:
        self._aborted = True
        fallback = self._fallback
        if fallback is not None:
            fallback.abort()
        elif not self.done.is_set():
            # The run leaves now: it does not wait for the agent to wind down.
            self._send({"op": "abort"})
            self._finish("aborted")

    def leave(self) -> bool:
        """At the run's exit deadline: leave the rest to the agent, which goes on delivering it
        after this process is gone (done, stopped "left"). False when the session is not the
        agent's to finish: it went away (this process uploads, and the caller aborts that) or
        the link is down."""
        if self._fallback is not None or self._hub is not None or self._gone or self.done.is_set():
            return False
        self._aborted = True  # from now on a lost agent is not taken over: this process leaves
        self._send({"op": "leave"})
        if self._gone:
            return False
        self._hang_up()
        self._finish("left")
        return True

    def wait_done(self, timeout: Optional[float]) -> bool:
        return self._wait(self.done.is_set, timeout)

    def wait_acked(self, seq: int, timeout: Optional[float]) -> bool:
        self.want(seq)
        self._wait(lambda: self.acked_seq >= seq or self.done.is_set(), timeout)
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
        now reads /dev/null), since the parent's socket object kept for it may close it later."""
        if self._sock is None:
            return
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            os.dup2(null, self.fileno)
        finally:
            os.close(null)
        _fork.left_by_parent.append(self._sock)

    # -- talking to the agent ---------------------------------------------------------------------

    def _send(self, msg: Dict[str, Any]) -> None:
        sock = self._sock
        if sock is None or self._gone:
            return
        try:
            with self._send_lock:
                sock.sendall(orjson.dumps(msg) + b"\n")
        except OSError:  # refused, reset, or not taken within SEND_TIMEOUT: the agent is gone
            self._read_last_words()
            self._lost()

    def pump(self) -> None:
        """Read what the agent sent (it is readable); at end of stream, take over."""
        with self._read_lock:
            sock = self._sock
            if sock is None or self._gone:
                return
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError, socket.timeout):
                return
            except OSError:
                data = b""
            if not data:
                self._lost()
                return
            self._buffer += data
            if not self._apply_lines():
                self._lost()  # a garbled message is an agent gone wrong

    def _read_last_words(self) -> None:
        """A send failed: the agent may have said "done" and hung up while this thread was
        sending, before the listener read it. Apply what it said before deciding it went away
        (taking over a session the agent finished would upload it twice over, in vain)."""
        with self._read_lock:
            sock = self._sock
            if sock is None or self._gone:
                return
            try:
                sock.setblocking(False)
                while True:  # a closed peer's unread messages come before its end of stream
                    data = sock.recv(65536)
                    if not data:
                        break
                    self._buffer += data
            except OSError:
                pass
            self._apply_lines()

    def _apply_lines(self) -> bool:
        """Apply the complete messages in the buffer; False at a garbled one."""
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                if self._apply(orjson.loads(line)):
                    return True
            except (ValueError, KeyError, TypeError):
                return False
        return True

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
            self._hang_up()
            self._finish(msg.get("stopped"))
            return True
        elif op == "kept":  # the server is down at close: the agent keeps the session, we may leave
            self._last_error, self._reachable = msg.get("last_error"), msg.get("reachable")
            self._aborted = True
            self._hang_up()
            self._finish("kept")
            return True
        return False

    def _hang_up(self) -> None:
        LISTENER.remove(self)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _finish(self, stopped: Optional[str]) -> None:
        with self._cond:
            if not self.done.is_set():
                self.stopped = stopped
                self.done.set()
            self._cond.notify_all()

    def _wait(self, ready: Callable[[], bool], timeout: Optional[float]) -> bool:
        _fork.wake()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not ready():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            hub = self._hub
            if hub is not None:  # the agent went away: the hub's sender (or its start) has it now
                return hub.wait_until(ready, left, self._cond)
            step = 0.1 if left is None else min(0.1, left)
            if LISTENER.running:
                with self._cond:
                    self._cond.wait_for(ready, step)
            else:  # no thread can read for us (interpreter shutdown): read here
                sock = self._sock
                if sock is not None:
                    try:
                        readable, _, _ = select.select([sock], [], [], step)
                    except (OSError, ValueError):
                        readable = [sock]
                    if readable:
                        self.pump()
        return ready()

    # -- the agent went away --------------------------------------------------------------------------

    def _lost(self) -> None:
        with self._cond:
            if self._gone:
                return
            self._gone = True
        self._hang_up()
        if self.done.is_set():
            return
        if self._aborted:
            self._finish("aborted")
            return
        from ._hub import HUB

        self._hub = HUB
        HUB.call_soon(self._take_over)

    def _take_over(self) -> None:
        """In the hub loop: upload the session from this process (claiming its lock may take a
        moment: the agent's process may still be on its way out)."""
        assert self._hub is not None
        hub = self._hub
        deadline = time.monotonic() + TAKEOVER_TIMEOUT

        def claim() -> None:
            if self._sdir.claim_sender("live"):
                self._start_fallback(hub)
            elif time.monotonic() >= deadline or self._aborted:
                self._last_error = "the agent went away and its sender lock is still held"
                self._finish("aborted" if self._aborted else "error")
            else:
                hub.loop.call_later(0.02, claim)

        claim()

    def _start_fallback(self, hub: "Hub") -> None:
        progress(f"{(self._sdir.manifest or {}).get('prefix')}: the agent went away; uploading from this process")
        from ._sender import Sender

        base = self.acked_bytes
        sender: Optional["Sender"] = None

        def on_progress() -> None:
            assert sender is not None
            with self._cond:
                self.acked_seq = max(self.acked_seq, sender.acked_seq)
                self.acked_bytes = base + sender.acked_bytes
                self._cond.notify_all()

        def on_done() -> None:
            assert sender is not None
            self.tally.add(sender.tally)
            self.delivered_all = sender.delivered_all
            self._finish(sender.stopped)

        sender = Sender(
            self._config, self._sdir, self._writer, self._url, self._token, hub,
            on_progress=on_progress, on_done=on_done,
        )  # fmt: skip
        self._fallback = sender
        sender.start()
        if self._wanted >= 0:
            sender.want(self._wanted)
        if self._closing:
            sender.begin_close()
        if self._aborted:
            sender.abort()
