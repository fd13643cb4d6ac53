"""Remote mode's sink: the worker's batches go to the write-ahead spool, a sender uploads them.

Nothing here waits on the network in the caller's thread: ``prepare`` creates the session folder
(the experiment's creation is simply its first spooled event) and starts its sender (a task on
the process's one sender loop, ``_hub``); ``write`` appends to disk; only ``close`` (with its
deadline) and ``wait_delivered`` (``exp.flush()``) wait.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ml_dash import _fork
from ml_dash._config import Config
from ml_dash._files import Source

from ._credentials import token_for
from ._report import flush_command, human_bytes, progress, say, status_command
from ._session import AGENT_SOCKET, SessionDir
from ._spool import SpoolWriter

if TYPE_CHECKING:
    from ml_dash._events import Event
    from ml_dash._remote_read import RemoteReader

    from ._link import AgentLink
    from ._sender import Sender

__all__ = ["RemoteSink"]


class RemoteSink:
    """Spools one experiment's events and uploads them in the background (a ``ml_dash._sink.Sink``)."""

    def __init__(self, config: Config, prefix: Any):
        self._config = config
        self._prefix = str(prefix)
        self._url = str(config.dash_url)
        self._token = config.token or token_for(self._url)
        self._root = Path(config.spool_dir).expanduser()
        self._init_state()

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._sdir: Optional[SessionDir] = None
        self._writer: Optional[SpoolWriter] = None
        self._sender: "Sender | AgentLink | None" = None
        self._closed = False
        self.drops: Dict[str, int] = collections.Counter()
        #: Per track topic, the last automatic timestamp given (``ml_dash._tracks.resolve_stamps``).
        self._track_stamps: Dict[str, List[float]] = {}

    # -- the Sink interface ----------------------------------------------------------------------

    def prepare(self) -> None:
        """Open this run's writer session and start the sender; never touches the network here."""
        self._session()

    def _session(self) -> SpoolWriter:
        writer = self._writer
        if writer is not None:
            return writer
        with self._lock:
            if self._writer is None:
                sdir = SessionDir.create(self._root, self._url, self._prefix)
                writer = SpoolWriter(
                    sdir,
                    fsync_interval=self._config.fsync_interval,
                    warn_bytes=self._config.spool_warn_bytes,
                    max_bytes=self._config.spool_max_bytes,
                )
                sender = None if self._config.offline else self._uploader(sdir, writer)
                self._sdir, self._sender, self._writer = sdir, sender, writer
                self._closed = False
            return self._writer

    def _uploader(self, sdir: SessionDir, writer: SpoolWriter) -> "Sender | AgentLink":
        """The spool's agent when one takes the session (``uploader`` "auto" or "agent"), else a
        sender here; "agent" also starts an agent for the next runs when none answered."""
        uploader: "Sender | AgentLink | None" = None
        if self._config.uploader != "process" and (self._root / AGENT_SOCKET).exists():
            from ._link import AgentLink

            uploader = AgentLink.connect(self._config, sdir, writer, self._url, self._token)
        if uploader is None and self._config.uploader == "agent":
            from ._spawn import spawn_agent

            spawn_agent(self._root, self._config.agent_idle)
        if uploader is None:
            from ._sender import Sender  # aiohttp and tenacity: only when uploading from here

            sdir.claim_sender("live")
            uploader = Sender(self._config, sdir, writer, self._url, self._token)
        writer.on_data = uploader.notify_data
        uploader.start()
        return uploader

    def stage_file(self, source: Source, entry: Dict[str, Any]) -> Tuple[int, str]:
        """Copy the file's bytes into the spool now (caller's thread); returns (size, sha256)."""
        return self._session().stage_blob(source, str(entry["id"]))

    def write(self, events: List[Event]) -> None:
        """Append a batch to the spool (worker thread); bad events are counted, never raised."""
        self._session().append(events)

    def write_metrics(self, name: Optional[str], rows: List[Dict[str, Any]]) -> None:
        """Append one metric's rows (worker thread): no per-row tuple on the way."""
        self._session().append_metric_rows(name, rows)

    def stored_track_topic(self, folder: str) -> Optional[str]:
        """None: the spool does not know what the server stores; the server refuses a second topic
        in one folder."""
        return None

    def write_tracks(self, topic: str, rows: List[Dict[str, Any]]) -> None:
        """Append one track topic's entries (worker thread)."""
        from ml_dash._tracks import resolve_stamps

        resolve_stamps(rows, self._track_stamps.setdefault(topic, [0.0]))
        self._session().append_track_rows(topic, rows)

    def sync(self) -> None:
        """fsync what is spooled (``exp.flush()``); the group commit does it within fsync_interval anyway."""
        if self._writer is not None:
            self._writer.sync()

    def wait_delivered(self, timeout: Optional[float]) -> bool:
        """True once everything spooled so far is acknowledged by the server (False offline).

        ``None`` waits at most ``shutdown_timeout``: a read must not hang on a server that is down.
        """
        writer, sender = self._writer, self._sender
        if writer is None:
            return True
        if sender is None:
            return False
        limit = self._config.shutdown_timeout if timeout is None else timeout
        return sender.wait_acked(writer.next_seq - 1, limit)

    def close(self, deadline: float) -> None:
        """Deliver what is left until ``deadline``; then say exactly what is left and how to send it."""
        writer, sender, sdir = self._writer, self._sender, self._sdir
        if writer is None or self._closed:
            return
        self._closed = True
        writer.close()
        if sender is not None:
            sender.begin_close()
            try:
                self._wait(sender, deadline)
            except KeyboardInterrupt:
                sender.abort()
                self._report_left(writer, sender, sdir, "interrupted")
                raise
            if not sender.done.is_set() and not sender.leave():
                sender.abort()
            sender.wait_done(1.0)
        if sender is not None and sender.stopped in ("kept", "left"):
            self._report_kept(writer, sender, sdir)
        elif sender is None or not sender.delivered_all:
            why = "offline mode" if sender is None else self._why(sender)
            self._report_left(writer, sender, sdir, why)
        else:
            assert sdir is not None  # a sender runs only with its session folder
            sdir.writer_lock.release()
        self._report_drops(writer, sender)

    def _wait(self, sender: "Sender | AgentLink", deadline: float) -> None:
        start = time.monotonic()
        next_report = start + 1.0
        while not sender.wait_done(max(0.0, min(0.1, deadline - time.monotonic()))):
            now = time.monotonic()
            if now >= deadline:
                return
            if now >= next_report:
                assert self._writer is not None  # close() returned early without one
                events, nbytes = self._pending(self._writer, sender)
                progress(
                    f"waiting for {events:,} events / {human_bytes(nbytes)} to reach {self._url_public()} "
                    f"({deadline - now:.0f} s left; Ctrl-C leaves them in the spool)"
                )
                next_report = now + 5.0

    def _url_public(self) -> str:
        return (self._sdir.manifest or {}).get("url", "") if self._sdir else ""

    @staticmethod
    def _pending(writer: SpoolWriter, sender: "Sender | AgentLink | None") -> Tuple[int, int]:
        acked = sender.acked_seq if sender is not None else -1
        acked_bytes = sender.acked_bytes if sender is not None else 0
        return max(0, writer.next_seq - 1 - acked), max(0, writer.bytes_written - acked_bytes + writer.blob_bytes)

    def _why(self, sender: "Sender | AgentLink") -> str:
        error = sender.last_error
        if error is None:
            return "the exit deadline passed with the server's answer still pending"
        if sender.stopped == "auth":
            return f"the server refused the token: {error}"
        if sender.stopped == "unreachable" or sender.reachable is False:
            return f"server unreachable: {error}"
        if sender.stopped == "error":
            return f"upload stopped: {error}"
        return f"the exit deadline passed; last error: {error}"

    def _report_left(
        self, writer: SpoolWriter, sender: "Sender | AgentLink | None", sdir: Optional[SessionDir], why: str
    ) -> None:
        events, nbytes = self._pending(writer, sender)
        where = sdir.path if sdir is not None else self._root
        say(f"{self._prefix}: {events:,} events / {human_bytes(nbytes)} not uploaded ({why}); they are kept in {where}")
        say(f"to upload them: {flush_command(self._root, self._url_public() or self._url)}")
        if sdir is not None:
            sdir.writer_lock.release()
            sdir.sender_lock.release()

    def _report_kept(self, writer: SpoolWriter, sender: "Sender | AgentLink", sdir: Optional[SessionDir]) -> None:
        """The agent goes on delivering what this run leaves (``kept`` or ``left``)."""
        events, nbytes = self._pending(writer, sender)
        why = "the exit deadline passed" if sender.stopped == "left" else self._why(sender)
        say(
            f"{self._prefix}: {events:,} events / {human_bytes(nbytes)} not acknowledged yet ({why}); the agent "
            f"serving {self._root} keeps them and goes on trying (`{status_command(self._root)}` shows what is "
            f"left; if the agent is stopped first, `{flush_command(self._root, self._url_public() or self._url)}`)"
        )
        if sdir is not None:
            sdir.writer_lock.release()  # the agent removes the session once it is delivered

    def _report_drops(self, writer: SpoolWriter, sender: "Sender | AgentLink | None") -> None:
        drops = {k: v for k, v in writer.drops.items() if v}
        if sender is not None and sender.tally.quarantined:
            drops["quarantined"] = sender.tally.quarantined
        self.drops.update(drops)
        if drops:
            detail = ", ".join(f"{k}: {v:,}" for k, v in sorted(drops.items()))
            say(f"{self._prefix}: events not delivered: {detail} (quarantine: {self._root / 'quarantine'})")

    def after_fork_in_child(self) -> None:
        """In a forked child: forget the parent's session without touching it; the child gets a
        session of its own only if it writes."""
        _fork.left_by_parent.append((self._writer, self._sender, self._sdir))
        if self._writer is not None:
            self._writer.forget_after_fork()
        if self._sender is not None:
            self._sender.forget_after_fork()
        self._init_state()

    def reader(self) -> "RemoteReader":
        """The read interface against the server (the same one local mode offers)."""
        from ml_dash._remote_read import RemoteReader

        assert self._config.dash_url is not None  # remote mode: there is a server
        return RemoteReader(self._config.dash_url, self._token, self._prefix)
