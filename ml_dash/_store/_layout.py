"""Where each file of one experiment lives (see local-format docs in the README)."""

from __future__ import annotations

import os
from pathlib import Path

from .._names import FILES_LISTING, UNNAMED_METRIC, Prefix, check_relpath

__all__ = ["ExperimentPaths", "UNNAMED_METRIC"]


class ExperimentPaths:
    """Paths of one experiment under ``root``. Every name is validated before it becomes a path."""

    def __init__(self, root: os.PathLike[str] | str, prefix: Prefix):
        self.root = Path(root)
        self.prefix = prefix
        self.dir = self.root.joinpath(*prefix.parts)
        self.experiment_json = self.dir / "experiment.json"
        self.parameters_json = self.dir / "parameters.json"
        self.logs_dir = self.dir / "logs"
        self.logs_jsonl = self.logs_dir / "logs.jsonl"
        self.log_sequence = self.logs_dir / ".log_sequence"
        self.metrics_dir = self.dir / "metrics"
        self.files_dir = self.dir / "files"
        self.files_metadata = self.files_dir / FILES_LISTING
        self.lock = self.dir / ".lock"
        self.tracks_dir = self.dir / "tracks"

    def metric_dir(self, name: str | None) -> Path:
        rel = UNNAMED_METRIC if name is None else check_relpath(name, "metric name")
        return self.metrics_dir.joinpath(*rel.split("/"))

    def track_dir(self, topic: str) -> Path:
        """``tracks/<topic with / as _>`` (upstream's folder name), after checking the topic."""
        return self.tracks_dir / check_relpath(topic, "track topic").replace("/", "_")

    def file_dir(self, path: str, file_id: str) -> Path:
        rel = check_relpath(path, "file path") if path.strip("/") else ""
        base = self.files_dir.joinpath(*rel.split("/")) if rel else self.files_dir
        return base / file_id
