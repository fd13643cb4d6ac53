"""Applies ingest plans to the local layout, exactly once and atomically with respect to crashes.

For each batch, under the experiment's lock:

1. the session's ``acked_seq`` decides which events are new (:func:`.ingest.plan_batch`);
2. an *intent* is committed to the index: every file the batch will append to with its size now,
   every JSON file it will rewrite with its content now, every file it will create;
3. the writer (``ml_dash._store.ExperimentWriter``, the same code local mode uses) appends and
   rewrites; then every touched file and folder is fsynced;
4. one index transaction moves ``acked_seq`` and drops the intent. Only then is the batch acked.

A crash between 2 and 4 leaves the intent: at the next start :meth:`Store.recover` truncates the
appended files back, restores the JSON files and removes created ones, so the batch is either
wholly stored with its ``acked_seq`` or not at all, and a resend stores it once.

Metric indices and log sequence numbers come from the writer at step 3, under the lock, so several
sessions writing one experiment get contiguous numbers.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set

import orjson

from .._store import ExperimentWriter
from .._store._jsonio import read_json
from .._store._layout import ExperimentPaths
from .blobs import BlobStore, fsync_dir
from .errors import ApiError
from .index import Index
from .batch import Batch, parse_server_prefix
from .ingest import Plan, plan_batch
from .limits import Limits

__all__ = ["Store"]

log = logging.getLogger("ml_dash.server")

_MAX_OPEN_WRITERS = 256


class _Slot:
    """One experiment's lock and (while cached) its writer."""

    __slots__ = ("lock", "writer")

    def __init__(self):
        self.lock = threading.Lock()
        self.writer: Optional[ExperimentWriter] = None


