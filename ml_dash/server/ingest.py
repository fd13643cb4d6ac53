"""Per-event validation of ingest batches: which events are new, which are rejected, grouped for the writer.

The output is a :class:`Plan`: the events that are new for the session, already grouped the way the
writer takes them (metric rows per name, log rows, and the few other events in order), plus what was
rejected. Nothing here touches the disk; :mod:`.store` applies a plan.

Cost matters (ingest target: about a million metric points a second): a batch of only well-formed
metric events is checked column-wise with C-level passes (:func:`_all_metrics_fast`); anything
else goes through the per-event loop, which gives the same result event by event. A columnar
``metrics`` event (many rows, one seq each) takes one step of that loop; its rows are checked and
built per column in :mod:`.columns`.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_left
from collections import deque
from itertools import repeat
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._events import LEVELS, STATUSES
from .._store._encode import ColumnRows
from .batch import MAX_DEPTH, Batch
from .columns import TS_MAX, RecordRejected, expand_metrics
from .errors import ApiError
from .event_fields import FILE_ID_RE, checked_name, event_ts, file_entry, opt_dict, opt_str, opt_strs
from .limits import Limits
from .places import Refused, Targets

__all__ = ["Plan", "plan_batch", "STATUSES", "LEVELS"]

# STATUSES and LEVELS: the SDK's own vocabularies (ml_dash/_events.py), one definition for both sides.
_NUM = (int, float)


class Plan:
    """What to store for one batch, grouped for the writer, plus the answer's counts."""

    __slots__ = (
        "metrics",
        "logs",
        "ops",
        "files",
        "rejected",
        "last_seq",
        "stored",
        "duplicates",
        "gaps",
        "blob_missing",
        "tracks",
        "deletes",
        "updates",
    )

    def __init__(self) -> None:
        #: Per metric, rows in order: dicts, or ColumnRows blocks from columnar events.
        self.metrics: Dict[Optional[str], List[Any]] = {}
        self.logs: List[tuple[Any, ...]] = []
        #: ("experiment", fields, ts) | ("status", status, reason, ts) | ("params", data, ts), in seq order
        self.ops: List[tuple[Any, ...]] = []
        #: (file entry, checksum)
        self.files: List[Tuple[Dict[str, Any], str]] = []
        self.rejected: List[Dict[str, Any]] = []
        self.last_seq = -1
        self.stored = 0
        self.duplicates = 0
        self.gaps = 0
        self.blob_missing: Optional[str] = None
        #: Per track topic, entries in order: the data plus ``_ts`` (the entry's timestamp).
        self.tracks: Dict[str, List[Dict[str, Any]]] = {}
        #: (file id, ts) of soft deletes, applied after the batch's files.
        self.deletes: List[Tuple[str, float]] = []
        #: (file id, {description/tags/metadata}, ts), applied after the files, before the deletes.
        self.updates: List[Tuple[str, Dict[str, Any], float]] = []

    def empty(self) -> bool:
        return not (self.metrics or self.logs or self.ops or self.files or self.tracks or self.deletes or self.updates)

    def answer(self, session: str) -> Dict[str, Any]:
        """The ingest answer once the plan is applied (every store gives the same one); a plan
        cut short by a missing blob raises the 409 that asks for it, with what was acknowledged."""
        if self.blob_missing:
            raise ApiError(
                409,
                "blob_missing",
                f"upload blob {self.blob_missing} first, then resend",
                checksum=self.blob_missing,
                acked_seq=self.last_seq,
                rejected=self.rejected,
            )
        return {
            "session": session,
            "acked_seq": self.last_seq,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
        }


