"""Real processes: kill -9 of a client or of the server, a server that never answers, fork, and
``ml-dash-agent flush`` run twice at once or next to a live run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

from ml_dash import Experiment, load_config
from ml_dash._events import LogEvent
from ml_dash.agent._reader import SessionReader
from ml_dash.agent._session import SessionDir
from ml_dash.agent._spool import SpoolWriter

from ..pipes import DUMP_STACKS_ON_SIGUSR1, Lines, read_line, with_stacks
from .conftest import (
    client_env,
    log_messages,
    run_agent,
    run_client,
    sessions,
    set_faults,
    start_client,
    unexpected_stderr,
    wait_for,
)

KILLED = """
import time
from ml_dash import Experiment
exp = Experiment("alice/p/killed").run.start()
for i in range({k}):
    exp.log(f"m{{i}}")
assert exp.flush(30)
print("ACKED", time.time(), flush=True)
i = {k}
while True:
    exp.log(f"m{{i}}")
    if i % 25 == 0:
        print("LOGGED", i, time.time(), flush=True)
    i += 1
    time.sleep(0.001)
"""


def test_kill_9_after_acknowledged_logs_then_flush(server, spool):
    k = 200
    env = client_env(spool, server.url, server.token)
    proc = start_client(KILLED.format(k=k), env)
    out, err = Lines(proc.stdout, "stdout"), Lines(proc.stderr, "stderr")
    try:

        def logged_2s_after_ack(line):
            acked = [float(x.split()[1]) for x in out.lines if x.startswith("ACKED")]
            fields = line.split()
            return acked and fields[0] == "LOGGED" and float(fields[2]) - acked[0] > 2.0

        try:
            out.wait_for(logged_2s_after_ack, 30, "the client to log for 2 s after its acknowledged flush")
        except AssertionError as failure:
            raise AssertionError(f"{failure}\nstderr: {err.text}") from None
    finally:
        proc.send_signal(signal.SIGKILL)
        killed_at = time.time()
        proc.wait(10)
        out.rest(10)
    lines = [x.split() for x in out.lines]
    assert proc.returncode == -signal.SIGKILL
    [session] = sessions(spool)
    # What the spool holds: every complete record (the writer may have been cut mid-record).
    reader, spooled = SessionReader(SessionDir(session), 0), []
    while True:
        chunk = reader.read(100_000, 64 << 20, finished=True)
        spooled += [json.loads(e.payload)["message"] for e in chunk.entries if b'"kind":"log"' in e.payload]
        if chunk.at_end:
            break
    n = len(spooled)
    assert spooled == [f"m{i}" for i in range(n)] and n > k
    done = run_agent(["flush", str(spool)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    # exactly the spooled events: no duplicates, no gaps, in order
    assert log_messages(server.url, server.token, "alice/p/killed") == spooled
    # every event logged more than one worker interval + fsync window before the kill is there
    cfg = load_config()
    old = [
        int(x[1])
        for x in lines
        if x[0] == "LOGGED" and float(x[2]) < killed_at - cfg.flush_interval - cfg.fsync_interval
    ]
    assert old and max(old) < n
    assert sessions(spool) == []


def test_server_killed_and_restarted_mid_run_the_run_catches_up(spawned):
    config = load_config().with_overrides(retry_max_wait=0.3)
    prefix = "alice/p/restart"
    with Experiment(prefix, dash_url=spawned.url, token=spawned.token, config=config).run as exp:
        for i in range(100):
            exp.log(f"m{i}")
        assert exp.flush(20)
        spawned.kill()
        for i in range(100, 200):
            exp.log(f"m{i}")
            exp.metrics("x").log(i=i)
        spawned.restart()
        # no flush call: the sender catches up by itself
        wait_for(
            lambda: len(log_messages(spawned.url, spawned.token, prefix)) == 200,
            timeout=30,
            what="the live run to catch up",
            interval=0.1,
        )
    assert log_messages(spawned.url, spawned.token, prefix) == [f"m{i}" for i in range(200)]


HANGING = """
from ml_dash import Experiment
with Experiment("alice/p/hang").run as exp:
    for i in range(100):
        exp.log(f"m{i}")
