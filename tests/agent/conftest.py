"""Fixtures for the agent tests: a real server on loopback, real client processes, real faults.

Faults come from the server's test-only fault plan (``PUT /api/v1/_test/faults``) or from killing
real processes; nothing in the client is patched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Optional

import pytest

from ml_dash.server import create_token, run_in_thread, spawn_server

from ..conftest import wait_for  # noqa: F401  (re-exported for the agent tests)

REPO = Path(__file__).resolve().parents[2]


def _http(url: str, token: str, method: str = "GET", body: Optional[bytes] = None) -> Any:
    req = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


def set_faults(server, rules: List[Dict[str, Any]]) -> None:
    """Replace the fault plan of ``server`` (anything with ``.url`` and ``.token``: the routes need a token)."""
    _http(server.url + "/api/v1/_test/faults", server.token, "PUT", json.dumps(rules).encode())


def stats(server) -> Dict[str, Any]:
    return _http(server.url + "/api/v1/_test/stats", server.token)


def reader(url: str, token: str, prefix: str):
    from ml_dash._remote_read import RemoteReader

    return RemoteReader(url, token, prefix)


def log_messages(url: str, token: str, prefix: str) -> List[str]:
    return [r["message"] for r in reader(url, token, prefix).logs()]


@pytest.fixture
def server(tmp_path):
    """A server in a thread (port 0) with fault injection; ``token`` writes under ``alice/``."""
    root = tmp_path / "server-root"
    token = create_token(root, "alice")
    handle = run_in_thread(root, port=0, fault_injection=True)
    try:
        yield SimpleNamespace(url=handle.url, root=root, token=token, handle=handle)
    finally:
        handle.stop()


class Spawned:
    """A server in its own process, so it can be killed with SIGKILL and started again on its port."""

    def __init__(self, root: Path):
        self.root = root
        self.token = create_token(root, "alice")
        self.url, self.proc = spawn_server(root, port=0, fault_injection=True)
        self.port = int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def restart(self) -> None:
        self.url, self.proc = spawn_server(self.root, port=self.port, fault_injection=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def spawned(tmp_path):
    s = Spawned(tmp_path / "spawned-root")
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def spool(tmp_path) -> Path:
    return tmp_path / "spool"


def client_env(spool: Path, url: Optional[str], token: Optional[str], **extra: Any) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["ML_DASH_SPOOL_DIR"] = str(spool)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_CONFIG_HOME"] = str(spool.parent / "xdg-config")  # never the user's credentials file
    env["ML_DASH_PRINT_URL"] = "0"  # a clean run prints nothing else (the URL line: tests/dashboard)
    if url:
        env["ML_DASH_URL"] = url
    if token:
        env["ML_DASH_TOKEN"] = token
    for key, value in extra.items():
        env[f"ML_DASH_{key.upper()}"] = str(value)
    return env


#: The exit's progress line: printed when closing a remote run takes over a second, which on a
#: loaded machine is a matter of timing, not a fault (agent/_sink.py, ``_wait``).
_CLOSE_PROGRESS = re.compile(r"^ml-dash: waiting for [\d,]+ events / .* to reach .*$")


def unexpected_stderr(stderr: str) -> str:
    """``stderr`` without the exit's progress lines: what a clean run must leave empty."""
    return "".join(line for line in stderr.splitlines(keepends=True) if not _CLOSE_PROGRESS.match(line.rstrip("\n")))


def start_client(code: str, env: Dict[str, str]) -> subprocess.Popen:
    """A client program in its own interpreter (stdin/stdout/stderr piped, text, line-buffered)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def run_client(code: str, env: Dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=timeout
    )


def run_agent(args: List[str], env: Dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    """``ml-dash-agent ARGS`` in a subprocess (through the module, the same entry point as the script)."""
    code = "import sys; from ml_dash.agent.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def running_agent(spool: Path, *args: str, **extra: str) -> Iterator[subprocess.Popen]:
    """``ml-dash-agent serve SPOOL ARGS`` in a process of its own, serving once the block begins; killed after."""
    from ..pipes import read_line

    env = client_env(spool, None, None)
    env.update(extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_dash.agent.cli", "serve", str(spool), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(proc.stdout, 30, "the agent's first line")
        assert line.startswith("ml-dash-agent: serving "), line
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def spool_files(spool: Path) -> List[Path]:
    return [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []


def sessions(spool: Path) -> List[Path]:
    return sorted(p for p in spool.iterdir() if (p / "manifest.json").exists()) if spool.exists() else []
