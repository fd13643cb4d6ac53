"""File ids, content snapshots and the FileInfo record."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from ._atomic import replacing

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["FileInfo", "new_file_id", "snapshot", "Source"]

Source = Union[str, os.PathLike, bytes, bytearray, memoryview]

_id_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_file_id() -> str:
    """A snowflake id, ``(unix_ms << 12) | 12 bits``: random start, then counting within one millisecond."""
    global _last_ms, _seq
    with _id_lock:
        ms = int(time.time() * 1000)
        if ms <= _last_ms:
            ms = _last_ms
            _seq += 1
            if _seq >= 4096:  # more than 4096 ids in one ms: borrow the next ms
                ms, _seq = ms + 1, _random_bits(8)
        else:
            _seq = _random_bits(11)
        _last_ms = ms
        return str((ms << 12) | _seq)


def _random_bits(n: int) -> int:
    return int.from_bytes(os.urandom(2), "little") >> (16 - n)


_CHUNK = 1 << 20


def snapshot(source: Source, dest: Path) -> Tuple[int, str]:
    """Copy ``source`` (a path or bytes) to ``dest`` while hashing it; returns (size, sha256 hex).

    The copy is taken now, so later changes to the user's file cannot alter what was saved; the
    user's file is never moved or deleted. ``dest`` appears only when complete (temp + rename).
    """
    import hashlib  # file saves are rare: keep it off the import path

    digest = hashlib.sha256()
    size = 0
    with replacing(dest) as out:
        if isinstance(source, (bytes, bytearray, memoryview)):
            view = memoryview(source)
            digest.update(view)
            out.write(view)
            size = view.nbytes
        else:
            with open(source, "rb") as src:
                while True:
                    chunk = src.read(_CHUNK)
                    if not chunk:
                        break
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
    return size, digest.hexdigest()


@dataclass(frozen=True)
class FileInfo:
    """A stored file: what ``files(...).save()`` returns and ``files.list()`` lists."""

    id: str
    path: str
    filename: str
    checksum: str
    size: int
    content_type: Optional[str] = None
    description: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    metadata: Optional[Dict[str, Any]] = None
    uploaded_at: Optional[str] = None

    @classmethod
    def from_entry(cls, e: Dict[str, Any]) -> "FileInfo":
        return cls(
            id=str(e["id"]),
            path=str(e.get("path") or "/"),
            filename=str(e["filename"]),
            checksum=str(e.get("checksum") or ""),
            size=int(e.get("sizeBytes") or 0),
            content_type=e.get("contentType"),
            description=e.get("description"),
            tags=list(e.get("tags") or []),
            metadata=e.get("metadata"),
            uploaded_at=e.get("uploadedAt"),
        )

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def __getitem__(self, key: str) -> Any:  # upstream returned dicts; keep info["id"] working
        return getattr(self, key)