def plan_batch(
    batch: Batch, acked: int, limits: Limits, prefix: str, blob_size: Callable[[str], Optional[int]], targets: Targets
) -> Plan:
    """Group the events after ``acked`` into a :class:`Plan`; 409 ``seq_gap`` if the batch starts later.

    ``blob_size(checksum) -> int | None`` says whether a file event's bytes are there. A file event
    whose blob is missing ends the plan before it (``plan.blob_missing``), so the events before it
    are still stored and acknowledged. ``targets`` says whether an event's files may be written
    (:mod:`.places`); an event whose target collides is rejected.
    """
    plan = Plan()
    events = batch.events
    if not events:
        plan.last_seq = acked
        return plan
    first = batch.first_seq
    assert first is not None  # there are events
    if first > acked + 1:
        raise ApiError(
            409,
            "seq_gap",
            f"the batch starts at seq {first} but the server has up to {acked}; resend from {acked + 1}",
            acked_seq=acked,
        )
    counts = batch.counts
    offset = 0  # rows of the first new event already stored (acked_seq fell inside a columnar event)
    if counts is None:
        skip = min(acked + 1 - first, len(events))
        plan.duplicates = skip
    else:
        lasts = [ev["seq"] + n - 1 for ev, n in zip(events, counts)]
        skip = bisect_left(lasts, acked + 1)  # events wholly at or below acked_seq
        plan.duplicates = min(acked + 1, lasts[-1] + 1) - first
        if skip < len(events):
            offset = max(0, acked + 1 - events[skip]["seq"])
    plan.last_seq = max(acked, first + plan.duplicates - 1)
    if (
        counts is None
        and skip < len(events)
        and not batch.too_big
        and not batch.too_deep
        and _all_metrics_fast(plan, events[skip:] if skip else events, limits, targets)
    ):
        return plan
    now = time.time()
    metrics = plan.metrics
    names: Dict[str, str] = {}  # as sent -> checked and normalized
    too_big = batch.too_big
    too_deep = batch.too_deep
    max_fields = limits.max_fields
    for pos in range(skip, len(events)):
        ev = events[pos]
        seq = ev["seq"]
        try:
            if pos in too_big:
                raise Refused("event_too_large", f"the event is over the limit of {limits.max_event_bytes:,} bytes")
            kind = ev.get("kind")
            if kind == "metrics":  # columnar: n rows, n seqs; its own rejections are per row
                off = offset if pos == skip else 0
                _columnar(plan, ev, off, names, limits, now, pos in too_deep, targets)
                continue
            if pos in too_deep:
                raise Refused("too_deep", f"the event nests deeper than {MAX_DEPTH} levels")
            if kind == "metric":  # the hot path: keep it short
                name = _metric_name(ev.get("name"), names, limits, targets)
                data = ev.get("data")
                if type(data) is not dict:
                    raise Refused("bad_field", "a metric event's 'data' must be an object")
                if len(data) > max_fields:
                    raise Refused("too_many_fields", f"'data' has {len(data):,} fields; the limit is {max_fields:,}")
                ts = ev.get("ts")
                if type(ts) is not float or not 0 <= ts < TS_MAX:
                    ts = event_ts(ev, now)
                data["_ts"] = ts
                rows = metrics.get(name)
                if rows is None:
                    rows = metrics[name] = []
                rows.append(data)
            elif kind == "log":
                raw_level: Any = ev.get("level")
                level = LEVELS.get(raw_level) if type(raw_level) is str else None
                if level is None:
                    raise Refused("bad_level", f"log level must be one of {sorted(set(LEVELS.values()))}")
                message = ev.get("message")
                if type(message) is not str:
                    raise Refused("bad_field", "a log event's 'message' must be a string")
                targets.logs()
                plan.logs.append((event_ts(ev, now), level, message, opt_dict(ev, "metadata", limits)))
            elif kind == "params":
                data = ev.get("data")
                if type(data) is not dict or len(data) > max_fields:
                    raise Refused(
                        "bad_field", f"a params event's 'data' must be an object of at most {max_fields:,} fields"
                    )
                targets.params()
                plan.ops.append(("params", data, event_ts(ev, now)))
            elif kind == "experiment":
                fields = {
                    "description": opt_str(ev, "description", limits.max_event_bytes),
                    "tags": opt_strs(ev, "tags", limits),
                    "bindrs": opt_strs(ev, "bindrs", limits),
                    "metadata": opt_dict(ev, "metadata", limits),
                }
                plan.ops.append(("experiment", fields, event_ts(ev, now)))
            elif kind == "status":
                status = ev.get("status")
                if status not in STATUSES:
                    raise Refused("bad_status", f"status must be one of {sorted(STATUSES)}")
                plan.ops.append(("status", status, opt_str(ev, "reason", limits.max_event_bytes), event_ts(ev, now)))
            elif kind == "file":
                entry, checksum = file_entry(ev, limits, prefix, now)
                targets.file(entry["path"], entry["id"], entry["filename"])
                size = blob_size(checksum)
                if size is None:
                    plan.blob_missing = checksum
                    break
                if size != entry["sizeBytes"]:
                    raise Refused(
                        "size_mismatch", f"the blob {checksum} has {size} bytes, the event says {entry['sizeBytes']}"
                    )
                plan.files.append((entry, checksum))
            elif kind == "track":
                topic = _track_topic(ev.get("topic"), names, limits, targets)
                stamp: Any = ev.get("timestamp")
                if type(stamp) not in _NUM or not math.isfinite(stamp):
                    raise Refused("bad_ts", "a track event's 'timestamp' must be a finite number")
                data = ev.get("data")
                if type(data) is not dict or len(data) >= max_fields or "_ts" in data:
                    raise Refused(
                        "bad_field",
                        f"a track event's 'data' must be an object of fewer than {max_fields:,} fields, without '_ts'",
                    )
                data["_ts"] = stamp
                plan.tracks.setdefault(topic, []).append(data)
            elif kind == "file_update":
                file_id = ev.get("id")
                if type(file_id) is not str or not FILE_ID_RE.fullmatch(file_id):
                    raise Refused("bad_file_id", "a file 'id' must match [A-Za-z0-9_-]{1,64}")
                changes = {
                    k: v
                    for k, v in (
                        ("description", opt_str(ev, "description", limits.max_event_bytes)),
                        ("tags", opt_strs(ev, "tags", limits)),
                        ("metadata", opt_dict(ev, "metadata", limits)),
                    )
                    if v is not None
                }
                targets.files_listing()
                plan.updates.append((file_id, changes, event_ts(ev, now)))
            elif kind == "file_delete":
                file_id = ev.get("id")
                if type(file_id) is not str or not FILE_ID_RE.fullmatch(file_id):
                    raise Refused("bad_file_id", "a file 'id' must match [A-Za-z0-9_-]{1,64}")
                targets.files_listing()
                plan.deletes.append((file_id, event_ts(ev, now)))
            elif kind == "gap":  # the client lost this seq (e.g. a corrupt spool record): consume it
                plan.gaps += 1
            else:
                raise Refused(
                    "unknown_kind", f"unknown event kind {kind[:64] if type(kind) is str else type(kind).__name__!r}"
                )
            plan.stored += 1
        except Refused as rej:
            # Every seq of the event is consumed; a columnar event is reported once, with its rows.
            lo = seq + (offset if pos == skip else 0)
            rows = seq + (counts[pos] if counts else 1) - lo
            plan.rejected.append(
                {"seq": lo, "code": rej.code, "message": rej.message, **({"n": rows} if rows > 1 else {})}
            )
            plan.last_seq = lo + rows - 1
            continue
        plan.last_seq = seq
    return plan


