"""Text that is safe to put on a terminal.

Fields read back from disk (a spool manifest, a state file, a folder name) or sent by a server
may hold anything, including terminal escape sequences that move the cursor, rewrite what is on
screen or set the window title. Every such field goes through :func:`printable` before it is
formatted into a message.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# C0 and C1 controls, DEL, and the invisible characters that reorder or split what is shown:
# bidi marks, embeddings, overrides and isolates, line and paragraph separators.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``str(value)`` with every control character written as a visible escape (``\\x1b``, ``\\u202e``)."""
    text = value if isinstance(value, str) else str(value)
    return _UNSAFE.sub(_escape, text)
