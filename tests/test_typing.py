"""The package's types are real to a type checker (py.typed): typical user code passes
``mypy --strict`` against the package as installed, and misuse is caught.

tests/typecheck/user_code.py pins the public types with assert_type (a type that turns into Any
fails); tests/typecheck/misuse.py holds mistakes mypy must report, line by line. From a regular
install (.ci/wheel.sh) mypy reads the installed package, which it does only because of py.typed;
from the checkout, a tree of links gives it the installed layout (agent/ as ml_dash.agent).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ml_dash

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CODE = HERE / "typecheck"
INSTALLED = Path(ml_dash.__file__).resolve().parent != (REPO / "ml_dash").resolve()  # not the checkout's sources

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("mypy") is None or importlib.util.find_spec("typing_extensions") is None,
    reason="mypy is not installed: pip install -e '.[lint]'",
)


def _mypy(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    work = tmp_path / "work"
    work.mkdir()
    for f in ("user_code.py", "misuse.py"):
        shutil.copy(CODE / f, work / f)
    if not INSTALLED:  # the checkout: the installed layout, as links
        pkg = work / "ml_dash"
        pkg.mkdir()
        for entry in (REPO / "ml_dash").iterdir():
            if entry.name != "__pycache__":
                (pkg / entry.name).symlink_to(entry)
        (pkg / "agent").symlink_to(REPO / "agent")
    (work / "mypy.ini").write_text("[mypy]\n")  # a user's own settings: none but --strict
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            "mypy.ini",
            "--follow-imports",
            "silent",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "user_code.py",
            "misuse.py",
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_user_code_passes_strict_and_misuse_is_caught(tmp_path):
    proc = _mypy(tmp_path)
    out = proc.stdout + proc.stderr
    flagged = sorted(
        {int(m.group(2)) for m in re.finditer(r"^(\S+?):(\d+): error:", out, re.M) if m.group(1) == "misuse.py"}
    )
    expected = [n for n, line in enumerate((CODE / "misuse.py").read_text().splitlines(), 1) if "# MISUSE" in line]
    assert [line for line in out.splitlines() if line.startswith("user_code.py")] == []
    assert flagged == expected, out
    assert "py.typed" not in out and "import-untyped" not in out and "import-not-found" not in out, out
    assert proc.returncode == 1, out  # the misuse, and nothing else
