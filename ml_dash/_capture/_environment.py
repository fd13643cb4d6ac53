"""Environment capture: where and how the run was started, into the experiment's metadata.

Collected once, in a thread of ours so that the start of the run does not wait on ``git``, and
merged into the experiment's metadata under the key ``environment``:

* ``git``: ``commit``, ``branch``, ``root``, ``remote`` (``origin``'s URL with any user name,
  password or token, query and fragment removed), ``dirty`` (tracked files differ from ``HEAD``),
  ``diff_file`` (see below); ``None`` outside a git work tree or without ``git``. The repository
  is the one holding the entry script (``sys.argv[0]``), else the working folder.
* ``argv``, ``executable``, ``cwd``, ``pid``, ``hostname``, ``platform``, ``python``
  (version) and ``python_implementation``.
* ``packages`` (``{name: version}`` of every installed distribution) only when
  ``ML_DASH_CAPTURE_PACKAGES`` is on.

A dirty tree's ``git diff HEAD`` (tracked files only) is saved as the file
``environment/git.diff``, cut at ``ML_DASH_GIT_DIFF_MAX_BYTES`` (1 MiB); the file's metadata says
whether it was cut. It is stored like any other file of the run: whoever can read the run can read
it, so a secret in an uncommitted change travels with it.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from .._fork import start_without_signals
from .._report import warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

    from .._experiment import Experiment

__all__ = ["EnvironmentCapture", "collect", "strip_credentials", "git_state"]

GIT_TIMEOUT = 10.0


class EnvironmentCapture:
    """Collects the environment in a thread and merges it into ``exp``'s metadata."""

    def __init__(self, exp: "Experiment", merge_metadata: "Callable[[Dict[str, Any]], None]"):
        self._exp = exp
        self._merge_metadata = merge_metadata
        self._thread = threading.Thread(target=self._run, name=f"ml-dash-env:{exp.prefix}", daemon=True)

    @classmethod
    def start(cls, exp: "Experiment", merge_metadata: "Callable[[Dict[str, Any]], None]") -> "EnvironmentCapture":
        cap = cls(exp, merge_metadata)
        start_without_signals(cap._thread)
        return cap

    def stop(self, deadline: float) -> None:
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        from .._values import normalize_fields

        exp, cfg = self._exp, self._exp.config
        try:
            env, diff = collect(packages=cfg.capture_packages, diff_max_bytes=cfg.git_diff_max_bytes)
            if diff is not None:
                data, cut = diff
                exp.files("environment").save(
                    data, name="git.diff", metadata={"truncated": cut, "max_bytes": cfg.git_diff_max_bytes}
                )
                env["git"]["diff_file"] = "environment/git.diff"
            # The experiment upsert merges metadata by key, so this adds to what the user gave.
            self._merge_metadata(normalize_fields({"environment": env}, cfg.max_string_bytes, "environment metadata"))
        except Exception as exc:  # the run goes on without its environment record, and says so
            warn(f"{exp.prefix}: environment capture failed: {exc}")


def collect(
    packages: bool = False, diff_max_bytes: int = 1024 * 1024
) -> Tuple[Dict[str, Any], Optional[tuple[Any, ...]]]:
    """``(environment dict, (diff bytes, cut) or None)`` for this process."""
    import platform
    import socket

    argv0 = sys.argv[0] if sys.argv else ""
    where = os.path.dirname(os.path.abspath(argv0)) if argv0 and os.path.isfile(argv0) else os.getcwd()
    git, diff = git_state(where, diff_max_bytes)
    env: Dict[str, Any] = {
        "git": git,
        "argv": list(sys.argv),
        "executable": sys.executable,
        "cwd": os.getcwd(),
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
    }
    if packages:
        env["packages"] = installed_packages()
    return env, diff


def installed_packages() -> Dict[str, str]:
    from importlib import metadata

    out: Dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if name:
            out.setdefault(name, dist.version)
    return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))


def git_state(folder: str, diff_max_bytes: int) -> Tuple[Optional[Dict[str, Any]], Optional[tuple[Any, ...]]]:
    """``(git facts, (diff bytes, cut) or None)`` for the work tree holding ``folder``; ``(None, None)``
    when there is none (or no ``git``)."""
    root = _git(folder, "rev-parse", "--show-toplevel")
    if root is None:
        return None, None
    commit = _git(root, "rev-parse", "--verify", "-q", "HEAD")  # None in a repository without commits
    branch = _git(root, "symbolic-ref", "-q", "--short", "HEAD")  # None on a detached HEAD
    remote = _git(root, "config", "--get", "remote.origin.url")
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    dirty = bool(status)
    state = {
        "root": root,
        "commit": commit,
        "branch": branch,
        "remote": strip_credentials(remote) if remote else None,
        "dirty": dirty,
        "diff_file": None,
    }
    diff = _git_diff(root, diff_max_bytes) if dirty and commit else None
    return state, diff


def strip_credentials(url: str) -> str:
    """``url`` without user name, password or token (``https://tok@host/r`` -> ``https://host/r``),
    and without query or fragment. An scp-like ``git@host:path`` keeps its form (no secret in it)."""
    from urllib.parse import urlsplit, urlunsplit

    if "://" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable remote URL>"
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _git_env() -> Dict[str, str]:
    env = dict(os.environ)
    env.update(GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_OPTIONAL_LOCKS="0")  # never prompt, never lock
    return env


def _git(cwd: str, *args: str) -> Optional[str]:
    import subprocess

    try:
        proc = subprocess.run(["git", *args], cwd=cwd, env=_git_env(), capture_output=True, timeout=GIT_TIMEOUT)
    except (OSError, subprocess.SubprocessError):  # no git, a folder gone, a hung git
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "replace").strip()


def _git_diff(root: str, max_bytes: int) -> Optional[tuple[Any, ...]]:
    """``(first max_bytes of git diff HEAD, whether it was cut)``; reads no more than that."""
    import subprocess

    try:
        proc = subprocess.Popen(
            ["git", "diff", "--no-color", "--no-ext-diff", "HEAD"],
            cwd=root,
            env=_git_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    chunks: List[bytes] = []
    size = 0
    cut = False
    assert proc.stdout is not None
    try:
        while True:
            chunk = proc.stdout.read(65536)
            if not chunk:
                break
            if size + len(chunk) > max_bytes:
                chunks.append(chunk[: max_bytes - size])
                cut = True
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        proc.stdout.close()
        if cut:
            proc.kill()
        try:
            proc.wait(GIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if not cut and proc.returncode != 0:
        return None
    data = b"".join(chunks)
    return (data, cut) if data else None
