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

Trust: what a spool holds is sent with the user's token, so, like ssh with its keys, a spool folder
or session folder is used only when it belongs to the current user and neither group nor others
may write in it (:func:`spool_problem`, :func:`session_problem`); anything else is refused with
a message that says how to fix it. Blob files are found by validated id inside the session's own
``blobs/`` folder only (:func:`blob_path`).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "SessionDir",
    "FileLock",
    "new_session_id",
    "list_sessions",
    "untrusted_sessions",
    "public_url",
    "ensure_private_dir",
    "spool_problem",
    "check_spool",
    "session_problem",
    "blob_path",
]

_SEGMENT = "seg-{:012d}.jsonl"

#: In the spool folder: the socket the user's agent serves (``_service``), and its one-per-spool lock.
AGENT_SOCKET = "agent.sock"
AGENT_LOCK = "agent.lock"


def new_session_id() -> str:
    """A random writer-session id that sorts by creation time (``[A-Za-z0-9_-]{8,64}``)."""
    return f"{int(time.time() * 1000):011x}-{os.urandom(9).hex()}"  # os.urandom: what secrets uses


def public_url(url: str) -> str:
    """``url`` without user info or query, fit to be written to disk and printed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


#: What a file id (the name of a blob in ``blobs/``) may look like: one plain name, never a path.
_FILE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _not_private(path: Path, st: os.stat_result, what: str) -> Optional[str]:
    from ml_dash._text import printable

    shown = printable(path)
    if not stat.S_ISDIR(st.st_mode):
        return f"{what} {shown} is not a folder"
    me = os.geteuid()
    if st.st_uid != me:
        return (
            f"{what} {shown} belongs to uid {st.st_uid}, not to you (uid {me}): ml-dash sends what a spool "
            f"holds with your token, so it uses only a spool of your own; set ML_DASH_SPOOL_DIR to a folder "
            f"of yours (the default ~/.cache/ml-dash/spool is), and remove this one if it is not yours"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"{what} {shown} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): anyone who "
            f"can write there could have your token sent where they choose; fix it with: chmod 700 {shown}"
        )
    return None


def spool_problem(root: Path) -> Optional[str]:
    """Why the spool folder ``root`` cannot be trusted, or None (also None when it does not exist yet).

    ``root`` itself may be a symlink (a spool moved to another disk); the folder it leads to counts.
    """
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return None
    return _not_private(Path(root), st, "the spool folder")


def check_spool(root: Path) -> None:
    """Raise :class:`~ml_dash.SpoolNotPrivate` unless ``root`` is the current user's alone."""
    problem = spool_problem(root)
    if problem is not None:
        from ml_dash._errors import SpoolNotPrivate

        raise SpoolNotPrivate(problem)


def session_problem(path: Path) -> Optional[str]:
    """Why a session folder cannot be trusted (a symlink, another user's, writable by others), or None."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "it is gone"
    if stat.S_ISLNK(st.st_mode):
        from ml_dash._text import printable

        return f"the session folder {printable(path)} is a symbolic link; remove it"
    return _not_private(Path(path), st, "the session folder")


def blob_path(blob_dir: "os.PathLike[str] | str", file_id: object) -> Optional[str]:
    """The blob file of ``file_id`` inside ``blob_dir``, or None when the id is not a plain name.

    The id comes from a spooled record: it is checked, never joined onto the folder as it stands
    (an absolute path or ``..`` would read, or delete, a file outside the spool).
    """
    if not isinstance(file_id, str) or not _FILE_ID.fullmatch(file_id):
        return None
    return os.path.join(os.fspath(blob_dir), file_id)


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


def unlink_counting(path: "os.PathLike[str] | str") -> int:
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
        """Make a new session folder and its manifest; the caller becomes its writer.

        Raises :class:`~ml_dash.SpoolNotPrivate` when ``root`` is not the current user's alone.
        """
        ensure_private_dir(root)
        check_spool(root)
        sdir = cls(root / new_session_id())
        sdir.path.mkdir(mode=0o700)
        sdir.blobs.mkdir(mode=0o700)
        if not sdir.writer_lock.acquire():  # a fresh folder: nobody else can hold it
            raise OSError(f"cannot lock new spool session {sdir.path}")
        manifest = {
            "v": 1,
            "session": sdir.id,
            "prefix": prefix,
            "url": public_url(url),
            "created": time.time(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
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
        line = json.dumps(
            {
                "ts": time.time(),
                "session": self.id,
                "prefix": manifest.get("prefix"),
                "seq": seq,
                "reason": reason,
                "record": record.decode("utf-8", "replace"),
            }
        )
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


def _session_names(root: Path) -> List[str]:
    try:
        return [n for n in sorted(os.listdir(root)) if n != "quarantine"]
    except (FileNotFoundError, NotADirectoryError):
        return []


def list_sessions(root: Path) -> Iterator[SessionDir]:
    """Every session folder under ``root`` that has a manifest and can be trusted, oldest first.

    The caller checks ``root`` itself (:func:`check_spool`); folders that cannot be trusted are
    left out here and listed by :func:`untrusted_sessions`.
    """
    for name in _session_names(root):
        path = Path(root) / name
        if session_problem(path) is not None:
            continue
        sdir = SessionDir(path)
        if sdir.exists() and sdir.manifest is not None:
            yield sdir


def untrusted_sessions(root: Path) -> Iterator[Tuple[str, str]]:
    """(folder name, why) for every folder under ``root`` that looks like a session but cannot be trusted."""
    for name in _session_names(root):
        path = Path(root) / name
        problem = session_problem(path)
        if problem is not None and (os.path.islink(path) or os.path.isdir(path)):
            yield name, problem
