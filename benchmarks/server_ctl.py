"""Start and stop a benchmark server process (``probes/serve.py``), and tell whether one can run.

Remote workloads need the reference server (``ml_dash.server``) and, for the SDK's remote mode,
the agent; until those exist the workloads report "not available" with the reason, and the rest
of the suite runs on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Dict, Optional, Tuple

from .harness import CHILD, Child


def server_missing(child: Child) -> Optional[str]:
    """None when ``ml_dash.server.run_in_thread`` imports in our interpreter, else the reason."""
    code = "from ml_dash.server import run_in_thread, create_token"
    return _import_problem(child, code)


def remote_sdk_missing(child: Child) -> Optional[str]:
    """None when the SDK's remote mode can be opened (the agent's remote sink exists)."""
    return _import_problem(child, "from ml_dash.agent import open_remote_sink")


def _import_problem(child: Child, code: str) -> Optional[str]:
    try:
        res = subprocess.run(
            [child.python, "-c", code],
            env=child.environ(),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tempfile.gettempdir(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if res.returncode == 0:
        return None
    lines = (res.stderr or res.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {res.returncode}"


class Background:
    """A long-running probe (server, proxy) in its own process group.

    ``with Background(child, "serve", args) as bg:`` waits until the probe wrote its ready file
    and gives its contents as ``bg.info``; at exit the process gets SIGTERM, and its final result
    (e.g. its own peak RSS) is in ``bg.stats``.
    """

    def __init__(self, child: Child, probe: str, args: Dict[str, Any], timeout: float = 60.0):
        self.child, self.probe, self.args, self.timeout = child, probe, dict(args), timeout
        self.info: Dict[str, Any] = {}
        self.proc: Optional[subprocess.Popen] = None
        self.stats: Dict[str, Any] = {}
        self._io = tempfile.mkdtemp(prefix=f"mldash-bench-{probe}-")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> "Background":
        ready = os.path.join(self._io, "ready.json")
        result = os.path.join(self._io, "result.json")
        self._log = open(os.path.join(self._io, "output.log"), "wb")
        args = {**self.args, "ready_file": ready}
        self.proc = subprocess.Popen(
            [self.child.python, str(CHILD), self.probe, json.dumps(args), result],
            env=self.child.environ(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self._io,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.timeout
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self._tail()
                self.__exit__(None, None, None)
                raise RuntimeError(f"{self.probe} did not start: {tail[-400:]}")
            time.sleep(0.05)
        with open(ready) as f:
            self.info = json.load(f)
        return self

    def _tail(self) -> str:
        try:
            with open(os.path.join(self._io, "result.json")) as f:
                err = json.load(f).get("error")
            if err:
                return err
        except (OSError, ValueError):
            pass
        try:
            with open(os.path.join(self._io, "output.log"), "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the group this object started
                self.proc.wait()
        try:
            with open(os.path.join(self._io, "result.json")) as f:
                self.stats = json.load(f)
        except (OSError, ValueError):
            self.stats = {}
        self._log.close()
        shutil.rmtree(self._io, ignore_errors=True)


class Server(Background):
    """The reference server on ``root``: ``srv.url``, ``srv.token`` (owner "bench")."""

    def __init__(self, child: Child, root: str, timeout: float = 60.0):
        super().__init__(child, "serve", {"root": root}, timeout)

    @property
    def url(self) -> str:
        return self.info["url"]

    @property
    def token(self) -> str:
        return self.info["token"]


class Proxy(Background):
    """A TCP proxy on loopback in front of ``target_url``; ``blackhole(True/False)`` cuts it."""

    def __init__(self, child: Child, target_url: str, timeout: float = 30.0):
        super().__init__(child, "proxy", {"target": target_url}, timeout)

    @property
    def url(self) -> str:
        return self.info["url"]


class Agent(Background):
    """``ml-dash-agent serve`` on ``spool``, serving once entered (runs with ``ML_DASH_UPLOADER=agent``)."""

    def __init__(self, child: Child, spool: str, timeout: float = 30.0):
        super().__init__(child, "agent", {"spool": spool}, timeout)


def start_or_reason(child: Child, root: str) -> Tuple[Optional[Server], Optional[str]]:
    """A started server, or None and why not."""
    try:
        return Server(child, root).__enter__(), None
    except Exception as exc:  # never let a broken server crash the suite
        return None, f"{type(exc).__name__}: {exc}"
