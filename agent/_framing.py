"""Record framing of the spool: one JSON event per line, guarded by a CRC32.

A record is ``<crc32 of payload, 8 lowercase hex> <payload>\\n`` where the payload is the wire
event as compact JSON (see ``ml_dash/server/PROTOCOL.md``) and always starts with
``{"seq":<n>,"kind":"<kind>"``. JSON never contains a raw newline, so ``\\n`` ends a record; a
line without its newline is a torn tail (a crash mid-write), and a line whose CRC does not match
is corrupt (a flipped byte). Both are detected here and never sent to the server.

A columnar ``metrics`` record covers several seqs: its payload starts
``{"seq":<first>,"kind":"metrics","n":<rows>,`` and :func:`count_of` reads ``n`` the same way.

Keeping the payload byte-identical to the wire event means the sender never re-encodes: it checks
the CRC and forwards the bytes.
"""

from __future__ import annotations

import operator
import zlib
from typing import Iterator, List, NamedTuple, Optional

__all__ = ["frame", "frame_all", "Line", "split_lines", "check_line", "check_block", "seq_of", "kind_of", "count_of"]

_HEX = frozenset(b"0123456789abcdef")
_SEQ_PREFIX = b'{"seq":'
_ROWS_HEAD = b',"kind":"metrics","n":'
_HEAD = b"%08x "
_SEQ_PREFIX_CHECK = operator.methodcaller("startswith", _SEQ_PREFIX)


def frame(payload: bytes) -> bytes:
    """The spool record for one JSON payload."""
    return b"%08x %b\n" % (zlib.crc32(payload), payload)


def frame_all(payloads: List[bytes]) -> bytes:
    """The records for many payloads, as one string (per-record work stays in C: crc32, %, join)."""
    out = [b"\n"] * (3 * len(payloads))
    out[0::3] = map(_HEAD.__mod__, map(zlib.crc32, payloads))
    out[1::3] = payloads
    return b"".join(out)


def check_block(lines: List[bytes]) -> Optional[List[bytes]]:
    """The payloads of complete record lines if every one is intact (the common case, checked
    mostly in C), else None: then check them one by one with :func:`check_line`."""
    payloads = [ln[9:] for ln in lines]
    if [ln[:9] for ln in lines] != list(map(_HEAD.__mod__, map(zlib.crc32, payloads))):
        return None
    if not all(map(_SEQ_PREFIX_CHECK, payloads)):
        return None
    return payloads


class Line(NamedTuple):
    """One line of a segment: its bytes (without the newline), where it starts and ends."""

    data: bytes
    start: int
    end: int  # offset just past the newline (or past the data when ``complete`` is False)
    complete: bool


def split_lines(buf: bytes, base: int) -> Iterator[Line]:
    """Lines of ``buf`` (which starts at file offset ``base``); the last may be incomplete."""
    pos, n = 0, len(buf)
    find = buf.find
    while pos < n:
        nl = find(b"\n", pos)
        if nl < 0:
            yield Line(buf[pos:], base + pos, base + n, False)
            return
        yield Line(buf[pos:nl], base + pos, base + nl + 1, True)
        pos = nl + 1


def check_line(data: bytes) -> Optional[bytes]:
    """The payload of a well-formed record line, or None when it is corrupt."""
    if len(data) < 10 or data[8] != 0x20 or not _HEX.issuperset(data[:8]):
        return None
    payload = data[9:]
    if zlib.crc32(payload) != int(data[:8], 16) or not payload.startswith(_SEQ_PREFIX):
        return None
    return payload


def seq_of(payload: bytes) -> int:
    """The ``seq`` of a checked payload, read without parsing the JSON."""
    end = payload.index(b",", 7)
    return int(payload[7:end])


def kind_of(payload: bytes) -> bytes:
    """The ``kind`` of a checked payload (``b"metric"``, ``b"file"``, ...), without parsing the JSON."""
    start = payload.index(b',"kind":"', 7) + 9
    return payload[start : payload.index(b'"', start)]


def count_of(payload: bytes) -> int:
    """How many seqs a checked payload covers: ``n`` of a columnar ``metrics`` record, else 1.

    Exact without parsing: ``kind`` is always the second key, right after ``seq``.
    """
    end = payload.index(b",", 7)
    if not payload.startswith(_ROWS_HEAD, end):
        return 1
    start = end + len(_ROWS_HEAD)
    return int(payload[start : payload.index(b",", start)])
