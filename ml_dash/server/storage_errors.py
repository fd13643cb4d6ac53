"""Which storage errors pass (503, retry later) and which are the request's own (a 4xx for good).

A full, failing or read-only disk, permissions, too many open files: time or an operator clears
them, so the client retries. Anything else the disk says about one request (a name too long, a
file where a folder belongs, a file too large) will say the same next time: that event is
rejected with a code, so nothing stalls behind it.
"""

from __future__ import annotations

import errno

__all__ = ["TRANSIENT_ERRNOS", "is_transient", "code_for"]

TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC",
        "EDQUOT",
        "EIO",
        "EAGAIN",
        "EWOULDBLOCK",
        "EINTR",
        "EBUSY",
        "ENOMEM",
        "EMFILE",
        "ENFILE",
        "EROFS",
        "ETIMEDOUT",
        "ESTALE",
        "ENOLCK",
        "EDEADLK",
        "EACCES",
        "EPERM",
        "ENOBUFS",
        "ETXTBSY",
        "EREMOTEIO",
    )
    if hasattr(errno, name)
)


def is_transient(exc: OSError) -> bool:
    """Whether a storage error may go away by itself or by an operator's hand (else it is permanent)."""
    return exc.errno is None or exc.errno in TRANSIENT_ERRNOS


def code_for(exc: OSError) -> str:
    """The error code of a permanent storage error (PROTOCOL.md)."""
    return "name_too_long" if exc.errno == errno.ENAMETOOLONG else "storage_rejected"
