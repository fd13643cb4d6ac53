"""ruff and mypy (strict) find nothing: .ci/lint.sh, run with the suite so that a finding shows before landing.

Settings in pyproject.toml. CI runs .ci/lint.sh before the suite and sets ML_DASH_LINTED=1, so it
does not run twice there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINTED = os.environ.get("ML_DASH_LINTED") == "1"  # read now: every test's fixture clears ML_DASH_*

pytestmark = [
    pytest.mark.skipif(LINTED, reason="CI ran .ci/lint.sh before the suite"),
    pytest.mark.skipif(
        not (REPO / "ml_dash").is_dir() or shutil.which("bash") is None,
        reason="needs the package's sources (not .ci/wheel.sh's copy of the checkout) and bash",
    ),
]


def _lint(tool: str) -> subprocess.CompletedProcess:
    if importlib.util.find_spec(tool) is None:
        pytest.skip(f"{tool} is not installed: pip install -e '.[lint]'")
    env = {**os.environ, "ML_DASH_LINT_PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(REPO / ".ci" / "lint.sh"), tool], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing():
    proc = _lint("ruff")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_finds_nothing():
    proc = _lint("mypy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout
