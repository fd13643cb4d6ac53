"""Nothing is lost at exit, on SIGTERM, after kill -9 of a flushed run, across fork and processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ml_dash import Experiment
from ml_dash._store import ExperimentReader

from ..conftest import run_script
from ..pipes import DUMP_STACKS_ON_SIGUSR1, Lines, read_line, with_stacks


def _spawn(code: str, cwd) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_line(proc: subprocess.Popen, expected: str) -> None:
    try:
        line = read_line(proc.stdout, 120, repr(expected))  # the child says it reached the point
    except AssertionError as failure:
        proc.kill()
        raise AssertionError(f"{failure}; the child's stderr:\n{proc.communicate(timeout=30)[1]}") from None
    assert line.strip() == expected, (line, proc.stderr.read() if proc.poll() is not None else "")


LOG_THEN_WAIT = (
    DUMP_STACKS_ON_SIGUSR1
    + """
import sys, time
from ml_dash import Experiment
{setup}
exp = Experiment(prefix="a/b/sig", dash_root=".dash")
exp.run.start()
for i in range(50_000):
    exp.metrics("train").log(i=i, loss=1.0 / (i + 1))
exp.log("last words")
print("logged", flush=True)
# Short sleeps, not one long wait: a signal whose C-level handler runs just before a blocking wait
# begins (after the interpreter's last look at its flags) has its Python handler run only when
# that wait ends. That is CPython's, with or without ml-dash; a 50 ms sleep bounds it.
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    time.sleep(0.05)
"""
)


def _exit_status(proc: subprocess.Popen, timeout: float = 30) -> int:
    """The child's exit status after a signal; past ``timeout`` the test fails with each thread's
    signal masks and pending signals (from /proc) and every thread's stack."""
    err = Lines(proc.stderr, "stderr")
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        masks = []
        for tid in sorted(os.listdir(f"/proc/{proc.pid}/task")):
            with open(f"/proc/{proc.pid}/task/{tid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            masks.append(
                f"{fields['Name'].strip()} {tid}: "
                + " ".join(f"{k}={fields[k].strip()}" for k in ("SigBlk", "SigPnd", "ShdPnd", "SigCgt"))
            )
        failure = AssertionError(f"no exit {timeout}s after the signal; threads:\n" + "\n".join(masks))
        raise with_stacks(proc, err, failure) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sigterm_drains_queue_and_keeps_default_exit(tmp_path):
    proc = _spawn(LOG_THEN_WAIT.format(setup=""), tmp_path)
    _wait_line(proc, "logged")
    proc.send_signal(signal.SIGTERM)
    assert _exit_status(proc) == -signal.SIGTERM  # default disposition kept: killed by the signal
    r = ExperimentReader(tmp_path / ".dash", "a/b/sig")
    rows = r.metric_rows("train")
    assert [x["data"]["i"] for x in rows] == list(range(50_000))
    assert r.logs()[-1]["message"] == "last words"
    info = r.experiment()
    assert info["status"] == "CANCELLED" and "SIGTERM" in info["status_reason"]


def test_sigterm_chains_to_the_programs_own_handler(tmp_path):
    setup = """
import signal, pathlib
def mine(signum, frame):
    pathlib.Path("handler-ran").write_text("yes")
    sys.exit(3)
signal.signal(signal.SIGTERM, mine)
"""
    proc = _spawn(LOG_THEN_WAIT.format(setup=setup), tmp_path)
    _wait_line(proc, "logged")
    proc.send_signal(signal.SIGTERM)
    assert _exit_status(proc) == 3
    assert (tmp_path / "handler-ran").read_text() == "yes"
    rows = ExperimentReader(tmp_path / ".dash", "a/b/sig").metric_rows("train")
    assert len(rows) == 50_000


