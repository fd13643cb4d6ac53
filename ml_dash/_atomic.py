"""Replace a file atomically: readers see the old content or the new, never half of it."""

from __future__ import annotations

import os
from contextlib import contextmanager

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import IO, Iterator
    from pathlib import Path

__all__ = ["replacing"]


@contextmanager
def replacing(dest: "Path", *, fsync: bool = False) -> Iterator[IO[bytes]]:
    """Yield a binary file in ``dest``'s folder; it replaces ``dest`` only if the block completes.

    With ``fsync`` the content is on disk before the rename, so a power cut cannot leave an
    empty file behind the new name.
    """
    import tempfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + dest.name + ".", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
