"""``exp.tracks(topic)``: timestamped entries (robot states, camera frames), upstream's tracks.

``exp.tracks("robot/pos").append(q=[...], _ts=2.0)`` costs the caller what a metric row costs: the
fields dict plus ``_ts`` goes to the topic's own deque, drained by the same worker as metrics into
``Sink.write_tracks(topic, rows)``. ``_ts`` is the entry's timestamp in seconds (any finite number:
simulation time works); without it the time of the call is used, made unique within the
experiment (a later entry never gets the same automatic timestamp); ``_ts=-1`` repeats the previous
timestamp (of a track append or an explicit metric ``_ts``). Entries of one topic with the same
timestamp are one entry: their fields merge, later ones winning.

Stored as upstream stores them: ``tracks/<topic with / as _>/data.jsonl`` (``{"timestamp", ...}``,
nested dicts flattened with dots) and ``metadata.json``; in remote mode each entry is a ``track``
event (PROTOCOL.md). Two topics that map to one folder (``a/b`` and ``a_b``) are refused.
"""

from __future__ import annotations

import bisect
import math
import time

from ._errors import InvalidPrefix, InvalidValue
from ._names import check_relpath
from ._values import FAST_TYPES, normalize_value

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, List, Optional, Union

    from ._recorder import Recorder
    from ._sink import Sink

__all__ = [
    "Tracks",
    "TrackBuilder",
    "TrackSlice",
    "track_folder",
    "normalize_track_fields",
    "resolve_stamps",
    "AUTO_TS",
    "TRACK_FORMATS",
]

_now = time.time
TRACK_FORMATS = ("json", "jsonl", "mocap", "parquet")


def track_folder(topic: str) -> str:
    """Upstream's folder name of a topic: its ``/`` become ``_``."""
    return topic.replace("/", "_")


def _plain(value: Any, limit: int, where: str) -> Any:
    """A track value: arrays of any shape become lists (upstream's ``tolist``), then the usual rules."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None and getattr(value, "ndim", False) and getattr(value, "shape", None) is not None:
        value = tolist()
    if isinstance(value, dict):
        return {k: _plain(v, limit, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v, limit, where) for v in value]
    return normalize_value(value, limit, where)


def normalize_track_fields(fields: Dict[str, Any], limit: int, where: str) -> Dict[str, Any]:
    out = {}
    for key, value in fields.items():
        if not isinstance(key, str):
            raise InvalidValue(f"{where}: field names must be str, got {type(key).__name__}")
        out[key] = value if key == "_ts" else _plain(value, limit, f"{where}.{key}")
    return out


#: Key of an entry's automatic timestamp (the time of the call) until the writer makes it unique
#: in its topic and stores it as ``_ts``. Not an identifier, so no keyword argument can collide.
AUTO_TS = "\x00auto_ts"


def resolve_stamps(rows: List[Dict[str, Any]], last: List[float]) -> None:
    """In the writer, in order: an automatic timestamp becomes ``_ts``, made later than the
    topic's previous automatic one (``last[0]``) by at least a microsecond, so two appends without
    ``_ts`` never share a timestamp (which would merge them). Rows already resolved are left."""
    prev = last[0]
    for row in rows:
        at = row.pop(AUTO_TS, None)
        if at is not None:
            if at <= prev:
                at = prev + 1e-6
            prev = row["_ts"] = at
    last[0] = prev


class TrackBuilder:
    """``exp.tracks(topic)``: appends entries to one topic, reads them back."""

    __slots__ = ("name", "queue", "wake_at", "_pipe", "_rec", "_limit", "_last")

    def write_to(self, sink: Sink, rows: List[Dict[str, Any]]) -> None:
        """Hand entries taken from ``queue`` to the sink (the pipeline's drain calls this)."""
        sink.write_tracks(self.name, rows)

    def __init__(self, rec: Recorder, topic: str, last: List[Optional[float]]):
        self._rec = rec
        self.name = topic
        self.queue: Any = None  # this topic's deque and wake mark: both set by the pipeline
        self.wake_at = 0
        self._pipe = rec.pipe
        self._limit = rec.config.max_string_bytes
        #: The experiment's last track timestamp (shared by its topics), which ``_ts=-1`` repeats.
        self._last = last
        self._pipe.add_metric(self)

    @property
    def topic(self) -> str:
        return self.name

    def append(self, **fields: Any) -> "TrackBuilder":
        """Append one entry: ``append(q=[...], e=[...], _ts=2.0)``. See the module docstring for ``_ts``."""
        for v in fields.values():
            if type(v) not in FAST_TYPES:
                fields = normalize_track_fields(fields, self._limit, f"track {self.name!r}")
                break
        if "_ts" in fields:
            return self._append_timed(fields)
        # The hot path costs what a metric row does: the writer makes the time unique (resolve_stamps).
        fields[AUTO_TS] = self._last[0] = _now()
        q = self.queue
        if len(q) >= self.wake_at:
            self._pipe.overflow(q, fields)
        else:
            q.append(fields)
        return self

    def _append_timed(self, fields: Dict[str, Any]) -> "TrackBuilder":
        ts = fields["_ts"]
        if ts == -1 and (type(ts) is int or type(ts) is float):  # upstream: the previous timestamp
            last = self._last[0] if self._last[0] is not None else self._rec.last_ts
            fields["_ts"] = ts = last if last is not None else _now()
        elif (type(ts) is not float and type(ts) is not int) or not math.isfinite(ts):
            raise InvalidValue(f"track {self.name!r}: _ts must be a finite number of seconds, got {ts!r}")
        self._last[0] = self._rec.last_ts = ts
        q = self.queue
        if len(q) >= self.wake_at:
            self._pipe.overflow(q, fields)
        else:
            q.append(fields)
        return self

    def flush(self) -> "TrackBuilder":
        """Ask the background writer to store what is queued now; returns at once (chainable)."""
        self._pipe.wake()
        return self

    def _entries(self, start: Optional[float], end: Optional[float]) -> List[Dict[str, Any]]:
        return self._rec.reader().track_entries(self.name, start, end)

    def read(
        self,
        start_timestamp: Optional[float] = None,
        end_timestamp: Optional[float] = None,
        columns: Optional[List[str]] = None,
        format: str = "json",
    ) -> Any:
        """Entries with ``start <= timestamp <= end`` in timestamp order, as upstream returns them:
        ``json``: ``{"entries": [...], "count": n}``; ``jsonl``: bytes; ``mocap``: upstream's mocap
        dict; ``parquet``: bytes (needs pyarrow). ``columns`` keeps only those fields (and timestamp)."""
        if format not in TRACK_FORMATS:
            raise ValueError(f"unknown track format {format!r}; use one of {', '.join(TRACK_FORMATS)}")
        entries = self._entries(start_timestamp, end_timestamp)
        if columns:
            keep = set(columns) | {"timestamp"}
            entries = [{k: v for k, v in e.items() if k in keep} for e in entries]
        if format == "json":
            return {"entries": entries, "count": len(entries)}
        if format == "jsonl":
            import json

            return "\n".join(json.dumps(e) for e in entries).encode("utf-8")
        if format == "mocap":
            return _mocap(self.name, entries)
        try:
            import io

            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise ImportError("read(format='parquet') needs the package 'pyarrow': pip install pyarrow") from None
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(entries) if entries else pa.table({"timestamp": []}), buf)
        return buf.getvalue()

    def list_entries(self) -> List[Dict[str, Any]]:
        """Every entry of the topic, in timestamp order."""
        return self._entries(None, None)

    def slice(self, start_timestamp: Optional[float] = None, end_timestamp: Optional[float] = None) -> "TrackSlice":
        """The entries between two timestamps (inclusive), iterable, with ``findByTime`` (floor match)."""
        return TrackSlice(self, start_timestamp, end_timestamp)

    def __repr__(self) -> str:
        return f"<TrackBuilder {self.name!r} of {self._rec.prefix}>"


