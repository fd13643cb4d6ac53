"""``ml-dash demo``, the README's first command: a synthetic run whose data reads back whole."""

from __future__ import annotations

import re

from ml_dash._store import ExperimentReader

from .test_read_commands import cli


def test_the_demo_logs_a_whole_run_and_says_how_to_look_at_it(tmp_path):
    out = cli("demo", "--steps", "300", cwd=tmp_path, env={"USER": "alice"})
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    lines = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    prefix = lines["experiment"].split()[0]
    assert prefix.startswith("alice/demo/synthetic-")
    assert "ml-dash dashboard" in lines["look"]  # "look at it   ml-dash dashboard ..."
    # the typical call (median) beside the mean, which carries the first call's setup
    cost = re.fullmatch(
        r"cost\s+([\d.]+) us per metrics\(\.\.\.\)\.log\(\) call \(median; mean ([\d.]+) us\), 300 calls",
        lines["caller"],
    )
    assert cost is not None, lines["caller"]
    assert float(cost[1]) > 0 and float(cost[2]) > 0
    r = ExperimentReader(tmp_path / ".dash", prefix)
    assert r.experiment()["status"] == "COMPLETED"
    assert [row["data"]["step"] for row in r.metric_rows("train")] == list(range(300))
    assert [row["data"]["step"] for row in r.metric_rows("val")] == list(range(0, 300, 30))
    assert r.params()["model.hidden"] == 128
    (entry,) = r.files()
    assert (entry["path"], entry["filename"], entry["sizeBytes"]) == ("/checkpoints", "model.bin", 65536)
    messages = [line["message"] for line in r.logs()]
    assert messages[0] == "Training started" and messages[-1] == "Training finished" and len(messages) == 12
    # the command it prints works: show reads the run back
    shown = cli("show", prefix, cwd=tmp_path)
    assert shown.returncode == 0 and prefix in shown.stdout and "COMPLETED" in shown.stdout, shown.stderr
