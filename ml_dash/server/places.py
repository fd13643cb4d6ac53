"""Where a batch may write: the names the store keeps for itself, what is already on disk, and
what the batch itself is about to create.

An experiment folder holds files and folders the store names (``experiment.json``,
``parameters.json``, ``logs/``, ``metrics/<name>/data.jsonl`` + ``metadata.json``,
``files/.files_metadata.json``, ``files/<path>/<id>/<filename>``). A name from a client must
never land on one of them, and two names from clients must never land on each other (a metric
``x/data.jsonl`` beside a metric ``x``, a file whose path runs through another file's id folder).
Either would make a write fail half-way with ``ENOTDIR``/``EISDIR``, or mix two things in one file.

Two kinds of checks, both before anything is written:

* static: a metric name segment is never ``data.jsonl`` or ``metadata.json``, a metric is never
  named ``None`` (the unnamed metric's folder), a file path never starts with
  ``.files_metadata.json`` (:data:`INVALID`, answered as the event's ``invalid_name``);
* dynamic (:class:`Targets`): every folder on the way to a target is a real folder or absent,
  every target file a regular file or absent, never a symlink, and no target of this batch is a
  folder of another one (``path_conflict``).

Prefix segments are checked where prefixes are parsed (:func:`.batch.parse_server_prefix`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Set, Tuple

from .._errors import InvalidPrefix
from .._names import METRIC_FILES
from .._names import check_file_path as _check_file_path
from .._names import check_metric_name as _check_metric_name
from .._store._jsonio import read_json
from .._store._layout import ExperimentPaths
from .._store._nofollow import is_plain_chain
from .storage_errors import code_for, is_transient

__all__ = ["Refused", "Targets", "check_metric_name", "check_file_path", "METRIC_FILES", "INVALID", "CONFLICT"]

INVALID = "invalid_name"
CONFLICT = "path_conflict"


class Refused(Exception):
    """One event (or one group of events) may not be stored: an error code and a message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def check_metric_name(rel: str) -> str:
    """A normalized metric name that does not collide with the store's own names, else Refused
    (the rule is the SDK's: :func:`ml_dash._names.check_metric_name`)."""
    try:
        return _check_metric_name(rel)
    except InvalidPrefix as exc:
        raise Refused(INVALID, str(exc)) from None


def check_file_path(rel: str) -> str:
    """A normalized file folder (no leading '/') that does not collide with the store's names."""
    try:
        return _check_file_path(rel)
    except InvalidPrefix as exc:
        raise Refused(INVALID, str(exc)) from None


