"""``exp.logs``: read log records back, and upstream's level helpers (``exp.logs.info(...)``).

``exp.log(message, level=..., metadata=None, **extra)`` is the hot path and prints nothing. The
helpers ``exp.logs.debug/info/warn/error/fatal(message, **extra)`` also echo the line to the
terminal as upstream does (``[INFO] message [k=v, ...]``; error and fatal on stderr, the others on
stdout), unless ``Config.log_echo`` (``ML_DASH_LOG_ECHO=0``) turns that off. The echo never comes
back into the run through console capture.
"""

from __future__ import annotations

import sys
import time

from ._errors import InvalidValue
from ._events import LEVELS, LogEvent
from ._values import normalize_fields, normalize_value

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional

    from ._recorder import Recorder

__all__ = ["Logs", "LogBuilder", "make_log_event", "merge_metadata"]


def merge_metadata(metadata: Optional[Dict[str, Any]], extra: Dict[str, Any]) -> Dict[str, Any]:
    """Upstream's rule: the ``metadata=`` dict, then the keyword arguments over it."""
    if metadata is None:
        return extra
    if not isinstance(metadata, dict):
        raise InvalidValue(f"log metadata must be a dict, got {type(metadata).__name__}")
    return {**metadata, **extra} if extra else metadata


def make_log_event(message: str, level: str, metadata: Dict[str, Any], limit: int) -> LogEvent:
    if not isinstance(message, str):
        raise InvalidValue(f"log message must be str, got {type(message).__name__}")
    lvl = LEVELS.get(level.lower()) if isinstance(level, str) else None
    if lvl is None:
        raise ValueError(f"unknown log level {level!r}; use one of debug, info, warn(ing), error, fatal")
    normalize_value(message, limit, "log message")
    md = normalize_fields(metadata, limit, "log metadata") if metadata else None
    return LogEvent(time.time(), lvl, message, md)


def echo(level: str, message: str, metadata: Optional[Dict[str, Any]]) -> None:
    """Print a log line as upstream does, past console capture (it is already in the run's logs)."""
    from ._capture import _console

    tail = f" [{', '.join(f'{k}={v}' for k, v in metadata.items())}]" if metadata else ""
    stream = sys.stderr if level in ("error", "fatal") else sys.stdout
    with _console.not_captured():
        print(f"[{level.upper()}] {message}{tail}", file=stream)


class Logs:
    """``exp.logs``: ``exp.logs.read(...)`` (or ``exp.logs(...)``), and the level helpers."""

    def __init__(self, rec: Recorder):
        self._rec = rec

    def read(self, start: int = 0, limit: Optional[int] = None, level: Optional[str] = None) -> List[Dict[str, Any]]:
        """Records ``{"sequenceNumber", "timestamp", "level", "message"[, "metadata"]}`` in order."""
        if level is not None:
            level = LEVELS.get(level.lower(), level)
        return self._rec.reader().logs(start, limit, level)

    __call__ = read

    def _write(self, level: str, message: str, metadata: Dict[str, Any]) -> None:
        rec = self._rec
        event = make_log_event(message, level, metadata, rec.config.max_string_bytes)
        rec.pipe.put_log(event)
        if rec.config.log_echo:
            echo(event.level, message, event.metadata)

    def debug(self, message: str, **extra: Any) -> None:
        """A debug line (echoed on stdout)."""
        self._write("debug", message, extra)

    def info(self, message: str, **extra: Any) -> None:
        """An info line (echoed on stdout)."""
        self._write("info", message, extra)

    def warn(self, message: str, **extra: Any) -> None:
        """A warning (echoed on stdout, as upstream does)."""
        self._write("warn", message, extra)

    warning = warn

    def error(self, message: str, **extra: Any) -> None:
        """An error line (echoed on stderr)."""
        self._write("error", message, extra)

    def fatal(self, message: str, **extra: Any) -> None:
        """A fatal line (echoed on stderr). It records; it does not end the run."""
        self._write("fatal", message, extra)


class LogBuilder:
    """What upstream's deprecated ``exp.log(metadata=...)`` without a message returns:
    ``exp.log(metadata={"step": 1}).info("message")``."""

    def __init__(self, logs: Logs, metadata: Dict[str, Any]):
        self._logs = logs
        self._metadata = metadata

    def _level(level: str) -> Callable[..., None]:  # type: ignore[misc]
        def write(self: "LogBuilder", message: str, **extra: Any) -> None:
            self._logs._write(level, message, {**self._metadata, **extra})

        write.__name__ = level
        write.__doc__ = f"A {level} line with the builder's metadata."
        return write

    debug, info, warn, error, fatal = _level("debug"), _level("info"), _level("warn"), _level("error"), _level("fatal")
    warning = warn
    del _level
