"""What the SDK tells the user at run time: one ``ml-dash:`` line per message."""

from __future__ import annotations

import sys

__all__ = ["warn"]


def warn(message: str) -> None:
    """Something the user must see (data not stored, a full queue): one line on stderr."""
    print(f"ml-dash: {message}", file=sys.stderr, flush=True)