class Targets:
    """The targets of one batch in one experiment, checked once each (see the module doc).

    ``ban(group, code, message)`` refuses a group from then on: the store uses it when a write
    failed for a reason the checks could not foresee, then plans the batch again.
    """

    def __init__(self, root: Path, paths: ExperimentPaths):
        self.root = root
        self.paths = paths
        self._checked: Dict[Tuple[Any, ...], Optional[Refused]] = {}
        self._banned: Dict[Tuple[Any, ...], Refused] = {}
        self._dirs: Set[Path] = set()  # folders this batch's files need
        self._files: Set[Path] = set()  # files this batch creates under files/
        self._ids: Optional[Set[str]] = None  # file ids the experiment has
        self._track_folders: Dict[str, str] = {}  # tracks/<folder> -> the topic of this batch there

    def ban(self, group: Tuple[Any, ...], code: str, message: str) -> None:
        self._banned[group] = Refused(code, message)
        self._checked.pop(group, None)

    def _once(self, group: Tuple[Any, ...], check: Callable[[], object]) -> None:
        if group in self._banned:
            raise self._banned[group]
        if group not in self._checked:
            try:
                check()
                self._checked[group] = None
            except Refused as exc:
                self._checked[group] = exc
        refused = self._checked[group]
        if refused is not None:
            raise refused

    def _plain(self, path: Path, what: str, *, leaf_dir: bool = False) -> None:
        try:
            plain = is_plain_chain(self.root, path, leaf_dir=leaf_dir)
        except OSError as exc:
            if is_transient(exc):
                raise
            raise Refused(code_for(exc), f"{what}: the server's disk refused the name: {exc.strerror or exc}") from None
        if not plain:
            raise Refused(
                CONFLICT,
                f"{what} collides with something else on the server's disk "
                f"(a file where a folder belongs, a folder where a file belongs, or a symlink)",
            )

    def experiment(self) -> None:
        """The experiment folder and experiment.json (a problem there concerns the whole batch)."""

        def check() -> None:
            self._plain(self.paths.dir, "the experiment folder", leaf_dir=True)
            self._plain(self.paths.experiment_json, "experiment.json")
            self._plain(self.paths.lock, "the experiment's lock file")

        self._once(("experiment",), check)

    def logs(self) -> None:
        def check() -> None:
            self._plain(self.paths.logs_jsonl, "the log file")
            self._plain(self.paths.log_sequence, "the log sequence file")

        self._once(("logs",), check)

    def params(self) -> None:
        self._once(("params",), lambda: self._plain(self.paths.parameters_json, "parameters.json"))

    def metric(self, name: Optional[str]) -> None:
        """``name`` normalized, or None for the unnamed metric."""

        def check() -> None:
            if name is not None:
                check_metric_name(name)
            mdir = self.paths.metric_dir(name)
            self._plain(mdir / "data.jsonl", f"metric {name!r}")
            self._plain(mdir / "metadata.json", f"metric {name!r}")

        self._once(("metric", name), check)

    def file(self, path: str, file_id: str, filename: str) -> None:
        """``path`` normalized with its leading '/' ('/' for the top); ``filename`` one segment."""
        rel = path.strip("/")
        if rel:
            check_file_path(rel)
        self._once(("files",), lambda: self._plain(self.paths.files_metadata, "the file listing"))
        if file_id in self._known_ids():
            return  # stored already: the event changes nothing, so it cannot collide

        def check() -> None:
            dest = self.paths.file_dir(path, file_id) / filename
            what = f"file {path.rstrip('/')}/{filename} (id {file_id})"
            self._plain(dest, what)
            depth = len(dest.relative_to(self.paths.files_dir).parts) - 1
            folders = set(list(dest.parents)[:depth])  # Path.parents takes a slice only from 3.10
            if dest in self._dirs or folders & self._files or self.paths.files_metadata in folders:
                raise Refused(CONFLICT, f"{what} collides with another file of this batch")
            self._dirs |= folders
            self._files.add(dest)

        self._once(("file", file_id), check)

    def files_listing(self) -> None:
        """The file listing alone (a file deletion rewrites only it)."""
        self._once(("files",), lambda: self._plain(self.paths.files_metadata, "the file listing"))

    def track(self, topic: str) -> None:
        """A normalized track topic: its folder ``tracks/<topic with / as _>`` holds this topic or
        nothing, and no other topic of this batch maps to it."""

        def check() -> None:
            tdir = self.paths.track_dir(topic)
            self._plain(tdir / "data.jsonl", f"track {topic!r}")
            self._plain(tdir / "metadata.json", f"track {topic!r}")
            meta = read_json(tdir / "metadata.json", {})
            stored = meta.get("topic") if isinstance(meta, dict) else None
            other = self._track_folders.setdefault(tdir.name, topic)
            if isinstance(stored, str) and stored != topic:
                other = stored
            if other != topic:
                raise Refused(
                    CONFLICT, f"track topic {topic!r} would share the folder tracks/{tdir.name} with {other!r}"
                )

        self._once(("track", topic), check)

    def _known_ids(self) -> Set[str]:
        if self._ids is None:
            data = read_json(self.paths.files_metadata, {})
            entries = data.get("files", []) if isinstance(data, dict) else []
            self._ids = {str(e.get("id")) for e in entries if isinstance(e, dict)}
        return self._ids
