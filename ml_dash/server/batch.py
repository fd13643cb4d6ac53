"""Batch framing: the NDJSON body, its header line, the batch-level checks (400/413) and the prefix rules.

The output is a :class:`Batch` of event dicts with contiguous seqs; :mod:`.ingest` validates the
events one by one. Lines are parsed with one orjson call each; checks that are rarely needed
(nesting depth, oversize lines) are gated by C-speed tests over the whole batch.
"""

from __future__ import annotations

import re
from itertools import accumulate, repeat
from typing import Any, List, Optional, Tuple

import orjson

from .._errors import InvalidPrefix
from .._names import Prefix, parse_prefix
from .errors import ApiError
from .limits import Limits

__all__ = ["Batch", "parse_batch", "parse_header", "split_header", "parse_server_prefix", "MAX_DEPTH"]

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

    def __init__(self, session: str, prefix: Prefix, events: List[dict], too_big: frozenset,
                 too_deep: frozenset = frozenset(), counts: Optional[List[int]] = None):
        self.session = session
        self.prefix = prefix
        self.events = events
        self.too_big = too_big  # positions of lines over max_event_bytes
        self.too_deep = too_deep  # positions of lines nesting deeper than MAX_DEPTH
        self.first_seq = events[0]["seq"] if events else None
        #: Seqs each event covers (a columnar ``metrics`` record: its ``n``); None when all cover one.
        self.counts = counts


def _depth(value: Any) -> int:
    t = type(value)
    if t is dict:
        return 1 + max(map(_depth, value.values()), default=0)
    if t is list:
        return 1 + max(map(_depth, value), default=0)
    return 0


def parse_header(line: bytes) -> Tuple[str, Prefix]:
    """(session, prefix) of a batch header line; 400 for anything else."""
    try:
        header = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise ApiError(400, "bad_header", "the first line must be the batch header, a JSON object") from None
    if not isinstance(header, dict):
        raise ApiError(400, "bad_header", "the batch header must be a JSON object")
    if header.get("v") != PROTOCOL_VERSION:
        raise ApiError(400, "unsupported_version", f"this server speaks protocol v{PROTOCOL_VERSION}; header 'v' is {header.get('v')!r}")
    session = header.get("session")
    if not isinstance(session, str) or not SESSION_RE.fullmatch(session):
        raise ApiError(400, "bad_session", "header 'session' must match [A-Za-z0-9_-]{8,64}")
    try:
        prefix = parse_server_prefix(header.get("prefix"))
    except InvalidPrefix as exc:
        raise ApiError(400, "invalid_prefix", str(exc)) from None
    return session, prefix


def split_header(body: bytes) -> Tuple[bytes, bytes]:
    """(header line, the rest) without parsing the events (auth needs only the header)."""
    body = body.lstrip()
    nl = body.find(b"\n")
    return (body, b"") if nl < 0 else (body[:nl], body[nl + 1 :])


def parse_batch(body: bytes, limits: Limits) -> Batch:
    """Parse a decoded NDJSON body. 400 when malformed, 413 when it has too many events."""
    head, rest = split_header(body)
    session, prefix = parse_header(head)
    lines = [ln for ln in rest.split(b"\n") if ln]
    if len(lines) > limits.max_events_per_batch:
        raise ApiError(413, "too_many_events", f"the batch has {len(lines):,} events; the limit is {limits.max_events_per_batch:,}",
                       limit=limits.max_events_per_batch)
    loads = orjson.loads
    try:
        events = [loads(ln) for ln in lines]
    except orjson.JSONDecodeError:
        events = []
        kept = []
        for n, ln in enumerate(lines, 2):
            if not ln.strip():
                continue  # a blank line (\r\n endings, padding) is not an event
            try:
                events.append(loads(ln))
            except orjson.JSONDecodeError as exc:
                raise ApiError(400, "bad_json", f"event line {n} is not valid JSON: {exc}") from None
            kept.append(ln)
        lines = kept
    too_big: frozenset = frozenset()
    longest = max(map(len, lines), default=0)
    if longest > limits.max_event_bytes:
        too_big = frozenset(i for i, ln in enumerate(lines) if len(ln) > limits.max_event_bytes)
    too_deep: frozenset = frozenset()
    if longest >= 2 * MAX_DEPTH:  # a line shorter than that cannot nest deeper
        too_deep = frozenset(
            i for i, ln in enumerate(lines)
            if len(ln) >= 2 * MAX_DEPTH and ln.count(b"[") + ln.count(b"{") > MAX_DEPTH and _depth(events[i]) > MAX_DEPTH
        )
    # Identity: every event is an object with an int seq, contiguous. Without that, nothing in the
    # batch can be acknowledged correctly, so it is malformed as a whole.
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
            raise ApiError(400, "bad_seq", "event seqs must be integers >= 0, increasing by 1 within a batch "
                           "(by n after a 'metrics' event)")
        if counts is not None and sum(counts) > limits.max_events_per_batch:
            raise ApiError(413, "too_many_events", f"the batch has {sum(counts):,} events (rows); the limit is "
                           f"{limits.max_events_per_batch:,}", limit=limits.max_events_per_batch)
    return Batch(session, prefix, events, too_big, too_deep, counts)


def _count(ev: dict, limits: Limits) -> int:
    """Seqs an event covers; a ``metrics`` event's ``n`` is part of its identity, so a bad one is a 400."""
    if ev.get("kind") != "metrics":
        return 1
    n = ev.get("n")
    if type(n) is not int or not 1 <= n <= limits.max_event_rows:
        raise ApiError(400, "bad_seq", f"a 'metrics' event needs 'n', an integer from 1 to {limits.max_event_rows:,} "
                       f"(the seqs it covers)")
    return n
