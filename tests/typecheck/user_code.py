"""Typical user code, type-checked with ``mypy --strict`` against the installed package by
tests/test_typing.py (never run: its assert_type lines are for the type checker).

Each assert_type fails the check when the package's type turns into Any or changes: the public
types are real to a type checker, not only at run time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from typing_extensions import assert_type

import ml_dash
from ml_dash import RUN, Experiment, FileInfo, MlDashError, OperationMode, load_config


def train(root: Path) -> None:
    with Experiment("alice/project/run-1", dash_root=str(root), tags=["baseline"]).run as exp:
        assert_type(exp, Experiment)
        exp.params.set(learning_rate=0.001, batch_size=32)
        params = exp.params.get()
        assert_type(params, Dict[str, Any])
        for step in range(3):
            exp.metrics("train").log(loss=1.0 / (step + 1), step=step)
        exp.log("training done", level="info")

        info = exp.files("models").save(b"weights", to="model.bin")
        assert_type(info, FileInfo)
        assert_type(info.size, int)
        assert_type(info.checksum, str)
        assert_type(info.path, str)
        assert_type(info.tags, List[str])
        assert_type(info.description, Optional[str])
        size_from_mapping: Any = info["sizeBytes"]  # upstream's dict view
        listed = exp.files("models").list()
        assert_type(listed, List[FileInfo])

        rows = exp.metrics("train").read()
        first: Dict[str, Any] = rows[0]
        assert_type(exp.metrics.names(), List[Optional[str]])
        assert_type(exp.prefix, str)
        assert_type(exp.owner, str)
        assert_type(exp.mode, OperationMode)
        assert_type(exp.tags, List[str])
        del size_from_mapping, first


def where() -> str:
    config = load_config()
    assert_type(config, ml_dash.Config)
    assert_type(config.dash_url, Optional[str])
    return RUN.prefix


def safely(root: Path) -> Optional[str]:
    try:
        train(root)
    except MlDashError as exc:
        return str(exc)
    return None
