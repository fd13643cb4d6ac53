"""What ml-dash tells the user at run time, through ``logging`` (logger ``ml_dash`` and children).

* :func:`warn`: something the user must see (events not stored, the flush command for data left
  in the spool, a full queue or spool, a refused token). Level WARNING.
* :func:`notice`: something worth seeing by default that is not a problem (where to watch a remote
  run, progress while the exit waits for the server). Level INFO.

Where it goes:

* **The application configured no logging** (no handler between the ``ml_dash`` logger and the
  root, no level set on ``ml_dash``): one ``ml-dash: <message>`` line on stderr, from a handler of
  last resort on the ``ml_dash`` logger, notices included.
* **The application configured logging** (``logging.basicConfig(...)``, ``dictConfig``, a framework
  doing it): the records go to its handlers under its levels, once; the handler of last resort
  stays silent. Notices are INFO: hidden under the usual WARNING unless ``ml_dash`` is set lower.
* **Silence or redirect** like any library: ``logging.getLogger("ml_dash").setLevel(logging.ERROR)``
  (or ``CRITICAL``), ``propagate``/handlers of your own on ``ml_dash``.

``logging`` is imported at the first message, not at ``import ml_dash``.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import Optional

__all__ = ["warn", "notice", "error", "logger", "LOGGER"]

#: The SDK's logger; the agent logs to ``ml_dash.agent``.
LOGGER = "ml_dash"
_installed = False


def warn(message: str, name: str = LOGGER) -> None:
    """A WARNING: shown on stderr when the application configured no logging."""
    _log(30, message, name)


def error(message: str, name: str = LOGGER) -> None:
    """An ERROR (something stopped working): shown like a warning."""
    _log(40, message, name)


def notice(message: str, name: str = LOGGER) -> None:
    """INFO that is shown by default: on stderr when the application configured no logging (and
    set no level on ``ml_dash``); under its configuration otherwise."""
    _log(20, message, name)


def logger(name: str = LOGGER) -> "logging.Logger":
    """``logging.getLogger(name)``, with the handler of last resort installed on ``ml_dash``."""
    import logging

    global _installed
    if not _installed:
        _installed = True
        logging.getLogger(LOGGER).addHandler(_last_resort_class()())
    return logging.getLogger(name)


def _log(level: int, message: str, name: str) -> None:
    log = logger(name)
    if log.isEnabledFor(level):
        log.log(level, message)
    elif level == 20 and _unconfigured(log):
        # INFO is below the default WARNING level, but a notice is meant to be seen by default:
        # with nothing configured, hand it to the handlers directly (only ours will print it).
        log.handle(log.makeRecord(log.name, level, "(ml-dash)", 0, message, (), None))


def _unconfigured(log: "logging.Logger") -> bool:
    """No level set on ``log`` or its parents below the root, and no handler but ours anywhere."""
    import logging

    root = logging.getLogger()
    if root.level != logging.WARNING:
        return False
    node: Optional[logging.Logger] = log
    while node is not None and node is not root:
        if node.level != logging.NOTSET or any(not isinstance(h, _last_resort_class()) for h in node.handlers):
            return False
        node = node.parent if node.propagate else None
    return not root.handlers


class _Stderr:
    """The current ``sys.stderr`` at each write (it may be replaced after the handler was made)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


_handler_class: "Optional[type[logging.Handler]]" = None


def _last_resort_class() -> "type[logging.Handler]":
    """The handler of last resort's class, made at first use (it needs logging)."""
    global _handler_class
    if _handler_class is not None:
        return _handler_class
    import logging

    class LastResort(logging.StreamHandler):  # type: ignore[type-arg]  # generic in typeshed only, not at run time (3.9)
        """Prints ``ml-dash: <message>`` on stderr, only when no other handler would see the record."""

        def __init__(self) -> None:
            super().__init__(_Stderr())
            self.setFormatter(logging.Formatter("ml-dash: %(message)s"))

        def handle(self, record: logging.LogRecord) -> bool:
            if _handled_elsewhere(logging.getLogger(record.name), self):
                return False
            return bool(super().handle(record))

    _handler_class = LastResort
    return LastResort


def _handled_elsewhere(log: "logging.Logger", ours: object) -> bool:
    """True when a handler other than ``ours`` is on the record's way up (the app configured logging)."""
    node: Optional[logging.Logger] = log
    while node is not None:
        if any(h is not ours for h in node.handlers):
            return True
        node = node.parent if node.propagate else None
    return False
