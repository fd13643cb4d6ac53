"""Batch framing: the NDJSON body, its header line, the batch-level checks (400/413) and the prefix rules.

The output is a :class:`Batch` of event dicts with contiguous seqs; :mod:`.ingest` validates the
events one by one. The body comes decoded in pieces (:mod:`.decode`) and is parsed a piece at a
time: each piece is weighed before its lines are parsed (:func:`estimate`), so a body whose JSON
would build far more objects than bytes (``{},{},...``) is refused before it costs memory, and the
whole decoded body is never held at once. Lines are parsed with one orjson call each; checks that
are rarely needed (nesting depth, oversize lines) are gated by C-speed tests.
"""

from __future__ import annotations

import re
from itertools import accumulate, repeat
from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

import orjson

from .._errors import InvalidPrefix
from .._names import Prefix, parse_prefix
from .errors import ApiError
from .limits import Limits

__all__ = ["Batch", "parse_body", "parse_header", "parse_server_prefix", "estimate", "depth_over", "MAX_DEPTH"]

PROTOCOL_VERSION = 1
SESSION_RE = re.compile(r"[A-Za-z0-9_-]{8,64}")
#: What an experiment folder holds besides nested experiments: a prefix segment after the third with
#: one of these names would put an experiment inside another one's data (or onto one of its files).
_EXPERIMENT_ENTRIES = frozenset(("logs", "metrics", "files", "tracks", "experiment.json", "parameters.json"))
#: Deepest nesting of one event line. orjson reads 1024 levels but writes only 254, so a deeper value
#: would be accepted and then fail to store; refuse it up front.
MAX_DEPTH = 128


def parse_server_prefix(value: Any) -> Prefix:
    """A prefix the server accepts: the SDK's rules, no segment starting with '.', and no segment after
    the third naming what an experiment folder holds (``logs``, ``experiment.json``, ...)."""
    prefix = parse_prefix(value)
    for i, seg in enumerate(prefix.parts):
        if seg.startswith("."):
            raise InvalidPrefix(f"prefix segment {seg!r} may not start with '.' on a server")
        if i >= 3 and seg in _EXPERIMENT_ENTRIES:
            raise InvalidPrefix(
                f"prefix segment {seg!r} is a name the experiment {'/'.join(prefix.parts[:i])!r} uses for its own data"
            )
    return prefix


class Batch:
    """A parsed batch: header fields and the events (dicts), seqs checked contiguous."""

    __slots__ = ("session", "prefix", "events", "too_big", "too_deep", "first_seq", "counts")

    def __init__(
        self,
        session: str,
        prefix: Prefix,
        events: List[dict[str, Any]],
        too_big: frozenset[Any],
        too_deep: frozenset[Any] = frozenset(),
        counts: Optional[List[int]] = None,
    ):
        self.session = session
        self.prefix = prefix
        self.events = events
        self.too_big = too_big  # positions of lines over max_event_bytes
        self.too_deep = too_deep  # positions of lines nesting deeper than MAX_DEPTH
        self.first_seq = events[0]["seq"] if events else None
        #: Seqs each event covers (a columnar ``metrics`` record: its ``n``); None when all cover one.
        self.counts = counts


def depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests deeper than ``limit`` levels (a scalar is 0, ``[]`` is 1). Iterative:
    a value nested a thousand deep is an answer, not a RecursionError."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        t = type(v)
        if t is dict:
            v = v.values()
        elif t is not list:
            continue
        d += 1
        if d > limit:
            return True
        stack.extend((c, d) for c in v if type(c) in _CONTAINERS)
    return False


