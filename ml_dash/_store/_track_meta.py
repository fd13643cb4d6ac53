"""A track topic's entries and its ``metadata.json`` document (upstream's fields).

Rows (the user's fields plus ``_ts``) become entries ``{"timestamp", <fields flattened with
dots>}``; the document counts them: ``columns``, ``totalEntries``, ``firstTimestamp``,
``lastTimestamp``. Shared by the local writer and the PostgreSQL store.

The local writer rewrites the document at most once per ``metadata_interval`` while entries
stream in, so after a ``kill -9`` it may not count the last entries. It therefore also records
``countedBytes`` (the size of ``data.jsonl`` its counts cover) and ``countedEntries`` (its
``totalEntries`` then); :func:`recount_tail` counts what lies past ``countedBytes`` when the
document is read again. A document another writer updated since (upstream 0.11 keeps unknown
keys but does not update them: ``totalEntries`` no longer equals ``countedEntries``) is trusted
as it stands.
"""

from __future__ import annotations

import os
from itertools import chain, islice
from operator import itemgetter, lt

from ._jsonio import loads_lenient

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, List, Sequence

__all__ = [
    "entries_from_rows",
    "new_track_meta",
    "add_to_track_meta",
    "mark_counted",
    "recount_tail",
]


_stamp_of = itemgetter("_ts")


def _flatten_track(data: Dict[str, Any], parent: str = "") -> Dict[str, Any]:
    """Upstream flattens a track entry's nested dicts with dots (``camera.pos``)."""
    out: Dict[str, Any] = {}
    for key, value in data.items():
        full = f"{parent}.{key}" if parent else key
        if isinstance(value, dict) and value:
            out.update(_flatten_track(value, full))
        else:
            out[full] = value
    return out


def entries_from_rows(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Rows (fields plus ``_ts``) as upstream's entries (``timestamp`` first, nested dicts
    flattened with dots), in timestamp order, rows sharing a timestamp merged (later fields win)."""
    stamps = list(map(_stamp_of, rows))
    # Automatic timestamps always increase: checked in one C loop, no set or sort of them.
    increasing = all(map(lt, stamps, islice(stamps, 1, None)))
    if (increasing or len(set(stamps)) == len(stamps)) and dict not in set(
        map(type, chain.from_iterable(map(dict.values, rows)))
    ):
        # The usual batch, flat and with distinct timestamps: one new dict per row, no merging.
        entries = [{"timestamp": row["_ts"], **row} for row in rows]
        for entry in entries:
            del entry["_ts"]
        if not increasing:  # by the stamps: a field named "timestamp" overrides the key
            entries = [entries[i] for i in sorted(range(len(stamps)), key=stamps.__getitem__)]
        return entries
    merged: Dict[Any, Dict[str, Any]] = {}
    for row in rows:
        data = dict(row)
        stamp = data.pop("_ts")
        flat = _flatten_track(data)
        if stamp in merged:
            merged[stamp].update(flat)
        else:
            merged[stamp] = flat
    return [{"timestamp": stamp, **merged[stamp]} for stamp in sorted(merged)]


def new_track_meta(folder: str, topic: str, created: str) -> Dict[str, Any]:
    """A topic's metadata document before its first entry (upstream's fields)."""
    return {
        "trackId": f"local-track-{folder}",
        "topic": topic,
        "columns": [],
        "totalEntries": 0,
        "firstTimestamp": None,
        "lastTimestamp": None,
        "createdAt": created,
    }


def add_to_track_meta(meta: Dict[str, Any], entries: List[Dict[str, Any]], updated: str) -> None:
    """Count a batch's entries (in timestamp order) into a topic's metadata document: columns,
    ``totalEntries``, first and last timestamps."""
    keys = set().union(*entries)  # every entry's keys, in one C loop
    _count_into_track_meta(meta, keys, len(entries), entries[0]["timestamp"], entries[-1]["timestamp"], updated)


def _count_into_track_meta(meta: Dict[str, Any], keys: Any, count: int, first: Any, last: Any, updated: str) -> None:
    """Count ``count`` entries with field names ``keys`` and timestamps from ``first`` to ``last``
    into a topic's metadata document."""
    columns = set(meta.get("columns") or []).union(keys)
    columns.discard("timestamp")
    old_first, old_last = meta.get("firstTimestamp"), meta.get("lastTimestamp")
    meta["columns"] = sorted(columns)
    meta["totalEntries"] = int(meta.get("totalEntries") or 0) + count
    meta["firstTimestamp"] = first if not isinstance(old_first, (int, float)) else min(first, old_first)
    meta["lastTimestamp"] = last if not isinstance(old_last, (int, float)) else max(last, old_last)
    meta["updatedAt"] = updated


def mark_counted(meta: Dict[str, Any], data_bytes: int) -> None:
    """Record that ``meta`` counts the first ``data_bytes`` bytes of the topic's ``data.jsonl``."""
    meta["countedBytes"] = data_bytes
    meta["countedEntries"] = meta.get("totalEntries") or 0


def recount_tail(meta: Dict[str, Any], fd: int, size: int) -> None:
    """Count into ``meta`` the entries of ``data.jsonl`` (open as ``fd``, ``size`` bytes) that it
    does not count yet: those past its ``countedBytes``, when it is our own document as we left
    it. Torn or corrupt lines are not entries (the reader skips them too)."""
    counted = meta.get("countedBytes")
    if type(counted) is not int or not 0 <= counted < size or meta.get("countedEntries") != meta.get("totalEntries"):
        return
    entries: List[Dict[str, Any]] = []
    for line in os.pread(fd, size - counted, counted).split(b"\n"):
        try:
            entry = loads_lenient(line) if line.strip() else None
        except ValueError:
            continue
        if isinstance(entry, dict) and type(entry.get("timestamp")) in (int, float):
            entries.append(entry)
    if entries:
        stamps = [e["timestamp"] for e in entries]
        keys = set().union(*entries)
        _count_into_track_meta(meta, keys, len(entries), min(stamps), max(stamps), meta.get("updatedAt", ""))
    mark_counted(meta, size)
