"""The read side: experiments, params, paged logs and metric rows, files.

Paging a JSONL file from an index must not re-read the whole file for every page (a million-row
metric read 10,000 rows at a time would be quadratic). :class:`JsonlPager` scans a file once,
incrementally as it grows, remembering the byte offset of every 1024th record (:mod:`.pager`); a
page then starts reading near its first record. That needs the file's keys to be strictly increasing, which is how
the server writes them; a file that is not (an upstream tree with duplicate indices) is read with
``ExperimentReader``, whose rules (first row of an index wins) then apply. Track entries are paged
the same way by timestamp (:class:`~.track_pages.TrackPager`).

Values go out as stored: non-finite floats stay the strings "NaN"/"Infinity"/"-Infinity".
"""

from __future__ import annotations

import bisect
import fnmatch
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .._errors import InvalidPrefix
from .._names import check_filename, check_relpath
from .._store import ExperimentReader
from .._store._jsonio import read_json
from .._store._nofollow import is_plain_chain
from .._values import encode_nonfinite
from .batch import parse_server_prefix
from .errors import ApiError
from .index import Index
from .pager import MARK_EVERY, Marks, OffsetPager
from .track_pages import TrackPager
from .track_pages import parse_line as _parse

__all__ = ["Reads", "JsonlPager"]

log = logging.getLogger("ml_dash.server")


class _Marks(Marks):
    __slots__ = ("keys", "last")

    def __init__(self, ino: int):
        super().__init__(ino)
        self.keys: List[int] = []  # the key of each marked record
        self.last = -1


class JsonlPager(OffsetPager[_Marks]):
    """Pages of JSONL files ordered by an integer key, with remembered offsets (see module doc)."""

    def _new_marks(self, ino: int) -> _Marks:
        return _Marks(ino)

    def _take_line(self, m: _Marks, start: int, line: bytes, how: Tuple[bytes, str]) -> bool:
        if not line.strip():
            return True
        k = self._key_of(line, *how)
        if k is None:
            return True  # corrupt line: skipped on read too
        if type(k) is not int or k <= m.last:
            return False
        if m.count % MARK_EVERY == 0:
            m.keys.append(k)
            m.offsets.append(start)
        m.last, m.count = k, m.count + 1
        return True

    @staticmethod
    def _key_of(line: bytes, head: bytes, key: str) -> Any:
        if line.startswith(head):  # how our writer starts every line: no need to parse it all
            end = line.find(b",", len(head))
            try:
                return int(line[len(head) : end])
            except ValueError:
                pass
        rec = _parse(line)
        return None if rec is None else rec.get(key)

    def page(
        self, path: Path, key: str, start: int, limit: int, keep: Optional[Callable[[dict[str, Any]], bool]] = None
    ) -> Optional[Tuple[List[dict[str, Any]], Optional[int]]]:
        """(records with key >= start, next start or None); None when the file is not in key order."""
        m = self._marks(path, (b'{"' + key.encode() + b'":', key))
        if not m.ordered:
            return None
        if m.count == 0:
            return [], None
        i = bisect.bisect_right(m.keys, start) - 1
        offset = m.offsets[i] if i >= 0 else 0
        rows: List[dict[str, Any]] = []
        with open(path, "rb") as fh:
            fh.seek(offset)
            pos = offset
            for line in fh:
                pos += len(line)
                if pos > m.scanned:
                    break
                rec = _parse(line)
                if rec is None:
                    continue
                k = rec.get(key)
                if type(k) is not int or k < start or (keep is not None and not keep(rec)):
                    continue
                rows.append(rec)
                if len(rows) >= limit:
                    return rows, k + 1
        return rows, None


def _metric_row(rec: dict[str, Any]) -> dict[str, Any]:
    data = rec.get("data")
    return {"index": rec["index"], "data": data if isinstance(data, dict) else {}, "createdAt": rec.get("createdAt")}


