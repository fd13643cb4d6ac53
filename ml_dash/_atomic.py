"""Replace a file atomically: readers see the old content or the new, never half of it."""

from __future__ import annotations

import os
from contextlib import contextmanager

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from pathlib import Path
    from typing import IO, Iterator

__all__ = ["replacing", "temp_prefix"]

#: Bytes of a name kept in its temporary sibling's name: with the dots and mkstemp's 8 random
#: characters and ".tmp" the temporary name stays far below the 255-byte limit of a name, even
#: for a 255-byte destination.
_KEEP = 200


def temp_prefix(name: str) -> str:
    """The start of a temporary sibling's name for ``name`` (at most ~200 bytes of it are kept)."""
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) > _KEEP:
        name = raw[:_KEEP].decode("utf-8", "ignore")  # never half a character
    return "." + name + "."


@contextmanager
def replacing(dest: "Path", *, fsync: bool = False) -> Iterator[IO[bytes]]:
    """Yield a binary file in ``dest``'s folder; it replaces ``dest`` only if the block completes.

    With ``fsync`` the content is on disk before the rename, so a power cut cannot leave an
    empty file behind the new name.
    """
    import tempfile

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(dest.name), suffix=".tmp", dir=dest.parent)
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