"""


def test_server_that_never_answers_exit_within_the_deadline(server, spool):
    set_faults(server, [{"match": "ingest", "action": "hang", "times": 1000}])
    env = client_env(spool, server.url, server.token, shutdown_timeout=2)
    start = time.monotonic()
    proc = run_client(HANGING, env, timeout=30)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 2 + 2.5, f"took {elapsed:.1f}s with a 2 s deadline"
    assert "waiting for 103 events" in proc.stderr  # progress after about a second
    assert "103 events" in proc.stderr and "not uploaded" in proc.stderr
    assert f"ml-dash-agent flush {spool} --dash-url {server.url}" in proc.stderr
    set_faults(server, [])
    done = run_agent(["flush", str(spool)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert log_messages(server.url, server.token, "alice/p/hang") == [f"m{i}" for i in range(100)]


FORK_IN_FLIGHT = """
import json, os, sys, time, urllib.request
from ml_dash import Experiment
url = os.environ["ML_DASH_URL"]
def ingests():
    req = urllib.request.Request(url + "/api/v1/_test/stats",
                                 headers={"Authorization": "Bearer " + os.environ["ML_DASH_TOKEN"]})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["counts"].get("ingest", 0)
exp = Experiment("alice/p/fork").run.start()
exp.log("parent")
deadline = time.monotonic() + 20
while ingests() < 1:  # a send is now in flight (the server holds it)
    assert time.monotonic() < deadline
    time.sleep(0.01)
t0 = time.monotonic()
pid = os.fork()
if pid == 0:
    sys.exit(0)  # a normal exit: atexit runs in the child
_, status = os.waitpid(pid, 0)
print("CHILD", time.monotonic() - t0, status, flush=True)
exp.run.complete()
"""


def test_fork_while_a_send_is_in_flight_child_exits_at_once(server, spool):
    set_faults(server, [{"match": "ingest", "action": "hang", "times": 1000}])
    env = client_env(spool, server.url, server.token, shutdown_timeout=1)
    proc = run_client(FORK_IN_FLIGHT, env, timeout=30)
    assert proc.returncode == 0, proc.stderr
    [line] = [x.split() for x in proc.stdout.splitlines() if x.startswith("CHILD")]
    assert float(line[1]) < 1.0 and line[2] == "0", line
    assert len(sessions(spool)) == 1  # the child made no session of its own
    set_faults(server, [])
    assert run_agent(["flush", str(spool)], env).returncode == 0
    assert log_messages(server.url, server.token, "alice/p/fork") == ["parent"]


FORK_LOGS = """
import os, sys
from ml_dash import Experiment
exp = Experiment("alice/p/forklog").run.start()
for i in range(10):
    exp.log(f"p{i}")
assert exp.flush(20)
pid = os.fork()
if pid == 0:
    for i in range(5):
        exp.log(f"c{i}")
    sys.exit(0)