class Reads:
    """Read operations of the API, each returning the JSON body of its route."""

    def __init__(self, root: Path | str, index: Index, max_page: int):
        self.root = Path(root)
        self.index = index
        self.max_page = max_page
        self.pager = JsonlPager()
        self.track_pager = TrackPager()

    def reader(self, prefix: str) -> ExperimentReader:
        try:
            return ExperimentReader(self.root, parse_server_prefix(prefix))
        except InvalidPrefix as exc:
            raise ApiError(400, "invalid_prefix", str(exc)) from None

    def plain(self, path: Path, *, leaf_dir: bool = False) -> bool:
        """Whether ``path`` may be read: no symlink on the way from the root, the right kind of entry
        at the end (or nothing). A symlink planted in the root is never followed: what it stands
        for reads as absent."""
        if is_plain_chain(self.root, path, leaf_dir=leaf_dir):
            return True
        log.warning("not following a symlink (or a foreign entry) at %s", path.relative_to(self.root))
        return False

    def page_args(self, start: Any, limit: Any) -> Tuple[int, int]:
        try:
            start = int(start or 0)
            limit = int(limit) if limit not in (None, "") else self.max_page
        except (TypeError, ValueError):
            raise ApiError(400, "bad_query", "'start' and 'limit' must be integers") from None
        if start < 0 or limit < 1:
            raise ApiError(400, "bad_query", "'start' must be >= 0 and 'limit' >= 1")
        return start, min(limit, self.max_page)

    def experiments(self, owner: Optional[str], project: Optional[str], glob: Optional[str]) -> Dict[str, Any]:
        out = []
        for prefix in self.index.experiments(owner, project):
            if glob and not fnmatch.fnmatchcase(prefix, glob):
                continue
            reader = self.reader(prefix)
            exp = reader.experiment() if self.plain(reader.paths.experiment_json) else {}
            out.append({**exp, "prefix": prefix})
        return {"experiments": out}

    def experiment(self, prefix: str) -> Dict[str, Any]:
        reader = self.reader(prefix)
        exp = reader.experiment() if self.plain(reader.paths.experiment_json) else {}
        if not exp:
            raise ApiError(404, "not_found", f"no experiment {prefix!r}")
        return exp

    def params(self, prefix: str) -> Dict[str, Any]:
        reader = self.reader(prefix)
        return {"data": encode_nonfinite(reader.params()) if self.plain(reader.paths.parameters_json) else {}}

    def logs(self, prefix: str, start: Any, limit: Any, level: Optional[str]) -> Dict[str, Any]:
        start, limit = self.page_args(start, limit)
        reader = self.reader(prefix)
        if not self.plain(reader.paths.logs_jsonl):
            return {"logs": [], "next": None}
        keep = (lambda r: r.get("level") == level) if level else None
        got = self.pager.page(reader.paths.logs_jsonl, "sequenceNumber", start, limit, keep)
        if got is None:  # not in order on disk: the tolerant reader decides
            rows = reader.logs(start, None, level or None)
            page = [encode_nonfinite(r) for r in rows[:limit]]
            return {"logs": page, "next": page[-1]["sequenceNumber"] + 1 if len(rows) > limit else None}
        rows, nxt = got
        return {"logs": rows, "next": nxt}

    def metric_names(self, prefix: str) -> Dict[str, Any]:
        reader = self.reader(prefix)
        if not self.plain(reader.paths.metrics_dir, leaf_dir=True):
            return {"metrics": []}
        return {
            "metrics": [
                n for n in reader.metric_names() if is_plain_chain(self.root, reader.paths.metric_dir(n) / "data.jsonl")
            ]
        }

    def metric_rows(self, prefix: str, name: Optional[str], start: Any, limit: Any) -> Dict[str, Any]:
        start, limit = self.page_args(start, limit)
        reader = self.reader(prefix)
        try:
            path = reader.paths.metric_dir(name or None) / "data.jsonl"
        except InvalidPrefix as exc:
            raise ApiError(400, "invalid_name", str(exc)) from None
        if not self.plain(path):
            return {"rows": [], "next": None}
        got = self.pager.page(path, "index", start, limit)
        if got is None:
            rows = reader.metric_rows(name or None, start, None)
            page = [encode_nonfinite(r) for r in rows[:limit]]
            return {"rows": page, "next": page[-1]["index"] + 1 if len(rows) > limit else None}
        rows, nxt = got
        return {"rows": [_metric_row(r) for r in rows], "next": nxt}

    def track_topics(self, prefix: str) -> Dict[str, Any]:
        reader = self.reader(prefix)
        if not self.plain(reader.paths.tracks_dir, leaf_dir=True):
            return {"tracks": []}
        return {
            "tracks": [
                t for t in reader.track_topics() if is_plain_chain(self.root, reader.paths.track_dir(t) / "data.jsonl")
            ]
        }

    def track_entries(self, prefix: str, topic: Optional[str], start: Any, limit: Any) -> Dict[str, Any]:
        """One page of a topic's entries in timestamp order (same-timestamp lines merged)."""
        start, limit = self.page_args(start, limit)
        reader = self.reader(prefix)
        try:
            path = reader.paths.track_dir(topic or "") / "data.jsonl"
        except InvalidPrefix as exc:
            raise ApiError(400, "invalid_name", str(exc)) from None
        if not self.plain(path):
            return {"entries": [], "next": None, "total": 0}
        got = self.track_pager.page(path, start, limit)
        if got is None:  # not in timestamp order on disk: read whole, sorted and merged
            entries = reader.track_entries(topic or "")
            got = [encode_nonfinite(e) for e in entries[start : start + limit]], len(entries)
        page, total = got
        return {"entries": page, "next": start + limit if start + limit < total else None, "total": total}

    def forget_offsets(self) -> None:
        """After a rollback cut files: the pagers read them again from the start."""
        self.pager.clear()
        self.track_pager.clear()

    def files(self, prefix: str, path: Optional[str]) -> Dict[str, Any]:
        if path and path.strip("/"):
            try:
                check_relpath(path, "file path")
            except InvalidPrefix as exc:
                raise ApiError(400, "invalid_name", str(exc)) from None
        reader = self.reader(prefix)
        if not self.plain(reader.paths.files_metadata):
            return {"files": []}
        return {"files": reader.files(path or None)}

    def file(self, prefix: str, file_id: Optional[str]) -> Tuple[Path, Dict[str, Any]]:
        """(where the bytes are, the entry) of a file by id; 404 when there is none."""
        reader = self.reader(prefix)
        data = read_json(reader.paths.files_metadata, {}) if self.plain(reader.paths.files_metadata) else {}
        for entry in data.get("files", []) if isinstance(data, dict) else []:
            if isinstance(entry, dict) and str(entry.get("id")) == file_id and not entry.get("deletedAt"):
                try:
                    check_filename(entry.get("filename"))
                    path = reader.file_path(entry)
                except (InvalidPrefix, KeyError, TypeError):
                    break  # an entry we did not write and cannot place safely
                if path.is_file() and self.plain(path):
                    return path, entry
                break
        raise ApiError(404, "not_found", f"no file with id {file_id!r} in {prefix!r}")
