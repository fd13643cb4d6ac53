"""Remembered byte offsets into growing JSONL files, so that a page starts reading near its first record.

A pager scans a file once, and afterwards only the bytes appended since the last ask, remembering
the offset of every 1,024th record. What a record is and which order a file must keep belong to the
subclass: metric and log rows by an increasing integer key (:class:`~.reads.JsonlPager`), track
entries by timestamp (:class:`~.track_pages.TrackPager`). A file that breaks its order is marked so
and its caller reads it whole. Offsets are kept for at most ``max_files`` files, the least recently
asked forgotten first; a file replaced (another inode) or cut shorter is scanned from its start.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Generic, List, TypeVar

__all__ = ["MARK_EVERY", "Marks", "OffsetPager"]

MARK_EVERY = 1024
_SCAN_CHUNK = 8 << 20


class Marks:
    """What a pager remembers of one file; subclasses add what their order needs."""

    __slots__ = ("ino", "scanned", "count", "offsets", "ordered")

    def __init__(self, ino: int):
        self.ino = ino
        self.scanned = 0  # bytes of complete lines read so far
        self.count = 0  # records in them (the subclass counts)
        self.offsets: List[int] = []  # byte offset of every MARK_EVERY-th record's first line
        self.ordered = True  # False once a line broke the file's order: read it whole


M = TypeVar("M", bound=Marks)


class OffsetPager(Generic[M]):
    """The file cache and the incremental scan; subclasses say what one line means."""

    def __init__(self, max_files: int = 4096):
        self._cache: "OrderedDict[Path, M]" = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_files

    def clear(self) -> None:
        """Forget every remembered offset (after a rollback cut files the pager had read)."""
        with self._lock:
            self._cache.clear()

    def _new_marks(self, ino: int) -> M:
        raise NotImplementedError

    def _take_line(self, m: M, start: int, line: bytes, how: Any) -> bool:
        """Note the complete ``line`` found at byte ``start``; False when it breaks the order."""
        raise NotImplementedError

    def _marks(self, path: Path, how: Any = None) -> M:
        """The file's marks, brought up to its current end; ``how`` goes to :meth:`_take_line`."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return self._new_marks(-1)
        with self._lock:
            m = self._cache.get(path)
            if m is None or m.ino != st.st_ino or st.st_size < m.scanned:
                m = self._new_marks(st.st_ino)
            self._cache[path] = m
            self._cache.move_to_end(path)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
            if m.ordered and st.st_size > m.scanned:
                self._scan(path, m, how)
            return m

    def _scan(self, path: Path, m: M, how: Any) -> None:
        with open(path, "rb") as fh:
            fh.seek(m.scanned)
            pos, carry = m.scanned, b""
            while m.ordered:
                chunk = fh.read(_SCAN_CHUNK)
                if not chunk:
                    break
                buf = carry + chunk
                cut = buf.rfind(b"\n") + 1
                carry = buf[cut:]  # a line still being written: read next time, whole
                for line in buf[:cut].split(b"\n")[:-1]:
                    start, pos = pos, pos + len(line) + 1
                    if not self._take_line(m, start, line, how):
                        m.ordered = False
                        break
                else:
                    m.scanned = pos
