"""``exp.files``: store files (bytes copied at the call), list, download, delete; upstream's calls too.

``exp.files(dir)`` names a folder (``"models"``) or, for the calls that act on one file
(``download()``, ``exists()``, ``read_text()``, ``delete()``), a file path (``"configs/a.yaml"``).
Every save copies the bytes at the call (later changes to your file do not matter, your file is
never moved or deleted) and queues a :class:`~ml_dash._events.FileEvent`; a delete queues a
:class:`~ml_dash._events.FileDeleteEvent` (a soft delete: ``deletedAt`` is set, the bytes stay).
Saving to a path and file name that a live file already has replaces it the same way: the older
entry is marked deleted, so a listing shows the newest, and nothing is ever removed.

The saving calls (``save``, ``upload``, the ``save_*`` helpers) live in :mod:`._file_save`, whose
mixin :class:`FileScope` inherits; this module finds, reads, downloads, updates and deletes stored
files, and is the one the rest of the package imports.
"""

from __future__ import annotations

import time

from ._errors import InvalidValue
from ._events import FileDeleteEvent, FileUpdateEvent
from ._file_save import FileSaving, NoSuchSource, join_path
from ._files import FileInfo
from ._names import check_file_path
from ._values import normalize_fields

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    import os
    from pathlib import Path
    from typing import Any, Dict, List, Optional, Union

    from ._recorder import Recorder

__all__ = ["Files", "FileScope", "NoSuchSource"]

_GLOB = ("*", "?", "[")


def _full(entry: Dict[str, Any]) -> str:
    """A stored file's path and name without the leading ``/``: ``models/w.bin``."""
    return (str(entry.get("path") or "/").rstrip("/") + "/" + str(entry["filename"])).lstrip("/")


