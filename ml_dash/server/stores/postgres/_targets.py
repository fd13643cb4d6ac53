"""The names a batch may use, for the PostgreSQL store: the same rules as the embedded store's
:class:`ml_dash.server.places.Targets`, checked against the rows instead of a disk.

Nothing collides inside a database, but a scale-out store is exported as a local layout
(``ml-dash server export``), so the names that could not be laid out there are refused here too:
a metric named after the store's own files, a file path through ``.files_metadata.json``, and a
file whose place (``files/<path>/<id>/<filename>``) is a folder of another file or the other way
round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Optional, Set, Tuple

import orjson

from ...places import CONFLICT, Refused, check_file_path, check_metric_name

if TYPE_CHECKING:
    import psycopg

__all__ = ["PgTargets"]


def _dest(path: str, file_id: str, filename: str) -> Tuple[str, ...]:
    rel = path.strip("/")
    return (*(rel.split("/") if rel else ()), file_id, filename)


class PgTargets:
    """One batch's names in one experiment (see the module doc); ``cur`` is the batch's cursor."""

    def __init__(self, cur: psycopg.Cursor[Any], prefix: str) -> None:
        self._cur = cur
        self._prefix = prefix
        self._banned: Dict[Tuple[Any, ...], Refused] = {}
        self._ids: Optional[Set[str]] = None
        self._files: Set[Tuple[str, ...]] = set()
        self._dirs: Set[Tuple[str, ...]] = set()
        self._track_folders: Dict[str, str] = {}

    def ban(self, group: Tuple[Any, ...], code: str, message: str) -> None:
        self._banned[group] = Refused(code, message)

    def _check_ban(self, group: Tuple[Any, ...]) -> None:
        if group in self._banned:
            raise self._banned[group]

    def experiment(self) -> None:
        self._check_ban(("experiment",))

    def logs(self) -> None:
        self._check_ban(("logs",))

    def params(self) -> None:
        self._check_ban(("params",))

    def files_listing(self) -> None:
        self._check_ban(("files",))

    def track(self, topic: str) -> None:
        """The topic's folder (``/`` as ``_``) holds this topic or nothing, here and in this batch."""
        self._check_ban(("track", topic))
        folder = topic.replace("/", "_")
        other = self._track_folders.setdefault(folder, topic)
        if other == topic:
            row = self._cur.execute(
                "SELECT t.topic FROM tracks t JOIN experiments e ON e.id = t.experiment_id"
                " WHERE e.prefix = %s AND t.folder = %s",
                (self._prefix, folder),
            ).fetchone()
            other = row[0] if row else topic
        if other != topic:
            raise Refused(CONFLICT, f"track topic {topic!r} would share the folder tracks/{folder} with {other!r}")

    def metric(self, name: Optional[str]) -> None:
        self._check_ban(("metric", name))
        if name is not None:
            check_metric_name(name)

    def _load(self) -> None:
        self._ids = set()
        rows = self._cur.execute(
            "SELECT f.id, f.entry FROM files f JOIN experiments e ON e.id = f.experiment_id WHERE e.prefix = %s",
            (self._prefix,),
        ).fetchall()
        for file_id, raw in rows:
            entry = orjson.loads(raw)
            self._ids.add(file_id)
            self._add(_dest(str(entry.get("path") or "/"), file_id, str(entry.get("filename") or "")))

    def _add(self, dest: Tuple[str, ...]) -> None:
        self._files.add(dest)
        for i in range(1, len(dest)):
            self._dirs.add(dest[:i])

    def file(self, path: str, file_id: str, filename: str) -> None:
        self._check_ban(("file", file_id))
        rel = path.strip("/")
        if rel:
            check_file_path(rel)
        if self._ids is None:
            self._load()
        assert self._ids is not None  # _load sets it
        if file_id in self._ids:
            return  # stored already: the event changes nothing, so it cannot collide
        dest = _dest(path, file_id, filename)
        if dest in self._dirs or any(dest[:i] in self._files for i in range(1, len(dest))):
            raise Refused(
                CONFLICT,
                f"file {path.rstrip('/')}/{filename} (id {file_id}) collides with another file of this experiment",
            )
        self._ids.add(file_id)
        self._add(dest)
