"""The benchmark suite still runs end to end at smoke scale, and its data reads back.

Speed is never judged here: ``--strict`` fails only when one of our runs, or a baseline, did not
run or did not store every row it logged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_suite_runs_and_every_run_of_ours_reads_back(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--strict",
            "--peers",
            "none",
            "--only",
            "steps,mixed,remote,wire,ingest,import",
            "--out",
            str(out),
            "--workdir",
            str(tmp_path / "w"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    steps = result["workloads"]["steps"]["tools"]
    for tool in ("empty", "floor", "ours"):
        assert steps[tool]["status"] == "ok", steps[tool]
        assert all(run["ok"] for run in steps[tool]["runs"]["timed"])
    remote = result["workloads"]["remote"]["runs"]
    for mode in ("timed", "plain", "agent"):  # agent: handed to an ml-dash-agent serving the spool
        assert remote[mode] and all(run["result"]["acked"] and run["valid"] for run in remote[mode]), mode
    assert {t["target"].split(",")[0] for t in result["targets"]} >= {"step call median", "server ingest"}
    assert "| target (ours) |" in result["markdown"]
