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
from pathlib import Path
from typing import Any, List, Optional, Tuple

import orjson

from .._store._jsonio import loads_lenient
from .._values import encode_nonfinite
from .pager import MARK_EVERY, Marks, OffsetPager

__all__ = ["TrackPager", "parse_line"]


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


class _Marks(Marks):
    __slots__ = ("last", "starts")

    def __init__(self, ino: int):
        super().__init__(ino)
        self.last: Optional[float] = None  # the newest timestamp
        self.starts: List[int] = []  # entry index of each mark (0, 1024, 2048, ...)


class TrackPager(OffsetPager[_Marks]):
    """Pages of track files in timestamp order, with remembered offsets (see the module doc);
    a record here is an entry: the lines of one timestamp."""

    def _new_marks(self, ino: int) -> _Marks:
        return _Marks(ino)

    def _take_line(self, m: _Marks, start: int, line: bytes, how: Any) -> bool:
        got = _entry(line)
        if got is None:
            return True
        t = got[0]
        if m.last is not None and t < m.last:
            return False
        if m.last is None or t > m.last:  # a new entry (an equal one merges)
            if m.count % MARK_EVERY == 0:
                m.starts.append(m.count)
                m.offsets.append(start)
            m.count += 1
            m.last = t
        return True

    def page(self, path: Path, start: int, limit: int) -> Optional[Tuple[List[dict[str, Any]], int]]:
        """(entries ``start .. start+limit-1`` in timestamp order, total entries); None when the
        file is not in timestamp order (read it whole instead). Non-finite floats stay strings."""
        m = self._marks(path)
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
