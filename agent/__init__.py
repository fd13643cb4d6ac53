"""The ml-dash agent: write-ahead spool and background upload for remote mode.

``open_remote_sink(config, prefix)`` is what ``ml_dash.Experiment`` calls in remote mode; the
``ml-dash-agent`` command (``ml_dash.agent.cli``) uploads what runs left in the spool.
Importing this package does not import aiohttp: the sender thread does, when it starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._sink import RemoteSink

__all__ = ["open_remote_sink"]


def open_remote_sink(config: Any, prefix: Any) -> "RemoteSink":
    """The sink remote mode writes to (see ``ml_dash._sink.Sink``)."""
    from ._sink import RemoteSink

    return RemoteSink(config, prefix)
