"""Local mode's sink: batches from the worker go straight into the layout under ``dash_root``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from ._files import Source, snapshot
from ._names import Prefix
from ._store import ExperimentReader, ExperimentWriter

__all__ = ["LocalSink"]


class LocalSink:
    """Writes batches into ``<root>/<prefix>``; one inter-process lock per batch."""

    def __init__(self, root: Path, prefix: Prefix):
        self._root = Path(root)
        self._prefix = prefix
        self._writer = ExperimentWriter(self._root, prefix)

    @property
    def experiment_dir(self) -> Path:
        return self._writer.paths.dir

    def prepare(self) -> None:
        """Create the experiment folder now, so that a bad ``dash_root`` fails at start, not later."""
        self._writer.paths.dir.mkdir(parents=True, exist_ok=True)

    def stage_file(self, source: Source, entry: Dict[str, Any]):
        """Put the file's bytes at their final place (called in the caller's thread)."""
        dest = self._writer.paths.file_dir(entry["path"], entry["id"]) / entry["filename"]
        return snapshot(source, dest)

    def write_metrics(self, name: Optional[str], rows: List[dict]) -> None:
        w = self._writer
        with w.lock():
            w.append_metric(name, rows, time.time())

    def write(self, items: List[tuple]) -> None:
        metrics: Dict[Optional[str], list] = {}
        logs = []
        others = []
        for item in items:
            kind = item[0]
            if kind == "m":
                rows = metrics.get(item[1])
                if rows is None:
                    rows = metrics[item[1]] = []
                rows.append(item[2])
            elif kind == "l":
                logs.append(item[1:])
            else:
                others.append(item)
        w = self._writer
        now = time.time()
        with w.lock():
            statuses, files = [], []
            for item in others:
                kind = item[0]
                if kind == "e":
                    w.upsert_experiment(item[2], item[1])
                elif kind == "p":
                    w.merge_params(item[2], item[1])
                elif kind == "f":
                    files.append(item[2])
                elif kind == "s":
                    statuses.append(item)
            if files:
                w.add_files(files)
            for name, rows in metrics.items():
                w.append_metric(name, rows, now)
            if logs:
                w.append_logs(logs)
            for _, ts, status, reason in statuses:
                w.set_status(status, ts, reason)

    def sync(self) -> None:
        """Data is written with write(2) per batch; the OS holds it across a crash of this process."""

    def close(self, deadline: float) -> None:
        self._writer.close()

    def after_fork_in_child(self) -> None:
        # The parent's open handles are shared with the child; reopen our own.
        self._writer = ExperimentWriter(self._root, self._prefix)

    def reader(self) -> "LocalReader":
        return LocalReader(self._root, self._prefix)


class LocalReader(ExperimentReader):
    """ExperimentReader plus download, the read interface the SDK uses in both modes."""

    def download(self, entry: Dict[str, Any], dest: Path) -> Path:
        shutil.copyfile(self.file_path(entry), dest)
        return dest
