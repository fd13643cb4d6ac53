"""A catalogue of every experiment in a layout folder, refreshed incrementally.

The experiments table must answer for 10,000 experiments in milliseconds, and must notice
experiments that a local SDK process creates or changes in the folder, outside the server. So the
catalogue keeps one entry per experiment (metadata, status, params, counts, each metric's last
values) and a refresh only reads what changed:

* Discovery: every folder of the tree is stat'ed; only a folder whose mtime changed is listed
  again. An experiment is a folder with ``experiment.json`` (its data folders are not walked).
* experiment.json and parameters.json are replaced atomically by every writer, which changes the
  experiment folder's mtime: they are read again only then.
* The server's own writes are announced (:meth:`Catalog.mark_stale`): those experiments are read
  again before the next answer, without a walk.
* Data (metric rows, logs, files) is looked at on every refresh for an experiment whose folder
  changed, that the server just stored data for, or that is running
  (status RUNNING, or none: upstream writes none) and changed in the last minute; every 10 s for a
  running one that did not, at least every 60 s for every other one (at most 200 of these age-due
  looks per refresh, the longest-waiting first). A metric's last values come from the lines
  appended since the last look, at most the last 256 KiB of them: a field that appeared only
  before that window in a burst of growth keeps its previous last value.

Last activity: the newest mtime of what a refresh stats anyway (the experiment's folder, the logs,
each metric's data, the files' list; tracks are not looked at), so it costs no system call of its
own, and lags a write by at most the data checks' period above (10 s for a running experiment).

Counts: a metric's rows and the logs are the last index (sequence number) + 1, as the writers
number them from 0 without gaps; files are the entries of ``files/.files_metadata.json`` that are
not deleted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from stat import S_ISREG
from typing import Any, Dict, List, Optional, Tuple

from .._store._jsonio import read_json
from .._store._layout import UNNAMED_METRIC
from .._values import decode_nonfinite
from ._entry import Entry, short_value
from ._tail import Tail, regular_file

__all__ = ["Catalog"]

log = logging.getLogger("ml_dash.server")

_DATA_DIRS = frozenset(("logs", "metrics", "files", "tracks"))
_HOT_FOR = 60.0  # seconds a running experiment stays hot after its last change
_WARM_EVERY = 10.0  # a running experiment that did not change lately: data looked at this often
_SWEEP_EVERY = 60.0  # every experiment's data is looked at at least this often
_BUDGET = 200  # data checks that are due only by age, at most, per refresh
_RUNNING = ("RUNNING", None)


class _State:
    """What the catalogue remembers of one experiment between refreshes (never shown)."""

    __slots__ = ("dir_mtime", "exp", "params", "metrics", "logs", "files_sig", "files", "changed", "checked")

    def __init__(self) -> None:
        self.dir_mtime = -1
        self.exp: Dict[str, Any] = {}
        self.params: Dict[str, Any] = {}
        self.metrics: Dict[str, Tail] = {}
        self.logs = Tail()
        self.files_sig: Tuple[int, int] = (-1, -1)
        self.files = 0
        self.changed = -1e18  # when its data last changed (monotonic)
        self.checked = 0.0  # when its data was last looked at


class _Dir:
    __slots__ = ("mtime", "children", "is_exp")

    def __init__(self, mtime: int, children: List[str], is_exp: bool):
        self.mtime = mtime
        self.children = children
        self.is_exp = is_exp


class Catalog:
    """The experiments under ``root``, kept current by :meth:`refresh` (see the module doc)."""

    def __init__(self, root: Path | str, background: bool = False):
        self.root = Path(root)
        self.background = background
        self._dirs: Dict[str, _Dir] = {}
        self._states: Dict[str, _State] = {}
        self._entries: Dict[str, Entry] = {}
        self._snapshot: List[Entry] = []
        self._refresh_lock = threading.Lock()
        self._refreshed_at = -1e18
        self._touched: set[Any] = set()
        self._stopped = False
        self._thread: Optional[threading.Thread] = None
        self._thread_guard = threading.Lock()

    def stop(self) -> None:
        """End a refresh in progress early, start no other (server shutdown)."""
        self._stopped = True

    def mark_stale(self, prefix: str) -> None:
        """The server stored data under ``prefix``: the next :meth:`entries` reads it first."""
        self._touched.add(prefix)

    def entries(self, max_age: float = 1.0) -> List[Entry]:
        """Every experiment, sorted by prefix.

        Experiments marked by :meth:`mark_stale` are read first (a few files each). The rest is
        refreshed when older than ``max_age`` seconds: here, or, with ``background``, in a thread of
        its own while this call answers the current catalogue (so a page never waits for a walk of
        the whole folder, except for the very first one).
        """
        if self._refreshed_at < -1e17 or (not self.background and time.monotonic() - self._refreshed_at > max_age):
            with self._refresh_lock:
                if self._refreshed_at < -1e17 or time.monotonic() - self._refreshed_at > max_age:
                    self._refresh()
        if self._touched:
            with self._refresh_lock:
                self._refresh_touched()
        if self.background and time.monotonic() - self._refreshed_at > max_age:
            self._refresh_in_background(max_age)
        return self._snapshot

    def refresh(self) -> None:
        """Bring the catalogue up to date now."""
        with self._refresh_lock:
            self._refresh()

    def _refresh_in_background(self, max_age: float) -> None:
        with self._thread_guard:
            if self._stopped or (self._thread is not None and self._thread.is_alive()):
                return

            def run() -> None:
                try:
                    with self._refresh_lock:
                        if time.monotonic() - self._refreshed_at > max_age:
                            self._refresh()
                except Exception:  # a folder changing under the walk: the next refresh sees it
                    log.exception("catalogue refresh of %s failed", self.root)

            self._thread = threading.Thread(target=run, name="ml-dash-catalogue", daemon=True)
            self._thread.start()

    def _refresh_touched(self) -> None:
        """Read the experiments the server just stored data for (caller holds the refresh lock)."""
        touched, self._touched = self._touched, set()
        now = time.monotonic()
        remade = False
        for rel in touched:
            path = self.root / rel
            try:
                mtime = os.stat(path).st_mtime_ns
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not (path / "experiment.json").is_file():
                continue
            s = self._states.get(rel)
            if s is None:
                s = self._states[rel] = _State()
            fresh = s.checked == 0.0
            self._update_meta(rel, s, mtime)
            self._check_data(rel, s, now, fresh)
            self._entries[rel] = self._entry(rel, s)
            remade = True
        if remade:
            self._snapshot = [self._entries[k] for k in sorted(self._entries)]

    def _entry(self, rel: str, s: _State) -> Entry:
        return Entry(
            rel,
            s.exp,
            s.params,
            self._metrics_of(s),
            (s.logs.last + 1) if s.logs.last is not None else 0,
            s.files,
            self._last_activity(s),
        )

    @staticmethod
    def _last_activity(s: _State) -> Optional[float]:
        """The newest mtime the catalogue already stat'ed: the experiment's folder (experiment.json
        and parameters.json are replaced in it), the logs, each metric's data and the files' list."""
        newest = max([s.dir_mtime, s.logs.sig[1], s.files_sig[0], *(t.sig[1] for t in s.metrics.values())])
        return newest / 1e9 if newest >= 0 else None

    # -- one refresh -----------------------------------------------------------------------------

    def _refresh(self) -> None:
        touched, self._touched = self._touched, set()
        now = time.monotonic()
        found = self._discover()
        remade: List[str] = []
        later: List[Tuple[float, str]] = []
        for rel, mtime in found.items():
            if self._stopped:
                return
            s = self._states.get(rel)
            if s is None:
                s = self._states[rel] = _State()
            fresh = s.checked == 0.0
            changed = self._update_meta(rel, s, mtime)
            running = s.exp.get("status") in _RUNNING
            if changed or rel in touched or fresh or (running and now - s.changed < _HOT_FOR):
                changed |= self._check_data(rel, s, now, fresh)
            elif now - s.checked >= (_WARM_EVERY if running else _SWEEP_EVERY):
                later.append((s.checked, rel))
            if changed or rel not in self._entries:
                remade.append(rel)
        # Checks that are only due by age: the longest-waiting first, a bounded number per refresh
        for _, rel in sorted(later)[:_BUDGET]:
            if self._check_data(rel, self._states[rel], now, False):
                remade.append(rel)
        for rel in remade:
            self._entries[rel] = self._entry(rel, self._states[rel])
        gone = [r for r in self._entries if r not in found]
        for rel in gone:
            del self._entries[rel]
            self._states.pop(rel, None)
        if remade or gone or len(self._snapshot) != len(self._entries):
            self._snapshot = [self._entries[k] for k in sorted(self._entries)]
        self._refreshed_at = time.monotonic()

    def _discover(self) -> Dict[str, int]:
        """{experiment prefix: its folder's mtime}; lists again only the folders that changed."""
        found: Dict[str, int] = {}
        seen = set()
        stack = [""]
        base = str(self.root) + os.sep
        stat = os.stat
        while stack:
            rel = stack.pop()
            try:
                st = stat(base + rel)
            except (FileNotFoundError, NotADirectoryError):
                continue
            d = self._dirs.get(rel)
            if d is None or d.mtime != st.st_mtime_ns:
                d = self._dirs[rel] = self._list(rel, st.st_mtime_ns)
            seen.add(rel)
            if d.is_exp and "/" in rel:  # owner/name (upstream's local form) or longer
                found[rel] = d.mtime
            stack.extend(f"{rel}/{c}" if rel else c for c in d.children)
        for rel in [r for r in self._dirs if r not in seen]:
            del self._dirs[rel]
        return found

    def _list(self, rel: str, mtime: int) -> _Dir:
        children, is_exp = [], False
        try:
            with os.scandir(self.root / rel if rel else self.root) as it:
                for e in it:
                    if e.name == "experiment.json":
                        is_exp = True
                    elif not e.name.startswith(".") and e.is_dir(follow_symlinks=False):
                        children.append(e.name)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            pass
        if is_exp:
            children = [c for c in children if c not in _DATA_DIRS]
        return _Dir(mtime, children, is_exp)

    def _update_meta(self, rel: str, s: _State, dir_mtime: int) -> bool:
        """Read experiment.json and parameters.json again when the folder's mtime moved."""
        if dir_mtime == s.dir_mtime:
            return False
        path = self.root / rel
        s.dir_mtime = dir_mtime
        exp = read_json(path / "experiment.json", {}) if regular_file(path / "experiment.json") else {}
        s.exp = exp if isinstance(exp, dict) else {}
        params = read_json(path / "parameters.json", {}) if regular_file(path / "parameters.json") else {}
        data = params.get("data") if isinstance(params, dict) else None
        s.params = {k: short_value(v) for k, v in decode_nonfinite(data).items()} if isinstance(data, dict) else {}
        return True

    def _check_data(self, rel: str, s: _State, now: float, fresh: bool) -> bool:
        s.checked = now
        if self._update_data(self.root / rel, s):
            if not fresh:  # the first look finds data, but that is no sign of a live run
                s.changed = now
            return True
        return False

    def _update_data(self, path: Path, s: _State) -> bool:
        changed = s.logs.update(path / "logs" / "logs.jsonl", "sequenceNumber", False)
        names = self._metric_names(path / "metrics")
        for name in [n for n in s.metrics if n not in names]:
            del s.metrics[name]
            changed = True
        for name in names:
            tail = s.metrics.get(name)
            if tail is None:
                tail = s.metrics[name] = Tail()
            name_path = path / "metrics" / (UNNAMED_METRIC if name == "" else name) / "data.jsonl"
            changed |= tail.update(name_path, "index", True)
        fm = path / "files" / ".files_metadata.json"
        try:
            st = os.lstat(fm)
            sig = (st.st_mtime_ns, st.st_size) if S_ISREG(st.st_mode) else (-1, -1)
        except (FileNotFoundError, NotADirectoryError):
            sig = (-1, -1)
        if sig != s.files_sig:
            s.files_sig = sig
            data = read_json(fm, {}) if sig != (-1, -1) else {}
            entries = data.get("files") if isinstance(data, dict) else None
            s.files = (
                sum(1 for e in entries if isinstance(e, dict) and not e.get("deletedAt"))
                if isinstance(entries, list)
                else 0
            )
            changed = True
        return changed

    @staticmethod
    def _metric_names(base: Path) -> List[str]:
        """Metric names under ``metrics/`` ("" for the unnamed metric)."""
        out = []
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                with os.scandir(base / rel if rel else base) as it:
                    for e in it:
                        if e.name == "data.jsonl" and rel and e.is_file(follow_symlinks=False):
                            out.append("" if rel == UNNAMED_METRIC else rel)
                        elif e.is_dir(follow_symlinks=False) and not e.name.startswith("."):
                            stack.append(f"{rel}/{e.name}" if rel else e.name)
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                pass
        return out

    @staticmethod
    def _metrics_of(s: _State) -> Dict[str, Dict[str, Any]]:
        out = {}
        for name, t in s.metrics.items():
            if t.last is None and not t.values:
                continue
            out[name] = {
                "rows": 0 if t.last is None else t.last + 1,
                "last_index": t.last,
                "last": {k: short_value(v) for k, v in decode_nonfinite(t.values).items()},
            }
        return out
