"""The call that fills a batch hands it to the worker; what that may and may not cost.

The worker is stalled for real, as in test_backpressure.py: the test holds the experiment's
inter-process lock, which the worker needs for every batch.
"""

from __future__ import annotations

import fcntl
import json
import os

from ml_dash import Config, Experiment
from ml_dash._store import ExperimentReader


def _hold_lock(exp_dir):
    fd = os.open(exp_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_a_stuck_writer_does_not_hold_up_the_caller_below_the_queue_bound(dash_root):
    cfg = Config(dash_root=str(dash_root), batch_events=16, queue_max_events=10_000)
    exp = Experiment(prefix="a/b/stuck", config=cfg)
    exp.run.start()
    fd = _hold_lock(exp.local_path)
    try:
        for i in range(16 * 40):  # 40 batches, each of which would wait for a drain that cannot finish
            exp.metrics("m").log(i=i)
        # The loop finished while the writer could not write a single row.
        assert ExperimentReader(dash_root, "a/b/stuck").metric_rows("m") == []
    finally:
        os.close(fd)
    exp.run.complete()
    rows = ExperimentReader(dash_root, "a/b/stuck").metric_rows("m")
    assert [r["data"]["i"] for r in rows] == list(range(16 * 40))
    assert not any(exp._rec.pipe.drops.values())


def test_metric_metadata_is_current_after_flush_and_close(dash_root):
    cfg = Config(dash_root=str(dash_root), batch_events=64)
    exp = Experiment(prefix="a/b/meta", config=cfg)
    meta_path = dash_root / "a/b/meta/metrics/m/metadata.json"
    with exp.run:
        for i in range(5000):  # ~80 batches, well within the second between two rewrites
            exp.metrics("m").log(i=i)
        exp.flush()
        meta = json.loads(meta_path.read_text())
        assert (meta["totalDataPoints"], meta["nextIndex"], meta["name"]) == (5000, 5000, "m")
        for i in range(10):
            exp.metrics("m").log(i=i)
    meta = json.loads(meta_path.read_text())
    assert (meta["totalDataPoints"], meta["nextIndex"]) == (5010, 5010)
    assert len(ExperimentReader(dash_root, "a/b/meta").metric_rows("m")) == 5010


def test_a_local_run_is_on_disk_when_start_returns(dash_root):
    exp = Experiment(prefix="a/b/started", dash_root=str(dash_root))
    exp.run.start()
    try:
        record = json.loads((dash_root / "a/b/started/experiment.json").read_text())
        assert record["status"] == "RUNNING" and record["name"] == "started"
    finally:
        exp.run.complete()
