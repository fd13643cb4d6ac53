"""The write side of the spool: seqs, framing, segment files, group-commit fsync, the size cap.

Durability (the fsync policy): a record reaches the operating system (it survives ``kill -9`` of
the process) as soon as the worker writes its batch, which is at most ``Config.flush_interval``
after the call. It reaches the disk (it survives a power cut or a kernel crash) at most
``Config.fsync_interval`` later: the process's group-commit thread (``_syncer``) fsyncs the
active segment once per window while there is unsynced data, so a steady stream costs one fsync
per window, not one per batch. ``sync()`` (``exp.flush()``) and ``close()`` fsync at once.
``fsync_interval = 0`` fsyncs every batch.
"""

from __future__ import annotations

import collections
import errno
import os
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ml_dash._files import Source, snapshot

from ._columns import encode_metric_rows
from ._framing import frame_all
from ._report import human_bytes, say
from ._session import SessionDir
from ._syncer import SYNCER
from ._wire import encode_items, encode_track_rows

__all__ = ["SpoolWriter", "SEGMENT_BYTES"]

#: A segment is closed and a new one started past this size: trimming frees space segment by segment.
SEGMENT_BYTES = 8 * 1024 * 1024
#: Items encoded per write(2): bounds the memory a huge worker batch needs.
_CHUNK_ITEMS = 4096
# (first seq, items) -> (payloads, events per payload or None for one each, [(bad item, why)])
_Encoder = Callable[[int, Any], Tuple[List[bytes], Optional[List[int]], List[Tuple[Any, str]]]]


def _one_seq_each(first: int, events: Sequence[tuple[Any, ...]]) -> Tuple[List[bytes], None, List[Tuple[Any, str]]]:
    payloads, bad = encode_items(first, events)
    return payloads, None, bad  # None: one seq per payload


