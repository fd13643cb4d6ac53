"""Child processes on every start method lose nothing, in local and remote mode: ``os.fork`` with a
run live in the parent, ``multiprocessing`` pools with ``fork``, ``spawn`` and ``forkserver``, and
``concurrent.futures.ProcessPoolExecutor``. Every row is read back. Forking while a run is live
shows no ``DeprecationWarning`` on our account (the scripts run with ``-W error::DeprecationWarning``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from ml_dash._store import ExperimentReader

from ..pipes import Lines
from .conftest import client_env, reader, run_agent, running_agent, sessions, unexpected_stderr, wait_for

pytestmark = pytest.mark.slow

#: "agent": remote mode whose runs hand their sessions to a running ``ml-dash-agent serve``.
MODES = ["local", "remote", "agent"]


@pytest.fixture(params=MODES)
def mode(request, tmp_path):
    """(env, read) for one mode: ``read(prefix)`` returns a reader of what was stored."""
    if request.param == "local":
        root = tmp_path / ".dash"
        env = client_env(tmp_path / "spool", None, None, root=root)
        yield "local", env, lambda prefix: ExperimentReader(root, prefix), tmp_path / "spool"
    elif request.param == "remote":
        server = request.getfixturevalue("server")
        spool = tmp_path / "spool"
        env = client_env(spool, server.url, server.token)
        yield "remote", env, lambda prefix: reader(server.url, server.token, prefix), spool
    else:
        server = request.getfixturevalue("server")
        spool = tmp_path / "spool"
        env = client_env(spool, server.url, server.token, uploader="agent")
        with running_agent(spool):
            yield "agent", env, lambda prefix: reader(server.url, server.token, prefix), spool


def _run(
    tmp_path, code: str, env, *args: str, timeout: float = 120, warnings: tuple = ("-W", "error::DeprecationWarning")
) -> subprocess.CompletedProcess:
    script = tmp_path / "main.py"  # a file, not -c: spawn and forkserver import the main module
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, *warnings, str(script), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _rows_by_task(r, metric):
    rows = r.metric_rows(metric)
    by_task = {}
    for row in rows:
        by_task.setdefault(row["data"]["task"], []).append(row["data"]["i"])
    return rows, by_task


OS_FORK = """
import os, sys
from ml_dash import Experiment

exp = Experiment("alice/p/osfork").run.start()
for i in range(1000):
    exp.metrics("rows").log(task=-1, i=i)
exp.log("parent before")
pids = []
for k in range(3):
    pid = os.fork()  # with the run live and its threads busy
    if pid == 0:
        for i in range(500):
            exp.metrics("rows").log(task=k, i=i)
        exp.log(f"child {k}")
        if k == 2:
            exp.flush()  # a child that leaves with os._exit must flush first
            os._exit(0)
        sys.exit(0)  # atexit drains the child's share
    pids.append(pid)
    for i in range(1000 + 100 * k, 1100 + 100 * k):
        exp.metrics("rows").log(task=-1, i=i)
assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
exp.log("parent after")
exp.run.complete()
print("OK", flush=True)
"""


def test_os_fork_with_a_live_run(tmp_path, mode):
    name, env, read, spool = mode
    proc = _run(tmp_path, OS_FORK, env)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr
    assert unexpected_stderr(proc.stderr) == ""  # no DeprecationWarning (it would be an error here), no message
    r = read("alice/p/osfork")
    rows, by_task = _rows_by_task(r, "rows")
    assert by_task[-1] == list(range(1300))
    for k in range(3):
        assert by_task[k] == list(range(500)), k
    assert sorted(row["index"] for row in rows) == list(range(1300 + 3 * 500))
    messages = [x["message"] for x in r.logs()]
    # Each process's own order is kept; between processes (remote: separate sessions) the store
    # keeps arrival order.
    assert sorted(messages) == ["child 0", "child 1", "child 2", "parent after", "parent before"]
    assert messages.index("parent before") < messages.index("parent after")
    assert r.experiment()["status"] == "COMPLETED"
    if name == "agent":
        # The child that left with os._exit never closed its session: the agent sees its writer
        # gone, finds everything acknowledged, and removes it.
        wait_for(lambda: sessions(spool) == [], 30, "the agent to finish the child's session")
    if name == "remote":
        # The child that left with os._exit never closed its session: everything in it was
        # acknowledged (its flush returned), and the agent removes it without sending anything.
        assert len(sessions(spool)) == 1
        done = run_agent(["flush", str(spool)], env)
        assert done.returncode == 0 and " 0 events" in done.stdout, done.stdout + done.stderr
        assert sessions(spool) == [] and len(read("alice/p/osfork").metric_rows("rows")) == len(rows)


POOLS = """
import multiprocessing as mp, os, sys
from concurrent.futures import ProcessPoolExecutor
from ml_dash import Experiment

