"""Crash safety of one batch: its *intent* (what it is about to change, recorded before it writes),
the fsync of what it wrote, and the rollback that undoes a batch that was not committed.

An intent lists, relative to the server root, every file the batch appends to with its size now,
every JSON file it rewrites with its content now, and every file it creates. Rolling back cuts
the appends to those sizes, restores the contents and removes the created files. It is safe to
repeat, because while an intent is pending nothing else writes that experiment (see
:class:`.store.Store`), so "before" is still the last acknowledged state.

A rollback never follows a symlink and never removes what the batch did not create: a folder
where a created file should be, or a missing file, is "nothing to undo". What it cannot undo
(the disk refused) is returned, so the caller can say so and try again later.
"""

from __future__ import annotations

import base64
import errno
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from .._atomic import replacing
from .._store._layout import ExperimentPaths
from .._store._nofollow import entry_kind
from .blobs import fsync_dir

if TYPE_CHECKING:
    from .ingest import Plan
from .storage_errors import is_transient

__all__ = ["capture", "sync", "rollback"]

log = logging.getLogger("ml_dash.server")


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _size(p: Path) -> int:
    try:
        return os.stat(p).st_size
    except FileNotFoundError:
        return -1


def _content(p: Path) -> Optional[str]:
    try:
        return base64.b64encode(p.read_bytes()).decode("ascii")
    except FileNotFoundError:
        return None


def capture(root: Path, paths: ExperimentPaths, plan: Plan) -> Dict[str, List[Any]]:
    """The intent of ``plan`` (an :class:`.ingest.Plan`) on the experiment at ``paths``.

    Also adds the creation of experiment.json to ``plan`` when the experiment has none: every
    experiment has one (a server root is a dash_root), whatever its first batch holds.
    """
    import time

    append: List[list[Any]] = []
    restore: List[list[Any]] = []
    create: List[str] = []
    for name in plan.metrics:
        mdir = paths.metric_dir(name)
        append.append([_rel(root, mdir / "data.jsonl"), _size(mdir / "data.jsonl")])
        restore.append([_rel(root, mdir / "metadata.json"), _content(mdir / "metadata.json")])
    if plan.logs:
        append.append([_rel(root, paths.logs_jsonl), _size(paths.logs_jsonl)])
        restore.append([_rel(root, paths.log_sequence), _content(paths.log_sequence)])
    kinds = {op[0] for op in plan.ops}
    if kinds & {"experiment", "status"}:
        restore.append([_rel(root, paths.experiment_json), _content(paths.experiment_json)])
    if "params" in kinds:
        restore.append([_rel(root, paths.parameters_json), _content(paths.parameters_json)])
    for topic in plan.tracks:
        tdir = paths.track_dir(topic)
        append.append([_rel(root, tdir / "data.jsonl"), _size(tdir / "data.jsonl")])
        restore.append([_rel(root, tdir / "metadata.json"), _content(tdir / "metadata.json")])
    if plan.files or plan.deletes or plan.updates:
        restore.append([_rel(root, paths.files_metadata), _content(paths.files_metadata)])
        for entry, _ in plan.files:
            dest = paths.file_dir(entry["path"], entry["id"]) / entry["filename"]
            if not dest.exists():
                create.append(_rel(root, dest))
    if not paths.experiment_json.exists() and not kinds & {"experiment", "status"}:
        restore.append([_rel(root, paths.experiment_json), None])
        plan.ops.insert(0, ("experiment", {}, time.time()))
    return {"append": append, "restore": restore, "create": create}


def _fsync_file(p: Path) -> None:
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _new_ancestors(root: Path, p: Path) -> List[Path]:
    # A new file may sit in new folders; their entries in their parents must be durable too.
    out, d = [], p.parent
    while d != root and root in d.parents:
        out.append(d.parent)
        d = d.parent
    return out


def sync(root: Path, intent: Dict[str, List[Any]]) -> None:
    """fsync every file the batch wrote and every folder whose entries it changed."""
    dirs: Set[Path] = set()
    for rel, before in intent["append"]:
        p = root / rel
        _fsync_file(p)
        dirs.add(p.parent)
        if before < 0:
            dirs.update(_new_ancestors(root, p))
    for rel, before in intent["restore"]:
        p = root / rel
        try:  # the writer may skip fsync for derived files; what we ack must be on disk
            _fsync_file(p)
        except FileNotFoundError:
            continue
        dirs.add(p.parent)
        if before is None:
            dirs.update(_new_ancestors(root, p))
    for rel in intent["create"]:
        dirs.update(_new_ancestors(root, root / rel))
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        if d.is_dir():
            fsync_dir(d)


class _Undo:
    """One rollback: the steps run one by one; what cannot be undone is collected, not raised."""

    def __init__(self, root: Path):
        self.root = root
        self.problems: List[str] = []
        self.transient = False
        self.dirs: Set[Path] = set()

    def _failed(self, rel: str, what: str, exc: Optional[OSError] = None) -> None:
        why = f"{exc.strerror or exc}" if exc is not None else "something else is in the way"
        self.problems.append(f"{rel}: could not {what}: {why}")
        if exc is not None and is_transient(exc):
            self.transient = True

    def _folder(self, rel: str) -> Optional[bool]:
        """The parent folder chain of ``rel``: True all plain folders, None missing, False not plain."""
        here = self.root
        for part in Path(rel).parent.parts:
            here = here / part
            kind = entry_kind(here)
            if kind is None:
                return None
            if kind != stat.S_IFDIR:
                return False
        return True

    def remove(self, rel: str) -> None:
        """Remove a file the batch created (a folder there, or nothing, is not ours to touch)."""
        folder = self._folder(rel)
        if folder is None:
            return
        if folder is False:
            self._failed(rel, "remove it", None)
            return
        p = self.root / rel
        self.dirs.add(p.parent)
        try:
            if entry_kind(p) == stat.S_IFDIR:
                log.warning("rollback: %s is a folder now, not the file the batch created; left as it is", rel)
                return
            os.unlink(p)
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            self._failed(rel, "remove it", exc)

    def cut(self, rel: str, before: int) -> None:
        """Cut an append back to ``before`` bytes (-1: the batch created the file)."""
        if before < 0:
            self.remove(rel)
            return
        folder = self._folder(rel)
        if folder is None:
            return
        if folder is False:
            self._failed(rel, f"cut it to {before} bytes", None)
            return
        p = self.root / rel
        try:
            fd = os.open(p, os.O_WRONLY | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                log.warning("rollback: %s is a symlink now; not followed", rel)
                return
            self._failed(rel, f"cut it to {before} bytes", exc)
            return
        try:
            if os.fstat(fd).st_size > before:
                os.ftruncate(fd, before)
                os.fsync(fd)
        except OSError as exc:
            self._failed(rel, f"cut it to {before} bytes", exc)
        finally:
            os.close(fd)

    def restore(self, rel: str, content: Optional[str]) -> None:
        """Put a JSON file back as it was (None: it did not exist)."""
        if content is None:
            self.remove(rel)
            return
        folder = self._folder(rel)
        if folder is False:
            self._failed(rel, "restore it", None)
            return
        p = self.root / rel
        self.dirs.add(p.parent)
        try:
            with replacing(p, fsync=True) as fh:  # creates the folders again if they went missing
                fh.write(base64.b64decode(content))
        except OSError as exc:
            self._failed(rel, "restore it", exc)

    def sync_dirs(self) -> None:
        for d in self.dirs:
            try:
                if entry_kind(d) == stat.S_IFDIR:
                    fsync_dir(d)
            except OSError as exc:
                self._failed(_rel(self.root, d), "make its entries durable", exc)


def rollback(root: Path, intent: Dict[str, List[Any]]) -> "_Undo":
    """Undo a batch that was not committed; the result lists what could not be undone
    (``.problems``) and whether trying again later may help (``.transient``)."""
    undo = _Undo(root)
    for rel, before in intent.get("append", []):
        undo.cut(rel, before)
    for rel, content in intent.get("restore", []):
        undo.restore(rel, content)
    for rel in intent.get("create", []):
        undo.remove(rel)
    undo.sync_dirs()
    return undo
