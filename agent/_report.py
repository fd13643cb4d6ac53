"""What the agent tells the user: sizes, the flush command, and its run-time messages, which go
through ``logging`` (logger ``ml_dash.agent``; see ``ml_dash._report`` for where they end up)."""

from __future__ import annotations

from pathlib import Path
from typing import Union

__all__ = ["say", "progress", "human_bytes", "flush_command", "LOGGER"]


#: The agent's logger.
LOGGER = "ml_dash.agent"


def say(message: str) -> None:
    """A warning the user must see (never the token: callers pass only public URLs)."""
    from ml_dash._report import warn

    warn(message, LOGGER)


def progress(message: str) -> None:
    """Progress worth seeing by default (INFO, shown when the application configured no logging)."""
    from ml_dash._report import notice

    notice(message, LOGGER)


def human_bytes(n: float) -> str:
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KB", "MB", "GB", "TB"):
        n /= 1024
        if n < 1024 or unit == "TB":
            return f"{n:.1f} {unit}"
    return f"{n:.1f} TB"  # pragma: no cover


def status_command(spool_dir: Union[str, Path]) -> str:
    """The command that shows what is left in ``spool_dir`` and which agent serves it."""
    import shlex

    return f"ml-dash-agent status {shlex.quote(str(spool_dir))}"


def flush_command(spool_dir: Union[str, Path], url: str) -> str:
    """The exact command that uploads what is left in ``spool_dir``."""
    import shlex

    return f"ml-dash-agent flush {shlex.quote(str(spool_dir))} --dash-url {shlex.quote(url)}"