PREFIX = "alice/p/pool"
exp = None  # the parent's live run (inherited by fork children)
own = None  # a child's own run (spawn and forkserver children cannot inherit one)


def work(task):
    global own
    run = exp
    if run is None:  # not inherited: open the experiment in this child, once, and never close it
        if own is None:
            own = Experiment(PREFIX).run.start()
        run = own
    for i in range(300):
        run.metrics("rows").log(task=task, i=i)
    run.log(f"task {task} in {os.getpid()}")
    return task


if __name__ == "__main__":
    method, kind = sys.argv[1], sys.argv[2]
    ctx = mp.get_context(method)
    if method == "fork":
        exp = Experiment(PREFIX).run.start()
        exp.metrics("rows").log(task=-1, i=0)
    if kind == "pool":  # close() and join(): each worker ends on its own
        with ctx.Pool(2) as pool:
            done = pool.map(work, range(6))
            pool.close()
            pool.join()
    elif kind == "pool-exit":  # leaving the block terminate()s the workers (SIGTERM)
        with ctx.Pool(2) as pool:
            done = pool.map(work, range(6))
    else:
        with ProcessPoolExecutor(2, mp_context=ctx) as pool:
            done = list(pool.map(work, range(6)))
    assert done == list(range(6))
    if exp is not None:
        exp.run.complete()
    print("OK", flush=True)
"""


@pytest.mark.parametrize("kind", ["pool", "pool-exit", "executor"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_children_lose_nothing(tmp_path, mode, method, kind):
    name, env, read, spool = mode
    proc = _run(tmp_path, POOLS, env, method, kind)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr
    assert "DeprecationWarning" not in proc.stderr, proc.stderr
    r = read("alice/p/pool")
    rows, by_task = _rows_by_task(r, "rows")
    for task in range(6):
        assert by_task.get(task) == list(range(300)), (task, len(by_task.get(task, [])), proc.stderr[-3000:])
    assert sorted(row["index"] for row in rows) == list(range(len(rows)))
    assert len(rows) == 6 * 300 + (method == "fork")
    assert sorted(x["message"].split(" in ")[0] for x in r.logs()) == [f"task {t}" for t in range(6)]
    if name in ("remote", "agent"):
        assert sessions(spool) == []


TERMINATED = """
import multiprocessing as mp, sys
from ml_dash import Experiment

exp = None


def work(args):
    k, task = args
    for i in range(20):
        exp.metrics("rows").log(k=k, task=task, i=i)
    return task


if __name__ == "__main__":
    n = int(sys.argv[1])
    exp = Experiment("alice/p/terminated").run.start()
    for k in range(n):
        with mp.get_context("fork").Pool(4) as pool:  # its exit terminate()s the workers
            assert pool.map(work, [(k, t) for t in range(8)]) == list(range(8))
        print("LEFT", k, flush=True)
    exp.run.complete()
    print("OK", flush=True)
