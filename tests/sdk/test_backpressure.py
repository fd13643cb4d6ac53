"""A full queue blocks the caller (the default: nothing is lost), or, opted into, drops
(counted) or raises after a brief wait.

The worker is stalled for real: the test holds the experiment's inter-process lock, which the
worker needs for every batch, exactly as another process writing the same experiment would.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time

import pytest

from ml_dash import Config, Experiment, QueueFull
from ml_dash._store import ExperimentReader


def _hold_lock(exp_dir):
    fd = os.open(exp_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


@pytest.mark.parametrize("policy", ["drop", "raise"])
def test_full_queue(dash_root, caplog, policy):
    cfg = Config(
        dash_root=str(dash_root), queue_max_events=10, batch_events=10, backpressure_timeout=0.05, drop_policy=policy
    )
    exp = Experiment(prefix="a/b/full", config=cfg)
    exp.run.start()
    exp.flush()
    fd = _hold_lock(exp.local_path)
    stored_calls, refused = 0, 0
    try:
        for i in range(40):
            try:
                exp.metrics("m").log(i=i)
                stored_calls += 1
            except QueueFull:
                refused += 1
    finally:
        os.close(fd)  # the worker goes on
    exp.run.complete()
    rows = ExperimentReader(dash_root, "a/b/full").metric_rows("m")
    dropped = exp._rec.pipe.drops["queue_full"]
    assert dropped > 0
    if policy == "raise":
        assert refused == dropped and len(rows) == stored_calls == 40 - refused
    else:
        assert refused == 0 and len(rows) == 40 - dropped
        assert "queue_full" in caplog.text  # (through logging: see test_messages.py for stderr)
    assert [r["index"] for r in rows] == list(range(len(rows)))


def test_default_policy_blocks_and_loses_nothing(dash_root, caplog):
    cfg = Config(dash_root=str(dash_root), queue_max_events=10, batch_events=10, backpressure_timeout=0.05)
    assert cfg.drop_policy == "block"
    exp = Experiment(prefix="a/b/block", config=cfg)
    exp.run.start()
    exp.flush()
    fd = _hold_lock(exp.local_path)
    done = threading.Event()

    def log_all():
        for i in range(40):
            exp.metrics("m").log(i=i)
        done.set()

    logger = threading.Thread(target=log_all)
    logger.start()
    try:
        # The caller fills its queue, then waits; poll for that state, with a deadline.
        deadline = time.monotonic() + 20
        while not (len(exp.metrics("m").queue) >= 10 and "waiting for the writer" in caplog.text):
            assert time.monotonic() < deadline, "the caller never blocked"
            assert not done.is_set(), "40 calls went through a queue of 10 with the writer stalled"
            time.sleep(0.01)
    finally:
        os.close(fd)  # the worker goes on, and so does the caller
    logger.join(20)
    assert done.is_set()
    exp.run.complete()
    rows = ExperimentReader(dash_root, "a/b/block").metric_rows("m")
    assert [r["data"]["i"] for r in rows] == list(range(40))
    assert not any(exp._rec.pipe.drops.values())
