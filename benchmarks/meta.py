"""Facts about the run that a reader needs to judge the numbers: date, machine, versions, scale."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import time
from typing import Any, Dict

from .harness import REPO_ROOT
from .settings import Settings

#: Distribution names of the peers, for their versions.
PEER_DISTS = {
    "upstream-ml-dash": "ml-dash",
    "tensorboardX": "tensorboardX",
    "wandb": "wandb",
    "mlflow": "mlflow",
    "mlflow-async": "mlflow",
    "trackio": "trackio",
}


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "ml_dash", "agent"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return (head or "unknown") + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version_of_ours() -> str:
    try:
        text = (REPO_ROOT / "ml_dash" / "__init__.py").read_text()
        m = re.search(r'__version__\s*=\s*"([^"]+)"', text)
        return m.group(1) if m else "unknown"
    except OSError:
        return "unknown"


def peer_versions(python: str, peers) -> Dict[str, str]:
    """Installed versions of the peers in the given interpreter ('not installed' when missing)."""
    dists = sorted({PEER_DISTS[p] for p in peers if p in PEER_DISTS})
    code = (
        "import json,sys\nfrom importlib.metadata import version\nout={}\n"
        "for d in sys.argv[1:]:\n    try: out[d]=version(d)\n    except Exception: out[d]='not installed'\n"
        "print(json.dumps(out))"
    )
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    try:
        res = subprocess.run([python, "-c", code, *dists], capture_output=True, text=True, timeout=60, env=env, cwd="/")
        return json.loads(res.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {d: f"unknown ({type(exc).__name__})" for d in dists}


def collect_meta(s: Settings) -> Dict[str, Any]:
    scale = (
        f"quick scale (smoke test: numbers mean nothing), n={s.n:,}"
        if s.quick
        else f"n={s.n:,} steps, {s.repeat} repetitions (peers {s.peer_repeat})"
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu": _cpu(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "python_executable": s.python,
        "ml_dash": _version_of_ours(),
        "commit": _commit(),
        "scale": scale,
        "settings": dict(vars(s).items()),
        "peers_python": s.peers_python,
        "peer_versions": peer_versions(s.peers_python or s.python, s.peers) if s.peers else {},
    }
