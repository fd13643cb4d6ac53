"""One metric file (``metrics/<name>/data.jsonl``) as numeric columns with per-chunk summaries.

The file is read once, incrementally, by byte offset: each :meth:`MetricColumns.refresh` parses
only the complete lines written since the last one, whoever wrote them (the server, or a local SDK
process writing the folder right now). A torn last line is left for the next refresh, when it is
complete. Before reading on, the bytes just before the offset are compared with what was read
there: a file that was cut back (the server's rollback of an unacknowledged batch) or replaced is
read again from the start, never mixed.

Rows follow the local reader's rules: a row whose index is not above the highest index read so far
is skipped (duplicate indices: the first row wins), a corrupt line is skipped, upstream's bare
``NaN`` literals are read. One difference: a row whose index is lower than one already read but
was never seen (an out-of-order file, which no writer of ours produces) is skipped too.

Each field becomes a float64 column, one value per row: numbers (bools as 0/1, the strings
``"NaN"``, ``"Infinity"``, ``"-Infinity"`` as those floats, integers stored as decimal strings as
their value) or :data:`MISSING`, a NaN with a payload of its own, where the row has no number
(the field is absent, null, a string, a list...). Every :data:`CHUNK` rows, each column gets a
summary ``[n, m, min, max, last]``: rows with a number, rows with a number that is not NaN, the
minimum and maximum of those (``inf``/``-inf`` when none), the last number (NaN when none). Series
queries combine these summaries, so their cost does not grow with the metric's length.

Per field the whole-metric figures are kept too (:class:`FieldInfo`): rows with a value, rows with
a number, min, max, last value, and whether the numbers never decrease (x fields such as ``step``).
"""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO, Dict, Iterable, List, Optional, Tuple

import numpy as np
import orjson

from ._arrays import DiskArrays, MemArrays
from ._numeric import MISSING, FieldInfo, chunk_stats, column_of, missing_mask

__all__ = ["MetricColumns", "FieldInfo", "CHUNK", "MISSING", "missing_mask", "chunk_stats"]

#: Rows per summarised chunk. A bucket query reads at most rows / CHUNK summaries, or fewer than
#: CHUNK x buckets values: 256 keeps both near a few milliseconds at 10M rows and 1,000 buckets.
CHUNK = 256
_VERSION = 1
_READ_SLICE = 8 << 20  # bytes parsed per step (and per persisted step) of a refresh
_TAIL = 64  # bytes before the offset remembered to recognise the file


def _lenient(line: bytes) -> Any:
    import json  # upstream's bare NaN literals only

    try:
        return json.loads(line)
    except ValueError:
        return None


