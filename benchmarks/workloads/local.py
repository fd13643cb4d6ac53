"""Local workloads: step cost (1 and N threads, timed and plain), mixed, the long RSS run, import.

Repetitions are interleaved round-robin across tools (rep 1 of every tool, then rep 2, ...), so
a slow minute of this shared machine hits every tool alike instead of one tool's whole series.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..harness import REPO_ROOT, Child, run_command, spawn
from ..settings import Settings
from .common import classify_failure, measured_with_check, progress, short

#: Tools whose per-call cost is close to the timer's: they also get an untimed ("plain") run.
PLAIN = {"empty", "floor", "ours", "ours-track", "upstream-ml-dash", "trackio"}
#: Tools not run with threads, and why (shown in the table).
NO_THREADS = {
    "mlflow": "not run: ≥0.4 ms per step single-threaded, 4×25k steps would take minutes per repetition",
    "mlflow-async": "not run: ≥0.4 ms per step single-threaded, 4×25k steps would take minutes per repetition",
}


#: A peer slower than this per step (in its warm-up) is repeated once only.
SLOW_US = 200.0


@dataclass
class Tool:
    name: str
    child: Child
    peer: bool
    reps: int
    status: str = "ok"
    reason: Optional[str] = None


def tools_for(s: Settings, ours_child: Child) -> List[Tool]:
    """Baselines, ours, then every requested peer (peers in the peers' interpreter if given)."""
    out = [
        Tool("empty", ours_child, False, s.repeat),
        Tool("floor", ours_child, False, s.repeat),
        Tool("ours", ours_child, False, s.repeat),
        # the same call's cost as a track append (upstream's exp.tracks(topic).append)
        Tool("ours-track", ours_child, False, s.repeat),
    ]
    peer_child = Child(python=s.peers_python or s.python, ours=False)
    for name in s.peers:
        t = Tool(name, peer_child, True, s.peer_repeat)
        if name == "upstream-ml-dash" and not s.peers_python:
            t.status, t.reason = (
                "unavailable",
                "needs --peers-python (it installs the import name ml_dash, as ours does)",
            )
        out.append(t)
    return out


def check_tools(s: Settings, tools: List[Tool], scratch: str) -> None:
    """A short warm-up run of each tool: fills the bytecode and page caches, and finds the tools
    that are missing or broken (reported as such, never dropped)."""
    for t in tools:
        if t.status != "ok":
            continue
        rec = measured_with_check(
            "steps", "verify", {"tool": t.name, "n": min(s.n, 1000), "timed": False}, t.child, scratch, s.timeout
        )
        if not rec["ok"]:
            t.status, t.reason = classify_failure(rec["error"]), short(rec["error"])
        elif not rec["valid"]:
            t.status = "failed"
            t.reason = "warm-up data not found on read-back: " + short(str(rec.get("verify")))
        else:
            per_step = rec["result"].get("loop_s", 0) / max(1, rec["result"].get("n", 1)) * 1e6
            if t.peer and per_step > SLOW_US and t.reps > 1:
                # Minutes per repetition, and noise is small next to a cost this size: run once.
                t.reps = 1
                t.reason = f"run once: {per_step:.0f} µs/step in the warm-up"
        progress(f"[check] {t.name}: {t.status}{' (' + t.reason + ')' if t.reason else ''}")


def run_steps(s: Settings, tools: List[Tool], scratch: str) -> Dict[str, Any]:
    """Step cost, single thread (timed, and plain where it matters) and with ``s.threads`` threads."""
    jobs = []
    for t in tools:
        if t.status != "ok":
            continue
        jobs.append((t, "timed", 1))
        if t.name in PLAIN:
            jobs.append((t, "plain", 1))
        if s.wants("threads") and t.name not in NO_THREADS:
            jobs.append((t, "timed", s.threads))
    runs: Dict[str, Dict[str, list]] = {t.name: {} for t in tools}
    for rep in range(max([t.reps for t in tools] + [0])):
        for t, mode, threads in jobs:
            if rep >= t.reps:
                continue
            key = mode if threads == 1 else f"threads{threads}"
            args = {"tool": t.name, "n": s.n, "timed": mode == "timed", "threads": threads}
            rec = measured_with_check("steps", "verify", args, t.child, scratch, s.timeout)
            runs[t.name].setdefault(key, []).append(rec)
            r = rec.get("result", {})
            progress(
                f"[steps] {t.name} {key} rep {rep + 1}/{t.reps}: wall {rec['wall_s']:.2f}s "
                f"loop {r.get('loop_s', float('nan')):.3f}s {'ok' if rec['valid'] else 'INVALID ' + short(rec.get('error') or str(rec.get('verify')))}"
            )
    tools_out = {}
    for t in tools:
        entry: Dict[str, Any] = {
            "status": t.status,
            "reason": t.reason,
            "peer": t.peer,
            "runs": runs[t.name],
            "python": t.child.python,
            "reps": t.reps,
        }
        if t.name in NO_THREADS:
            entry["threads_reason"] = NO_THREADS[t.name]
        tools_out[t.name] = entry
    return {"n": s.n, "threads": s.threads, "tools": tools_out}


def run_mixed(s: Settings, child: Child, scratch: str) -> Dict[str, Any]:
    """Ours and the floor doing the same mixed training-loop writes."""
    runs: Dict[str, list] = {"floor": [], "ours": []}
    for rep in range(s.repeat):
        for tool in runs:
            rec = measured_with_check("mixed", "mixed-verify", {"tool": tool, "n": s.n}, child, scratch, s.timeout)
            runs[tool].append(rec)
            progress(
                f"[mixed] {tool} rep {rep + 1}/{s.repeat}: wall {rec['wall_s']:.2f}s "
                f"{'ok' if rec['valid'] else 'INVALID ' + short(rec.get('error') or str(rec.get('verify')))}"
            )
    return {"n": s.n, "runs": runs}


def run_big(s: Settings, child: Child, scratch: str) -> Dict[str, Any]:
    """RSS growth over ``s.big_points`` points (plain run of ours, and of the floor for scale)."""
    steps = -(-s.big_points // 3)
    runs: Dict[str, list] = {"floor": [], "ours": []}
    for tool in runs:
        rec = measured_with_check(
            "steps", "verify", {"tool": tool, "n": steps, "timed": False}, child, scratch, max(s.timeout, 1800)
        )
        runs[tool].append(rec)
        progress(
            f"[rss-10M] {tool}: wall {rec['wall_s']:.1f}s maxrss {rec['maxrss_mib']:.0f} MiB "
            f"{'ok' if rec['valid'] else 'INVALID'}"
        )
    return {"points": steps * 3, "steps": steps, "runs": runs}


def _regular_install(scratch: str) -> str:
    """This checkout laid out as a wheel installs it (``ml_dash/`` with the agent as ``ml_dash/agent``,
    bytecode compiled, no source tree or editable finder in the way) in a folder of its own."""
    import compileall
    import shutil

    target = os.path.join(scratch, "regular-install")
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    if (REPO_ROOT / "ml_dash").is_dir():
        shutil.copytree(REPO_ROOT / "ml_dash", os.path.join(target, "ml_dash"), ignore=skip, dirs_exist_ok=True)
        shutil.copytree(REPO_ROOT / "agent", os.path.join(target, "ml_dash", "agent"), ignore=skip, dirs_exist_ok=True)
    else:  # no sources here (.ci/wheel.sh's copy of the checkout): the installed package is laid out so already
        import importlib.util

        spec = importlib.util.find_spec("ml_dash")  # finds it without importing it
        assert spec is not None and spec.origin is not None, "ml_dash is neither in this checkout nor installed"
        shutil.copytree(os.path.dirname(spec.origin), os.path.join(target, "ml_dash"), ignore=skip, dirs_exist_ok=True)
    compileall.compile_dir(target, quiet=1)
    return target


def run_import(s: Settings, child: Child, scratch: str) -> Dict[str, Any]:
    """``python -c "import ml_dash"`` against ``python -c "pass"``, interleaved, many times, from a
    regular install (both commands put it first on ``sys.path``; neither sees this checkout)."""
    target = _regular_install(scratch)
    env = Child(python=child.python, ours=False).environ()
    head = f"import sys; sys.path.insert(0, {target!r})"
    codes = {"pass": head, "import ml_dash": head + "; import ml_dash"}
    walls: Dict[str, list] = {"pass": [], "import ml_dash": []}
    for _ in range(s.import_repeat):
        for name, code in codes.items():
            res = run_command([child.python, "-c", code], env=env, cwd=scratch, timeout=60)
            walls[name].append(res.wall_s if res.ok else None)
    check = spawn("import-check", {"path": target}, child, 60)
    diffs = [a - b for a, b in zip(walls["import ml_dash"], walls["pass"]) if a is not None and b is not None]
    progress(
        f"[import] median over bare python: {statistics.median(diffs) * 1000 if diffs else float('nan'):.1f} ms; "
        f"aiohttp loaded: {check.result.get('aiohttp_loaded')}"
    )
    return {
        "repeat": s.import_repeat,
        "walls": walls,
        "paired_diff_s": diffs,
        "install": "regular (copied, compiled)",
        "check": check.result if check.ok else {"error": check.error},
    }


def timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")
