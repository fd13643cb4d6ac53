"""``OperationMode``: where an experiment's data goes (``exp.mode``); loaded on first use (enum)."""

from __future__ import annotations

import enum

__all__ = ["OperationMode"]


class OperationMode(str, enum.Enum):
    """Where an experiment's data goes (``exp.mode``). A ``str``: ``exp.mode == "local"`` holds too.

    LOCAL: the local store (``dash_root``). REMOTE: a server (``dash_url``), through the spool.
    HYBRID: both (``dash_url`` and ``dash_root`` given): every event is stored locally and uploaded.
    """

    LOCAL = "local"
    REMOTE = "remote"
    HYBRID = "hybrid"

    def __str__(self) -> str:
        return str(self.value)

    __format__ = str.__format__  # type: ignore[assignment]  # formats as the plain str it is
