"""Shared fixtures: every test gets its own store and a clean ML_DASH_* environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

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


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.02) -> Any:
    """Poll ``cond`` until it returns something truthy (returned); fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
