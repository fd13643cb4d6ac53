"""What the agent tells the user: sizes, the flush command, one-line messages on stderr."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Union

__all__ = ["say", "human_bytes", "flush_command"]


def say(message: str) -> None:
    """One ``ml-dash:`` line on stderr (never the token: callers pass only public URLs)."""
    print(f"ml-dash: {message}", file=sys.stderr, flush=True)


def human_bytes(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}"
    return f"{n:.1f} TB"  # pragma: no cover


def flush_command(spool_dir: Union[str, Path], url: str) -> str:
    """The exact command that uploads what is left in ``spool_dir``."""
    return f"ml-dash-agent flush {shlex.quote(str(spool_dir))} --dash-url {shlex.quote(url)}"
