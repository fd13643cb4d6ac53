"""Starting the spool's agent from a run (``ML_DASH_UPLOADER=agent`` and none serves the spool)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["spawn_agent"]

_spawned = False  # one try per process


def spawn_agent(root: Path, idle: float) -> None:
    """Start the spool's agent, detached, once per process (a run that found none uploads in
    process itself; the next run finds it). What it prints goes to ``<spool>/agent.log``; the token
    is not in its environment (each run sends its own over the socket)."""
    global _spawned
    if _spawned:
        return
    _spawned = True
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ML_DASH_TOKEN"}
    log = os.open(root / "agent.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        # sh starts the agent in the background and exits at once: the agent is nobody's child here
        # (no zombie while this run lives), in a session of its own (no Ctrl-C from this terminal).
        shell = subprocess.Popen(
            ["/bin/sh", "-c", '"$@" &', "sh", sys.executable, "-m", "ml_dash.agent.cli", "serve", str(root),
             "--idle", str(idle)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
        )  # fmt: skip
        shell.wait(5.0)
    except (OSError, subprocess.SubprocessError):
        pass  # uploading in process is always there
    finally:
        os.close(log)
