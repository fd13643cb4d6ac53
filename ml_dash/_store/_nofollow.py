"""Never following a symlink inside a store root (the server's: its writes and reads).

A path below the root is *plain* when every part of it that exists is a real folder (the last a
regular file, or a folder where one is wanted), none a symlink. The server checks a path before it
writes or reads there, and opens files with ``O_NOFOLLOW``, so a symlink planted in its root can
neither send a write outside it nor serve another file through a read.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Optional

__all__ = ["entry_kind", "is_plain_chain"]


def entry_kind(path: "Path") -> "Optional[int]":
    """The file type of ``path`` itself (a symlink is a symlink), or None when nothing is there."""
    try:
        return stat.S_IFMT(os.lstat(path).st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return None


def is_plain_chain(root: "Path", path: "Path", *, leaf_dir: bool = False) -> bool:
    """True when every part of ``path`` below ``root`` that exists is a real folder (the last part
    a regular file, or a folder with ``leaf_dir``), none a symlink; absent parts are fine."""
    parts = path.relative_to(root).parts
    here = root
    for i, part in enumerate(parts):
        here = here / part
        kind = entry_kind(here)
        if kind is None:
            return True  # nothing below an absent folder can exist
        last = i == len(parts) - 1
        want = stat.S_IFDIR if (not last or leaf_dir) else stat.S_IFREG
        if kind != want:
            return False
    return True
