"""Content-addressed file bytes: ``<root>/.ml-dash-server/blobs/<ab>/<sha256>``.

An upload is written to a temporary file while it is hashed and kept only when the sha256 matches
the name it was sent under, so a blob, once there, is always whole and correct. A file event then
links the blob into the experiment's ``files/<path>/<id>/<filename>`` (a hard link; a copy where the
filesystem cannot link), so the server root stays a readable local layout.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Optional

from .._atomic import temp_prefix
from .errors import ApiError
from .index import server_dir
from .storage_errors import code_for, is_transient

__all__ = ["BlobStore", "BlobUpload", "check_checksum", "storage_error"]

_HEX64 = re.compile(r"[0-9a-f]{64}")


def check_checksum(value: object) -> str:
    """A lowercase sha256 hex digest, or 400."""
    if not isinstance(value, str) or not _HEX64.fullmatch(value):
        raise ApiError(400, "bad_checksum", "a blob is named by the lowercase sha256 hex of its bytes (64 chars)")
    return value


def storage_error(exc: OSError, limit: int) -> ApiError:
    """The answer to an upload the disk refused: 503 when it may pass, else the upload's own 4xx."""
    if is_transient(exc):
        return ApiError(
            503,
            "storage_unavailable",
            "the server could not store the blob now; retry later",
            headers={"Retry-After": "5"},
        )
    if exc.errno == errno.EFBIG:
        return ApiError(413, "blob_too_large", "the server's disk cannot hold a file this large", limit=limit)
    return ApiError(400, code_for(exc), f"the server's disk refused this blob: {exc.strerror or exc}")


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobUpload:
    """One upload in progress: feed chunks, then :meth:`finish` (verify, fsync, publish) or :meth:`abort`."""

    def __init__(self, store: "BlobStore", checksum: str, limit: int):
        self.store = store
        self.checksum = checksum
        self.limit = limit
        self.size = 0
        self._hash = hashlib.sha256()
        fd, self._tmp = tempfile.mkstemp(prefix="up-", dir=store.tmp_dir)
        self._fh = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise ApiError(413, "blob_too_large", f"blob is over the limit of {self.limit:,} bytes", limit=self.limit)
        self._hash.update(chunk)
        self._fh.write(chunk)

    def finish(self) -> bool:
        """Verify and publish; True when stored now, False when it was already there."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        got = self._hash.hexdigest()
        if got != self.checksum:
            self.abort()
            raise ApiError(400, "checksum_mismatch", f"the bytes hash to {got}, not {self.checksum}", actual=got)
        dest = self.store.path(self.checksum)
        if self.store.size(self.checksum) is not None:
            self.abort()
            return False  # a symlink planted there is not a blob: it is replaced below
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self._tmp, 0o444)  # hard links share the inode: nobody should edit a blob in place
        os.replace(self._tmp, dest)
        fsync_dir(dest.parent)
        return True

    def abort(self) -> None:
        try:
            self._fh.close()
        except OSError:
            pass
        try:
            os.unlink(self._tmp)
        except FileNotFoundError:
            pass


class BlobStore:
    """The blob folder of one server root."""

    def __init__(self, root: Path | str):
        base = server_dir(root)
        self.dir = base / "blobs"
        self.tmp_dir = base / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():  # uploads cut by a crash or a dropped connection
            try:
                leftover.unlink()
            except OSError:
                pass

    def path(self, checksum: str) -> Path:
        return self.dir / checksum[:2] / checksum

    def size(self, checksum: str) -> Optional[int]:
        """The blob's size, or None when it is not stored (a symlink there is not a blob)."""
        try:
            st = os.lstat(self.path(checksum))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def upload(self, checksum: str, limit: int) -> BlobUpload:
        return BlobUpload(self, checksum, limit)

    def link_into(self, checksum: str, dest: Path) -> None:
        """Place the blob at ``dest`` (replacing what is there), by hard link or else by copy."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f"{temp_prefix(dest.name)}{os.getpid()}.link")  # fits even a 255-byte name
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        src = self.path(checksum)
        if self.size(checksum) is None:
            raise FileNotFoundError(errno.ENOENT, "the blob is not a regular file", str(src))
        try:
            os.link(src, tmp, follow_symlinks=False)
        except OSError:  # another filesystem, or links not allowed: copy instead
            shutil.copyfile(self.path(checksum), tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
