"""The end of one JSONL data file, read incrementally by offset: its highest key and (metrics)
each field's last value. The catalogue keeps one per metric and one for the logs."""

from __future__ import annotations

import os
from pathlib import Path
from stat import S_ISREG
from typing import Any, Dict, Optional, Tuple

import orjson

from .._store._jsonio import loads_lenient

__all__ = ["Tail", "regular_file", "WINDOW"]

#: At most this much of what was appended since the last look is read (its end).
WINDOW = 256 << 10


def regular_file(path: Path) -> bool:
    """A regular file, not a symlink: the server never follows a symlink planted in its root."""
    try:
        return S_ISREG(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return False


class Tail:
    """What the end of one JSONL file says: its highest key, and (metrics) each field's last value."""

    __slots__ = ("ino", "sig", "consumed", "last", "values")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.ino = -1
        self.sig: Tuple[int, int] = (-1, -1)
        self.consumed = 0
        self.last: Optional[int] = None
        self.values: Dict[str, Any] = {}

    def update(self, path: Path, key: str, values: bool) -> bool:
        """Read what was appended; True when something changed."""
        try:
            st = os.lstat(path)
            if not S_ISREG(st.st_mode):  # a symlink is never followed: it reads as no file
                raise FileNotFoundError(path)
        except (FileNotFoundError, NotADirectoryError):
            changed = self.last is not None or self.values
            self._reset()
            return bool(changed)
        sig = (st.st_size, st.st_mtime_ns)
        if sig == self.sig and st.st_ino == self.ino:
            return False
        if st.st_ino != self.ino or st.st_size < self.consumed:
            self._reset()
            self.ino = st.st_ino
        self.sig = sig
        start = max(self.consumed, st.st_size - WINDOW)
        try:
            with open(path, "rb") as fh:
                buf = os.pread(fh.fileno(), st.st_size - start, start)
        except FileNotFoundError:
            return False
        end = buf.rfind(b"\n") + 1
        if end == 0:
            return False
        first = 0
        if start > self.consumed:  # skipped ahead: the window may begin inside a line
            first = buf.find(b"\n") + 1
        self.consumed = start + end
        for line in buf[first:end].split(b"\n"):
            if not line.strip():
                continue
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                try:
                    rec = loads_lenient(line)
                except ValueError:
                    continue
            if type(rec) is not dict:
                continue
            k = rec.get(key)
            if type(k) is int and (self.last is None or k > self.last):
                self.last = k
            if values:
                data = rec.get("data")
                if type(data) is dict:
                    self.values.update(data)
        return True