"""


def test_leaving_a_pool_block_again_and_again_never_hangs_and_loses_nothing(tmp_path):
    """Leaving ``with Pool(...)`` terminate()s the workers, just as they go back to wait for a task
    on the queue's lock (which terminate() holds). A SIGTERM that lands just before that wait, or
    on a worker just forked, used to leave the worker running with our handler never called, and
    the block's exit waited for it forever: before the fix, 3 runs of this test out of 3 hung (after
    9, 23 and 91 exits). 100 exits of a pool of 4, every row the workers logged read back."""
    n = 100
    env = client_env(tmp_path / "spool", None, None, root=tmp_path / ".dash")
    script = tmp_path / "main.py"
    script.write_text(textwrap.dedent(TERMINATED))
    proc = subprocess.Popen(
        [sys.executable, str(script), str(n)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a hung worker is killed with its group
    )
    out, err = Lines(proc.stdout, "stdout"), Lines(proc.stderr, "stderr")
    try:
        out.wait_for(lambda line: line.strip() == "OK", 60, "the script to leave its pool blocks")
        assert proc.wait(30) == 0, err.text
    except AssertionError as failure:
        left = [x for x in out.lines if x.startswith("LEFT")]
        raise AssertionError(f"{failure}\n(left {len(left)} of {n} blocks)\nstderr: {err.text[-3000:]}") from None
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert unexpected_stderr(err.rest(10)) == ""
    rows = ExperimentReader(tmp_path / ".dash", "alice/p/terminated").metric_rows("rows")
    got = sorted((r["data"]["k"], r["data"]["task"], r["data"]["i"]) for r in rows)
    assert got == [(k, t, i) for k in range(n) for t in range(8) for i in range(20)]


MISSED = """
import multiprocessing as mp, os, platform, signal, sys, threading, time
from ml_dash import Experiment

READ = {"x86_64": 0, "aarch64": 63}[platform.machine()]  # the read(2) system call's number


def sleeps_in_read(tid, fd):
    with open(f"/proc/self/task/{tid}/syscall") as f:
        fields = f.read().split()
    return fields[0] == str(READ) and int(fields[1], 16) == fd


def child(ready):
    exp = Experiment("alice/p/missed").run.start()
    for i in range(100):
        exp.metrics("rows").log(i=i)
    # The main thread waits in C code and never sees SIGTERM (it is blocked here, in this thread
    # only): as when the signal lands just before a wait begins. Our threads block it too (so that
    # it reaches the main thread), so it goes to a thread of some other library, started before the
    # block; Python's C-level handler runs there. The parent is told only once the main thread
    # sleeps in read(2): a SIGTERM that came while it still ran Python code would be handled
    # there, the ordinary way (exit status -15).
    never = threading.Event()
    threading.Thread(target=never.wait, name="another-library", daemon=True).start()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    r, w = os.pipe()
    main = threading.get_native_id()

    def announce():
        deadline = time.monotonic() + 60
        while not sleeps_in_read(main, r):
            assert time.monotonic() < deadline, "the main thread never reached read(2)"
            time.sleep(0.001)
        ready.set()

    threading.Thread(target=announce, daemon=True).start()
    os.read(r, 1)


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1])
    ready = ctx.Event()
    p = ctx.Process(target=child, args=(ready,))
    p.start()
    assert ready.wait(60)
    p.terminate()
    p.join(30)
    print("EXIT", p.exitcode, flush=True)
    if p.exitcode is None:
        p.kill()
"""


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_a_sigterm_the_main_thread_cannot_handle_still_closes_the_run(tmp_path, mode, method):
    """A multiprocessing child whose main thread cannot run the SIGTERM handler: a thread of ours
    closes the run (everything stored, CANCELLED) and ends the child, exit status 143."""
    name, env, read, spool = mode
    proc = _run(tmp_path, MISSED, env, method, timeout=90)
    assert proc.returncode == 0 and proc.stdout.split() == ["EXIT", "143"], proc.stdout + proc.stderr
    r = read("alice/p/missed")
    assert [row["data"]["i"] for row in r.metric_rows("rows")] == list(range(100))
    info = r.experiment()
    assert info["status"] == "CANCELLED" and "SIGTERM" in info["status_reason"], info
    if name in ("remote", "agent"):
        assert sessions(spool) == []


AT_EXIT_ONLY = """
import atexit, os, sys
from ml_dash import Experiment

exp = Experiment("alice/p/late").run.start()
exp.log("parent")
exp.flush()
pid = os.fork()
if pid == 0:
    # The child's first call into ml-dash happens at interpreter shutdown, when Python 3.12+
    # refuses to start threads: the child drains and uploads inline.
    atexit.register(lambda: [exp.metrics("late").log(i=i) for i in range(200)])
    sys.exit(0)