def test_interpreter_exit_without_complete_loses_nothing(tmp_path):
    proc = run_script(
        """
        from ml_dash import Experiment
        exp = Experiment(prefix="a/b/exit", dash_root=".dash")
        exp.run.start()
        for i in range(30_000):
            exp.metrics("m").log(i=i)
        exp.log("bye")
        # no complete(): atexit must drain
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    r = ExperimentReader(tmp_path / ".dash", "a/b/exit")
    assert len(r.metric_rows("m")) == 30_000
    assert r.experiment()["status"] == "COMPLETED"


def test_uncaught_exception_marks_failed(tmp_path):
    proc = run_script(
        """
        from ml_dash import Experiment
        exp = Experiment(prefix="a/b/crash", dash_root=".dash")
        exp.run.start()
        exp.metrics("m").log(i=1)
        raise RuntimeError("diverged")
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 1 and "diverged" in proc.stderr
    r = ExperimentReader(tmp_path / ".dash", "a/b/crash")
    assert r.metric_rows("m")[0]["data"]["i"] == 1
    assert r.experiment()["status"] == "FAILED" and "diverged" in r.experiment()["status_reason"]


def test_kill9_after_flush_keeps_flushed_rows_and_resume_continues(tmp_path):
    proc = _spawn(
        """
        import threading
        from ml_dash import Experiment
        exp = Experiment(prefix="a/b/k9", dash_root=".dash")
        exp.run.start()
        for i in range(1000):
            exp.metrics("m").log(i=i)
            exp.log(f"line {i}")
        exp.flush()
        print("flushed", flush=True)
        threading.Event().wait(60)
    """,
        tmp_path,
    )
    _wait_line(proc, "flushed")
    proc.kill()
    proc.wait(10)
    proc = run_script(
        """
        from ml_dash import Experiment
        with Experiment(prefix="a/b/k9", dash_root=".dash").run as exp:
            exp.metrics("m").log(i=1000)
            exp.log("line 1000")
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    r = ExperimentReader(tmp_path / ".dash", "a/b/k9")
    assert [(x["index"], x["data"]["i"]) for x in r.metric_rows("m")] == [(i, i) for i in range(1001)]
    assert [log["sequenceNumber"] for log in r.logs()] == list(range(1001))


def test_torn_last_line_is_skipped_and_numbering_continues(dash_root):
    with Experiment(prefix="a/b/torn", dash_root=str(dash_root)).run as exp:
        for i in range(3):
            exp.metrics("m").log(i=i)
    data = dash_root / "a/b/torn/metrics/m/data.jsonl"
    with open(data, "ab") as fh:
        fh.write(b'{"index": 3, "data": {"i": 3')  # a crash mid-write
    with Experiment(prefix="a/b/torn", dash_root=str(dash_root)).run as exp:
        exp.metrics("m").log(i=99)
        assert [(x["index"], x["data"]["i"]) for x in exp.metrics("m").read()] == [(0, 0), (1, 1), (2, 2), (3, 99)]


def test_threads_get_unique_contiguous_indices(dash_root):
    import threading

    with Experiment(prefix="a/b/threads", dash_root=str(dash_root)).run as exp:

        def work(k):
            for i in range(10_000):
                exp.metrics("m").log(k=k, i=i)
                if i % 1000 == 0:
                    exp.log(f"{k}:{i}")

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    r = ExperimentReader(dash_root, "a/b/threads")
    rows = r.metric_rows("m")
    assert [x["index"] for x in rows] == list(range(40_000))
    for k in range(4):
        assert [x["data"]["i"] for x in rows if x["data"]["k"] == k] == list(range(10_000))
    assert [log["sequenceNumber"] for log in r.logs()] == list(range(40))


def test_several_processes_write_one_experiment(tmp_path):
    code = """
        import sys
        from ml_dash import Experiment
        k = int(sys.argv[1])
        with Experiment(prefix="a/b/multi", dash_root=".dash").run as exp:
            for i in range(5000):
                exp.metrics("m").log(k=k, i=i)
                if i % 500 == 0:
                    exp.log(f"{k}:{i}")
                    exp.flush()  # interleave batches of the processes
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(k)],
            cwd=tmp_path,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(3)
    ]
    for p in procs:
        assert p.wait(60) == 0, p.stderr.read()
    r = ExperimentReader(tmp_path / ".dash", "a/b/multi")
    rows = r.metric_rows("m")
    assert [x["index"] for x in rows] == list(range(15_000))
    raw_lines = (tmp_path / ".dash/a/b/multi/metrics/m/data.jsonl").read_bytes().count(b"\n")
    assert raw_lines == 15_000  # no duplicate or torn lines on disk either
    for k in range(3):
        assert [x["data"]["i"] for x in rows if x["data"]["k"] == k] == list(range(5000))
    assert [log["sequenceNumber"] for log in r.logs()] == list(range(30))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
# It forks the pytest process, where other tests may have left threads of their own (Python 3.12+
# warns of any); ml-dash stops its own around a fork, so alone this test forks with one thread.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_fork_child_does_not_resend_parent_rows_and_exits_fast(dash_root):
    exp = Experiment(prefix="a/b/fork", dash_root=str(dash_root))
    exp.run.start()
    for i in range(5000):
        exp.metrics("m").log(who="parent", i=i)  # still queued at fork time
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # child: log its own rows, then exit through the normal interpreter exit path
        try:
            exp.metrics("m").log(who="child", i=0)
            exp.flush()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    child_seconds = time.monotonic() - started
    assert os.WEXITSTATUS(status) == 0
    exp.run.complete()
    rows = exp.metrics("m").read()
    parent = [x["data"]["i"] for x in rows if x["data"]["who"] == "parent"]
    assert parent == list(range(5000))
    assert [x["data"]["i"] for x in rows if x["data"]["who"] == "child"] == [0]
    assert [x["index"] for x in rows] == list(range(5001))
    assert child_seconds < 5
    assert ExperimentReader(dash_root, "a/b/fork").experiment()["status"] == "COMPLETED"


def test_forked_child_exiting_normally_does_not_change_status(tmp_path):
    proc = run_script(
        """
        import os, sys
        from ml_dash import Experiment
        exp = Experiment(prefix="a/b/fork2", dash_root=".dash")
        exp.run.start()
        exp.metrics("m").log(i=0)
        pid = os.fork()
        if pid == 0:
            exp.metrics("m").log(i=1)
            sys.exit(0)  # atexit runs in the child
        os.waitpid(pid, 0)
        exp.flush()
        import json, pathlib
        print(json.loads(pathlib.Path(".dash/a/b/fork2/experiment.json").read_text())["status"])
        exp.run.complete()
    """,
        cwd=tmp_path,
        # The child closes its copies of the parent's open files: none is left to the garbage
        # collector (which would say so with a ResourceWarning, shown with this setting).
        env={"PYTHONWARNINGS": "default::ResourceWarning"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "RUNNING"
    assert "ResourceWarning" not in proc.stderr
    rows = ExperimentReader(tmp_path / ".dash", "a/b/fork2").metric_rows("m")
    assert sorted(x["data"]["i"] for x in rows) == [0, 1]
