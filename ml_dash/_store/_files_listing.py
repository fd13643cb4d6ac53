"""``files/.files_metadata.json``: the listing of an experiment's files, upstream's format.

Every change rewrites the listing atomically; entries are never removed, only marked deleted
(``deletedAt``), and their bytes stay. Callers hold the experiment's lock (``ExperimentWriter.lock``).
"""

from __future__ import annotations

from ._jsonio import atomic_write_json, iso_utc, read_json

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any, Dict, List, Optional, Sequence, Tuple

__all__ = ["add", "delete", "update"]


def _norm_path(path: Any) -> str:
    return "/" + str(path or "").strip("/")


def _entries(listing: Path) -> Tuple[Dict[str, Any], Optional[List[Any]]]:
    current = read_json(listing)
    if not isinstance(current, dict) or not isinstance(current.get("files"), list):
        return {"files": []}, None
    return current, current["files"]


def add(listing: Path, entries: Sequence[Dict[str, Any]]) -> None:
    """Append entries (the file bytes are already in place).

    A new entry with the path and file name of a live one replaces it as upstream's overwrite
    does, but softly: the older entry gets ``deletedAt`` and its bytes stay.
    """
    current, files = _entries(listing)
    if files is None:
        files = current["files"]
    known = {e.get("id") for e in files if isinstance(e, dict)}
    for e in entries:
        if e["id"] in known:
            continue
        known.add(e["id"])
        where = (_norm_path(e.get("path")), e.get("filename"))
        for old in files:
            if (
                isinstance(old, dict)
                and not old.get("deletedAt")
                and (_norm_path(old.get("path")), old.get("filename")) == where
            ):
                old["deletedAt"] = old["updatedAt"] = e.get("uploadedAt") or iso_utc()
        files.append(e)
    atomic_write_json(listing, current)


def delete(listing: Path, deletions: Sequence[Tuple[str, float]]) -> int:
    """Soft-delete files by id (``deletedAt`` set, bytes kept); unknown or deleted ids change
    nothing. Returns how many were deleted now."""
    current, files = _entries(listing)
    if files is None:
        return 0
    by_id = {str(e.get("id")): e for e in files if isinstance(e, dict)}
    done = 0
    for file_id, ts in deletions:
        entry = by_id.get(str(file_id))
        if entry is not None and not entry.get("deletedAt"):
            entry["deletedAt"] = entry["updatedAt"] = iso_utc(ts)
            done += 1
    if done:
        atomic_write_json(listing, current)
    return done


def update(listing: Path, updates: Sequence[Tuple[str, Dict[str, Any], float]]) -> int:
    """Replace description, tags or metadata of live files by id; returns how many changed."""
    current, files = _entries(listing)
    if files is None:
        return 0
    by_id = {str(e.get("id")): e for e in files if isinstance(e, dict)}
    done = 0
    for file_id, changes, ts in updates:
        entry = by_id.get(str(file_id))
        if entry is not None and not entry.get("deletedAt"):
            entry.update({k: v for k, v in changes.items() if k in ("description", "tags", "metadata")})
            entry["updatedAt"] = iso_utc(ts)
            done += 1
    if done:
        atomic_write_json(listing, current)
    return done