assert os.waitpid(pid, 0)[1] == 0
exp.log("p10")
exp.run.complete()
"""


def test_forked_child_that_logs_gets_its_own_session(server, spool):
    proc = run_client(FORK_LOGS, client_env(spool, server.url, server.token), timeout=30)
    assert proc.returncode == 0 and unexpected_stderr(proc.stderr) == "", proc.stderr
    expected = [f"p{i}" for i in range(10)] + [f"c{i}" for i in range(5)] + ["p10"]
    assert log_messages(server.url, server.token, "alice/p/forklog") == expected
    assert sessions(spool) == []


def _spooled(root, url, prefix, n):
    sdir = SessionDir.create(root, url, prefix)
    w = SpoolWriter(sdir, fsync_interval=1.0, warn_bytes=1 << 40, max_bytes=1 << 40)
    w.append([LogEvent(1.0, "info", f"m{i}") for i in range(n)])
    w.close()
    sdir.writer_lock.release()


def test_two_flushes_at_the_same_time(server, spool):
    for s in range(4):
        _spooled(spool, server.url, f"alice/twice/s{s}", 3000)
    env = client_env(spool, server.url, server.token)  # the token goes only to a server configured now
    code = "import sys; from ml_dash.agent.cli import main; sys.exit(main(sys.argv[1:]))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, "flush", str(spool)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    uploaded = sum(int(out.split(" events")[0].rsplit(" ", 1)[1].replace(",", "")) for out, _ in outs)
    assert uploaded == 4 * 3000  # each session uploaded by exactly one of them
    for s in range(4):
        assert log_messages(server.url, server.token, f"alice/twice/s{s}") == [f"m{i}" for i in range(3000)]
    assert sessions(spool) == []


LIVE_OFFLINE = """
import sys
from ml_dash import Experiment
with Experiment("alice/p/live").run as exp:
    for i in range(100):
        exp.log(f"m{i}")
    exp.flush()
    print("READY", flush=True)
    sys.stdin.readline()
    for i in range(100, 150):
        exp.log(f"m{i}")
"""


def test_flush_next_to_a_live_offline_run(server, spool):
    env = client_env(spool, server.url, server.token, offline=1)
    proc = start_client(LIVE_OFFLINE, env)
    try:
        assert read_line(proc.stdout, 60, "READY").strip() == "READY"
        first = run_agent(["flush", str(spool)], env)
        assert first.returncode == 1 and "still writing" in first.stdout, first.stdout + first.stderr
        assert log_messages(server.url, server.token, "alice/p/live") == [f"m{i}" for i in range(100)]
        assert len(sessions(spool)) == 1  # not deleted under the live writer
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.communicate()
    second = run_agent(["flush", str(spool)], env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert log_messages(server.url, server.token, "alice/p/live") == [f"m{i}" for i in range(150)]
    assert sessions(spool) == []


# The signals as a program started from a terminal has them, whatever pytest inherited: a child of a
# process that ignores SIGINT (a shell's background job: `cmd &` in a script, as CI may run the
# suite) starts with SIGINT ignored, and Python then never raises KeyboardInterrupt in it.
INTERRUPTED = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
signal.signal(signal.SIGTERM, signal.SIG_DFL)
from ml_dash import Experiment
with Experiment("alice/p/sigint").run as exp:
    for i in range(50):
        exp.log(f"m{i}")
    print("READY", flush=True)
    while True:
        time.sleep(0.01)
"""


