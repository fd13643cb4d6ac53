"""Reads one experiment back, tolerating everything upstream is known to write wrong.

Tolerated: duplicate metric indices (the first row of an index wins), corrupt or torn lines
(skipped), truncated or empty JSON files (treated as missing), bare NaN/Infinity literals,
``createdAt`` missing from parameters.json. Non-finite floats stored as strings come back as floats.
"""

from __future__ import annotations

import os
from pathlib import Path

from .._names import Prefix, parse_prefix
from .._values import decode_nonfinite
from ._jsonio import loads_lenient, read_json
from ._layout import UNNAMED_METRIC, ExperimentPaths

TYPE_CHECKING = False  # typing costs ~5 ms to import; annotations here are strings anyway
if TYPE_CHECKING:
    from typing import Any, Dict, Iterator, List, Optional

__all__ = ["ExperimentReader", "list_experiments"]

_DATA_DIRS = frozenset(("logs", "metrics", "files", "tracks"))


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = loads_lenient(line)
            except ValueError:
                continue  # torn or corrupt line
            if isinstance(rec, dict):
                yield rec


class ExperimentReader:
    """Read access to one experiment in a local layout (a ``dash_root`` or a server root)."""

    def __init__(self, root: os.PathLike[str] | str, prefix: Prefix | str):
        if isinstance(prefix, str):
            prefix = parse_prefix(prefix)
        self.paths = ExperimentPaths(root, prefix)

    def exists(self) -> bool:
        return self.paths.dir.is_dir()

    def experiment(self) -> Dict[str, Any]:
        """experiment.json as a dict ({} when missing)."""
        data = read_json(self.paths.experiment_json, {})
        return data if isinstance(data, dict) else {}

    def params(self) -> Dict[str, Any]:
        """The flattened parameters ({} when none)."""
        data = read_json(self.paths.parameters_json, {})
        if not isinstance(data, dict) or not isinstance(data.get("data"), dict):
            return {}
        params: Dict[str, Any] = decode_nonfinite(data["data"])
        return params

    def logs(self, start: int = 0, limit: Optional[int] = None, level: Optional[str] = None) -> List[dict[str, Any]]:
        """Log records with ``sequenceNumber >= start``, in order, at most ``limit``."""
        out: Dict[int, dict[str, Any]] = {}
        for rec in _iter_jsonl(self.paths.logs_jsonl):
            seq = rec.get("sequenceNumber")
            if not isinstance(seq, int) or seq < start or seq in out:
                continue
            if level is not None and rec.get("level") != level:
                continue
            out[seq] = rec
        rows = [out[k] for k in sorted(out)]
        return rows if limit is None else rows[:limit]

    def metric_names(self) -> List[Optional[str]]:
        """Names of every metric with data; the unnamed metric is None."""
        base = self.paths.metrics_dir
        names: List[Optional[str]] = []
        if not base.is_dir():
            return names
        for dirpath, _dirs, files in os.walk(base):
            if "data.jsonl" in files:
                rel = Path(dirpath).relative_to(base).as_posix()
                names.append(None if rel == UNNAMED_METRIC else rel)
        return sorted(names, key=lambda n: "" if n is None else n)

    def metric_rows(self, name: Optional[str], start: int = 0, limit: Optional[int] = None) -> List[dict[str, Any]]:
        """Rows ``{"index", "data", "createdAt"}`` with ``index >= start``, ordered by index."""
        path = self.paths.metric_dir(name) / "data.jsonl"
        out: Dict[int, dict[str, Any]] = {}
        for rec in _iter_jsonl(path):
            idx = rec.get("index")
            if isinstance(idx, str) and idx.isdigit():  # some upstream versions wrote it as a string
                idx = int(idx)
            if not isinstance(idx, int) or idx < start or idx in out:
                continue
            data = rec.get("data")
            rec = {
                "index": idx,
                "data": decode_nonfinite(data) if isinstance(data, dict) else {},
                "createdAt": rec.get("createdAt"),
            }
            out[idx] = rec
        rows = [out[k] for k in sorted(out)]
        return rows if limit is None else rows[:limit]

    def metric_info(self, name: Optional[str]) -> Dict[str, Any]:
        data = read_json(self.paths.metric_dir(name) / "metadata.json", {})
        return data if isinstance(data, dict) else {}

    def files(self, path: Optional[str] = None, include_deleted: bool = False) -> List[Dict[str, Any]]:
        """File entries, optionally only those under ``path``; deleted ones are hidden by default."""
        data = read_json(self.paths.files_metadata, {})
        entries = data.get("files", []) if isinstance(data, dict) else []
        want = None if path is None else "/" + path.strip("/")
        out = []
        for e in entries:
            if not isinstance(e, dict) or (e.get("deletedAt") and not include_deleted):
                continue
            if (
                want is not None
                and want != "/"
                and not (e.get("path") == want or str(e.get("path", "")).startswith(want + "/"))
            ):
                continue
            out.append(e)
        return out

    def track_topics(self) -> List[str]:
        """Topics with entries (the topic in metadata.json, else the folder name)."""
        base = self.paths.tracks_dir
        if not base.is_dir():
            return []
        topics = []
        for tdir in sorted(base.iterdir()):
            if (tdir / "data.jsonl").is_file():
                meta = read_json(tdir / "metadata.json", {})
                topic = meta.get("topic") if isinstance(meta, dict) else None
                topics.append(topic if isinstance(topic, str) else tdir.name)
        return topics

    def track_entries(
        self, topic: str, start: Optional[float] = None, end: Optional[float] = None
    ) -> List[dict[str, Any]]:
        """Entries ``{"timestamp", ...}`` with ``start <= timestamp <= end``, in timestamp order.
        Lines with the same timestamp are one entry (fields merged in file order, later winning),
        as appends with one timestamp are meant to be; torn or corrupt lines are skipped."""
        merged: Dict[float, dict[str, Any]] = {}
        for rec in _iter_jsonl(self.paths.track_dir(topic) / "data.jsonl"):
            stamp: Any = rec.get("timestamp")
            if (
                type(stamp) not in (int, float)
                or (start is not None and stamp < start)
                or (end is not None and stamp > end)
            ):
                continue
            rec = decode_nonfinite(rec)
            if stamp in merged:
                merged[stamp].update(rec)
            else:
                merged[stamp] = rec
        return [merged[k] for k in sorted(merged)]

    def file_path(self, entry: Dict[str, Any]) -> Path:
        """Where the bytes of a file entry are stored."""
        return self.paths.file_dir(str(entry.get("path") or ""), str(entry["id"])) / str(entry["filename"])


def list_experiments(root: os.PathLike[str] | str, pattern: Optional[str] = None) -> List[str]:
    """Prefixes of every experiment under ``root`` (a folder with experiment.json), optionally matching a glob."""
    import fnmatch

    root = Path(root)
    found: List[str] = []
    if not root.is_dir():
        return found
    for dirpath, dirs, files in os.walk(root):
        if "experiment.json" in files:
            rel = Path(dirpath).relative_to(root).as_posix()
            if pattern is None or fnmatch.fnmatchcase(rel, pattern):
                found.append(rel)
            # an experiment's own data folders hold no experiments; a nested prefix may still live here
            dirs[:] = [d for d in dirs if d not in _DATA_DIRS and not d.startswith(".")]
        else:
            dirs[:] = [d for d in dirs if not d.startswith(".")]
    return sorted(found)