_CONTAINERS = (dict, list)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _may_nest_deeper(line: bytes, limit: int) -> bool:
    """False when the brackets of a JSON line show it nests at most ``limit`` deep (C-speed passes:
    each removes the innermost pairs, at most two levels). True means "look at the parsed value":
    a bracket inside a string can make this say True for a shallow line, never False for a deep one."""
    marks = line.translate(None, _NOT_BRACKETS)
    if len(marks) <= 2 * limit:
        return False
    for _ in range((limit + 1) // 2):
        shorter = marks.replace(b"[]", b"").replace(b"{}", b"")
        if not shorter:
            return False
        if len(shorter) == len(marks):
            return True  # unbalanced (brackets in strings): let the parsed value decide
        marks = shorter
    return True


def _show(value: Any) -> str:
    """A client's value in a message: short scalars as they are, anything else by its type."""
    if value is None or type(value) in (bool, int, float) or (type(value) is str and len(value) <= 64):
        return repr(value)
    return f"a {type(value).__name__}"


def parse_header(line: bytes) -> Tuple[str, Prefix]:
    """(session, prefix) of a batch header line; 400 for anything else."""
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_header", "the first line must be the batch header, a JSON object") from None
    if not isinstance(header, dict):
        raise ApiError(400, "bad_header", "the batch header must be a JSON object")
    if header.get("v") != PROTOCOL_VERSION:
        raise ApiError(
            400,
            "unsupported_version",
            f"this server speaks protocol v{PROTOCOL_VERSION}; header 'v' is {_show(header.get('v'))}",
        )
    session = header.get("session")
    if not isinstance(session, str) or not SESSION_RE.fullmatch(session):
        raise ApiError(400, "bad_session", "header 'session' must match [A-Za-z0-9_-]{8,64}")
    try:
        prefix = parse_server_prefix(header.get("prefix"))
    except InvalidPrefix as exc:
        raise ApiError(400, "invalid_prefix", str(exc)) from None
    return session, prefix


#: Bytes that start a Python object when parsed, and an upper estimate of what each costs: a dict
#: (with its first entries), a list, one more value (a float, a list slot, a dict entry), a string.
_WEIGHTS = ((b"{", 220), (b"[", 80), (b",", 40), (b'"', 28))
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in b'{[,"')


def estimate(piece: bytes) -> int:
    """An upper estimate of the memory (bytes) the objects parsed from ``piece`` take.

    Counted on the bytes, before anything is parsed: each byte (four for a piece that is not ASCII:
    a string with one wide character takes four bytes per character), plus a cost per object a
    structural byte starts. ``{},`` repeated is 3 bytes of JSON but ~70 bytes of objects each; this
    is what stops it before it is built. Measured against what orjson builds (tracemalloc), the
    estimate is 1.0 to 3.7 times what the objects take (hostile shapes and real batches: 2.3 times
    for per-row metric events, 1.4 for floats in columns), never less.
    """
    marks = piece.translate(None, _NOT_STRUCTURAL)  # one C pass; what is left is short for real data
    cost = len(piece) if piece.isascii() else 4 * len(piece)
    for byte, weight in _WEIGHTS:
        cost += weight * marks.count(byte)
    return cost


def _windows(pieces: Iterable[bytes], limits: Limits) -> Iterator[List[bytes]]:
    """The complete lines of a decoded body, a piece at a time, each piece weighed before its lines
    go on (413 ``too_complex`` past ``max_parsed_bytes``)."""
    budget = limits.max_parsed_bytes
    cost = 0
    pending: List[bytes] = []  # the start of a line that runs on into the next piece

    def weigh(n: int) -> None:
        nonlocal cost
        cost += n
        if cost > budget:
            raise ApiError(
                413,
                "too_complex",
                f"the batch would take over {budget:,} bytes of memory once parsed "
                "(estimated from its JSON); send fewer or simpler events per batch",
                limit=budget,
            )

    for piece in pieces:
        weigh(estimate(piece))
        lines = piece.split(b"\n")
        if len(lines) == 1:
            pending.append(piece)
            continue
        if pending:
            pending.append(lines[0])
            lines[0] = b"".join(pending)
            if not lines[0].isascii():  # its ASCII pieces were weighed as narrow text
                weigh(3 * len(lines[0]))
        tail = lines.pop()
        pending = [tail] if tail else []
        yield lines
    if pending:
        line = b"".join(pending)
        if not line.isascii():
            weigh(3 * len(line))
        yield [line]


