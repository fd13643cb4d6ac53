"""The saving side of ``exp.files``: what can be stored, under which path and name, and its staging.

:class:`FileSaving` is the half of :class:`~ml_dash._file_ops.FileScope` that stores files:
``save`` (a path, bytes, a dict or list, an array), ``upload`` and the ``save_*`` helpers upstream
has. Every save copies the bytes at the call (later changes to your file do not matter, your file
is never moved or deleted), stages them with the recorder and queues a
:class:`~ml_dash._events.FileEvent`.

Object savers (``save_torch``, ``save_pkl``, ``save_image``, ``save_fig``, ``save_video``) import
their library only when called, and say which package to install when it is missing.
"""

from __future__ import annotations

import os
import time

from . import _savers
from ._errors import InvalidValue
from ._events import FileEvent
from ._files import FileInfo, new_file_id
from ._names import check_file_path, check_filename
from ._values import normalize_fields

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, List, Optional, Tuple, Union

    from ._files import Source
    from ._recorder import Recorder

__all__ = ["FileSaving", "NoSuchSource", "join_path"]


class NoSuchSource(FileNotFoundError, ValueError):
    """``save("path")`` of a path that is not a file (a ValueError too, as upstream raised)."""


def join_path(folder: str, rel: str) -> str:
    """``/models`` + ``a/b`` -> ``/models/a/b`` (checked segments); ``/`` + ``""`` -> ``/``."""
    parts = [p for p in (folder.strip("/"), rel.strip("/")) if p]
    return "/" + check_file_path("/".join(parts)) if parts else "/"


class FileSaving:
    """Storing files under a scope's folder; mixed into :class:`~ml_dash._file_ops.FileScope`."""

    # The scope's state, set by FileScope.__init__: the folder, and the options of
    # ``exp.files(dir, description=..., tags=..., bindrs=..., metadata=..., file_path=...)``,
    # which a save's own arguments override.
    _rec: Recorder
    _path: str
    _description: Optional[str]
    _tags: Optional[List[str]]
    _bindrs: List[str]
    _metadata: Optional[Dict[str, Any]]
    _source: Optional[str]

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
        return join_path(self._path, folder), name

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
