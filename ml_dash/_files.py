"""File ids, content snapshots and the FileInfo record."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping

from ._atomic import replacing

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

    Source = Union[str, os.PathLike[str], bytes, bytearray, memoryview]
    _Entry = Mapping[str, Any]  # FileInfo's base, parametrized for type checkers only
else:  # importable for annotations elsewhere, without importing typing at run time
    Source = "str | os.PathLike | bytes | bytearray | memoryview"
    _Entry = Mapping

__all__ = ["FileInfo", "new_file_id", "snapshot", "Source"]

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


_FILE_FIELDS = (
    "id",
    "path",
    "filename",
    "checksum",
    "size",
    "content_type",
    "description",
    "tags",
    "metadata",
    "uploaded_at",
)


class FileInfo(_Entry):
    """A stored file: what ``files(...).save()`` returns and ``files.list()`` lists.

    Attributes (``info.size``) and, as upstream's dict, a read-only mapping of the stored entry:
    ``info["sizeBytes"]``, ``"checksum" in info``, ``dict(info)``, iteration over its keys. Compares
    by value. (A plain class: a dataclass costs milliseconds at import.)
    """

    __slots__ = (*_FILE_FIELDS, "_entry")
    # The slots' types (annotations only: no class attributes, nothing evaluated at run time)
    id: str
    path: str
    filename: str
    checksum: str
    size: int
    content_type: Optional[str]
    description: Optional[str]
    tags: List[str]
    metadata: Optional[Dict[str, Any]]
    uploaded_at: Optional[str]
    _entry: Dict[str, Any]

    def __init__(
        self,
        id: str,
        path: str,
        filename: str,
        checksum: str,
        size: int,
        content_type: Optional[str] = None,
        description: Optional[str] = None,
        tags: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
        uploaded_at: Optional[str] = None,
        entry: Optional[Dict[str, Any]] = None,
    ):
        values = (
            id,
            path,
            filename,
            checksum,
            size,
            content_type,
            description,
            list(tags or []),
            metadata,
            uploaded_at,
        )
        for name, value in zip(_FILE_FIELDS, values):
            object.__setattr__(self, name, value)
        if entry is None:
            entry = {
                "id": id,
                "path": path,
                "filename": filename,
                "description": description,
                "tags": list(tags or []),
                "contentType": content_type,
                "sizeBytes": size,
                "checksum": checksum,
                "metadata": metadata,
                "uploadedAt": uploaded_at,
            }
        object.__setattr__(self, "_entry", dict(entry))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"FileInfo is read-only ({name})")

    # -- the mapping: the stored entry (upstream's keys) ------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        try:
            return self._entry[key]
        except KeyError:
            if key in _FILE_FIELDS:  # our attribute names, as this mapping accepted before
                return getattr(self, key)
            raise

    def __iter__(self) -> Iterator[str]:
        return iter(self._entry)

    def __len__(self) -> int:
        return len(self._entry)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FileInfo):
            return self.as_dict() == other.as_dict()
        return Mapping.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]  # holds a list and a dict

    def __repr__(self) -> str:
        return f"FileInfo(id={self.id!r}, path={self.path!r}, filename={self.filename!r}, size={self.size}, checksum={self.checksum[:12]!r}...)"

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
            entry=e,
        )

    def as_dict(self) -> Dict[str, Any]:
        """Our attribute names and values (``dict(info)`` gives the stored entry instead)."""
        return {name: getattr(self, name) for name in _FILE_FIELDS}
