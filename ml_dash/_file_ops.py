"""``exp.files``: store files (bytes copied at the call), list, download."""

from __future__ import annotations

import os
import time

from ._errors import InvalidValue
from ._events import FileEvent
from ._files import FileInfo, new_file_id
from ._names import check_filename, check_relpath
from ._values import normalize_fields

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Union
    from pathlib import Path

    from ._files import Source
    from ._recorder import Recorder

__all__ = ["Files", "FileScope"]


class FileScope:
    """``exp.files(path)``: files under one logical folder such as ``"models"``."""

    def __init__(self, rec: Recorder, path: str):
        self._rec = rec
        self._path = "/" + check_relpath(path, "file path") if path.strip("/") else "/"

    def save(
        self,
        source: Source,
        *,
        name: Optional[str] = None,
        description: Optional[str] = None,
        tags: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> FileInfo:
        """Store a file (a path, or bytes with ``name=``). The content is copied now; returns its FileInfo."""
        rec = self._rec
        rec.require_running()
        if isinstance(source, (bytes, bytearray, memoryview)):
            if name is None:
                raise ValueError("saving bytes needs a file name: files(...).save(data, name='weights.bin')")
        elif isinstance(source, (str, os.PathLike)):
            if not os.path.isfile(source):
                raise FileNotFoundError(f"no such file: {source}")
            name = name or os.path.basename(os.fspath(source))
        else:
            raise InvalidValue(f"files.save takes a path or bytes, got {type(source).__name__}")
        check_filename(name)
        md = normalize_fields(metadata, rec.config.max_string_bytes, "file metadata") if metadata else None
        import mimetypes  # lazily: it reads the system's type tables

        file_id = new_file_id()
        entry: Dict[str, Any] = {
            "id": file_id,
            "experimentId": rec.prefix,
            "path": self._path,
            "filename": name,
            "description": description,
            "tags": list(tags or []),
            "bindrs": [],
            "contentType": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "sizeBytes": 0,
            "checksum": "",
            "metadata": md,
        }
        size, checksum = rec.stage_file(source, entry)
        from ._store._jsonio import iso_utc

        now = iso_utc()
        entry.update(sizeBytes=size, checksum=checksum, uploadedAt=now, updatedAt=now, deletedAt=None)
        rec.pipe.put(FileEvent(time.time(), entry))
        return FileInfo.from_entry(entry)

    def list(self) -> List[FileInfo]:
        """Files under this folder (and its sub-folders), oldest first."""
        return [FileInfo.from_entry(e) for e in self._rec.reader().files(self._path)]

    def download(self, file: Union[FileInfo, str], dest: Union[str, os.PathLike, None] = None) -> Path:
        """Copy a stored file to ``dest`` (a path or folder; default: its file name in the working folder)."""
        from pathlib import Path

        reader = self._rec.reader()
        wanted = file.id if isinstance(file, FileInfo) else str(file)
        for entry in reader.files(None):
            if str(entry.get("id")) == wanted:
                target = Path(dest) if dest is not None else Path(entry["filename"])
                if target.is_dir():
                    target = target / entry["filename"]
                return reader.download(entry, target)
        raise FileNotFoundError(f"no file with id {wanted} in {self._rec.prefix}")


class Files(FileScope):
    """``exp.files``: ``exp.files("models").save(...)``; ``exp.files.save(...)`` stores at the top."""

    def __init__(self, rec: Recorder):
        super().__init__(rec, "")

    def __call__(self, path: str = "") -> FileScope:
        return FileScope(self._rec, path)