class SpoolWriter:
    """Appends a session's events to its segments; one instance per writer session."""

    def __init__(
        self,
        sdir: SessionDir,
        *,
        fsync_interval: float,
        warn_bytes: int,
        max_bytes: int,
        on_data: Callable[[], None] = lambda: None,
        segment_bytes: int = SEGMENT_BYTES,
    ):
        self.sdir = sdir
        self.next_seq = 0
        #: Bytes of records written, and of records the uploader has since trimmed (in this process).
        self.bytes_written = 0
        self.bytes_trimmed = 0
        self.blob_bytes = 0
        self.drops: Dict[str, int] = collections.Counter()
        self.last_error: Optional[str] = None
        self._fsync_interval = fsync_interval
        self._warn_bytes = warn_bytes
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        #: Called after each append that stored something (the sender's wake-up); set by the owner.
        self.on_data = on_data
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._retired: List[int] = []  # full segments, closed once fsynced
        self._seg_size = 0
        self._dirty_since: Optional[float] = None
        self._dir_dirty = False
        self._warned = False
        self._told: set[Any] = set()
        self._closed = False

    # -- appending -------------------------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        return self.bytes_written - self.bytes_trimmed + self.blob_bytes

    def append(self, events: Sequence[tuple[Any, ...]]) -> int:
        """Give each event (``ml_dash._events``) the next seq and append it; returns how many were
        stored. Never raises."""
        return self._append(events, _one_seq_each)

    def append_metric_rows(self, name: Optional[str], rows: List[Dict[str, Any]]) -> int:
        """Append one metric's rows (the user's fields plus ``_ts``) as columnar records, a seq per
        row; like :meth:`append`."""
        return self._append(rows, lambda first, chunk: encode_metric_rows(first, name, chunk))

    def append_track_rows(self, topic: str, rows: List[Dict[str, Any]]) -> int:
        """Append one track topic's entries as ``track`` events, a seq each; like :meth:`append`."""
        return self._append(rows, lambda first, chunk: encode_track_rows(first, topic, chunk))

    def _append(self, items: Sequence[Any], encode: _Encoder) -> int:
        stored = 0
        for start in range(0, len(items), _CHUNK_ITEMS):
            stored += self._append_chunk(items[start : start + _CHUNK_ITEMS], encode)
        if stored:
            self.on_data()
        return stored

    def _append_chunk(self, items: Sequence[Any], encode: _Encoder) -> int:
        first = self.next_seq
        payloads, counts, bad = encode(first, items)
        for _, why in bad:  # one bad item must not fail its batch; it takes no seq
            self._drop("encode_error", 1, why)
        if not payloads:
            return 0
        events = len(payloads) if counts is None else sum(counts)  # seqs used (a record may hold many)
        data = frame_all(payloads)
        with self._lock:
            if self._closed:
                self._drop("closed", events, "spool closed")
                return 0
            if self.pending_bytes + len(data) > self._max_bytes:
                self._drop(
                    "spool_full",
                    events,
                    f"the spool is over its cap of {human_bytes(self._max_bytes)} "
                    "(ML_DASH_SPOOL_MAX_BYTES); is the server reachable?",
                )
                return 0
            try:
                self._write(data, first)
            except OSError as exc:
                reason = "disk_full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "spool_write_error"
                self._drop(reason, events, f"{type(exc).__name__}: {exc}")
                return 0
            self.next_seq = first + events
            self.bytes_written += len(data)
        self._after_write()
        return events

    def _write(self, data: bytes, first_seq: int) -> None:
        if self._fd is None:
            path = self.sdir.segment_path(first_seq)
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            self._seg_size = 0
            self._dir_dirty = True
        view, done = memoryview(data), 0
        try:
            while done < len(data):
                done += os.write(self._fd, view[done:])
        except OSError:
            # Cut the partial record off, so that the next record does not land behind garbage.
            try:
                os.ftruncate(self._fd, self._seg_size)
            except OSError:
                pass
            raise
        self._seg_size += len(data)
        if self._dirty_since is None:
            self._dirty_since = time.monotonic()
        if self._seg_size >= self._segment_bytes:
            # The fsync thread syncs and closes it; the worker never waits for the disk.
            self._retired.append(self._fd)
            self._fd = None  # the next append opens seg-<next seq>

    def _after_write(self) -> None:
        if self._fsync_interval <= 0:
            self.sync_now()
        else:
            SYNCER.note(self)
        if not self._warned and self.pending_bytes > self._warn_bytes:
            self._warned = True
            say(
                f"the spool {self.sdir.path} holds {human_bytes(self.pending_bytes)} not yet uploaded; "
                f"at {human_bytes(self._max_bytes)} (ML_DASH_SPOOL_MAX_BYTES) new events are dropped"
            )

    def stage_blob(self, source: Source, file_id: str) -> Tuple[int, str]:
        """Copy a file's bytes into the spool now (caller's thread); returns (size, sha256)."""
        size, checksum = snapshot(source, self.sdir.blobs / str(file_id))
        self.blob_bytes += size
        return size, checksum

    def note_trimmed(self, record_bytes: int, blob_bytes: int = 0) -> None:
        """The uploader deleted acknowledged data: it no longer counts against the cap."""
        self.bytes_trimmed += record_bytes
        self.blob_bytes -= blob_bytes

    # -- durability ------------------------------------------------------------------------------

    def sync(self) -> None:
        """fsync everything written so far (the active segment, segments just rolled over, and the
        folder after a new segment). The disk is waited on outside the lock, so appends go on."""
        with self._lock:
            fds, self._retired = self._retired, []
            if self._dirty_since is not None and self._fd is not None:
                fds.append(os.dup(self._fd))  # a private handle: the segment may roll over meanwhile
            self._dirty_since = None
            dir_dirty, self._dir_dirty = self._dir_dirty, False
        try:
            for fd in fds:
                os.fsync(fd)
            if dir_dirty:
                dfd = os.open(self.sdir.path, os.O_RDONLY)
                try:
                    os.fsync(dfd)
                finally:
                    os.close(dfd)
        finally:
            for fd in fds:
                os.close(fd)

    def sync_due(self) -> Optional[float]:
        """When the group commit should fsync this writer (``time.monotonic()``), None when synced."""
        dirty_since = self._dirty_since
        return None if dirty_since is None else dirty_since + self._fsync_interval

    def sync_now(self) -> None:
        """:meth:`sync`, reporting a failure instead of raising (the group commit's call)."""
        try:
            self.sync()
        except OSError as exc:
            self._error(f"fsync: {exc}")

    # -- closing ---------------------------------------------------------------------------------

    def close(self) -> None:
        """fsync, close the segment and mark the session closed (no more records will come)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._fd is not None:
                self._retired.append(self._fd)
                self._fd = None
        self.sync_now()
        SYNCER.forget(self)
        try:
            self.sdir.mark_closed()
        except OSError as exc:
            self._error(f"close: {exc}")

    def forget_after_fork(self) -> None:
        """In a forked child: close our copies of the parent's descriptors without touching its files."""
        fds, self._fd, self._retired = [self._fd, *self._retired], None, []
        for fd in fds:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._closed = True
        self._dirty_since = None
        self.sdir.writer_lock.forget()
        self.sdir.sender_lock.forget()

    # -- accounting ------------------------------------------------------------------------------

    def _drop(self, reason: str, n: int, detail: str) -> None:
        self.drops[reason] += n
        self._error(f"{n} event(s) dropped ({reason}): {detail}", once_key=reason)

    def _error(self, message: str, once_key: Optional[str] = None) -> None:
        self.last_error = message
        if once_key is not None:
            if once_key in self._told:
                return  # said once; the count is reported at close
            self._told.add(once_key)
        say(f"spool {self.sdir.id}: {message}")
