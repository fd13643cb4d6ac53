"""``exp.files``: store files (bytes copied at the call), list, download, delete; upstream's calls too.

``exp.files(dir)`` names a folder (``"models"``) or, for the calls that act on one file
(``download()``, ``exists()``, ``read_text()``, ``delete()``), a file path (``"configs/a.yaml"``).
Every save copies the bytes at the call (later changes to your file do not matter, your file is
never moved or deleted) and queues a :class:`~ml_dash._events.FileEvent`; a delete queues a
:class:`~ml_dash._events.FileDeleteEvent` (a soft delete: ``deletedAt`` is set, the bytes stay).
Saving to a path and file name that a live file already has replaces it the same way: the older
entry is marked deleted, so a listing shows the newest, and nothing is ever removed.

Object savers (``save_torch``, ``save_pkl``, ``save_image``, ``save_fig``, ``save_video``) import
their library only when called, and say which package to install when it is missing.
"""

from __future__ import annotations

import os
import time

from . import _savers
from ._errors import InvalidValue
from ._events import FileDeleteEvent, FileEvent, FileUpdateEvent
from ._files import FileInfo, new_file_id
from ._names import check_file_path, check_filename
from ._values import normalize_fields

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Dict, List, Optional, Tuple, Union

    from ._files import Source
    from ._recorder import Recorder

__all__ = ["Files", "FileScope", "NoSuchSource"]

_GLOB = ("*", "?", "[")


class NoSuchSource(FileNotFoundError, ValueError):
    """``save("path")`` of a path that is not a file (a ValueError too, as upstream raised)."""


def _join(folder: str, rel: str) -> str:
    """``/models`` + ``a/b`` -> ``/models/a/b`` (checked segments); ``/`` + ``""`` -> ``/``."""
    parts = [p for p in (folder.strip("/"), rel.strip("/")) if p]
    return "/" + check_file_path("/".join(parts)) if parts else "/"


def _full(entry: Dict[str, Any]) -> str:
    """A stored file's path and name without the leading ``/``: ``models/w.bin``."""
    return (str(entry.get("path") or "/").rstrip("/") + "/" + str(entry["filename"])).lstrip("/")


