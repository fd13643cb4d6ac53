"""Remote-mode runs through the agent against a real server: values, order, offline, auth, tokens."""

from __future__ import annotations

import math
import time

from ml_dash import Experiment

from .conftest import (
    client_env,
    log_messages,
    reader,
    run_agent,
    run_client,
    sessions,
    spool_files,
    unexpected_stderr,
    wait_for,
)


def test_run_delivers_everything_in_order(server, spool, tmp_path):
    prefix = "alice/proj/e2e"
    src = tmp_path / "weights.bin"
    src.write_bytes(bytes(range(256)) * 4096)  # 1 MB, streamed as a blob
    start = time.monotonic()
    exp = Experiment(prefix, dash_url=server.url, token=server.token, description="d", tags=["t"])
    exp.run.start()
    exp.params.set(lr=0.001, model={"layers": 2})
    exp.log("first")
    # The first data reaches the server within about a second of start, without any flush.
    wait_for(
        lambda: reader(server.url, server.token, prefix).experiment().get("status") == "RUNNING",
        timeout=5,
        what="the experiment to appear",
    )
    assert time.monotonic() - start < 2.5
    for i in range(3000):
        exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
    exp.metrics.log(v=math.nan)
    for i in range(200):
        exp.log(f"line {i}", level="warn" if i % 2 else "info", i=i)
    info = exp.files("models").save(str(src), description="w")
    assert exp.flush(30) is True
    exp.run.complete()

    r = reader(server.url, server.token, prefix)
    rows = r.metric_rows("train")
    assert [row["index"] for row in rows] == list(range(3000))
    assert [row["data"]["step"] for row in rows] == list(range(3000))
    assert rows[10]["data"]["loss"] == 1.0 / 11
    assert math.isnan(r.metric_rows(None)[0]["data"]["v"])
    logs = r.logs()
    assert [x["message"] for x in logs] == ["first"] + [f"line {i}" for i in range(200)]
    assert logs[2]["level"] == "warn" and logs[2]["metadata"] == {"i": 1}
    assert r.params() == {"lr": 0.001, "model.layers": 2}
    meta = r.experiment()
    assert meta["status"] == "COMPLETED" and meta["description"] == "d" and meta["tags"] == ["t"]
    [entry] = r.files()
    assert entry["id"] == info.id and entry["checksum"] == info.checksum
    assert r.download(entry, tmp_path / "back.bin").read_bytes() == src.read_bytes()
    # everything acknowledged: nothing is left in the spool but its empty root
    assert sessions(spool) == [] and spool_files(spool) == []


def test_offline_run_then_flush(server, spool, caplog):
    prefix = "alice/proj/offline"
    start = time.monotonic()
    with Experiment(prefix, dash_url=server.url, token=server.token, offline=True).run as exp:
        for i in range(500):
            exp.metrics("m").log(x=i)
        exp.log("offline line")
    assert time.monotonic() - start < 2.0
    err = caplog.text
    assert f"ml-dash-agent flush {spool} --dash-url {server.url}" in err
    assert "events" in err and "offline mode" in err
    assert reader(server.url, server.token, prefix).experiment() == {}
    env = client_env(spool, None, server.token)
    status = run_agent(["status", str(spool)], env)
    assert status.returncode == 0 and prefix in status.stdout and "504 events pending" in status.stdout
    done = run_agent(["flush", str(spool), "--dash-url", server.url], env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 session(s), 504 events" in done.stdout and "0 quarantined" in done.stdout
    r = reader(server.url, server.token, prefix)
    assert [row["data"]["x"] for row in r.metric_rows("m")] == list(range(500))
    assert r.experiment()["status"] == "COMPLETED"
    assert sessions(spool) == []
    again = run_agent(["flush", str(spool)], env)  # safe to run twice: nothing to do
    assert again.returncode == 0 and "0 session(s), 0 events" in again.stdout


CLIENT = """
import os
from ml_dash import Experiment
with Experiment("alice/proj/{name}").run as exp:
    for i in range({n}):
        exp.log(f"m{{i}}")
        exp.metrics("loss").log(v=i)
"""


def test_server_down_for_the_whole_run_then_flush(server, spool, tmp_path):
    from ml_dash.server import run_in_thread

    url, port = server.url, int(server.url.rsplit(":", 1)[1])
    server.handle.stop()  # nothing listens on this port now
    env = client_env(spool, url, server.token)
    start = time.monotonic()
    proc = run_client(CLIENT.format(name="down", n=300), env)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert elapsed < 8, f"a run against a dead server took {elapsed:.1f}s to exit"
    assert f"ml-dash-agent flush {spool} --dash-url {url}" in proc.stderr
    assert "server unreachable" in proc.stderr
    handle = run_in_thread(server.root, port=port, fault_injection=True)
    try:
        done = run_agent(["flush", str(spool)], env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert log_messages(url, server.token, "alice/proj/down") == [f"m{i}" for i in range(300)]
        rows = reader(url, server.token, "alice/proj/down").metric_rows("loss")
        assert [r["data"]["v"] for r in rows] == list(range(300))
    finally:
        handle.stop()


def test_wrong_token_keeps_the_spool_and_the_token_never_leaks(server, spool):
    wrong = "WRONG-token-" + "x" * 20
    env = client_env(spool, server.url, wrong)
    proc = run_client(CLIENT.format(name="auth", n=50), env)
    assert proc.returncode == 0
    assert "refused the token" in proc.stderr and "ML_DASH_TOKEN" in proc.stderr
    assert "ml-dash-agent flush" in proc.stderr
    assert len(sessions(spool)) == 1
    bad = run_agent(["flush", str(spool)], env)
    assert bad.returncode == 1 and "refused the token" in bad.stdout
    good = run_agent(["flush", str(spool)], client_env(spool, server.url, server.token))
    assert good.returncode == 0, good.stdout + good.stderr
    assert log_messages(server.url, server.token, "alice/proj/auth") == [f"m{i}" for i in range(50)]
    # A second run with the right token, then search every byte the agent wrote or printed.
    ok = run_client(CLIENT.format(name="auth2", n=50), client_env(spool, server.url, server.token))
    assert ok.returncode == 0 and unexpected_stderr(ok.stderr) == "", ok.stderr
    outputs = proc.stdout + proc.stderr + bad.stdout + bad.stderr + good.stdout + good.stderr + ok.stderr
    for token in (wrong, server.token):
        assert token not in outputs
    for path in spool_files(spool):  # quarantine and state files included
        data = path.read_bytes()
        assert wrong.encode() not in data and server.token.encode() not in data, path


def test_a_later_run_uploads_what_a_crashed_run_left(server, spool):
    env = client_env(spool, server.url, server.token, offline="1")
    crashed = run_client(
        """
        import os
        from ml_dash import Experiment
        exp = Experiment("alice/proj/again").run.start()
        for i in range(100):
            exp.log(f"old {i}")
        exp.flush()
        os._exit(1)  # dies without closing: its session stays in the spool
    """,
        env,
    )
    assert crashed.returncode == 1
    assert len(sessions(spool)) == 1
    with Experiment("alice/proj/again", dash_url=server.url, token=server.token).run as exp:
        exp.log("new")
    assert log_messages(server.url, server.token, "alice/proj/again") == [f"old {i}" for i in range(100)] + ["new"]
    assert sessions(spool) == []
