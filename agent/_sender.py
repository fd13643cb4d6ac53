"""The live sender of one session: a task on the process's sender loop (``_hub``).

It starts with the run and never makes the caller wait: the first thing it does is ask the server
for its limits (once per server and process; retrying while the server is down, the run just
spools meanwhile), then it uploads what earlier crashed runs of the same experiment left in the
spool, then follows its own session as the worker appends to it: the first batch goes out as soon
as there is data, later ones every ``BATCH_INTERVAL`` or as soon as ``BATCH_TARGET`` events wait,
whichever comes first. While a request is in flight, more data piles up on disk, so batches grow
by themselves when the server is slow.

Threads talk to it through ``notify_data``/``begin_close``/``abort`` (thread-safe) and read its
progress through ``acked_seq``, ``done``, ``wait_acked`` and ``wait_done``.
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Optional, Protocol, Tuple, TypeVar

from ml_dash._config import Config
from ml_dash._errors import ProtocolError

from ._client import AuthFailed, IngestClient
from ._hub import HUB, Hub, Server
from ._report import say
from ._retry import ConnectFailed, Control, Retryable, RetryPolicy, TransportError
from ._session import SessionDir, public_url, session_problem
from ._uploader import SessionUploader, Tally

T = TypeVar("T")


class Written(Protocol):
    """What a sender needs of its session's writer: a :class:`~._spool.SpoolWriter` in process, a
    stand-in fed by the run's messages in the agent service (``_service``)."""

    next_seq: int

    def note_trimmed(self, record_bytes: int, blob_bytes: int = 0) -> None: ...


__all__ = ["Sender", "Written", "BATCH_INTERVAL", "BATCH_TARGET"]

#: After the first batch, wait up to this long for more data unless BATCH_TARGET events are waiting.
BATCH_INTERVAL = 1.0
BATCH_TARGET = 20_000


class _GiveUp(Exception):
    """The run is closing and the server cannot be reached: stop trying, the spool keeps the data."""