def test_second_ctrl_c_leaves_at_once_with_the_spool_intact(server, spool):
    set_faults(server, [{"match": "ingest", "action": "hang", "times": 1000}])
    env = client_env(spool, server.url, server.token, shutdown_timeout=60)
    proc = start_client(DUMP_STACKS_ON_SIGUSR1 + INTERRUPTED, env)
    out, err = Lines(proc.stdout, "stdout"), Lines(proc.stderr, "stderr")
    try:
        out.wait_for(lambda line: line.strip() == "READY", 30, "READY")
        proc.send_signal(signal.SIGINT)  # first Ctrl-C: the run closes and waits for the server
        try:
            err.wait_for(lambda line: "waiting for" in line, 20, "the progress line")
        except AssertionError as failure:
            raise with_stacks(proc, err, failure) from None
        second = time.monotonic()
        proc.send_signal(signal.SIGINT)  # second Ctrl-C: leave now
        proc.wait(10)
        rest = err.rest(5)
        assert time.monotonic() - second < 1.5
    finally:
        proc.kill()
    assert "ml-dash-agent flush" in rest and "not uploaded (interrupted)" in rest
    set_faults(server, [])
    done = run_agent(["flush", str(spool)], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert log_messages(server.url, server.token, "alice/p/sigint") == [f"m{i}" for i in range(50)]


def test_sigterm_with_the_server_down_exits_quickly_and_keeps_everything(server, spool):
    from ml_dash.server import run_in_thread

    url, port = server.url, int(server.url.rsplit(":", 1)[1])
    server.handle.stop()
    env = client_env(spool, url, server.token)
    proc = start_client(INTERRUPTED.replace("sigint", "sigterm"), env)
    out, stderr = Lines(proc.stdout, "stdout"), Lines(proc.stderr, "stderr")
    try:
        out.wait_for(lambda line: line.strip() == "READY", 30, "READY")
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        err = stderr.rest(5)
    finally:
        proc.kill()
    assert time.monotonic() - start < 3.0
    assert proc.returncode == -signal.SIGTERM  # the SDK re-delivers SIGTERM after the flush
    assert f"ml-dash-agent flush {spool} --dash-url {url}" in err
    handle = run_in_thread(server.root, port=port)
    try:
        assert run_agent(["flush", str(spool)], env).returncode == 0
        assert log_messages(url, server.token, "alice/p/sigterm") == [f"m{i}" for i in range(50)]
        from .conftest import reader

        assert reader(url, server.token, "alice/p/sigterm").experiment()["status"] == "CANCELLED"
    finally:
        handle.stop()


def test_a_second_sigterm_during_the_drain_ends_the_process_with_the_first(server, spool):
    """``kill`` twice, or a scheduler that repeats itself: the second SIGTERM, arriving while the
    first one's drain waits for the server, is handled when that drain ends; the process then ends
    at once, as the first would have ended it (for a while it waited 2 s more, taking the second
    signal for one the SIGTERM watcher had claimed)."""
    set_faults(server, [{"match": "ingest", "action": "hang", "times": 1000}])
    env = client_env(spool, server.url, server.token, shutdown_timeout=3)
    proc = start_client(INTERRUPTED.replace("sigint", "sigterm2"), env)
    out, err = Lines(proc.stdout, "stdout"), Lines(proc.stderr, "stderr")
    try:
        out.wait_for(lambda line: line.strip() == "READY", 30, "READY")
        proc.send_signal(signal.SIGTERM)
        err.wait_for(lambda line: "waiting for" in line, 10, "the drain's progress line")  # draining now
        proc.send_signal(signal.SIGTERM)
        err.wait_for(lambda line: "to upload them" in line, 10, "the drain's end (what is left)")
        drained = time.monotonic()
        proc.wait(30)
        after = time.monotonic() - drained
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM
    assert after < 1.5, f"ended {after:.1f}s after the drain"  # was 2 s and more (a second wait)
    set_faults(server, [])
    assert run_agent(["flush", str(spool)], env).returncode == 0
    assert log_messages(server.url, server.token, "alice/p/sigterm2") == [f"m{i}" for i in range(50)]
    from .conftest import reader

    assert reader(server.url, server.token, "alice/p/sigterm2").experiment()["status"] == "CANCELLED"


RANK = """
import os
from ml_dash import Experiment
rank = os.environ["RANK"]
with Experiment("alice/p/ddp").run as exp:
    for i in range(500):
        exp.metrics("loss").log(rank=int(rank), i=i)
        if i % 100 == 0:
            exp.log(f"rank {rank} step {i}")
"""


def test_two_ranks_writing_one_experiment_are_merged(server, spool):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK],
            env={**client_env(spool, server.url, server.token), "RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    from .conftest import reader

    rows = reader(server.url, server.token, "alice/p/ddp").metric_rows("loss")
    assert [r["index"] for r in rows] == list(range(1000))  # contiguous, unique
    for rank in (0, 1):  # each rank's rows complete and in its own order
        assert [r["data"]["i"] for r in rows if r["data"]["rank"] == rank] == list(range(500))
    assert len(log_messages(server.url, server.token, "alice/p/ddp")) == 10
    assert sessions(spool) == []
