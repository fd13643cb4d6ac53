"""The dashboard benchmark still runs and reads its points back (its speed is never judged here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(420)  # two page loads and two live runs; minutes on a loaded 2-core machine
def test_dashboard_benchmark_quick(browser, tmp_path):  # browser: skips where the page tests skip
    out = tmp_path / "dash.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.dashboard", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    got = json.loads(out.read_text())
    assert got["page"]["all_charts_s"]["n"] == 1
    assert got["live"]["rows"] >= 1  # points drawn live, read back
    assert "experiment page, first screen of charts drawn" in proc.stdout
