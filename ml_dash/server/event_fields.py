"""Checks of the single fields of an ingest event: times, optional strings, objects and string
lists, names that become paths, and a file event's entry. Each raises :class:`.places.Refused`
with the code the client is answered (one bad event never refuses the rest of its batch)."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from .._errors import InvalidPrefix
from .._names import check_filename, check_relpath
from .columns import TS_MAX
from .limits import Limits
from .places import Refused

__all__ = ["FILE_ID_RE", "CHECKSUM_RE", "event_ts", "opt_str", "opt_dict", "opt_strs", "checked_name", "file_entry"]

FILE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
CHECKSUM_RE = re.compile(r"[0-9a-f]{64}")
_NUM = (int, float)


def event_ts(ev: dict[str, Any], now: float) -> float:
    ts: Any = ev.get("ts")
    if ts is None:  # the client did not know the time of the call: store ours
        return now
    if type(ts) not in _NUM or not 0 <= ts < TS_MAX:
        raise Refused("bad_ts", "'ts' must be epoch seconds (a number >= 0)")
    checked: float = ts  # an int stays an int, as the client sent it
    return checked


def opt_str(ev: dict[str, Any], key: str, limit: int) -> Optional[str]:
    v = ev.get(key)
    if v is not None and (type(v) is not str or len(v) > limit):
        raise Refused("bad_field", f"'{key}' must be a string of at most {limit:,} characters, or null")
    return v


def opt_dict(ev: dict[str, Any], key: str, limits: Limits) -> Optional[dict[str, Any]]:
    v = ev.get(key)
    if v is None:
        return None
    if type(v) is not dict:
        raise Refused("bad_field", f"'{key}' must be an object or null")
    if len(v) > limits.max_fields:
        raise Refused("too_many_fields", f"'{key}' has {len(v):,} fields; the limit is {limits.max_fields:,}")
    return v


def opt_strs(ev: dict[str, Any], key: str, limits: Limits) -> Optional[List[str]]:
    v = ev.get(key)
    if v is None:
        return None
    if (
        type(v) is not list
        or len(v) > limits.max_fields
        or any(type(s) is not str or len(s) > limits.max_name_bytes for s in v)
    ):
        raise Refused(
            "bad_field",
            f"'{key}' must be a list of strings (at most {limits.max_fields} of {limits.max_name_bytes} chars)",
        )
    return v


def checked_name(value: Any, what: str, limits: Limits) -> str:
    """A metric name or file path: safe relative segments, at most max_name_bytes as a whole."""
    try:
        rel = check_relpath(value, what)
    except InvalidPrefix as exc:
        raise Refused("invalid_name", str(exc)) from None
    if len(rel.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        raise Refused("name_too_long", f"{what} is over {limits.max_name_bytes} bytes")
    return rel


def file_entry(ev: dict[str, Any], limits: Limits, prefix: str, now: float) -> Tuple[Dict[str, Any], str]:
    from .._store._jsonio import iso_utc

    file_id = ev.get("id")
    if type(file_id) is not str or not FILE_ID_RE.fullmatch(file_id):
        raise Refused("bad_file_id", "a file 'id' must match [A-Za-z0-9_-]{1,64}")
    path = ev.get("path")
    if path is None or (type(path) is str and not path.strip("/")):
        path = "/"
    else:
        path = "/" + checked_name(path, "file path", limits)
    filename: Any = ev.get("filename")
    try:
        check_filename(filename)
    except InvalidPrefix as exc:
        raise Refused("invalid_name", str(exc)) from None
    if len(filename.encode("utf-8", "surrogatepass")) > limits.max_name_bytes:
        raise Refused("name_too_long", f"file name is over {limits.max_name_bytes} bytes")
    checksum = ev.get("checksum")
    if type(checksum) is not str or not CHECKSUM_RE.fullmatch(checksum):
        raise Refused("bad_checksum", "'checksum' must be the lowercase sha256 hex of the file")
    size = ev.get("size")
    if type(size) is not int or size < 0:
        raise Refused("bad_field", "'size' must be an integer >= 0")
    when = iso_utc(event_ts(ev, now))
    entry = {
        "id": file_id,
        "experimentId": prefix,
        "path": path,
        "filename": filename,
        "description": opt_str(ev, "description", limits.max_event_bytes),
        "tags": opt_strs(ev, "tags", limits) or [],
        "bindrs": opt_strs(ev, "bindrs", limits) or [],
        "contentType": opt_str(ev, "content_type", limits.max_name_bytes) or "application/octet-stream",
        "sizeBytes": size,
        "checksum": checksum,
        "metadata": opt_dict(ev, "metadata", limits),
        "uploadedAt": when,
        "updatedAt": when,
        "deletedAt": None,
    }
    return entry, checksum
