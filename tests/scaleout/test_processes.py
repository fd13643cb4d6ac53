"""Many stateless server processes over one PostgreSQL store: kill -9 of one of them mid-ingest,
PostgreSQL itself restarted mid-run. Real processes, real kills; data checked by reading it back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil

from ml_dash._remote_read import RemoteReader

from ..agent.conftest import client_env
from ..server._client import batch_body, get, ingest, metric_events, post
from .conftest import wait_for

P = "alice/proj/shared"

WRITER = """
import sys, time
from ml_dash import Experiment
k, n = sys.argv[1], int(sys.argv[2])
exp = Experiment("alice/proj/shared").run.start()
m = exp.metrics("train")
for i in range(n):
    m.log(writer=k, i=i)
    if i % 200 == 199:
        time.sleep(0.05)   # spread the run over a few seconds, so that the kill lands in the middle
exp.log(f"writer {k} done")
assert exp.flush(120), "not everything was acknowledged"
print("DONE", flush=True)
"""


def _writers(tmp_path, url, token, n):
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    procs = []
    for k in ("a", "b"):
        env = client_env(tmp_path / f"spool-{k}", url, token, retry_max_wait=0.5, flush_interval=0.1)
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), k, str(n)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _rows(url, token):
    return RemoteReader(url, token, P).metric_rows("train")


def _has_row(url, token, index):
    """Whether row ``index`` is stored (one small read, cheap enough to poll). A connection the
    kernel had queued for a worker that was just killed is reset: asked again, as a client would."""

    def ask():
        try:
            answer = get(url, token, "metric", prefix=P, name="train", start=index, limit=1)
        except OSError:
            return None
        return (answer.status == 200 and bool(answer.json["rows"]),)

    return wait_for(ask, what="an answer from a live worker")[0]


def _check_every_row_once(url, token, n):
    rows = _rows(url, token)
    assert [r["index"] for r in rows] == list(range(2 * n))  # contiguous, each index once
    for k in ("a", "b"):
        mine = [r["data"]["i"] for r in rows if r["data"]["writer"] == k]
        assert mine == list(range(n))  # each row once, in the writer's order
    logs = RemoteReader(url, token, P).logs()
    assert sorted(x["message"] for x in logs) == ["writer a done", "writer b done"]
    assert [x["sequenceNumber"] for x in logs] == [0, 1]


def test_two_workers_two_writers_kill_9_one_worker_mid_ingest(pg_servers, tmp_path):
    url, parent = pg_servers.start("--workers", "2")
    workers = wait_for(
        lambda: (
            [c for c in psutil.Process(parent.pid).children() if "ml_dash.server" in " ".join(c.cmdline())]
            if len(psutil.Process(parent.pid).children()) == 2
            else None
        ),
        what="two worker processes",
    )
    n = 20_000
    writers = _writers(tmp_path, url, pg_servers.token, n)
    try:
        wait_for(lambda: _has_row(url, pg_servers.token, 2_000), timeout=60, what="rows stored before the kill")
        victim = workers[0]
        os.kill(victim.pid, signal.SIGKILL)
        all_stored_at_kill = _has_row(url, pg_servers.token, 2 * n - 1)
        for w in writers:
            out, err = w.communicate(timeout=180)
            assert w.returncode == 0 and "DONE" in out, err[-3000:]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    assert not all_stored_at_kill  # the kill did land mid-ingest
    _check_every_row_once(url, pg_servers.token, n)
    # the supervisor started another worker in the killed one's place
    wait_for(
        lambda: len([c for c in psutil.Process(parent.pid).children() if c.pid != victim.pid]) == 2,
        what="a replacement worker",
    )


def test_two_separate_servers_take_one_sessions_batches_in_turn(pg_servers):
    """Any process can take any batch: a session's batches alternate between two servers
    (a load balancer's round robin), with resends to the other one; stored once, in order."""
    url1, _ = pg_servers.start()
    url2, _ = pg_servers.start()
    seq = 0
    for b in range(10):
        events = metric_events(seq, 100, base=seq)
        first, other = (url1, url2) if b % 2 == 0 else (url2, url1)
        assert ingest(first, pg_servers.token, "sessTURNS1", P, events).json["acked_seq"] == seq + 99
        again = ingest(other, pg_servers.token, "sessTURNS1", P, events).json  # the resend lands elsewhere
        assert again["stored"] == 0 and again["duplicates"] == 100
        seq += 100
    rows = RemoteReader(url2, pg_servers.token, P).metric_rows("train")
    assert [r["data"]["step"] for r in rows] == list(range(1000)) and [r["index"] for r in rows] == list(range(1000))


def test_postgresql_restarted_mid_run_nothing_lost(pg_servers, pg_cluster, tmp_path):
    url, _ = pg_servers.start()
    n = 20_000
    writers = _writers(tmp_path, url, pg_servers.token, n)
    try:
        wait_for(lambda: _has_row(url, pg_servers.token, 2_000), timeout=60, what="rows stored before the restart")
        pg_cluster.stop("immediate")  # a crash: recovery from the WAL at the next start
        # the database is away: the server says so (503, retried by the agents) instead of failing
        probe = post(url, pg_servers.token, batch_body("sessPROBE01", P, []))
        assert probe.status == 503 and probe.json["error"]["code"] == "storage_unavailable", probe
        pg_cluster.pg_ctl_start()
        for w in writers:
            out, err = w.communicate(timeout=180)
            assert w.returncode == 0 and "DONE" in out, err[-3000:]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
        pg_cluster.pg_ctl_start_if_stopped()
    _check_every_row_once(url, pg_servers.token, n)


def test_a_dashboard_login_made_on_one_server_reads_on_another(pg_servers):
    """The cookie's secret lives in the database: every process of the store honours a login."""
    import urllib.parse

    from ..server._client import request

    url1, _ = pg_servers.start()
    url2, _ = pg_servers.start()
    body = urllib.parse.urlencode({"token": pg_servers.token, "next": "/"}).encode()
    login = request(url1, "POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert login.status == 303
    cookie = login.headers["set-cookie"].split(";", 1)[0]
    assert request(url2, "GET", "/api/v1/experiments", headers={"Cookie": cookie}).status == 200
    assert request(url2, "GET", "/api/v1/experiments", headers={"Cookie": cookie + "x"}).status == 401