assert os.waitpid(pid, 0)[1] == 0
exp.run.complete()
print("OK", flush=True)
"""


def test_child_that_first_logs_at_interpreter_shutdown(tmp_path, mode):
    name, env, read, spool = mode
    proc = _run(tmp_path, AT_EXIT_ONLY, env)
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr
    assert unexpected_stderr(proc.stderr) == "", proc.stderr
    r = read("alice/p/late")
    assert [row["data"]["i"] for row in r.metric_rows("late")] == list(range(200))
    if name in ("remote", "agent"):
        assert sessions(spool) == []


OTHER_THREAD = """
import os, sys, threading
from ml_dash import Experiment

exp = Experiment("alice/p/theirs").run.start()
exp.metrics("rows").log(i=0)
if sys.argv[1] == "thread":  # another library's thread, alive at the fork
    threading.Thread(target=threading.Event().wait, name="theirs", daemon=True).start()
pid = os.fork()
if pid == 0:
    exp.metrics("rows").log(i=1)
    sys.exit(0)
assert os.waitpid(pid, 0)[1] == 0
exp.run.complete()
print("OK", flush=True)
"""


@pytest.mark.parametrize("other", ["none", "thread"])
def test_what_a_user_sees_forking_from_main_with_a_live_run(tmp_path, mode, other):
    """Python's default warning filters, os.fork() called from __main__ (where 3.12+ shows its
    DeprecationWarning): nothing on our account; Python's own warning when another thread is alive."""
    name, env, read, spool = mode
    proc = _run(tmp_path, OTHER_THREAD, env, other, warnings=())
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stderr
    warned = other == "thread" and sys.version_info >= (3, 12)
    if warned:
        assert "DeprecationWarning: This process" in proc.stderr and "is multi-threaded" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 2  # the warning and its source line, nothing else
    else:
        assert proc.stderr == ""
    assert sorted(row["data"]["i"] for row in read("alice/p/theirs").metric_rows("rows")) == [0, 1]
    if name in ("remote", "agent"):
        assert sessions(spool) == []


THREAD_MASKS = """
import json, signal, threading
from ml_dash import Experiment

exp = Experiment("alice/p/masks").run.start()
for i in range(2000):
    exp.metrics("rows").log(i=i)
print("to the console", flush=True)
exp.flush()  # every thread of ours has started by now

def blocked(thread):
    with open(f"/proc/self/task/{thread.native_id}/status") as f:
        mask = int(next(line for line in f if line.startswith("SigBlk:")).split()[1], 16)
    return sorted(int(s) for s in signal.valid_signals() if mask >> (s - 1) & 1)

masks = {t.name: blocked(t) for t in threading.enumerate()}
exp.run.complete()
print(json.dumps(masks), flush=True)
"""


def test_our_threads_leave_the_processs_signals_to_the_main_thread(tmp_path, mode):
    """The kernel gives a signal sent to the process to any thread that does not block it; a
    thread of ours that took it would not wake a main thread waiting in C (``Event.wait``), so the
    program's own handler would wait with it (seen in CI: a SIGTERM handler 30 s late). Every
    thread of ours blocks the asynchronous signals; the main thread's mask is left as it was."""
    name, env, read, _spool = mode
    env = dict(env, ML_DASH_CAPTURE_CONSOLE="1")
    proc = _run(tmp_path, THREAD_MASKS, env)
    assert proc.returncode == 0, proc.stderr
    masks = json.loads(proc.stdout.strip().splitlines()[-1])
    assert masks.pop("MainThread") == []
    expected = {"ml-dash-worker", "ml-dash-console:alice/p/masks"}
    expected |= {"local": set(), "remote": {"ml-dash-sender", "ml-dash-fsync"}, "agent": {"ml-dash-link"}}[name]
    assert expected <= set(masks), masks
    asynchronous = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGALRM, signal.SIGUSR1, signal.SIGCHLD}
    faults = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGABRT}
    for thread, blocked in masks.items():
        assert asynchronous <= set(blocked), (thread, blocked)
        assert not faults & set(blocked), (thread, blocked)
    assert [row["data"]["i"] for row in read("alice/p/masks").metric_rows("rows")] == list(range(2000))
