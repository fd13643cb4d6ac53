"""Mistakes a type checker must catch in user code (tests/test_typing.py expects each flagged line)."""

from __future__ import annotations

from pathlib import Path

from ml_dash import Experiment


def misuse(root: Path) -> None:
    with Experiment("alice/project/run-1", dash_root=str(root)).run as exp:
        info = exp.files("models").save(b"weights", to="model.bin")
        size: str = info.size  # MISUSE: an int
        exp.metrics("train").log(loss=0.5).nonexistent()  # MISUSE: no such method
        exp.params.set(1)  # MISUSE: keywords only
        del size
