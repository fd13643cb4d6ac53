"""What a regular install gets: the wheel's files, its commands, and where the suite imports ml_dash from.

The wheel is the one in ``ML_DASH_WHEEL`` (set by .ci/wheel.sh, which also runs the whole suite
against it), else one built here from a copy of the checkout's package files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Read now: every test's fixture clears ML_DASH_* from the environment.
GIVEN_WHEEL = os.environ.get("ML_DASH_WHEEL")
# In .ci/wheel.sh's copy of the checkout the package's sources are absent on purpose.
HAS_SOURCES = (REPO / "ml_dash" / "__init__.py").is_file() and (REPO / "agent" / "__init__.py").is_file()

# Present whatever else changes: what other parts of the package read at run time.
REQUIRED = [
    "ml_dash/py.typed",
    "ml_dash/__init__.py",
    "ml_dash/agent/__init__.py",
    "ml_dash/agent/cli.py",
    "ml_dash/agent/README.md",
    "ml_dash/server/PROTOCOL.md",
    "ml_dash/server/dashboard/static/common.js",
    "ml_dash/server/dashboard/static/dash.css",
    "ml_dash/server/dashboard/static/vendor/uplot/uPlot.iife.min.js",
    "ml_dash/server/dashboard/static/vendor/uplot/uPlot.min.css",
    "ml_dash/server/dashboard/static/vendor/uplot/LICENSE",
    "ml_dash/server/stores/postgres/migrations/0001_initial.sql",
]


def _source_files() -> list[str]:
    """The package's files in the checkout, as git sees them (tracked, or untracked and not ignored)."""
    paths = ["ml_dash", "agent"]
    if shutil.which("git") and (REPO / ".git").exists():
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
            cwd=REPO,
            capture_output=True,
            check=True,
        ).stdout.decode()
        files = [f for f in out.split("\0") if f and (REPO / f).is_file()]
    else:
        files = [
            p.relative_to(REPO).as_posix()
            for d in paths
            for p in (REPO / d).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        ]
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if GIVEN_WHEEL:
        return Path(GIVEN_WHEEL)
    if not HAS_SOURCES:
        pytest.skip("no package sources here to build from, and ML_DASH_WHEEL is not set")
    # Built from a copy, so that a stale build/ folder in the checkout cannot add files to it.
    src = tmp_path_factory.mktemp("src")
    for name in ["pyproject.toml", "README.md", *_source_files()]:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = dist.glob("ml_dash-*.whl")
    return built


def _names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_holds_what_the_package_reads_at_run_time(wheel):
    names = set(_names(wheel))
    assert [f for f in REQUIRED if f not in names] == []
    assert "MIT License" in zipfile.ZipFile(wheel).read("ml_dash/server/dashboard/static/vendor/uplot/LICENSE").decode()
    migrations = sorted(n for n in names if n.startswith("ml_dash/server/stores/postgres/migrations/"))
    assert migrations and all(n.endswith(".sql") for n in migrations)


def test_wheel_holds_the_agent_as_ml_dash_agent_and_nothing_outside_the_package(wheel):
    names = _names(wheel)
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"ml_dash"}  # no top-level `agent`, tests, ...
    assert [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))] == []
    agent = sorted(n for n in names if n.startswith("ml_dash/agent/") and n.endswith(".py"))
    assert len(agent) >= 10


@pytest.mark.skipif(not HAS_SOURCES, reason="the checkout's package sources are not here (.ci/wheel.sh's copy)")
def test_every_file_of_the_package_ships(wheel):
    """A file under ml_dash/ or agent/ that the wheel lacks: a new subpackage missing from
    [tool.setuptools] packages, or data missing from package-data."""
    expected = {("ml_dash/agent/" + f[len("agent/") :]) if f.startswith("agent/") else f for f in _source_files()}
    shipped = {n for n in _names(wheel) if not n.split("/", 1)[0].endswith(".dist-info")}
    assert sorted(expected - shipped) == []
    assert sorted(shipped - expected) == []


def test_wheel_declares_both_commands(wheel):
    with zipfile.ZipFile(wheel) as zf:
        (entry_points,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = zf.read(entry_points).decode()
    lines = {line.replace(" ", "") for line in text.splitlines()}
    assert "ml-dash=ml_dash.cli:main" in lines
    assert "ml-dash-agent=ml_dash.agent.cli:main" in lines


@pytest.mark.skipif(HAS_SOURCES, reason="runs in .ci/wheel.sh's copy of the checkout, against the installed wheel")
def test_the_suite_imports_the_installed_wheel():
    import ml_dash.agent

    installed = Path(ml_dash.__file__).resolve().parent
    assert installed.parent.name == "site-packages" and installed != REPO / "ml_dash"  # the venv's, not a source tree
    assert Path(ml_dash.agent.__file__).resolve().parent == installed / "agent"
    assert (installed / "py.typed").is_file()