class Store:
    """The embedded store of one server root: layout files + index + blobs."""

    def __init__(self, root: Path | str, index: Index, blobs: BlobStore, limits: Limits):
        self.root = Path(root)
        self.index = index
        self.blobs = blobs
        self.limits = limits
        self._slots: Dict[str, _Slot] = {}
        self._open: "OrderedDict[str, None]" = OrderedDict()  # prefixes with a cached writer, LRU order
        self._guard = threading.Lock()
        #: Called after a rollback in a running server (readers drop what they cached of the files).
        self.on_rollback: Optional[Callable[[], None]] = None

    # -- writers and locks -------------------------------------------------------------------------

    def _slot(self, prefix: str) -> _Slot:
        with self._guard:
            slot = self._slots.get(prefix)
            if slot is None:
                slot = self._slots[prefix] = _Slot()
            return slot

    def _writer(self, prefix: str, slot: _Slot) -> ExperimentWriter:
        """The cached writer (caller holds ``slot.lock``); closes the least recently used idle ones."""
        if slot.writer is None:
            slot.writer = ExperimentWriter(self.root, parse_server_prefix(prefix))
        with self._guard:
            self._open[prefix] = None
            self._open.move_to_end(prefix)
            victims = [p for p in self._open if p != prefix][: max(0, len(self._open) - _MAX_OPEN_WRITERS)]
            for p in victims:
                other = self._slots[p]
                if other.lock.acquire(blocking=False):  # never close a writer another thread is using
                    try:
                        if other.writer is not None:
                            other.writer.close()
                            other.writer = None
                        del self._open[p]
                    finally:
                        other.lock.release()
        return slot.writer

    def _drop_writer(self, prefix: str, slot: _Slot) -> None:
        if slot.writer is not None:
            slot.writer.close()
            slot.writer = None
        with self._guard:
            self._open.pop(prefix, None)

    def close(self) -> None:
        for prefix, slot in list(self._slots.items()):
            with slot.lock:
                self._drop_writer(prefix, slot)

    # -- ingest ------------------------------------------------------------------------------------

    def ingest(self, batch: Batch, crash_before_commit: bool = False) -> Dict[str, Any]:
        """Store the new events of ``batch``; the answer body. Raises ApiError (409) as PROTOCOL.md says.

        ``crash_before_commit`` (fault injection only) ends the process after the data is written and
        fsynced but before the commit: the crash the intents exist for.
        """
        prefix = str(batch.prefix)
        slot = self._slot(prefix)
        with slot.lock:
            owner_prefix, acked = self.index.claim_session(batch.session, prefix)
            if owner_prefix != prefix:
                raise ApiError(409, "session_prefix_mismatch",
                               f"session {batch.session} writes {owner_prefix!r}, not {prefix!r}", acked_seq=acked)
            plan = plan_batch(batch, acked, self.limits, prefix, self.blobs.size)
            if plan.last_seq > acked:
                self._apply(batch, plan, slot, crash_before_commit)
        answer = {
            "session": batch.session,
            "acked_seq": plan.last_seq,
            "stored": plan.stored,
            "duplicates": plan.duplicates,
            "rejected": plan.rejected,
        }
        if plan.blob_missing:
            raise ApiError(409, "blob_missing", f"upload blob {plan.blob_missing} first, then resend",
                           checksum=plan.blob_missing, acked_seq=plan.last_seq, rejected=plan.rejected)
        return answer

    def _apply(self, batch: Batch, plan: Plan, slot: _Slot, crash_before_commit: bool = False) -> None:
        prefix = batch.prefix
        key = str(prefix)
        intent_id = None
        if not plan.empty():
            writer = self._writer(key, slot)
            with writer.lock():
                intent = self._intent(writer.paths, plan)
                intent_id = self.index.add_intent(key, orjson.dumps(intent))
                try:
                    self._write(writer, plan)
                    self._sync(intent)
                except BaseException as exc:
                    self._drop_writer(key, slot)  # its handles may point at files we are about to cut
                    self._rollback(intent)
                    self.index.drop_intent(intent_id)
                    if self.on_rollback is not None:
                        self.on_rollback()
                    if isinstance(exc, OSError):
                        log.error("storage error while storing a batch for %s: %s", key, exc)
                        raise ApiError(503, "storage_unavailable", f"the server could not store the batch: {exc.strerror}",
                                       headers={"Retry-After": "5"}) from None
                    raise
                if crash_before_commit:
                    os._exit(70)
        self.index.commit_batch(batch.session, plan.last_seq, intent_id, key, prefix.owner, prefix.project)

    # -- the three steps of a batch ----------------------------------------------------------------

    def _rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _intent(self, paths: ExperimentPaths, plan: Plan) -> Dict[str, List]:
        append: List[list] = []
        restore: List[list] = []
        create: List[str] = []

        def size_of(p: Path) -> int:
            try:
                return os.stat(p).st_size
            except FileNotFoundError:
                return -1

        def content_of(p: Path) -> Optional[str]:
            try:
                return base64.b64encode(p.read_bytes()).decode("ascii")
            except FileNotFoundError:
                return None

        for name in plan.metrics:
            mdir = paths.metric_dir(name)
            append.append([self._rel(mdir / "data.jsonl"), size_of(mdir / "data.jsonl")])
            restore.append([self._rel(mdir / "metadata.json"), content_of(mdir / "metadata.json")])
        if plan.logs:
            append.append([self._rel(paths.logs_jsonl), size_of(paths.logs_jsonl)])
            restore.append([self._rel(paths.log_sequence), content_of(paths.log_sequence)])
        kinds = {op[0] for op in plan.ops}
        if kinds & {"experiment", "status"}:
            restore.append([self._rel(paths.experiment_json), content_of(paths.experiment_json)])
        if "params" in kinds:
            restore.append([self._rel(paths.parameters_json), content_of(paths.parameters_json)])
        if plan.files:
            restore.append([self._rel(paths.files_metadata), content_of(paths.files_metadata)])
            for entry, _ in plan.files:
                dest = paths.file_dir(entry["path"], entry["id"]) / entry["filename"]
                if not dest.exists():
                    create.append(self._rel(dest))
        # Every experiment has an experiment.json (a server root is a dash_root): create it with the
        # first batch, whatever that batch holds.
        if not paths.experiment_json.exists() and not kinds & {"experiment", "status"}:
            restore.append([self._rel(paths.experiment_json), None])
            plan.ops.insert(0, ("experiment", {}, time.time()))
        return {"append": append, "restore": restore, "create": create}

    def _write(self, w: ExperimentWriter, plan: Plan) -> None:
        now = time.time()
        for op in plan.ops:
            if op[0] == "experiment":
                w.upsert_experiment(op[1], op[2])
            elif op[0] == "status":
                w.set_status(op[1], op[3], op[2])
            elif op[0] == "params":
                w.merge_params(op[1], op[2])
        for name, rows in plan.metrics.items():
            w.append_metric(name, rows, now)
        if plan.logs:
            w.append_logs(plan.logs)
        if plan.files:
            current = read_json(w.paths.files_metadata, {})
            known = {e.get("id") for e in current.get("files", []) if isinstance(e, dict)} if isinstance(current, dict) else set()
            entries = []
            for entry, checksum in plan.files:
                if entry["id"] in known:  # idempotent by file id: the first upload of an id stays
                    continue
                known.add(entry["id"])
                self.blobs.link_into(checksum, w.paths.file_dir(entry["path"], entry["id"]) / entry["filename"])
                entries.append(entry)
            if entries:
                w.add_files(entries)

    def _sync(self, intent: Dict[str, List]) -> None:
        """fsync every file the batch wrote and every folder whose entries it changed."""
        dirs: Set[Path] = set()
        for rel, before in intent["append"]:
            p = self.root / rel
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dirs.add(p.parent)
            if before < 0:
                dirs.update(self._new_ancestors(p))
        for rel, before in intent["restore"]:
            p = self.root / rel
            try:  # the writer may skip fsync for derived files; what we ack must be on disk
                fd = os.open(p, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            dirs.add(p.parent)
            if before is None:
                dirs.update(self._new_ancestors(p))
        for rel in intent["create"]:
            p = self.root / rel
            dirs.update(self._new_ancestors(p))
        for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
            if d.is_dir():
                fsync_dir(d)

    def _new_ancestors(self, p: Path) -> List[Path]:
        # A new file may sit in new folders; their entries in their parents must be durable too.
        out, d = [], p.parent
        while d != self.root and self.root in d.parents:
            out.append(d.parent)
            d = d.parent
        return out

    def _rollback(self, intent: Dict[str, List]) -> None:
        """Undo a batch that was not committed: cut appends, restore JSON files, remove created files."""
        dirs: Set[Path] = set()
        for rel, before in intent["append"]:
            p = self.root / rel
            dirs.add(p.parent)
            if before < 0:
                _unlink(p)
            elif p.exists() and p.stat().st_size > before:
                os.truncate(p, before)
                fd = os.open(p, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        for rel, content in intent["restore"]:
            p = self.root / rel
            dirs.add(p.parent)
            if content is None:
                _unlink(p)
            else:
                tmp = p.with_name(f".{p.name}.restore")
                with open(tmp, "wb") as fh:
                    fh.write(base64.b64decode(content))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, p)
        for rel in intent["create"]:
            p = self.root / rel
            dirs.add(p.parent)
            _unlink(p)
        for d in dirs:
            if d.is_dir():
                fsync_dir(d)

    def recover(self) -> int:
        """Roll back every batch a crash left half-applied; the number rolled back."""
        count = 0
        for intent_id, prefix, raw in self.index.intents():
            writer = ExperimentWriter(self.root, parse_server_prefix(prefix))
            try:
                with writer.lock():
                    self._rollback(orjson.loads(raw))
            finally:
                writer.close()
            self.index.drop_intent(intent_id)
            log.warning("rolled back a batch for %s that a crash left uncommitted", prefix)
            count += 1
        return count


def _unlink(p: Path) -> None:
    try:
        os.unlink(p)
    except FileNotFoundError:
        pass
