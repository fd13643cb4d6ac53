"""Pages of a track's entries (``tracks/<folder>/data.jsonl``) without reading the whole file.

A track file is one JSON line per stored entry, ``{"timestamp": ..., **fields}``; lines with the same
timestamp are one entry (fields merged in file order, later winning). Our writer appends each batch
in timestamp order, so a topic written in time order has non-decreasing timestamps down the file,
and its entries are runs of lines with the same timestamp. For such a file this pager remembers,
per file, how far it has read, how many entries it saw, and the byte offset of every 1,024th
entry: a page (the dashboard's live tail asks for the last entry and what follows) reads only the
lines of that page plus the bytes appended since the last ask (the first ask reads the file once).

A file whose timestamps ever go back (entries appended out of time order) is not paged here: the
caller reads it whole (``ExperimentReader.track_entries``), which sorts and merges any order.
"""

from __future__ import annotations

import bisect
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, List, Optional, Tuple

import orjson

from .._store._jsonio import loads_lenient
from .._values import encode_nonfinite

__all__ = ["TrackPager", "parse_line"]

_MARK_EVERY = 1024
_SCAN_CHUNK = 8 << 20


def parse_line(line: bytes) -> Optional[dict[str, Any]]:
    """A JSONL line's object, non-finite floats as strings; None for a torn or corrupt line."""
    try:
        rec = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:
            rec = encode_nonfinite(loads_lenient(line))  # upstream's bare NaN literals
        except ValueError:
            return None  # a torn or corrupt line: skipped, as the local reader does
    return rec if isinstance(rec, dict) else None


def _entry(line: bytes) -> Optional[Tuple[float, dict[str, Any]]]:
    """(timestamp, record) of a line, or None for a line the reader skips (blank, torn, corrupt,
    or without a numeric timestamp)."""
    if not line.strip():
        return None
    rec = parse_line(line)
    if rec is None:
        return None
    t = rec.get("timestamp")
    return (float(t), rec) if type(t) is float or type(t) is int else None


class _Marks:
    __slots__ = ("ino", "scanned", "count", "last", "starts", "offsets", "ordered")

    def __init__(self, ino: int):
        self.ino = ino
        self.scanned = 0  # bytes of complete lines read so far
        self.count = 0  # entries (distinct timestamps) in them
        self.last: Optional[float] = None  # the newest timestamp
        self.starts: List[int] = []  # entry index of each mark (0, 1024, 2048, ...)
        self.offsets: List[int] = []  # byte offset of that entry's first line
        self.ordered = True


class TrackPager:
    """Pages of track files in timestamp order, with remembered offsets (see the module doc)."""

    def __init__(self, max_files: int = 4096):
        self._cache: "OrderedDict[Path, _Marks]" = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_files

    def clear(self) -> None:
        """Forget every remembered offset (after a rollback cut files the pager had read)."""
        with self._lock:
            self._cache.clear()

    def _scan(self, path: Path) -> _Marks:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return _Marks(-1)
        with self._lock:
            m = self._cache.get(path)
            if m is None or m.ino != st.st_ino or st.st_size < m.scanned:
                m = _Marks(st.st_ino)
            self._cache[path] = m
            self._cache.move_to_end(path)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
            if m.ordered and st.st_size > m.scanned:
                with open(path, "rb") as fh:
                    fh.seek(m.scanned)
                    pos, carry = m.scanned, b""
                    while m.ordered:
                        chunk = fh.read(_SCAN_CHUNK)
                        if not chunk:
                            break
                        buf = carry + chunk
                        cut = buf.rfind(b"\n") + 1
                        carry = buf[cut:]
                        for line in buf[:cut].split(b"\n")[:-1]:
                            start, pos = pos, pos + len(line) + 1
                            got = _entry(line)
                            if got is None:
                                continue
                            t = got[0]
                            if m.last is not None and t < m.last:
                                m.ordered = False
                                break
                            if m.last is None or t > m.last:  # a new entry (an equal one merges)
                                if m.count % _MARK_EVERY == 0:
                                    m.starts.append(m.count)
                                    m.offsets.append(start)
                                m.count += 1
                                m.last = t
                        else:
                            m.scanned = pos
            return m

    def page(self, path: Path, start: int, limit: int) -> Optional[Tuple[List[dict[str, Any]], int]]:
        """(entries ``start .. start+limit-1`` in timestamp order, total entries); None when the
        file is not in timestamp order (read it whole instead). Non-finite floats stay strings."""
        m = self._scan(path)
        if not m.ordered:
            return None
        if start >= m.count:
            return [], m.count
        i = bisect.bisect_right(m.starts, start) - 1
        index, offset = m.starts[i] - 1, m.offsets[i]
        out: List[dict[str, Any]] = []
        last: Optional[float] = None
        with open(path, "rb") as fh:
            fh.seek(offset)
            pos = offset
            for line in fh:
                pos += len(line)
                if pos > m.scanned:
                    break  # appended after the scan: the next ask gets it
                got = _entry(line)
                if got is None:
                    continue
                t, rec = got
                if last is None or t > last:
                    index, last = index + 1, t
                    if index >= start + limit:
                        break
                    if index >= start:
                        out.append(rec)
                elif index >= start:  # the same timestamp: one entry, later fields win
                    out[-1].update(rec)
        return out, m.count
