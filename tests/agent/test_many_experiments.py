"""Many experiments in one process share one set of background threads: one worker drains every
experiment, one sender loop uploads every session. The thread count does not grow with the number
of experiments, and each experiment's rows arrive exactly once and in order."""

from __future__ import annotations

import threading

import pytest

from ml_dash import Experiment
from ml_dash._store import ExperimentReader

from .conftest import reader, sessions

N_EXPERIMENTS = 40
ROWS = 300


SDK_THREADS = {"ml-dash-worker", "ml-dash-sender", "ml-dash-fsync"}  # (the test server has threads too)


def _ours():
    return sorted(t.name for t in threading.enumerate() if t.name in SDK_THREADS)


def _log_from_threads(exps):
    def log(k: int) -> None:  # four threads, several experiments each, interleaved
        for i in range(ROWS):
            for exp in exps[k::4]:
                exp.metrics("m").log(i=i)
                if i % 100 == 0:
                    exp.log(f"{exp.name} {i}")

    loggers = [threading.Thread(target=log, args=(k,)) for k in range(4)]
    for t in loggers:
        t.start()
    for t in loggers:
        t.join()


@pytest.mark.parametrize("mode", ["local", "remote"])
def test_threads_stay_constant_and_every_experiment_is_complete(mode, tmp_path, request):
    if mode == "remote":
        server = request.getfixturevalue("server")
        kw = {"dash_url": server.url, "token": server.token}

        def read(prefix):
            return reader(server.url, server.token, prefix)
    else:
        root = tmp_path / ".dash"
        kw = {"dash_root": str(root)}

        def read(prefix):
            return ExperimentReader(root, prefix)

    # Threads live as long as the process: an earlier test of this process may have started some.
    needed = {"ml-dash-worker"} if mode == "local" else SDK_THREADS
    expected = sorted(needed | set(_ours()))
    exps = [Experiment(f"alice/many/e{i}", **kw).run.start() for i in range(N_EXPERIMENTS)]
    try:
        after_start = _ours()
        _log_from_threads(exps)
        assert all(exp.flush(60) for exp in exps)
        assert _ours() == expected and set(after_start) <= set(expected)  # (fsync starts with the first write)
    finally:
        for exp in exps:
            if exp.status == "RUNNING":
                exp.run.complete()
    for i, exp in enumerate(exps):
        r = read(exp.prefix)
        rows = r.metric_rows("m")
        assert [row["data"]["i"] for row in rows] == list(range(ROWS)), exp.prefix
        assert [row["index"] for row in rows] == list(range(ROWS))
        assert [x["message"] for x in r.logs()] == [f"e{i} {j}" for j in range(0, ROWS, 100)]
        assert r.experiment()["status"] == "COMPLETED"
    if mode == "remote":
        assert sessions(tmp_path / "spool") == []
