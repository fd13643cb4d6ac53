"""Small file primitives: atomic JSON writes, tolerant JSON reads, tail scans, inter-process locks."""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import time
from contextlib import contextmanager

import orjson

from .._atomic import replacing

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, BinaryIO, Iterator, Optional

__all__ = [
    "iso_utc",
    "atomic_write_json",
    "read_json",
    "loads_lenient",
    "locked",
    "last_value_of",
    "ensure_newline_end",
]


_second_cache = [-1, ""]  # [whole second, its "YYYY-mm-ddTHH:MM:SS"]: log lines come many per second


def iso_utc(ts: Optional[float] = None) -> str:
    """ISO 8601 UTC with microseconds and a trailing Z, as upstream writes it."""
    if ts is None:
        ts = time.time()
    whole = int(ts // 1)
    micros = int(round((ts - whole) * 1e6))
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    cache = _second_cache
    if cache[0] != whole:
        # one list store: a racing thread sees the old pair or the new, never half of each
        cache[:] = [whole, _dt.datetime.fromtimestamp(whole, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")]
        prefix = cache[1]
    else:
        prefix = cache[1]
    return f"{prefix}.{micros:06d}Z"


def loads_lenient(raw: bytes | str) -> Any:
    """orjson first; the stdlib for upstream's bare NaN/Infinity literals."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        import json  # only for upstream files with bare NaN literals

        return json.loads(raw)


def read_json(path: Path, default: Any = None) -> Any:
    """A JSON file's content, or ``default`` when it is missing, empty or truncated (upstream defect)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return default
    if not raw.strip():
        return default
    try:
        return loads_lenient(raw)
    except ValueError:
        return default


def atomic_write_json(path: Path, value: Any, *, fsync: bool = True) -> None:
    """Replace a JSON file atomically (temp file + rename): readers never see half a file."""
    with replacing(path, fsync=fsync) as fh:
        fh.write(orjson.dumps(value, option=orjson.OPT_INDENT_2))


@contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock shared by every process writing one experiment."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except FileNotFoundError:  # its folder is not there yet (a mkdir every time costs each batch)
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_TAIL_CHUNK = 1 << 16


def last_value_of(path: Path, key: str) -> Optional[int]:
    """The largest integer ``key`` among the last complete lines of a JSONL file, or None.

    Reads backwards in chunks until a line parses, so a torn last line (a crash mid-write)
    is skipped rather than trusted.
    """
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return None
    with fh:
        end = fh.seek(0, os.SEEK_END)
        pos, buf = end, b""
        while pos > 0:
            step = min(_TAIL_CHUNK, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
            lines = buf.split(b"\n")
            # lines[0] may be cut at the chunk edge unless we reached the start of the file.
            candidates = lines if pos == 0 else lines[1:]
            best = None
            for line in reversed(candidates):
                if not line.strip():
                    continue
                try:
                    value = loads_lenient(line).get(key)
                except (ValueError, AttributeError):
                    continue
                if isinstance(value, int):
                    best = value if best is None else max(best, value)
                    # Upstream could write duplicate or unordered indices in a failed batch;
                    # look at the rest of this chunk too, then stop.
            if best is not None:
                return best
        return None


def ensure_newline_end(fh: BinaryIO) -> None:
    """Before appending to a JSONL file opened 'ab': end a torn last line so it cannot swallow ours."""
    size = fh.seek(0, os.SEEK_END)
    if size == 0:
        return
    fd = fh.fileno()
    if os.pread(fd, 1, size - 1) != b"\n":
        fh.write(b"\n")
