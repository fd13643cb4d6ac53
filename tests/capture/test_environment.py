"""Environment capture: git state (credentials stripped), a bounded diff as a file, the command line."""

from __future__ import annotations

import platform
import shutil
import socket
import subprocess
import sys

import pytest

from ml_dash._capture._environment import strip_credentials
from ml_dash._store import ExperimentReader

from ..conftest import run_script

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

SECRET = "tok3n-s3cret"


def _git(cwd, *args) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    root = tmp_path / "project"
    root.mkdir()
    _git(root, "init", "-q", "-b", "feature/x")
    (root / "train.py").write_text("print('v1')\n")
    (root / "big.txt").write_text("")
    _git(root, "add", ".")
    _git(root, "commit", "-q", "-m", "first")
    _git(root, "remote", "add", "origin", f"https://alice:{SECRET}@git.example.com/team/project.git?x={SECRET}")
    return root


SCRIPT = """
from ml_dash import Experiment
with Experiment(prefix="a/b/env", dash_root="{root}").run as exp:
    exp.log("started")
"""


def _run(repo, tmp_path, **env):
    dash = tmp_path / "dash"
    script = repo / "run_me.py"
    script.write_text(SCRIPT.format(root=dash))
    proc = subprocess.run(
        [sys.executable, str(script), "--lr", "0.1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**_base_env(), "ML_DASH_CAPTURE_ENV": "1", **env},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return dash, ExperimentReader(dash, "a/b/env")


def _base_env():
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}


@needs_git
def test_clean_tree_records_commit_branch_remote_and_command(repo, tmp_path):
    (repo / "run_me.py").write_text("")  # untracked files do not make a tree dirty
    dash, reader = _run(repo, tmp_path)
    env = reader.experiment()["metadata"]["environment"]
    git = env["git"]
    assert git["commit"] == _git(repo, "rev-parse", "HEAD") and len(git["commit"]) == 40
    assert git["branch"] == "feature/x"
    assert git["root"] == str(repo)
    assert git["remote"] == "https://git.example.com/team/project.git"
    assert git["dirty"] is False and git["diff_file"] is None
    assert env["argv"] == [str(repo / "run_me.py"), "--lr", "0.1"]
    assert env["python"] == platform.python_version() and env["hostname"] == socket.gethostname()
    assert env["cwd"] == str(tmp_path) and env["executable"] == sys.executable
    assert "packages" not in env
    assert reader.files(None) == []
    # The token is nowhere in the stored experiment, whatever the file.
    for path in dash.rglob("*"):
        if path.is_file():
            assert SECRET not in path.read_text(errors="replace"), path


@needs_git
def test_dirty_tree_saves_the_diff_as_a_file(repo, tmp_path):
    (repo / "train.py").write_text("print('v2')\n")
    _dash, reader = _run(repo, tmp_path)
    git = reader.experiment()["metadata"]["environment"]["git"]
    assert git["dirty"] is True and git["diff_file"] == "environment/git.diff"
    (entry,) = reader.files(None)
    assert (entry["path"], entry["filename"], entry["metadata"]["truncated"]) == ("/environment", "git.diff", False)
    stored = reader.file_path(entry).read_bytes()
    expected = subprocess.run(["git", "diff", "--no-color", "HEAD"], cwd=repo, capture_output=True).stdout
    assert stored == expected and b"+print('v2')" in stored


@needs_git
def test_a_large_diff_is_cut_at_the_bound(repo, tmp_path):
    (repo / "big.txt").write_text("".join(f"line {i} of a long change\n" for i in range(50_000)))
    _dash, reader = _run(repo, tmp_path, ML_DASH_GIT_DIFF_MAX_BYTES="4096")
    (entry,) = reader.files(None)
    stored = reader.file_path(entry).read_bytes()
    full = subprocess.run(["git", "diff", "--no-color", "HEAD"], cwd=repo, capture_output=True).stdout
    assert entry["metadata"] == {"truncated": True, "max_bytes": 4096}
    assert len(stored) == 4096 and full.startswith(stored)


@needs_git
def test_packages_only_when_asked(repo, tmp_path):
    _dash, reader = _run(repo, tmp_path, ML_DASH_CAPTURE_PACKAGES="1")
    packages = reader.experiment()["metadata"]["environment"]["packages"]
    from importlib.metadata import version

    assert packages["orjson"] == version("orjson") and packages["ml-dash"] == version("ml-dash")


def test_outside_a_work_tree_git_is_none_and_user_metadata_stays(tmp_path):
    proc = run_script(
        """
        from ml_dash import Experiment
        with Experiment(prefix="a/b/plain", dash_root=".dash", metadata={"seed": 3}).run:
            pass
    """,
        cwd=tmp_path,
        env={"ML_DASH_CAPTURE_ENV": "1", "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)},
    )
    assert proc.returncode == 0, proc.stderr
    md = ExperimentReader(tmp_path / ".dash", "a/b/plain").experiment()["metadata"]
    assert md["seed"] == 3 and md["environment"]["git"] is None and md["environment"]["argv"] == ["-c"]


def test_off_by_default(tmp_path):
    proc = run_script(
        """
        from ml_dash import Experiment
        with Experiment(prefix="a/b/off", dash_root=".dash").run:
            pass
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert ExperimentReader(tmp_path / ".dash", "a/b/off").experiment()["metadata"] is None


@pytest.mark.parametrize(
    "url, expected",
    [
        ("https://alice:tok@github.com/o/r.git", "https://github.com/o/r.git"),
        ("https://ghp_abc123@github.com/o/r.git", "https://github.com/o/r.git"),
        (
            "https://oauth2:glpat-x@gitlab.example.com:8443/o/r?private_token=y#frag",
            "https://gitlab.example.com:8443/o/r",
        ),
        ("ssh://git:pw@host.example/o/r.git", "ssh://host.example/o/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ],
)
def test_strip_credentials(url, expected):
    assert strip_credentials(url) == expected