def parse_body(pieces: Iterable[bytes], limits: Limits, authorize: Optional[Callable[[Prefix], None]] = None) -> Batch:
    """Parse a decoded NDJSON body given in pieces (:func:`.decode.decoded_chunks`), a piece at a time.

    ``authorize(prefix)`` runs as soon as the header is read, before any event is parsed (a 403
    costs nothing). 400 when malformed, 413 when over a limit: too many events (counted before
    their lines are parsed) or too much memory (:func:`estimate`, before each piece is parsed).
    """
    loads = orjson.loads
    session: Optional[str] = None
    prefix: Optional[Prefix] = None
    events: List[Any] = []
    too_big: List[int] = []
    too_deep: List[int] = []
    max_event = limits.max_event_bytes
    for lines in _windows(pieces, limits):
        if session is None:
            i = 0
            while i < len(lines) and not lines[i].strip():
                i += 1
            if i == len(lines):
                continue  # blank lines before the header
            session, prefix = parse_header(lines[i])
            if authorize is not None:
                authorize(prefix)
            lines = lines[i + 1 :]
        lines = [ln for ln in lines if ln]
        base = len(events)
        if base + len(lines) > limits.max_events_per_batch:
            raise ApiError(
                413,
                "too_many_events",
                f"the batch has over {limits.max_events_per_batch:,} events",
                limit=limits.max_events_per_batch,
            )
        try:
            parsed = [loads(ln) for ln in lines]
        except orjson.JSONDecodeError:
            parsed, kept = [], []
            for n, ln in enumerate(lines, base + 2):
                if not ln.strip():
                    continue  # a blank line (\r\n endings, padding) is not an event
                try:
                    parsed.append(loads(ln))
                except orjson.JSONDecodeError as exc:
                    raise ApiError(400, "bad_json", f"event line {n} is not valid JSON: {exc}") from None
                kept.append(ln)
            lines = kept
        longest = max(map(len, lines), default=0)
        if longest > max_event:
            too_big.extend(base + i for i, ln in enumerate(lines) if len(ln) > max_event)
        if longest >= 2 * MAX_DEPTH:  # a line shorter than that cannot nest deeper
            too_deep.extend(
                base + i
                for i, ln in enumerate(lines)
                if len(ln) >= 2 * MAX_DEPTH and _may_nest_deeper(ln, MAX_DEPTH) and depth_over(parsed[i], MAX_DEPTH)
            )
        events.extend(parsed)
        del lines, parsed
    if session is None:
        parse_header(b"")  # raises: no header line
    assert session is not None and prefix is not None
    return _check(session, prefix, events, frozenset(too_big), frozenset(too_deep), limits)


def _check(
    session: str, prefix: Prefix, events: List[Any], too_big: frozenset[Any], too_deep: frozenset[Any], limits: Limits
) -> Batch:
    """Identity: every event an object with an int seq, contiguous. Without that, nothing in the
    batch can be acknowledged correctly, so it is malformed as a whole."""
    try:
        seqs = [ev["seq"] for ev in events]
    except (TypeError, KeyError):
        raise ApiError(400, "bad_event", "every event must be a JSON object with an integer 'seq'") from None
    counts = None
    if "metrics" in map(dict.get, events, repeat("kind")):  # columnar records: each covers n seqs
        counts = [_count(ev, limits) for ev in events]
    if seqs:
        first = seqs[0]
        if type(first) is not int or first < 0:
            expected = None
        elif counts is None:
            expected = list(range(first, first + len(seqs)))
        else:
            expected = list(accumulate(counts[:-1], initial=first))
        if seqs != expected or any(type(s) is not int for s in seqs):  # 1.0 and True compare equal to ints
            raise ApiError(
                400,
                "bad_seq",
                "event seqs must be integers >= 0, increasing by 1 within a batch (by n after a 'metrics' event)",
            )
        if counts is not None and sum(counts) > limits.max_events_per_batch:
            raise ApiError(
                413,
                "too_many_events",
                f"the batch has {sum(counts):,} events (rows); the limit is {limits.max_events_per_batch:,}",
                limit=limits.max_events_per_batch,
            )
    return Batch(session, prefix, events, too_big, too_deep, counts)


def _count(ev: dict[str, Any], limits: Limits) -> int:
    """Seqs an event covers; a ``metrics`` event's ``n`` is part of its identity, so a bad one is a 400."""
    if ev.get("kind") != "metrics":
        return 1
    n = ev.get("n")
    if type(n) is not int or not 1 <= n <= limits.max_event_rows:
        raise ApiError(
            400,
            "bad_seq",
            f"a 'metrics' event needs 'n', an integer from 1 to {limits.max_event_rows:,} (the seqs it covers)",
        )
    return n
