"""One writer session's folder in the spool: its manifest, locks, acknowledgement and state files.

Layout (folder 0700, files 0600)::

    <spool_dir>/
      <session id>/
        manifest.json     {"v", "session", "prefix", "url" (never a token), "created", "pid", "host"}
        seg-<first seq>.jsonl  records (see _framing), segments named by the seq of their first record
        blobs/<file id>   bytes of saved files, until their file event is acknowledged
        ack.json          {"acked_seq": n}: everything up to n is on the server (a hint: the server is the truth)
        state.json        last error and counters, for ``ml-dash-agent status``
        closed            present once the writer closed cleanly (no more records will come)
        writer.lock       flock held by the live writer process
        sender.lock       flock held by whoever uploads this session (live sender or a flush); sender.owner says who
      quarantine/<session id>.jsonl   records the server refused or the spool could not read, with reasons

The locks are ``flock`` locks, released by the kernel when the holder dies, so ``kill -9`` never
leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional
from urllib.parse import urlsplit, urlunsplit

__all__ = ["SessionDir", "FileLock", "new_session_id", "list_sessions", "public_url", "ensure_private_dir"]

_SEGMENT = "seg-{:012d}.jsonl"


def new_session_id() -> str:
    """A random writer-session id that sorts by creation time (``[A-Za-z0-9_-]{8,64}``)."""
    return f"{int(time.time() * 1000):011x}-{secrets.token_urlsafe(9)}"


def public_url(url: str) -> str:
    """``url`` without user info or query, fit to be written to disk and printed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 for the folders we create."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (mode 0600)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def unlink_counting(path: Path) -> int:
    """Remove ``path``; its size in bytes, or 0 when it could not be removed.

    Trimming acknowledged data is best effort: a file left behind is tried again at the next trim.
    """
    try:
        size = os.path.getsize(path)
        os.unlink(path)
        return size
    except OSError:
        return 0


def _read_json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        value = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


class FileLock:
    """An exclusive, non-blocking ``flock`` on a file; released by the kernel if the process dies."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: Optional[int] = None

    def acquire(self) -> bool:
        if self.fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except FileNotFoundError:  # the session folder was removed meanwhile
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)

    def forget(self) -> None:
        """In a forked child: close our copy of the descriptor; the parent keeps its lock."""
        self.release()

    def is_held_elsewhere(self) -> bool:
        """True while another open of the file holds the lock (a probe that takes and drops it)."""
        if self.fd is not None:
            return False
        if self.acquire():
            self.release()
            return False
        return self.path.exists()


class SessionDir:
    """Paths and small files of one session folder."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.id = self.path.name
        self.root = self.path.parent
        self.blobs = self.path / "blobs"
        self.writer_lock = FileLock(self.path / "writer.lock")
        self.sender_lock = FileLock(self.path / "sender.lock")
        self._manifest: Optional[Dict[str, Any]] = None

    @classmethod
    def create(cls, root: Path, url: str, prefix: str) -> "SessionDir":
        """Make a new session folder and its manifest; the caller becomes its writer."""
        ensure_private_dir(root)
        sdir = cls(root / new_session_id())
        sdir.path.mkdir(mode=0o700)
        sdir.blobs.mkdir(mode=0o700)
        if not sdir.writer_lock.acquire():  # a fresh folder: nobody else can hold it
            raise OSError(f"cannot lock new spool session {sdir.path}")
        manifest = {"v": 1, "session": sdir.id, "prefix": prefix, "url": public_url(url),
                    "created": time.time(), "pid": os.getpid(), "host": socket.gethostname()}
        write_private(sdir.path / "manifest.json", json.dumps(manifest).encode())
        sdir._manifest = manifest
        return sdir

    # -- manifest and small state ---------------------------------------------------------------

    @property
    def manifest(self) -> Optional[Dict[str, Any]]:
        if self._manifest is None:
            self._manifest = _read_json(self.path / "manifest.json")
        return self._manifest

    def exists(self) -> bool:
        return (self.path / "manifest.json").exists()

    def segment_path(self, first_seq: int) -> Path:
        return self.path / _SEGMENT.format(first_seq)

    def segments(self) -> List[int]:
        """First seqs of the segments on disk, ascending."""
        out = []
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith("seg-") and name.endswith(".jsonl"):
                try:
                    out.append(int(name[4:-6]))
                except ValueError:
                    pass
        out.sort()
        return out

    def read_ack(self) -> int:
        value = _read_json(self.path / "ack.json") or {}
        acked = value.get("acked_seq", -1)
        return acked if isinstance(acked, int) else -1

    def write_ack(self, acked_seq: int) -> None:
        # Not fsynced on purpose: losing it only means resending events the server reports as duplicates.
        write_private(self.path / "ack.json", b'{"acked_seq": %d}' % acked_seq)

    def read_state(self) -> Dict[str, Any]:
        return _read_json(self.path / "state.json") or {}

    def write_state(self, state: Dict[str, Any]) -> None:
        try:
            write_private(self.path / "state.json", json.dumps(state).encode())
        except OSError:
            pass  # state is advisory (for `status`); never fail an upload over it

    def mark_closed(self) -> None:
        write_private(self.path / "closed", b"")

    def writer_finished(self) -> bool:
        """No more records will come: the writer closed, or its process is gone."""
        return (self.path / "closed").exists() or not self.writer_lock.is_held_elsewhere()

    def sender_owner(self) -> Dict[str, Any]:
        return _read_json(self.path / "sender.owner") or {}

    def claim_sender(self, role: str) -> bool:
        """Become this session's only uploader (non-blocking)."""
        if not self.sender_lock.acquire():
            return False
        if not self.exists():  # removed by the previous holder after it delivered everything
            self.sender_lock.release()
            return False
        write_private(self.path / "sender.owner", json.dumps({"pid": os.getpid(), "role": role}).encode())
        return True

    def quarantine_path(self) -> Path:
        return ensure_private_dir(self.root / "quarantine") / f"{self.id}.jsonl"

    def quarantine(self, seq: Optional[int], reason: str, record: bytes) -> None:
        """Set a record aside with the reason, in ``<spool>/quarantine/<session>.jsonl`` (kept after upload)."""
        manifest = self.manifest or {}
        line = json.dumps({"ts": time.time(), "session": self.id, "prefix": manifest.get("prefix"),
                           "seq": seq, "reason": reason, "record": record.decode("utf-8", "replace")})
        fd = os.open(self.quarantine_path(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode() + b"\n")
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Delete the folder once every record is acknowledged or quarantined (we hold the sender lock)."""
        try:
            os.unlink(self.path / "manifest.json")  # first: from now on nobody takes it for pending
        except FileNotFoundError:
            pass
        shutil.rmtree(self.path, ignore_errors=True)
        self.sender_lock.release()
        self.writer_lock.release()


def list_sessions(root: Path) -> Iterator[SessionDir]:
    """Every session folder under ``root`` that has a manifest, oldest first."""
    try:
        names = sorted(os.listdir(root))
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        sdir = SessionDir(Path(root) / name)
        if name != "quarantine" and sdir.exists() and sdir.manifest is not None:
            yield sdir
