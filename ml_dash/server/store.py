"""Applies ingest plans to the local layout, exactly once and atomically with respect to crashes.

For each batch, under the experiment's lock:

1. the session's ``acked_seq`` decides which events are new (:func:`.ingest.plan_batch`);
2. an *intent* is committed to the index: every file the batch will append to with its size now,
   every JSON file it will rewrite with its content now, every file it will create;
3. the writer (``ml_dash._store.ExperimentWriter``, the same code local mode uses) appends and
   rewrites; then every touched file and folder is fsynced;
4. one index transaction moves ``acked_seq`` and drops the intent. Only then is the batch acked.

A crash between 2 and 4 leaves the intent: at the next start :meth:`Store.recover` truncates the
appended files back, restores the JSON files and removes created ones (:mod:`.rollback`), so the
batch is either wholly stored with its ``acked_seq`` or not at all, and a resend stores it once.

Before step 2 every name is checked against the store's own files, the disk and the rest of the
batch (:mod:`.places`). A storage error in step 3 is rolled back at once; a permanent one that
belongs to one group of the batch (a metric, a file, the logs) rejects that group's events and
the batch is planned and written again without them, so one bad event never holds up the rest.

Metric indices and log sequence numbers come from the writer at step 3, under the lock, so several
sessions writing one experiment get contiguous numbers.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import orjson

from .._store import ExperimentWriter
from .._store._jsonio import read_json
from .._store._layout import ExperimentPaths
from .batch import Batch, parse_server_prefix
from .blobs import BlobStore
from .errors import ApiError
from .index import Index
from .ingest import Plan, plan_batch
from .limits import Limits
from .places import Refused, Targets
from .rollback import _Undo, capture, rollback, sync
from .storage_errors import code_for, is_transient

__all__ = ["Store"]

log = logging.getLogger("ml_dash.server")

_MAX_OPEN_WRITERS = 256


class _Slot:
    """One experiment's lock and (while cached) its writer."""

    __slots__ = ("lock", "writer")

    def __init__(self) -> None:
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
        #: Per experiment, rollbacks not finished yet: (intent id, intent), oldest first.
        self._pending: Dict[str, List[Tuple[Optional[int], Dict[str, List[Any]]]]] = {}

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
        try:
            with slot.lock:
                plan = self._ingest_locked(batch, prefix, slot, crash_before_commit)
        except sqlite3.Error as exc:
            raise _unavailable(prefix, exc) from None
        except OSError as exc:  # outside the writes (looking at names on disk, settling a rollback)
            if is_transient(exc):
                raise _unavailable(prefix, exc) from None
            raise ApiError(400, code_for(exc), f"the server's disk refused this batch: {exc.strerror or exc}") from None
        return plan.answer(batch.session)

    def _ingest_locked(self, batch: Batch, prefix: str, slot: _Slot, crash_before_commit: bool) -> Plan:
        self._settle(prefix, slot)
        owner_prefix, acked = self.index.claim_session(batch.session, prefix)
        if owner_prefix != prefix:
            raise ApiError(
                409,
                "session_prefix_mismatch",
                f"session {batch.session} writes {owner_prefix!r}, not {prefix!r}",
                acked_seq=acked,
            )
        targets = Targets(self.root, ExperimentPaths(self.root, batch.prefix))
        try:
            targets.experiment()
        except Refused as exc:
            raise ApiError(400, exc.code, exc.message) from None
        for _ in range(_MAX_PLANS):
            plan = plan_batch(batch, acked, self.limits, prefix, self.blobs.size, targets)
            if plan.last_seq <= acked:
                return plan
            try:
                self._apply(batch, plan, slot, crash_before_commit)
                return plan
            except _GroupFailed as failed:  # rolled back; a permanent error of one group
                if failed.group[0] == "experiment":  # the experiment's own files: the whole batch
                    raise ApiError(400, failed.code, failed.message) from None
                targets.ban(failed.group, failed.code, failed.message)  # plan again without it
        raise ApiError(400, "storage_rejected", "the server's disk refused too many parts of this batch")

    def _apply(self, batch: Batch, plan: Plan, slot: _Slot, crash_before_commit: bool = False) -> None:
        """Write, fsync and commit one plan; on a storage error roll it back and say what to answer."""
        prefix = batch.prefix
        key = str(prefix)
        intent_id = None
        intent: Dict[str, List[Any]] = {}
        try:
            if not plan.empty():
                writer = self._writer(key, slot)
                with writer.lock():
                    intent = capture(self.root, writer.paths, plan)
                    intent_id = self.index.add_intent(key, orjson.dumps(intent))
                    try:
                        self._write(writer, plan)
                        sync(self.root, intent)
                    except BaseException:
                        self._undo(key, slot, intent_id, intent)
                        raise
                    if crash_before_commit:
                        os._exit(70)
            try:
                self.index.commit_batch(batch.session, plan.last_seq, intent_id, key, prefix.owner, prefix.project)
            except sqlite3.Error:
                if intent_id is not None:
                    self._undo(key, slot, intent_id, intent, lock=True)
                raise
        except _GroupFailed as failed:
            if is_transient(failed.exc):
                raise _unavailable(key, failed.exc) from None
            raise
        except OSError as exc:
            if is_transient(exc):
                raise _unavailable(key, exc) from None
            log.warning("storage refused a batch for %s: %s", key, exc)
            raise ApiError(400, code_for(exc), f"the server's disk refused this batch: {exc.strerror or exc}") from None
        except sqlite3.Error as exc:
            raise _unavailable(key, exc) from None

    def _undo(
        self, key: str, slot: _Slot, intent_id: Optional[int], intent: Dict[str, List[Any]], lock: bool = False
    ) -> None:
        """Roll back in a running server; what cannot be undone yet stays pending (see :meth:`_settle`).
        ``lock``: take the experiment's file lock (False when the caller holds it already)."""
        self._drop_writer(key, slot)  # its handles may point at files we are about to cut
        self._pending.setdefault(key, []).append((intent_id, intent))
        self._settle(key, slot, lock=lock)

    def _settle(self, key: str, slot: _Slot, lock: bool = True) -> None:
        """Finish the pending rollbacks of one experiment (caller holds ``slot.lock``).

        While a rollback cannot complete for a reason that may pass (a full or read-only disk,
        permissions), the experiment takes no writes (503): its files are not back at the last
        acknowledged state, and writing after them would make a later rollback cut acknowledged
        data. What cannot be undone for good (something else is in the way) is logged and left.
        """
        pending = self._pending.get(key)
        while pending:
            intent_id, intent = pending[0]
            undo = self._rollback_locked(key, intent, lock)
            if undo.transient:
                log.error(
                    "could not undo an uncommitted batch of %s (%s); writes to it answer 503 until it can",
                    key,
                    "; ".join(undo.problems),
                )
                raise ApiError(
                    503,
                    "storage_unavailable",
                    "an earlier batch of this experiment could not be undone yet; retry later",
                    headers={"Retry-After": "5"},
                )
            if undo.problems:
                log.error("left part of an uncommitted batch of %s as it is: %s", key, "; ".join(undo.problems))
            if intent_id is not None:
                self.index.drop_intent(intent_id)
            pending.pop(0)
            if self.on_rollback is not None:
                self.on_rollback()
        self._pending.pop(key, None)

    def _rollback_locked(self, key: str, intent: Dict[str, List[Any]], lock: bool) -> _Undo:
        if not lock:  # the caller holds the experiment's file lock already
            return rollback(self.root, intent)
        writer = ExperimentWriter(self.root, parse_server_prefix(key))
        try:
            with writer.lock():
                return rollback(self.root, intent)
        except OSError as exc:  # the lock file itself cannot be opened
            undo = rollback(self.root, {})
            undo.problems.append(f"the experiment's lock: {exc.strerror or exc}")
            undo.transient = is_transient(exc)
            return undo
        finally:
            writer.close()

    # -- the writes of a batch ---------------------------------------------------------------------

    def _write(self, w: ExperimentWriter, plan: Plan) -> None:
        """Write a plan group by group; a storage error names its group (:class:`_GroupFailed`)."""
        now = time.time()
        for op in plan.ops:
            with _group(("params",) if op[0] == "params" else ("experiment",)):
                if op[0] == "experiment":
                    w.upsert_experiment(op[1], op[2])
                elif op[0] == "status":
                    w.set_status(op[1], op[3], op[2])
                elif op[0] == "params":
                    w.merge_params(op[1], op[2])
        for name, rows in plan.metrics.items():
            with _group(("metric", name)):
                w.append_metric(name, rows, now)
        if plan.logs:
            with _group(("logs",)):
                w.append_logs(plan.logs)
        if plan.files:
            with _group(("files",)):
                current = read_json(w.paths.files_metadata, {})
            known = (
                {e.get("id") for e in current.get("files", []) if isinstance(e, dict)}
                if isinstance(current, dict)
                else set()
            )
            entries = []
            for entry, checksum in plan.files:
                if entry["id"] in known:  # idempotent by file id: the first upload of an id stays
                    continue
                known.add(entry["id"])
                with _group(("file", entry["id"])):
                    self.blobs.link_into(checksum, w.paths.file_dir(entry["path"], entry["id"]) / entry["filename"])
                entries.append(entry)
            if entries:
                with _group(("files",)):
                    w.add_files(entries)
        for topic, rows in plan.tracks.items():
            with _group(("track", topic)):
                w.append_track(topic, rows, now)
        if plan.updates:
            with _group(("files",)):
                w.update_files(plan.updates)
        if plan.deletes:
            with _group(("files",)):
                w.delete_files(plan.deletes)

    def recover(self) -> int:
        """At start: roll back every batch a crash left uncommitted; the number rolled back.

        Never stops the start: what cannot be undone is logged, and its experiment stays closed to
        writes (503) until a later try succeeds (each write to it tries again).
        """
        count = 0
        intents = self.index.intents()
        for intent_id, prefix, raw in intents:
            try:
                intent = orjson.loads(raw)
            except orjson.JSONDecodeError:
                log.error("the index holds an unreadable intent for %s; dropped, nothing rolled back", prefix)
                self.index.drop_intent(intent_id)
                continue
            self._pending.setdefault(prefix, []).append((intent_id, intent))
        for prefix in list(self._pending):
            slot = self._slot(prefix)
            with slot.lock:
                n = len(self._pending[prefix])
                try:
                    self._settle(prefix, slot)
                except ApiError:
                    continue  # logged; the experiment stays pending
                except (OSError, sqlite3.Error) as exc:
                    log.error("could not finish rolling back %s: %s; retried at its next write", prefix, exc)
                    continue
                log.warning("rolled back %d batch(es) for %s that a crash left uncommitted", n, prefix)
                count += n
        return count


_MAX_PLANS = 8


class _GroupFailed(Exception):
    """A write of one group of a plan (a metric, a file, the logs...) failed; the batch was rolled back."""

    def __init__(self, group: tuple[Any, ...], exc: OSError):
        super().__init__(str(exc))
        self.group = group
        self.exc = exc
        self.code = code_for(exc)
        self.message = f"the server's disk refused this: {exc.strerror or exc}"


@contextmanager
def _group(group: tuple[Any, ...]) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _GroupFailed(group, exc) from exc


def _unavailable(key: str, exc: BaseException) -> ApiError:
    log.error("storage error while storing a batch for %s: %s", key, exc)
    return ApiError(
        503,
        "storage_unavailable",
        "the server could not store the batch now; retry later",
        headers={"Retry-After": "5"},
    )
