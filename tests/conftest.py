"""Shared fixtures: every test gets its own store and a clean ML_DASH_* environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("ML_DASH_"):
            monkeypatch.delenv(key)
    # Remote-mode spools of the test go to its own folder, never to the user's cache.
    monkeypatch.setenv("ML_DASH_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.fixture
def dash_root(tmp_path) -> Path:
    return tmp_path / ".dash"


def run_script(code: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (real process, real exit)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
