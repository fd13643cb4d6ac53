"""What ``ml-dash-agent`` does: find pending sessions, say how they stand, upload them.

Safe next to anything else touching the spool: a session is uploaded only by whoever holds its
``sender.lock``; a session whose live run is uploading it is left to that run; a session still
being written by a run in offline mode is uploaded up to its last complete record and kept; and
nothing is deleted that the server has not acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple, Union

from ml_dash._errors import ProtocolError
from ml_dash._text import printable

from ._client import AuthFailed, IngestClient
from ._reader import SessionReader
from ._report import flush_command
from ._retry import Control, Retryable, RetryPolicy, TransportError, Unrecoverable
from ._session import SessionDir, list_sessions
from ._uploader import SessionUploader, Tally

__all__ = ["SessionStatus", "session_status", "flush_sessions", "FlushSummary"]


@dataclass
class SessionStatus:
    sdir: SessionDir
    prefix: str
    url: str
    events: int
    bytes: int
    age: float
    state: str
    last_error: Optional[str]


def _pending(sdir: SessionDir) -> Tuple[int, int]:
    """Events and spool bytes after the acknowledged ones (reads the segments; no side effects)."""
    start = sdir.read_ack() + 1
    reader = SessionReader(sdir, start)
    events = nbytes = 0
    while True:
        chunk = reader.read(100_000, 16 << 20, finished=True)
        # Seqs, not records (a columnar record holds many); a record partly acknowledged counts its rest.
        events += sum(e.seq + e.n - max(e.seq, start) for e in chunk.entries if e.kind != b"gap")
        nbytes += sum(e.size for e in chunk.entries)
        if chunk.at_end:
            break
    try:
        nbytes += sum(f.stat().st_size for f in sdir.blobs.iterdir())
    except OSError:
        pass
    return events, nbytes


def _state(sdir: SessionDir) -> str:
    manifest = sdir.manifest or {}
    if sdir.writer_lock.is_held_elsewhere():
        return f"writing (pid {manifest.get('pid')})"
    if sdir.sender_lock.is_held_elsewhere():
        owner = sdir.sender_owner()
        return f"uploading ({owner.get('role', '?')}, pid {owner.get('pid')})"
    return "closed" if (sdir.path / "closed").exists() else "crashed"


def session_status(sdir: SessionDir) -> SessionStatus:
    manifest = sdir.manifest or {}
    events, nbytes = _pending(sdir)
    return SessionStatus(
        sdir,
        str(manifest.get("prefix")),
        str(manifest.get("url")),
        events,
        nbytes,
        time.time() - float(manifest.get("created") or time.time()),
        _state(sdir),
        sdir.read_state().get("last_error"),
    )


@dataclass
class FlushSummary:
    sessions: int = 0
    tally: Tally = field(default_factory=Tally)
    #: session id -> why it is not (fully) uploaded
    left: Dict[str, str] = field(default_factory=dict)


async def flush_sessions(
    root: Path,
    url_override: Optional[str],
    token_for: Callable[[str], Optional[str]],
    policy: RetryPolicy,
    on_progress: Callable[[int, int], object] = lambda e, b: None,
    wait_for_others: float = 600.0,
) -> FlushSummary:
    """Upload every pending session under ``root``; see the module docstring for the rules."""
    from ._transport import Transport

    summary = FlushSummary()
    control = Control()
    clients: Dict[str, IngestClient] = {}
    refused: Dict[str, str] = {}
    tokenless = set()  # servers no token is sent to: not configured now (see _credentials.flush_token)
    try:
        for sdir in list(list_sessions(root)):
            url = url_override or str((sdir.manifest or {}).get("url"))
            if url not in refused and url_override is None:
                refused.update(_unusable(url, root))
            if url in refused:
                summary.left[sdir.id] = refused[url]
                continue
            claimed = await _claim(sdir, wait_for_others)
            if claimed is not True:
                if claimed:
                    summary.left[sdir.id] = claimed
                continue
            try:
                client = clients.get(url)
                if client is None:
                    token = token_for(url)
                    if token is None:
                        tokenless.add(url)
                    client = clients[url] = IngestClient(Transport(url, token), policy, control)
                    await client.discover()
                up = SessionUploader(sdir, client, on_progress=on_progress)
                try:
                    removed = await up.run_to_end(sdir.writer_finished)
                finally:
                    summary.tally.add(up.tally)
                summary.sessions += 1
                if not removed:
                    summary.left[sdir.id] = "its run is still writing (offline mode): flush again after it ends"
            except AuthFailed as exc:
                refused[url] = f"the server refused the token: {exc}"
                if url in tokenless:
                    refused[url] = (
                        f"the server refused the upload ({exc}); no token was sent, because "
                        f"{printable(url)} is not a server configured now (--dash-url, ML_DASH_URL, or "
                        f"its own entry in the credentials file); to send it there with ML_DASH_TOKEN: "
                        f"{flush_command(root, printable(url))}"
                    )
                summary.left[sdir.id] = refused[url]
                sdir.write_state({"last_error": str(exc)})
            except (TransportError, Retryable, ProtocolError) as exc:
                if isinstance(exc, TransportError):
                    refused[url] = f"server unreachable: {exc}"
                elif isinstance(exc, Unrecoverable):
                    refused[url] = str(exc)
                summary.left[sdir.id] = str(exc)
                sdir.write_state({"last_error": str(exc)})
            finally:
                sdir.sender_lock.release()
    finally:
        for client in clients.values():
            await client.transport.close()
    return summary


def _unusable(url: str, root: Path) -> Dict[str, str]:
    """{url: why} when a URL taken from a manifest is not a server URL at all, else {}."""
    from ml_dash._errors import InvalidDashUrl
    from ml_dash._urls import check_dash_url

    try:
        check_dash_url(url)
    except InvalidDashUrl as exc:
        return {url: f"its manifest names no usable server ({exc}); to send it: {flush_command(root, 'URL')}"}
    return {}


async def _claim(sdir: SessionDir, patience: float) -> Union[str, bool, None]:
    """True when we hold the session's sender lock; else a reason it is left ('' when it is gone)."""
    deadline = time.monotonic() + patience
    while True:
        if sdir.claim_sender("flush"):
            return True
        if not sdir.exists():
            return ""  # another uploader finished it meanwhile
        owner = sdir.sender_owner()
        alive = _alive(owner.get("pid"))
        if owner.get("role") == "live" and alive:
            return f"its run (pid {owner.get('pid')}) is uploading it"
        if time.monotonic() > deadline:
            return f"another flush (pid {owner.get('pid')}) holds it"
        await asyncio.sleep(0.2)  # another flush: wait for it, then see what is left


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