class Sender:
    """Uploads one session (and orphans of the same experiment) as a task on the sender loop."""

    _task: asyncio.Task[Any]
    _data: asyncio.Event
    _control: Control

    def __init__(
        self,
        config: Config,
        sdir: SessionDir,
        writer: Written,
        url: str,
        token: Optional[str],
        hub: Hub = HUB,
        *,
        batch_interval: float = BATCH_INTERVAL,
        on_progress: Callable[[], None] = lambda: None,
        on_done: Callable[[], None] = lambda: None,
        report: Callable[[str], None] = say,
        keep_at_close: Optional[Callable[[], None]] = None,
    ):
        self._config = config
        self._sdir = sdir
        self._writer = writer
        self._url = url
        self._token = token
        self._hub = hub
        self._batch_interval = batch_interval
        self._on_progress = on_progress  # in the loop, after each acknowledgement
        self._on_done = on_done  # in the loop, once done is set
        self._say = report  # what the user must see (the agent passes it on to the run)
        #: The agent's: a server that is down at close does not end the upload; this is called
        #: once (the run may leave) and the sender goes on at the live pace (see _rounds).
        self._keep_at_close = keep_at_close
        self._prefix = str((sdir.manifest or {}).get("prefix"))
        # self._task, self._data, self._control: made in the loop by _begin, which runs before any
        # callback queued after start() (declared on the class).
        self._cond = threading.Condition(threading.Lock())
        self._writer_closed = False
        self._wanted = -1  # highest seq a caller of wait_acked waits for
        self._said_offline = False
        #: Set once the task will do nothing more (delivered everything, gave up, or was aborted).
        self.done = threading.Event()
        self.acked_seq = -1
        self.acked_bytes = 0
        self.tally = Tally()
        #: None while working or after success; else why it stopped ("auth", "unreachable", "aborted", "error").
        self.stopped: Optional[str] = None
        self.client: Optional[IngestClient] = None
        self.delivered_all = False

    # -- other threads -----------------------------------------------------------------------------

    def start(self) -> None:
        self._hub.call_soon(self._begin)

    def _begin(self) -> None:
        self._data = asyncio.Event()
        self._control = Control()
        self._task = asyncio.get_event_loop().create_task(self._run())

    def _call(self, fn: Callable[[], object]) -> None:
        if not self.done.is_set():
            self._hub.call_soon(fn)

    def notify_data(self) -> None:
        """New records are on disk (called by the worker after each append)."""
        self._call(lambda: self._data.set())

    def begin_close(self) -> None:
        """The writer has closed: deliver the rest now, without lingering or long backoffs."""
        self._writer_closed = True

        def start_closing() -> None:
            self._control.begin_close()
            self._data.set()

        self._call(start_closing)

    def abort(self) -> None:
        """Stop at once (deadline passed, second Ctrl-C): cancel any sleep or request in flight."""
        self._call(lambda: self._task.cancel())

    def leave(self) -> bool:
        """At the run's exit deadline: False, an uploader in the run's process ends with it (the
        caller aborts it). An agent's link hands the rest to the agent instead (``_link``)."""
        return False

    def outlive_run(self) -> None:
        """The agent's: the run has left with this session not delivered; deliver the rest at the
        live pace, without giving up on a server that is down, until done or aborted."""
        self._keep_at_close = None

        def patient() -> None:
            self._control.keep_trying()

        self._call(patient)

    def wait_done(self, timeout: Optional[float]) -> bool:
        """Block until the task has finished (True) or ``timeout`` seconds passed."""
        return self._hub.wait_until(self.done.is_set, timeout, self.done)

    def want(self, seq: int) -> None:
        """Someone waits for ``seq``: send what is there now instead of lingering."""
        if seq > self._wanted:
            self._wanted = seq
            self.notify_data()

    def forget_after_fork(self) -> None:
        """In a forked child: nothing to do (the task lives on the hub, which resets itself)."""

    def wait_acked(self, seq: int, timeout: Optional[float]) -> bool:
        """Block until every seq up to ``seq`` is acknowledged; False on timeout or if the sender stopped."""
        self.want(seq)
        self._hub.wait_until(lambda: self.acked_seq >= seq or self.done.is_set(), timeout, self._cond)
        return self.acked_seq >= seq

    @property
    def last_error(self) -> Optional[str]:
        return self.client.last_error if self.client is not None else None

    @property
    def reachable(self) -> Optional[bool]:
        return self.client.reachable if self.client is not None else None

    # -- the task ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        server = self._hub.server(self._url, self._token, self._config.request_timeout)
        try:
            await self._main(server)
        except asyncio.CancelledError:
            self.stopped = self.stopped or "aborted"
        finally:
            with self._cond:  # done before the pool closes: a run that leaves need not wait for that
                self.done.set()
                self._cond.notify_all()
            self._on_done()
            await self._hub.release(server)

    async def _main(self, server: Server) -> None:
        self.client = IngestClient(server.transport, RetryPolicy(max_wait=self._config.retry_max_wait), self._control)
        try:
            if server.info is None:
                await self._rounds(self.client.discover)
                server.info = self.client.info
            else:
                self.client.use(server.info)
            await self._adopt_orphans()
            await self._upload_own()
            self.delivered_all = True
        except AuthFailed as exc:
            self.stopped = "auth"
            self._say(
                f"{self._prefix}: the server refused the token ({exc}). Nothing is lost: events stay in the "
                f"spool. Set ML_DASH_TOKEN to a token of this prefix's owner (made on the server with "
                f"`ml-dash server token create --root SERVER_ROOT --owner {self._prefix.split('/')[0]}`), then run the flush "
                f"command printed at exit."
            )
        except _GiveUp:
            self.stopped = "unreachable"
        except ProtocolError as exc:
            self.stopped = "error"
            self._say(f"{self._prefix}: upload stopped: {exc}. Events stay in the spool.")
        except asyncio.CancelledError:
            self.stopped = "aborted"
            raise
        except Exception as exc:  # the thread must never die silently
            self.stopped = "error"
            self._say(f"{self._prefix}: upload stopped by an unexpected error: {type(exc).__name__}: {exc}")
        finally:
            if self.stopped is not None and self.client.last_error:
                self._sdir.write_state({"last_error": self.client.last_error, "stopped": self.stopped})

    async def _rounds(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` (itself retried by the policy) until it succeeds; between failed rounds the run
        keeps spooling. Gives up only when closing and the server refuses connections."""
        while True:
            try:
                return await fn()
            except (TransportError, Retryable) as exc:
                if self._control.closing and isinstance(exc, ConnectFailed):
                    keep, self._keep_at_close = self._keep_at_close, None
                    if keep is None:
                        raise _GiveUp() from None
                    self._control.keep_trying()  # the agent keeps the session: the run may leave
                    keep()
                if not self._said_offline:
                    self._said_offline = True
                    self._say(
                        f"{self._prefix}: cannot reach {public_url(self._url)} ({exc}); spooling to "
                        f"{self._sdir.path} and retrying in the background"
                    )
                self._sdir.write_state({"last_error": str(exc)})
                await self._control.sleep(self._config.retry_max_wait)

    @property
    def _ingest(self) -> IngestClient:
        assert self.client is not None  # made by _main before anything is uploaded
        return self.client

    async def _adopt_orphans(self) -> None:
        """Upload sessions of this experiment left by runs that died (their writer lock is free)."""
        for sdir in _orphans(self._sdir.root, self._prefix, public_url(self._url), self._sdir.id):
            if not sdir.writer_finished() or not sdir.claim_sender("live"):
                continue
            try:
                up = SessionUploader(sdir, self._ingest)
                await self._rounds(lambda: up.run_to_end(lambda: True))  # noqa: B023 (awaited in this iteration)
                self.tally.add(up.tally)
            finally:
                sdir.sender_lock.release()

    def _progress(self, up: SessionUploader, nbytes: int) -> None:
        with self._cond:
            self.acked_seq = up.acked
            self.acked_bytes += nbytes
            self._cond.notify_all()
        self._on_progress()

    async def _upload_own(self) -> None:
        up = SessionUploader(
            self._sdir,
            self._ingest,
            on_progress=lambda events, nbytes: self._progress(up, nbytes),
            on_trim=self._writer.note_trimmed,
        )
        loop = asyncio.get_running_loop()
        data, writer = self._data, self._writer
        next_send = 0.0  # the first data goes out at once
        try:
            while True:
                if self._writer_closed:
                    await self._rounds(lambda: up.run_to_end(lambda: True))
                    return
                unsent = up.unsent(writer.next_seq)
                wait = None if unsent <= 0 else next_send - loop.time()
                urgent = self._control.closing or self._wanted > up.acked
                if wait is None or (wait > 0 and unsent < BATCH_TARGET and not urgent):
                    data.clear()
                    if up.unsent(writer.next_seq) == unsent and not self._writer_closed:
                        try:
                            await asyncio.wait_for(data.wait(), wait)
                        except asyncio.TimeoutError:
                            pass
                    continue
                await self._rounds(lambda: up.step(False))
                next_send = loop.time() + self._batch_interval
        finally:
            self.tally.add(up.tally)


#: (prefix, url) of each session folder seen, by folder: manifests never change, so a process
#: starting many experiments reads each one once, not once per experiment.
_manifests: Dict[str, Tuple[str, str]] = {}


def _orphans(root: Path, prefix: str, url: str, own: str) -> List[SessionDir]:
    """Trusted session folders under ``root`` of ``prefix`` and ``url`` other than ``own``, oldest
    first (whether their writer is gone is for the caller to check); as ``list_sessions``, with
    each manifest read once."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    found = []
    for name in names:
        if name == own or name == "quarantine":
            continue
        known = _manifests.get(name)
        if known is None:
            sdir = SessionDir(root / name)
            m = sdir.manifest
            if m is None:
                continue  # not a session, or its manifest is not written yet
            known = _manifests[name] = (str(m.get("prefix")), str(m.get("url")))
        if known == (prefix, url) and session_problem(root / name) is None:  # only folders we can trust
            sdir = SessionDir(root / name)
            if sdir.exists():
                found.append(sdir)
    return found
