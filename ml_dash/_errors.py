"""Every exception ml-dash raises, in one place.

MlDashError
├── InvalidPrefix (ValueError)          a prefix, metric name or file name that cannot be stored
├── InvalidDashUrl (ValueError)         a dash_url that is not http(s):// with a host
├── InvalidValue (TypeError)            a logged value that cannot be serialized
├── ValueTooLarge (ValueError)          a string or field set over the configured limit
├── ExperimentStateError (RuntimeError) use before start / after close
├── QueueFull (RuntimeError)            backpressure gave up (only with drop_policy="raise")
├── NotFound (LookupError)              reading an experiment (or a metric, a field) that does not exist
├── SpoolNotPrivate (PermissionError)   remote mode's spool folder is not the user's alone
└── RemoteError                         a server answer the SDK cannot act on
    ├── AuthError                       401/403: the token is missing, wrong, or not allowed here
    └── ProtocolError                   the server speaks another protocol version or answered garbage
"""

from __future__ import annotations

__all__ = [
    "MlDashError",
    "InvalidPrefix",
    "InvalidDashUrl",
    "InvalidValue",
    "ValueTooLarge",
    "ExperimentStateError",
    "QueueFull",
    "NotFound",
    "SpoolNotPrivate",
    "RemoteError",
    "AuthError",
    "ProtocolError",
]


class MlDashError(Exception):
    """Base class of every error ml-dash raises on purpose."""


class InvalidPrefix(MlDashError, ValueError):
    """A prefix, metric name or file name that cannot name a place in the store."""


class InvalidDashUrl(MlDashError, ValueError):
    """A ``dash_url`` (argument or ``ML_DASH_URL``) that is not ``http://`` or ``https://`` with a host;
    raised when the :class:`~ml_dash.Experiment` is built, before anything is spooled."""


class InvalidValue(MlDashError, TypeError):
    """A value that cannot be serialized; raised at the call, in the caller's thread."""


class ValueTooLarge(MlDashError, ValueError):
    """A value over a configured size limit (see ``Config.max_string_bytes``)."""


class ExperimentStateError(MlDashError, RuntimeError):
    """An operation that needs a running experiment was called before start or after close."""


class QueueFull(MlDashError, RuntimeError):
    """The in-process queue stayed full past the backpressure window."""


class NotFound(MlDashError, LookupError):
    """A read named an experiment, metric or field that is not stored (in local or remote mode)."""


class SpoolNotPrivate(MlDashError, PermissionError):
    """The spool folder (``ML_DASH_SPOOL_DIR``) belongs to another user or others may write in it.

    Like ssh with its keys, ml-dash trusts a spool only when it is the user's own: what is in it is
    sent with the user's token. The message says how to fix it.
    """


class RemoteError(MlDashError):
    """The server answered in a way the client cannot recover from by retrying."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class AuthError(RemoteError):
    """401/403: no token, a wrong token, or a token that may not write this prefix."""


class ProtocolError(RemoteError):
    """The server's answer is not the protocol this client speaks."""