class FileScope:
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

    # -- saving ----------------------------------------------------------------------------------------

    def _store(
        self,
        source: Source,
        folder: str,
        name: str,
        description: Optional[str],
        tags: Optional[List[str]],
        metadata: Optional[Dict[str, Any]],
    ) -> FileInfo:
        rec = self._rec
        rec.require_running()
        check_filename(name)
        description = self._description if description is None else description
        tags = self._tags if tags is None else tags
        metadata = self._metadata if metadata is None else metadata
        if tags is not None and (isinstance(tags, str) or not all(isinstance(t, str) for t in tags)):
            raise InvalidValue("file tags must be a list of str")
        md = normalize_fields(metadata, rec.config.max_string_bytes, "file metadata") if metadata else None
        import mimetypes  # lazily: it reads the system's type tables

        entry: Dict[str, Any] = {
            "id": new_file_id(),
            "experimentId": rec.prefix,
            "path": folder,
            "filename": name,
            "description": description,
            "tags": list(tags or []),
            "bindrs": list(self._bindrs),
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

    def _target(self, to: Optional[str], default_name: Optional[str]) -> Tuple[str, str]:
        """(folder, file name) for ``to`` (a name, or a relative path whose folders join this scope's)."""
        if to is None:
            if default_name is None:
                raise ValueError("this save needs a file name: to='weights.bin'")
            return self._path, default_name
        if not isinstance(to, str) or not to.strip("/"):
            raise InvalidValue(f"to= is a file name or relative path, got {to!r}")
        folder, _, name = to.strip("/").rpartition("/")
        return _join(self._path, folder), name

    def save(
        self,
        source: Any = None,
        *,
        to: Optional[str] = None,
        name: Optional[str] = None,
        description: Optional[str] = None,
        tags: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> FileInfo:
        """Store ``source``: a path to a file, bytes, a dict or list (as JSON), or a numpy array (as an
        image). ``to=`` (or ``name=``) names it; a path keeps its own name by default. Text goes
        through :meth:`save_text`. Returns the FileInfo (also a mapping, as upstream's dict)."""
        if name is not None:
            if to is not None and name != to:
                raise ValueError("name= and to= name the same thing: give one")
            check_filename(name)  # name= is one segment; to= may add folders (upstream's form)
            to = name
        if source is None:
            source = self._source
            if source is None:
                raise ValueError("nothing to save: files(...).save(path_or_bytes, to=...)")
        if isinstance(source, (bytes, bytearray, memoryview)):
            if to is None:
                raise ValueError("saving bytes needs a file name: files(...).save(data, to='weights.bin')")
            folder, fname = self._target(to, None)
            return self._store(source, folder, fname, description, tags, metadata)
        if isinstance(source, (str, os.PathLike)):
            if not os.path.isfile(source):
                raise NoSuchSource(
                    f"no such file: {os.fspath(source)!r} (save text with files.save_text(text, to=...))"
                )
            folder, fname = self._target(to, os.path.basename(os.fspath(source)))
            return self._store(source, folder, fname, description, tags, metadata)
        if isinstance(source, (dict, list)):
            if to is None:
                raise ValueError("saving a dict or list needs a file name: to='config.json'")
            return self._save_json(source, to, description, tags, metadata)
        if hasattr(source, "__array__") and hasattr(source, "shape") and hasattr(source, "dtype"):
            if to is None:
                raise ValueError("saving an array needs an image file name: to='frame.png'")
            return self.save_image(source, to=to)
        raise InvalidValue(
            f"files.save takes a path, bytes, a dict or list, or a numpy array, got {type(source).__name__}"
        )

    def upload(
        self,
        fpath: Union[str, os.PathLike[str]],
        *,
        to: Optional[str] = None,
        description: Optional[str] = None,
        tags: Optional[List[str]] = None,
        metadata: Optional[Dict[str, Any]] = None,
    ) -> FileInfo:
        """Store an existing file (upstream's call); ``to`` renames it (a relative path adds folders)."""
        if not isinstance(fpath, (str, os.PathLike)):
            raise InvalidValue(f"upload takes a path, got {type(fpath).__name__}")
        return self.save(fpath, to=to, description=description, tags=tags, metadata=metadata)

    def save_blob(self, data: Union[bytes, bytearray, memoryview], *, to: str) -> FileInfo:
        """Store bytes as ``to``."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidValue(f"save_blob takes bytes, got {type(data).__name__}")
        folder, name = self._target(to, None)
        return self._store(data, folder, name, None, None, None)

    def save_text(self, content: str, *, to: str, encoding: str = "utf-8") -> FileInfo:
        """Store text (UTF-8) as ``to``."""
        if not isinstance(content, str):
            raise InvalidValue(f"save_text takes a str, got {type(content).__name__}")
        return self.save_blob(content.encode(encoding), to=to)

    def save_json(self, content: Any, *, to: str) -> FileInfo:
        """Store a JSON-serializable value as ``to`` (strict JSON: NaN and infinities are refused)."""
        return self._save_json(content, to, None, None, None)

    def _save_json(
        self,
        content: Any,
        to: str,
        description: Optional[str],
        tags: Optional[List[str]],
        metadata: Optional[Dict[str, Any]],
    ) -> FileInfo:
        import json

        try:
            text = json.dumps(content, indent=2, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidValue(f"save_json: {exc} (strict JSON: no NaN or infinities)") from None
        folder, name = self._target(to, None)
        return self._store(text.encode("utf-8"), folder, name, description, tags, metadata)

    def save_pkl(self, content: Any, *, to: str) -> FileInfo:
        """Store a pickled object as ``to``."""
        return self.save_blob(_savers.pickle_bytes(content), to=to)

    def save_torch(self, obj: Any, *, to: str) -> FileInfo:
        """Store ``torch.save(obj)`` as ``to`` (a model or a state dict). Needs torch."""
        return self.save_blob(_savers.torch_bytes(obj), to=to)

    def save_image(self, array: Any, *, to: str, quality: int = 95) -> FileInfo:
        """Store an image (HxW or HxWxC array, or a PIL image) in the format of ``to``'s extension.
        Floats in [0, 1] are scaled to 0-255, other floats stretched to it. Needs Pillow and numpy."""
        return self.save_blob(_savers.image_bytes(array, to, quality), to=to)

    def save_fig(self, fig: Any = None, *, to: str, **savefig_kwargs: Any) -> FileInfo:
        """Store a matplotlib figure (the current one by default) as ``to``, then close it. Needs matplotlib."""
        return self.save_blob(_savers.figure_bytes(fig, to, **savefig_kwargs), to=to)

    def save_video(self, frame_stack: Any, *, to: str, fps: int = 20, **imageio_kwargs: Any) -> FileInfo:
        """Store frames (a list of HxW[xC] arrays, or one array) as a video in ``to``'s format
        (.mp4 needs imageio's ffmpeg or pyav plugin; .gif works with Pillow). Needs imageio and numpy."""
        return self.save_blob(_savers.video_bytes(frame_stack, to, fps, **imageio_kwargs), to=to)

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
        want = _join(self._path, rel or "").lstrip("/")
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