class FileScope(FileSaving):
    """``exp.files(dir)``: files under one logical folder such as ``"models"``, or one file path."""

    def __init__(
        self,
        rec: Recorder,
        path: str = "",
        *,
        file_id: Optional[str] = None,
        description: Optional[str] = None,
        tags: Optional[List[str]] = None,
        bindrs: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
        prefix: Optional[str] = None,
        dest_path: Optional[str] = None,
        file_path: Optional[str] = None,
    ):
        self._rec = rec
        path = path if path else (prefix or "")
        if not isinstance(path, str):
            raise InvalidValue(f"a files path is a str, got {type(path).__name__}")
        self._path = "/" + check_file_path(path) if path.strip("/") else "/"
        self._file_id = None if file_id is None else str(file_id)
        self._description = description
        self._tags = tags
        self._bindrs = list(bindrs or [])
        self._metadata = metadata
        self._dest = dest_path
        self._source = file_path

    @property
    def path(self) -> str:
        return self._path

    # -- saving: FileSaving's calls, and a copy of a stored file (here: it reads one first) ------------

    def duplicate(self, source: Any, to: str) -> FileInfo:
        """Store a copy of a stored file (a FileInfo, entry dict or id) at ``to`` (path and name)."""
        entry = self._entry_by_id(source.get("id") if hasattr(source, "get") else str(source))
        folder, name = self._target(to, None)
        return self._store(self._bytes(entry), folder, name, entry.get("description"), None, entry.get("metadata"))

    # -- finding stored files --------------------------------------------------------------------------

    def _entries(self) -> List[Dict[str, Any]]:
        return self._rec.reader().files(None)

    def _under(self, entries: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        if self._path == "/":
            return entries
        want = self._path
        return [
            e for e in entries if str(e.get("path") or "/") == want or str(e.get("path") or "").startswith(want + "/")
        ]

    def _entry_by_id(self, file_id: str) -> Dict[str, Any]:
        for entry in self._entries():
            if str(entry.get("id")) == file_id:
                return entry
        raise FileNotFoundError(f"no file with id {file_id} in {self._rec.prefix}")

    def _find(self, rel: Optional[str] = None) -> Optional[Dict[str, Any]]:
        """The live file at this scope's path (joined with ``rel``), else the only one of that name."""
        if self._file_id is not None and rel is None:
            try:
                return self._entry_by_id(self._file_id)
            except FileNotFoundError:
                return None
        want = join_path(self._path, rel or "").lstrip("/")
        if not want:
            raise ValueError("name a file: files('path/to/file').download(), or files.download('path/to/file')")
        entries = self._entries()
        exact = [e for e in entries if _full(e) == want]
        if exact:
            return exact[-1]
        same_name = [e for e in entries if e.get("filename") == want]
        return same_name[0] if len(same_name) == 1 else None

    def _matching(self, pattern: str) -> List[Dict[str, Any]]:
        import fnmatch  # imports re: not at `import ml_dash`

        pattern = pattern.lstrip("/")
        base = self._path.strip("/")
        out = []
        for e in self._under(self._entries()):
            full = _full(e)
            rel = full[len(base) + 1 :] if base else full
            if (
                fnmatch.fnmatchcase(e["filename"], pattern)
                or fnmatch.fnmatchcase(rel, pattern)
                or fnmatch.fnmatchcase(full, pattern)
            ):
                out.append(e)
        return out

    def _bytes(self, entry: Dict[str, Any]) -> bytes:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="ml-dash-") as tmp:
            return self._rec.reader().download(entry, Path(tmp) / "file").read_bytes()

    # -- reading ---------------------------------------------------------------------------------------

    def list(self, pattern: Optional[str] = None) -> List[FileInfo]:
        """Files under this folder (and its sub-folders), oldest first; ``pattern`` (a glob) matches
        the file name or its path below this folder (``"*.png"``, ``"models/*"``)."""
        entries = self._matching(pattern) if pattern else self._under(self._entries())
        return [FileInfo.from_entry(e) for e in entries]

    def exists(self) -> bool:
        """Whether a live file is stored at this path (``files("configs/a.yaml").exists()``)."""
        return self._find() is not None

    def read_text(self, encoding: str = "utf-8") -> str:
        """The stored file at this path, as text."""
        entry = self._find()
        if entry is None:
            raise FileNotFoundError(f"no file {self._path.lstrip('/')!r} in {self._rec.prefix}")
        return self._bytes(entry).decode(encoding)

    def download(
        self,
        file: Any = None,
        dest: Union[str, os.PathLike[str], None] = None,
        *,
        to: Union[str, os.PathLike[str], None] = None,
    ) -> Union[Path, List[Path]]:
        """Copy stored file(s) out; returns the path (a list of paths for a glob).

        ``file``: a FileInfo, an id, a path below this folder, or a glob (``"*.png"``: every match,
        into the folder ``to``); none: the file this scope names (``files("a/b.txt").download()``).
        ``dest`` / ``to``: a path or a folder (default: the file's name in the working folder).
        """
        from pathlib import Path

        if dest is not None and to is not None:
            raise ValueError("dest and to= are the same thing: give one")
        dest = to if to is not None else (dest if dest is not None else self._dest)
        reader = self._rec.reader()
        if isinstance(file, str) and any(ch in file for ch in _GLOB):
            matches = self._matching(file)
            if not matches:
                raise FileNotFoundError(f"no file matches {file!r} under {self._path} in {self._rec.prefix}")
            folder = Path(dest) if dest is not None else Path(".")
            folder.mkdir(parents=True, exist_ok=True)
            return [reader.download(e, folder / e["filename"]) for e in matches]
        entry: Optional[Dict[str, Any]]
        if hasattr(file, "get") and file.get("id") is not None:  # a FileInfo or an entry dict
            entry = self._entry_by_id(str(file.get("id")))
        elif file is None:
            entry = self._find()
        else:
            ids = {str(e.get("id")): e for e in self._entries()}
            entry = ids.get(str(file)) or self._find(str(file))
        if entry is None:
            raise FileNotFoundError(f"no file {file if file is not None else self._path!r} in {self._rec.prefix}")
        target = Path(dest) if dest is not None else Path(entry["filename"])
        if target.is_dir():
            target = target / entry["filename"]
        return reader.download(entry, target)

    def update(self) -> Dict[str, Any]:
        """Replace the description, tags or metadata given to ``files(file_id=..., description=...,
        tags=..., metadata=...)`` on that stored file (upstream's call); returns the new entry."""
        rec = self._rec
        rec.require_running()
        entry = self._find()
        if entry is None:
            raise FileNotFoundError(f"no file {self._file_id or self._path!r} in {rec.prefix}")
        changes: Dict[str, Any] = {}
        if self._description is not None:
            changes["description"] = self._description
        if self._tags is not None:
            if isinstance(self._tags, str) or not all(isinstance(t, str) for t in self._tags):
                raise InvalidValue("file tags must be a list of str")
            changes["tags"] = list(self._tags)
        if self._metadata is not None:
            changes["metadata"] = normalize_fields(self._metadata, rec.config.max_string_bytes, "file metadata")
        from ._store._jsonio import iso_utc

        now = time.time()
        rec.pipe.put(FileUpdateEvent(now, str(entry["id"]), changes))
        return {**entry, **changes, "updatedAt": iso_utc(now)}

    # -- deleting --------------------------------------------------------------------------------------

    def delete(self, pattern: Optional[str] = None) -> Union[Dict[str, Any], List[Dict[str, Any]]]:
        """Delete (soft: the entry gets ``deletedAt``, the bytes stay) the file this scope names, or
        every file matching ``pattern``; returns ``{"id", "deletedAt"}`` (a list for a pattern)."""
        rec = self._rec
        rec.require_running()
        if pattern is not None:
            if not any(ch in pattern for ch in _GLOB):
                entry = self._find(pattern)
                return self._delete([entry] if entry else [], pattern)[0]
            return self._delete(self._matching(pattern), pattern)
        entry = self._find()
        return self._delete([entry] if entry else [], self._file_id or self._path)[0]

    def _delete(self, entries: List[Dict[str, Any]], what: str) -> List[Dict[str, Any]]:
        if not entries:
            raise FileNotFoundError(f"no file {what!r} in {self._rec.prefix}")
        from ._store._jsonio import iso_utc

        out = []
        for entry in entries:
            now = time.time()
            self._rec.pipe.put(FileDeleteEvent(now, str(entry["id"])))
            out.append({"id": str(entry["id"]), "deletedAt": iso_utc(now)})
        return out


class Files(FileScope):
    """``exp.files``: ``exp.files("models").save(...)``; ``exp.files.save(...)`` stores at the top.

    ``exp.files(dir, bindrs=[...], description=..., tags=..., metadata=...)`` and
    ``exp.files(file_id=...)`` are upstream's forms.
    """

    def __init__(self, rec: Recorder):
        super().__init__(rec, "")

    def __call__(self, path: Optional[str] = None, *, dir: Optional[str] = None, **options: Any) -> FileScope:
        if path is not None and dir is not None:
            raise ValueError("path and dir= are the same thing: give one")
        return FileScope(self._rec, (path if path is not None else dir) or "", **options)
