"""Named append-only arrays, in memory or as files in a cache folder (the column cache's storage).

Each name has a fixed dtype and row width: ``idx`` (int64 row indices), ``sidx`` (int64, first and
last index per chunk), ``c<slot>`` (float64 values of one field), ``s<slot>`` (float64, 5 summary
numbers per chunk). A cache folder also holds ``meta.json``, which says how many rows are valid: an
array file longer than that (a crash between appending and writing the meta) is cut back on load.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from .._store._jsonio import atomic_write_json, read_json

__all__ = ["MemArrays", "DiskArrays", "spec"]


def spec(name: str) -> Tuple[Any, int]:
    """(dtype, values per row) of an array name."""
    if name == "idx":
        return np.int64, 1
    if name == "sidx":
        return np.int64, 2
    if name.startswith("s"):
        return np.float64, 5
    return np.float64, 1


class _Grow:
    """A numpy array with spare capacity: appends are amortised O(1)."""

    __slots__ = ("a", "n")

    def __init__(self, dtype: Any, width: int):
        self.a = np.empty((64, width) if width > 1 else 64, dtype=dtype)
        self.n = 0

    def extend(self, block: np.ndarray) -> None:
        need = self.n + len(block)
        if need > len(self.a):
            bigger = np.empty((max(need, 2 * len(self.a)),) + self.a.shape[1:], dtype=self.a.dtype)
            bigger[: self.n] = self.a[: self.n]
            self.a = bigger
        self.a[self.n : need] = block
        self.n = need


class MemArrays:
    """Arrays held in memory; nothing persists (the SDK's local reads, the CLI)."""

    persistent = False

    def __init__(self) -> None:
        self._arrays: Dict[str, _Grow] = {}
        self.meta: Optional[dict[str, Any]] = None

    def length(self, name: str) -> int:
        g = self._arrays.get(name)
        return 0 if g is None else g.n

    def append(self, name: str, block: np.ndarray) -> None:
        g = self._arrays.get(name)
        if g is None:
            g = self._arrays[name] = _Grow(*spec(name))
        g.extend(block)

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        g = self._arrays.get(name)
        if g is None:
            dtype, width = spec(name)
            return np.empty((0, width) if width > 1 else 0, dtype=dtype)
        return g.a[start : min(stop, g.n)]

    def truncate(self, name: str, rows: int) -> None:
        g = self._arrays.get(name)
        if g is not None:
            g.n = min(g.n, rows)

    def wipe(self) -> None:
        self._arrays.clear()
        self.meta = None

    def load_meta(self) -> Optional[dict[str, Any]]:
        return self.meta

    def locked(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def save_meta(self, meta: dict[str, Any]) -> None:
        self.meta = meta


class DiskArrays:
    """Arrays as raw files in ``folder`` (the server's sidecar cache); read back with preads."""

    persistent = True

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.bin"

    def length(self, name: str) -> int:
        dtype, width = spec(name)
        try:
            return os.stat(self._path(name)).st_size // (np.dtype(dtype).itemsize * width)
        except FileNotFoundError:
            return 0

    def append(self, name: str, block: np.ndarray) -> None:
        dtype, _ = spec(name)
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self._path(name), "ab") as fh:
            fh.write(np.ascontiguousarray(block, dtype=dtype).tobytes())

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        dtype, width = spec(name)
        size = np.dtype(dtype).itemsize * width
        count = max(0, stop - start)
        try:
            with open(self._path(name), "rb") as fh:
                raw = os.pread(fh.fileno(), count * size, start * size) if count else b""
        except FileNotFoundError:
            raw = b""
        out = np.frombuffer(raw, dtype=dtype)
        return out.reshape(-1, width) if width > 1 else out

    def truncate(self, name: str, rows: int) -> None:
        dtype, width = spec(name)
        size = rows * np.dtype(dtype).itemsize * width
        p = self._path(name)
        try:
            if os.stat(p).st_size > size:
                os.truncate(p, size)
        except FileNotFoundError:
            pass

    def wipe(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """An exclusive lock on the cache folder, shared with other processes (two servers on one
        root, a server and ``ml-dash dashboard``)."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.folder) + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def load_meta(self) -> Optional[dict[str, Any]]:
        meta = read_json(self.folder / "meta.json")
        return meta if isinstance(meta, dict) else None

    def save_meta(self, meta: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # A cache: no fsync. A meta that did not reach the disk means rows are parsed again.
        atomic_write_json(self.folder / "meta.json", meta, fsync=False)