class MetricColumns:
    """Columns of one metric file (see the module doc). Thread-safe: hold :attr:`lock` across a
    query so that the rows it sees do not change under it.

    ``cache_dir``: keep the columns and summaries as files there (the server), surviving restarts;
    None keeps them in memory. ``fields``: build only these fields (None: every field).
    ``source``: how the cache names its file (to recognise a cache folder); default the path.
    """

    def __init__(
        self,
        path: Path | str,
        cache_dir: Optional[Path] = None,
        fields: Optional[Iterable[str]] = None,
        source: Optional[str] = None,
    ):
        self.path = Path(path)
        self.source = source or str(self.path)
        self._want = None if fields is None else frozenset(fields)
        self._arrays = DiskArrays(Path(cache_dir)) if cache_dir is not None else MemArrays()
        self.lock = threading.RLock()
        self._clear()  # a cache folder is loaded by the first refresh, under its lock

    # -- state ---------------------------------------------------------------------------------------

    def _clear(self) -> None:
        self.ino: Optional[int] = None
        self.offset = 0
        self._tail = b""
        self.rows = 0
        self.first_index: Optional[int] = None
        self.last_index: Optional[int] = None
        self.fields: Dict[str, FieldInfo] = {}
        self.sealed = 0  # chunks with a summary (the rows after them, fewer than CHUNK, have none yet)

    def _reset(self) -> None:
        self._arrays.wipe()
        self._clear()

    @property
    def contiguous(self) -> bool:
        """Indices are exactly 0..rows-1 (then a row's position is its index)."""
        return self.rows == 0 or (self.first_index == 0 and self.last_index == self.rows - 1)

    def _meta(self) -> dict[str, Any]:
        return {
            "v": _VERSION,
            "source": self.source,
            "ino": self.ino,
            "offset": self.offset,
            "tail": self._tail.hex(),
            "rows": self.rows,
            "first_index": self.first_index,
            "last_index": self.last_index,
            "fields": [f.as_json() for f in self.fields.values()],
        }

    def _load(self) -> None:
        meta = self._arrays.load_meta()
        try:
            if meta is None or meta.get("v") != _VERSION or meta.get("source") != self.source:
                raise ValueError("no cache")
            self.ino, self.offset, self._tail = meta["ino"], int(meta["offset"]), bytes.fromhex(meta["tail"])
            self.rows, self.first_index, self.last_index = int(meta["rows"]), meta["first_index"], meta["last_index"]
            for d in meta["fields"]:
                f = FieldInfo.from_json(d)
                self.fields[f.name] = f
            a = self._arrays
            names = ["idx"] + [f"c{f.slot}" for f in self.fields.values()]
            if any(a.length(n) < self.rows for n in names):
                raise ValueError("cache arrays shorter than their meta")
            for n in names:  # a crash after appending, before the meta: cut back
                a.truncate(n, self.rows)
            want = self.rows // CHUNK
            have = min([a.length("sidx")] + [a.length(f"s{f.slot}") for f in self.fields.values()] + [want])
            for n in ["sidx"] + [f"s{f.slot}" for f in self.fields.values()]:
                a.truncate(n, have)
            self.sealed = have
            self._seal()
        except (ValueError, KeyError, TypeError):
            self._reset()

    # -- growth --------------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Read what was appended since the last call; the number of new rows."""
        with self.lock, self._arrays.locked():
            if self._arrays.persistent:
                self._follow_cache()
            try:
                fh = open(self.path, "rb")
            except FileNotFoundError:
                if self.rows or self.offset:
                    self._reset()
                return 0
            with fh:
                st = os.fstat(fh.fileno())
                if self.ino is not None and (
                    st.st_ino != self.ino or st.st_size < self.offset or not self._same_tail(fh)
                ):
                    self._reset()
                self.ino = st.st_ino
                if st.st_size <= self.offset:
                    return 0
                return self._read_from(fh, st.st_size)

    def _follow_cache(self) -> None:
        """Another process (or an evicted twin of this object) may have moved the cache on."""
        meta = self._arrays.load_meta()
        if meta is None or meta.get("offset") != self.offset or meta.get("rows") != self.rows:
            self._clear()
            self._load()

    def _same_tail(self, fh: BinaryIO) -> bool:
        n = len(self._tail)
        return n == 0 or os.pread(fh.fileno(), n, self.offset - n) == self._tail

    def _read_from(self, fh: BinaryIO, size: int) -> int:
        added = 0
        pos = self.offset
        carry = b""
        while pos < size:
            chunk = os.pread(fh.fileno(), min(_READ_SLICE, size - pos), pos)
            if not chunk:
                break
            pos += len(chunk)
            buf = carry + chunk if carry else chunk
            cut = buf.rfind(b"\n") + 1
            if cut == 0:  # no complete line yet: a long line, or a torn one at the end
                carry = buf
                continue
            carry = buf[cut:]
            added += self._append(buf[:cut])
            self.offset = pos - len(carry)
            self._tail = (self._tail + buf[max(0, cut - _TAIL) : cut])[-_TAIL:]
            if self._arrays.persistent:
                self._arrays.save_meta(self._meta())
        return added

    def _append(self, buf: bytes) -> int:
        idxs, datas = self._parse(buf)
        if not idxs:
            return 0
        n = len(idxs)
        a = self._arrays
        start = self.rows
        keys = set().union(*datas)
        if self._want is not None:
            keys &= self._want
        for key in sorted(keys, key=str):
            info = self.fields.get(key)
            if info is None:
                info = self.fields[key] = FieldInfo(key, len(self.fields))
                if start:  # a field that appears late: no value in the rows before
                    a.append(f"c{info.slot}", np.full(start, MISSING))
                if self.sealed:
                    a.append(f"s{info.slot}", self._empty_sums(self.sealed))
            vals = [d.get(key) for d in datas]
            arr, nonnull, last = column_of(vals)
            info.update(arr, nonnull, last)
            a.append(f"c{info.slot}", arr)
        absent = [f for f in self.fields.values() if f.name not in keys]
        for f in absent:
            a.append(f"c{f.slot}", np.full(n, MISSING))
        a.append("idx", np.array(idxs, dtype=np.int64))
        if self.first_index is None:
            self.first_index = idxs[0]
        self.last_index = idxs[-1]
        self.rows = start + n
        self._seal()
        return n

    @staticmethod
    def _empty_sums(k: int) -> np.ndarray:
        out = np.empty((k, 5))
        out[:] = (0, 0, math.inf, -math.inf, math.nan)
        return out

    def _parse(self, buf: bytes) -> Tuple[List[int], List[dict[str, Any]]]:
        idxs: List[int] = []
        datas: List[dict[str, Any]] = []
        last = -1 if self.last_index is None else self.last_index
        loads = orjson.loads
        for line in buf.split(b"\n"):
            if not line:
                continue
            try:
                rec = loads(line)
            except orjson.JSONDecodeError:
                rec = _lenient(line)
            if type(rec) is not dict:
                continue  # a corrupt or torn line (the local reader skips it too)
            i = rec.get("index")
            if type(i) is not int:
                if type(i) is str and i.isdigit():  # some upstream versions wrote it as a string
                    i = int(i)
                else:
                    continue
            if i <= last:
                continue
            d = rec.get("data")
            idxs.append(i)
            datas.append(d if type(d) is dict else {})
            last = i
        return idxs, datas

    def _seal(self) -> None:
        """Summarise every complete chunk that has no summary yet."""
        have, want = self.sealed, self.rows // CHUNK
        if want <= have:
            return
        a = self._arrays
        lo, hi = have * CHUNK, want * CHUNK
        idx = a.read("idx", lo, hi).reshape(want - have, CHUNK)
        a.append("sidx", np.stack([idx[:, 0], idx[:, -1]], axis=1))
        for f in self.fields.values():
            a.append(f"s{f.slot}", chunk_stats(a.read(f"c{f.slot}", lo, hi).reshape(want - have, CHUNK)))
        self.sealed = want

    # -- reading ---------------------------------------------------------------------------------------

    def field(self, name: str) -> Optional[FieldInfo]:
        return self.fields.get(name)

    def index(self, start: int, stop: int) -> np.ndarray:
        """Row indices of positions ``start..stop-1``."""
        stop = min(stop, self.rows)
        if self.contiguous:
            return np.arange(start, max(start, stop), dtype=np.int64)
        return self._arrays.read("idx", start, stop)

    def values(self, name: str, start: int, stop: int) -> np.ndarray:
        """Values of a field at positions ``start..stop-1`` (MISSING where a row has no number)."""
        return self._arrays.read(f"c{self.fields[name].slot}", start, stop)

    def summaries(self, name: str, first: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """(chunks x 5) summaries of a field's chunks ``first..stop-1`` (default: every sealed one)."""
        stop = self.sealed if stop is None else min(stop, self.sealed)
        return self._arrays.read(f"s{self.fields[name].slot}", first, stop)

    def chunk_index(self, first: int = 0, stop: Optional[int] = None) -> np.ndarray:
        """(chunks x 2) first and last row index of chunks ``first..stop-1``."""
        stop = self.sealed if stop is None else min(stop, self.sealed)
        return self._arrays.read("sidx", first, stop)

    def position_of_index(self, value: float, side: str = "left") -> int:
        """Position of the first row whose index is >= value (side 'left') or > value ('right')."""
        if self.rows == 0:
            return 0
        if self.contiguous:
            first = self.first_index or 0
            v = math.ceil(value) if side == "left" else math.floor(value) + 1
            return int(min(max(v - first, 0), self.rows))
        lasts = self.chunk_index()[:, 1]
        c = int(np.searchsorted(lasts, value, side=side))  # the first chunk that may hold it
        lo = c * CHUNK
        hi = min(lo + CHUNK, self.rows) if c < self.sealed else self.rows
        return lo + int(np.searchsorted(self._arrays.read("idx", lo, hi), value, side=side))
