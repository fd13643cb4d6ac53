"""The read model's benchmark still runs at smoke scale and its answers are right (speed is never
judged here: see benchmarks/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_readmodel_benchmark_runs_and_reads_back(tmp_path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.readmodel", "--quick", "--out", str(out), "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    for size in r["series"]["sizes"]:
        whole = size["queries"]["whole metric, 1,000 buckets"]
        assert whole["count"] == size["rows"] and whole["mode"] == "buckets" and whole["points"] <= 1000
        assert size["spike_kept"] is True
        live = size["queries"]["live: rows after last_index - 100"]
        assert live["mode"] == "raw" and live["points"] == 100
    table = r["table"]
    assert table["queries"]["first page (by prefix)"]["total"] == table["experiments"]
    assert table["queries"]["first page (by prefix)"]["rows"] == 50
    assert "#### Series read" in r["markdown"] and "#### Table of" in r["markdown"]