def _mocap(topic: str, entries: List[Dict[str, Any]]) -> Dict[str, Any]:
    if not entries:
        return {
            "version": "1.0",
            "metadata": {"topic": topic, "frameCount": 0, "duration": 0, "startTime": 0, "endTime": 0},
            "channels": [],
            "frames": [],
        }
    first, last = entries[0]["timestamp"], entries[-1]["timestamp"]
    channels = sorted({k for e in entries for k in e if k != "timestamp"})
    return {
        "version": "1.0",
        "metadata": {
            "topic": topic,
            "description": None,
            "tags": [],
            "fps": 30,
            "duration": last - first,
            "frameCount": len(entries),
            "startTime": first,
            "endTime": last,
        },
        "channels": channels,
        "frames": [{"time": e["timestamp"], **{k: v for k, v in e.items() if k != "timestamp"}} for e in entries],
    }


class TrackSlice:
    """Entries of one topic between two timestamps: iterate, ``len()``, ``findByTime(ts)``.

    ``findByTime(ts)`` is a floor match: the entry with the largest timestamp ``<= ts``; a list of
    timestamps gives a list of entries. A timestamp before the first entry raises KeyError.
    """

    def __init__(self, track: TrackBuilder, start: Optional[float], end: Optional[float]):
        self._track = track
        self._start = start
        self._end = end
        self._data: Optional[List[Dict[str, Any]]] = None
        self._times: List[float] = []

    def _load(self) -> List[Dict[str, Any]]:
        if self._data is None:
            self._data = self._track._entries(self._start, self._end)
            self._times = [e["timestamp"] for e in self._data]
        return self._data

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def findByTime(self, timestamp: Union[float, List[float]], neighborhood_size: int = 10) -> Any:
        """The entry at or just before ``timestamp`` (a list of timestamps: a list of entries)."""
        if isinstance(timestamp, (list, tuple)):
            return [self._floor(t) for t in timestamp]
        return self._floor(timestamp)

    find_by_time = findByTime

    def _floor(self, timestamp: float) -> Dict[str, Any]:
        data = self._load()
        i = bisect.bisect_right(self._times, timestamp)
        if i == 0:
            first = f"; the first is at {self._times[0]}" if self._times else " (the slice is empty)"
            raise KeyError(f"no entry of track {self._track.name!r} at or before {timestamp}{first}")
        return data[i - 1]

    def __repr__(self) -> str:
        return f"TrackSlice(topic={self._track.name!r}, start={self._start}, end={self._end})"


class Tracks:
    """``exp.tracks``: ``exp.tracks("robot/pos").append(...)``; ``exp.tracks.flush()``."""

    def __init__(self, rec: Recorder):
        self._rec = rec
        self._builders: Dict[str, TrackBuilder] = {}
        self._folders: Dict[str, str] = {}
        self._last: List[Optional[float]] = [None]

    def __call__(self, topic: str) -> TrackBuilder:
        b = self._builders.get(topic)
        if b is None:
            b = self._builders[topic] = self._make(topic)
        return b

    def _make(self, topic: str) -> TrackBuilder:
        name = check_relpath(topic, "track topic")
        folder = track_folder(name)
        if len(folder.encode("utf-8", "surrogatepass")) > 255:
            raise InvalidPrefix(f"track topic {topic!r} is longer than 255 bytes")
        other = self._folders.get(folder)
        if other is not None and other != name:
            raise InvalidPrefix(f"track topics {other!r} and {name!r} would share the folder tracks/{folder}")
        stored = self._rec.stored_track_topic(folder)
        if stored is not None and stored != name:
            raise InvalidPrefix(
                f"track topic {name!r} would share the folder tracks/{folder} with the stored topic {stored!r}"
            )
        self._folders[folder] = name
        if name in self._builders:
            return self._builders[name]
        return TrackBuilder(self._rec, name, self._last)

    def flush(self) -> "Tracks":
        """Ask the background writer to store what is queued now; returns at once."""
        self._rec.pipe.wake()
        return self

    def topics(self) -> List[str]:
        """Every topic of the experiment that has entries."""
        return self._rec.reader().track_topics()