def _metric_name(name: Any, names: Dict[str, str], limits: Limits, targets: Targets) -> Optional[str]:
    """A metric name checked and normalized (None: the unnamed metric), with its target checked;
    once per distinct name in a batch (``names`` caches, and ``targets`` remembers its answers)."""
    if name is None:
        targets.metric(None)
        return None
    if type(name) is not str:
        raise Refused("invalid_name", "a metric 'name' must be a string or null")
    norm = names.get(name)
    if norm is None:
        norm = names[name] = checked_name(name, "metric name", limits)
    targets.metric(norm)  # remembered there: a name refused once is refused again at once
    return norm


def _columnar(
    plan: Plan,
    ev: dict[str, Any],
    offset: int,
    names: Dict[str, str],
    limits: Limits,
    now: float,
    deep: bool,
    targets: Targets,
) -> None:
    """Add the new rows of a columnar ``metrics`` event to ``plan``; raises Refused for the whole event."""
    name = _metric_name(ev.get("name"), names, limits, targets)
    try:
        # A value may nest as deep as in a per-row event ({"data": {key: value}}), no deeper.
        rows, bad = expand_metrics(ev, offset, limits.max_fields, now, MAX_DEPTH - 2, deep)
    except RecordRejected as rej:
        raise Refused(rej.code, rej.message) from None
    seq = ev["seq"]
    if rows:
        have = plan.metrics.get(name)
        if have is None:
            have = plan.metrics[name] = []
        if isinstance(rows, ColumnRows):
            have.append(rows)  # the store encodes the block from its columns
        else:
            have.extend(rows)
    for i, code, message in bad:
        plan.rejected.append({"seq": seq + i, "code": code, "message": message})
    plan.stored += len(rows)
    plan.last_seq = seq + ev["n"] - 1


def _all_metrics_fast(plan: Plan, new: List[dict[str, Any]], limits: Limits, targets: Targets) -> bool:
    """The common batch, all well-formed metric events, checked with C-level passes over columns.

    Fills ``plan`` and returns True only when every event is valid, so the result is exactly what
    the per-event loop would give; any doubt returns False (and the caller runs that loop).
    """
    get = dict.get
    kinds = list(map(get, new, repeat("kind")))
    if kinds.count("metric") != len(kinds):
        return False
    tss: List[Any] = list(map(get, new, repeat("ts")))
    if set(map(type, tss)) != {float} or min(tss) < 0 or max(tss) >= TS_MAX:
        return False
    datas: List[Any] = list(map(get, new, repeat("data")))
    if set(map(type, datas)) != {dict} or max(map(len, datas)) > limits.max_fields:
        return False
    names = list(map(get, new, repeat("name")))
    try:
        distinct = set(names)
    except TypeError:  # an unhashable name (a list...): the slow path names the culprit
        return False
    norm = {}
    for name in distinct:
        if name is not None and type(name) is not str:
            return False
        try:
            norm[name] = None if name is None else checked_name(name, "metric name", limits)
            targets.metric(norm[name])
        except Refused:
            return False
    deque(map(dict.__setitem__, datas, repeat("_ts"), tss), maxlen=0)  # data["_ts"] = ts, in C
    if len(distinct) == 1:
        plan.metrics[norm[names[0]]] = datas
    else:
        metrics = plan.metrics
        for name, data in zip(names, datas):
            key = norm[name]
            rows = metrics.get(key)
            if rows is None:
                rows = metrics[key] = []
            rows.append(data)
    plan.stored = len(new)
    plan.last_seq = new[-1]["seq"]
    return True


def _track_topic(topic: Any, names: Dict[str, str], limits: Limits, targets: Targets) -> str:
    """A track topic checked and normalized (a metric name's rules), with its folder checked: two
    topics may never share one (``a/b`` and ``a_b`` both map to ``tracks/a_b``)."""
    if type(topic) is not str:
        raise Refused("invalid_name", "a track 'topic' must be a string")
    key = "\x00track:" + topic
    checked = names.get(key)
    if checked is None:
        checked = names[key] = checked_name(topic, "track topic", limits)
    targets.track(checked)
    return checked
