"""Spawning one measured subprocess, and summarising repetitions.

The parent measures what the child cannot measure about itself: wall time from spawn to exit
(interpreter start, imports and exit handlers included), and the child's resource usage from
``wait4`` (peak RSS of the child and its reaped descendants, CPU seconds).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

__all__ = ["Child", "ChildResult", "spawn", "run_command", "summary", "dig", "REPO_ROOT", "CHILD"]

#: The checkout that holds ``ml_dash`` and ``benchmarks``.
REPO_ROOT = Path(__file__).resolve().parent.parent
CHILD = Path(__file__).resolve().parent / "child.py"


@dataclass
class Child:
    """How to start a child: which interpreter, and whether it should see this checkout's ml_dash."""

    python: str = sys.executable
    ours: bool = True
    env: Dict[str, str] = field(default_factory=dict)

    def environ(self) -> Dict[str, str]:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if self.ours:
            # Our tools import this checkout's ml_dash, whatever is installed.
            env["PYTHONPATH"] = str(REPO_ROOT)
        env.update(self.env)
        return env


@dataclass
class ChildResult:
    """What one subprocess gave: its own result plus the parent's measurements of it."""

    ok: bool
    result: Dict[str, Any]
    wall_s: float
    maxrss_mib: float
    cpu_s: float
    returncode: int
    error: Optional[str] = None
    output_tail: str = ""

    def to_json(self) -> Dict[str, Any]:
        return {
            "ok": self.ok,
            "wall_s": self.wall_s,
            "maxrss_mib": self.maxrss_mib,
            "cpu_s": self.cpu_s,
            "returncode": self.returncode,
            "error": self.error,
            "result": self.result,
            **({"output_tail": self.output_tail} if not self.ok else {}),
        }


def spawn(probe: str, args: Dict[str, Any], child: Child, timeout: float = 600.0) -> ChildResult:
    """Run ``child.py PROBE ARGS`` to completion; never raises for a failing or hanging child."""
    with tempfile.TemporaryDirectory(prefix="mldash-bench-io-") as io_dir:
        result_path = os.path.join(io_dir, "result.json")
        cmd = [child.python, str(CHILD), probe, json.dumps(args), result_path]
        res = run_command(cmd, child.environ(), args.get("cwd") or io_dir, timeout)
        try:
            with open(result_path) as f:
                res.result = json.load(f)
        except (OSError, ValueError):
            res.result = {}
    err = res.result.get("error")
    if res.error and (not err or res.error.startswith("timed out")):
        err = res.error
    elif not res.result and not err:
        err = "no result written: " + res.output_tail[-300:]
    res.error, res.ok = err, err is None
    return res


def run_command(cmd: List[str], env: Dict[str, str], cwd: str, timeout: float) -> ChildResult:
    """Run a command, measuring wall time from spawn to exit and its ``wait4`` resource usage."""
    with tempfile.TemporaryDirectory(prefix="mldash-bench-out-") as out_dir:
        out_path = os.path.join(out_dir, "output.txt")
        with open(out_path, "wb") as out:
            t0 = time.perf_counter()
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=cwd,
                    start_new_session=True,
                )
            except OSError as exc:
                return ChildResult(False, {}, 0.0, 0.0, 0.0, -1, f"cannot start {cmd[0]}: {exc}")
            timed_out = threading.Event()

            def kill() -> None:
                # Only the process group this call created (start_new_session gave it its own).
                timed_out.set()
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            timer = threading.Timer(timeout, kill)
            timer.start()
            try:
                _pid, status, usage = os.wait4(proc.pid, 0)
            finally:
                wall = time.perf_counter() - t0
                timer.cancel()
            proc.returncode = os.waitstatus_to_exitcode(status)
        _reap_group(proc.pid)
        tail = _tail(out_path)
    err = None
    if timed_out.is_set():
        err = f"timed out after {timeout:.0f} s"
    elif proc.returncode != 0:
        err = f"exit status {proc.returncode}: {tail[-300:]}"
    return ChildResult(
        ok=err is None,
        result={},
        wall_s=wall,
        maxrss_mib=usage.ru_maxrss / 1024.0,
        cpu_s=usage.ru_utime + usage.ru_stime,
        returncode=proc.returncode,
        error=err,
        output_tail=tail[-2000:],
    )


def _reap_group(pgid: int) -> None:
    """A tool may leave helpers behind (e.g. a service process); end that group, which we created."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def _tail(path: str, limit: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def summary(values: Iterable[Optional[float]]) -> Optional[Dict[str, float]]:
    """Median with min and max over repetitions (None values, from failed runs, are left out)."""
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def dig(d: Any, path: str) -> Optional[float]:
    """``dig(r, "latency.p99_us")``: a nested value, or None when any level is missing."""
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d if isinstance(d, (int, float)) and not isinstance(d, bool) else None
