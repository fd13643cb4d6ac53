"""``ml-dash-agent serve`` (``agent/_service.py``) and a run's end of it (``agent/_link.py``):
real agent processes, real runs, a real server on loopback; the agent and the runs are killed
with SIGKILL where a test says so."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
from pathlib import Path
from typing import Dict, List

import pytest

from ..pipes import read_line
from .conftest import (
    client_env,
    reader,
    run_agent,
    run_client,
    running_agent,
    sessions,
    set_faults,
    start_client,
    wait_for,
)

N = 5000

CLIENT = """
import os, sys, tempfile
from ml_dash import Experiment

weights = os.path.join(tempfile.mkdtemp(), "weights.bin")
with open(weights, "wb") as f:
    f.write(bytes(range(256)) * 64)
with Experiment("alice/p/{name}").run as exp:
    for i in range({n}):
        exp.metrics("train").log(i=i)
    exp.log("hello from {name}")
    exp.files("models").save(weights)
print("AIOHTTP", "aiohttp" in sys.modules, flush=True)
"""


def _agent_env(spool: Path) -> Dict[str, str]:
    return client_env(spool, None, None)


@pytest.fixture
def agent(spool):
    with running_agent(spool, ML_DASH_RETRY_MAX_WAIT="0.5") as proc:
        yield proc


def _run_env(spool: Path, server, **extra: object) -> Dict[str, str]:
    return client_env(spool, server.url, server.token, uploader="agent", retry_max_wait=0.5, **extra)


def _rows(server, name: str) -> List[int]:
    return [row["data"]["i"] for row in reader(server.url, server.token, f"alice/p/{name}").metric_rows("train")]


def _proc_text(pid: int, what: str) -> bytes:
    with open(f"/proc/{pid}/{what}", "rb") as f:
        return f.read()


def _alive(pid: int) -> bool:
    try:
        state = _proc_text(pid, "stat").rsplit(b")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != b"Z"


def test_runs_hand_their_sessions_to_the_agent(server, spool, agent):
    for name in ("one", "two", "three"):
        proc = run_client(CLIENT.format(name=name, n=N), _run_env(spool, server))
        assert proc.returncode == 0, proc.stderr[-3000:]
        # The run never loaded the HTTP client: the agent did the uploading.
        assert "AIOHTTP False" in proc.stdout, proc.stdout + proc.stderr
        assert proc.stderr == ""
    for name in ("one", "two", "three"):
        r = reader(server.url, server.token, f"alice/p/{name}")
        assert _rows(server, name) == list(range(N))
        assert [x["message"] for x in r.logs()] == [f"hello from {name}"]
        assert [(f["filename"], f["sizeBytes"]) for f in r.files()] == [("weights.bin", 256 * 64)]
    assert sessions(spool) == []
    sock = spool / "agent.sock"
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    # The token reached the agent in the runs' messages only.
    for what in ("cmdline", "environ"):
        assert server.token.encode() not in _proc_text(agent.pid, what)
    # It uploads at a lower priority than the runs it serves.
    assert os.getpriority(os.PRIO_PROCESS, agent.pid) == min(19, os.getpriority(os.PRIO_PROCESS, 0) + 10)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_a_run_whose_agent_goes_away_uploads_the_rest_itself(server, spool, agent, how):
    code = """
    import sys
    from ml_dash import Experiment
    with Experiment("alice/p/takeover").run as exp:
        m = exp.metrics("train")
        for i in range(3000):
            m.log(i=i)
        print("FIRST", exp.flush(timeout=30), flush=True)
        sys.stdin.readline()
        for i in range(3000, 6000):
            m.log(i=i)
    print("AIOHTTP", "aiohttp" in sys.modules, flush=True)
    """
    run = start_client(code, _run_env(spool, server))
    try:
        assert read_line(run.stdout, 60, "the first half acknowledged").strip() == "FIRST True"
        assert _rows(server, "takeover") == list(range(3000))  # through the agent
        agent.send_signal(how)  # SIGTERM: the agent stops its uploads and hangs up without "done"
        agent.wait(10)
        out, err = run.communicate("go\n", timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err[-3000:]
    assert "AIOHTTP True" in out, out
    assert "the agent went away; uploading from this process" in err
    assert _rows(server, "takeover") == list(range(6000))  # each row once
    assert sessions(spool) == []


def test_the_agent_delivers_what_a_killed_run_spooled(server, spool, agent):
    set_faults(server, [{"match": "ingest", "action": "status", "status": 503, "times": 1000000}])
    code = """
    from ml_dash import Experiment
    exp = Experiment("alice/p/killed")
    exp.run.start()
    m = exp.metrics("train")
    for i in range(4000):
        m.log(i=i)
    print("SPOOLED", exp.flush(timeout=0.5), flush=True)
    import sys; sys.stdin.readline()
    """
    run = start_client(code, _run_env(spool, server))
    try:
        assert read_line(run.stdout, 60, "the rows spooled").strip() == "SPOOLED False"
        run.send_signal(signal.SIGKILL)
        run.wait(10)
    finally:
        if run.poll() is None:
            run.kill()
    assert _rows(server, "killed") == []
    set_faults(server, [])
    wait_for(lambda: sessions(spool) == [], 60, "the agent to deliver the killed run's session")
    assert _rows(server, "killed") == list(range(4000))


def test_a_run_starts_an_agent_that_the_next_run_uses_and_that_leaves_when_idle(server, spool):
    env = _run_env(spool, server, agent_idle=3)
    first = run_client(CLIENT.format(name="first", n=N), env)
    assert first.returncode == 0 and "AIOHTTP True" in first.stdout, first.stderr[-3000:]  # uploaded itself
    sock = spool / "agent.sock"
    wait_for(sock.exists, 30, "the agent the first run started")
    log = (spool / "agent.log").read_text()
    pid = int(re.search(r"\(pid (\d+)\)", log).group(1))
    assert stat.S_IMODE((spool / "agent.log").stat().st_mode) == 0o600
    for what in ("cmdline", "environ"):
        assert server.token.encode() not in _proc_text(pid, what)
    second = run_client(CLIENT.format(name="second", n=N), env)
    assert second.returncode == 0 and "AIOHTTP False" in second.stdout, second.stderr[-3000:]
    assert _rows(server, "first") == _rows(server, "second") == list(range(N))
    # Three seconds without a run: the agent leaves, and takes its socket with it.
    wait_for(lambda: not _alive(pid) and not sock.exists(), 30, "the idle agent to exit")


def test_status_names_the_agent_serving_the_spool(spool, agent):
    proc = run_agent(["status", str(spool)], _agent_env(spool), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert f"ml-dash-agent serve is uploading what runs write here (pid {agent.pid})" in proc.stdout
    agent.kill()
    agent.wait(10)
    assert "ml-dash-agent serve" not in run_agent(["status", str(spool)], _agent_env(spool), timeout=30).stdout


def test_one_agent_per_spool(spool, agent):
    proc = run_agent(["serve", str(spool)], _agent_env(spool), timeout=30)
    assert proc.returncode == 0
    assert "an agent already serves" in proc.stderr
    assert agent.poll() is None


def test_the_agent_refuses_what_is_not_a_session_of_this_spool_and_goes_on(server, spool, agent):
    def ask(payload: bytes) -> bytes:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(spool / "agent.sock"))
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    return data
                data += chunk

    hello = {"op": "hello", "v": 1, "url": server.url, "token": server.token}
    assert ask(b"not json\n") == b""
    for session, why in [("../../etc", "bad session id"), ("nosuchsession", "it is gone")]:
        answer = json.loads(ask(json.dumps({**hello, "session": session}).encode() + b"\n"))
        assert answer == {"op": "refused", "why": why}
    proc = run_client(CLIENT.format(name="after", n=100), _run_env(spool, server))
    assert proc.returncode == 0 and "AIOHTTP False" in proc.stdout, proc.stderr[-3000:]
    assert _rows(server, "after") == list(range(100))


def test_the_agent_refuses_a_spool_others_may_write(tmp_path):
    spool = tmp_path / "shared-spool"
    spool.mkdir()
    os.chmod(spool, 0o777)
    proc = run_agent(["serve", str(spool)], _agent_env(spool), timeout=30)
    assert proc.returncode == 2
    assert "writable by group or others" in proc.stderr
    assert not (spool / "agent.sock").exists()


def test_what_the_agent_has_to_say_about_a_run_reaches_that_run(server, spool, agent):
    env = _run_env(spool, server)
    env["ML_DASH_TOKEN"] = "not-a-token-" + "x" * 20
    proc = run_client(CLIENT.format(name="refused", n=50), env)
    assert proc.returncode == 0 and "AIOHTTP False" in proc.stdout, proc.stderr[-3000:]
    # Said by the agent's sender, printed by the run: the user sees why, and how to send it later.
    assert "the server refused the token" in proc.stderr and "ML_DASH_TOKEN" in proc.stderr
    assert "ml-dash-agent flush" in proc.stderr
    assert env["ML_DASH_TOKEN"] not in proc.stderr
    assert _rows(server, "refused") == []
    assert len(sessions(spool)) == 1 and agent.poll() is None  # kept; the agent serves on
    done = run_agent(["flush", str(spool)], client_env(spool, server.url, server.token))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _rows(server, "refused") == list(range(50))


def test_by_default_a_run_uses_an_agent_that_serves_its_spool_and_starts_none(server, spool, tmp_path):
    # No agent: the run uploads itself and leaves no agent behind.
    alone = run_client(CLIENT.format(name="alone", n=100), client_env(spool, server.url, server.token))
    assert alone.returncode == 0 and "AIOHTTP True" in alone.stdout, alone.stderr[-3000:]
    assert not (spool / "agent.sock").exists() and not (spool / "agent.log").exists()
    with running_agent(spool):
        auto = run_client(CLIENT.format(name="auto", n=100), client_env(spool, server.url, server.token))
        own = run_client(
            CLIENT.format(name="own", n=100), client_env(spool, server.url, server.token, uploader="process")
        )
    assert auto.returncode == 0 and "AIOHTTP False" in auto.stdout, auto.stderr[-3000:]
    assert own.returncode == 0 and "AIOHTTP True" in own.stdout, own.stderr[-3000:]
    for name in ("alone", "auto", "own"):
        assert _rows(server, name) == list(range(100))


LEAVES = """
from ml_dash import Experiment
with Experiment("alice/p/{name}").run as exp:
    for i in range({n}):
        exp.metrics("train").log(i=i)
print("LEFT", flush=True)
"""


def test_a_run_leaves_at_its_exit_deadline_and_the_agent_delivers_the_rest(server, spool, agent):
    set_faults(server, [{"match": "ingest", "action": "status", "status": 503, "times": 1000000}])
    proc = run_client(LEAVES.format(name="left", n=3000), _run_env(spool, server, shutdown_timeout=1))
    assert proc.returncode == 0 and "LEFT" in proc.stdout, proc.stderr[-3000:]
    # The user is told who has the rest, and how to send it should the agent stop first.
    assert "the agent serving" in proc.stderr and "keeps them" in proc.stderr, proc.stderr
    assert "ml-dash-agent status" in proc.stderr and "ml-dash-agent flush" in proc.stderr
    assert _rows(server, "left") == [] and len(sessions(spool)) == 1
    set_faults(server, [])  # the server recovers after the run is gone
    wait_for(lambda: sessions(spool) == [], 60, "the agent to deliver the session the run left")
    assert _rows(server, "left") == list(range(3000))
    assert agent.poll() is None


def test_with_the_server_down_at_close_the_agent_keeps_the_session_until_it_is_back(spawned, spool, agent):
    spawned.kill()
    env = client_env(spool, spawned.url, spawned.token, uploader="agent", retry_max_wait=0.5)
    proc = run_client(LEAVES.format(name="down", n=2000), env)
    assert proc.returncode == 0 and "LEFT" in proc.stdout, proc.stderr[-3000:]
    assert "server unreachable" in proc.stderr and "keeps them" in proc.stderr, proc.stderr
    assert len(sessions(spool)) == 1
    spawned.restart()
    wait_for(lambda: sessions(spool) == [], 60, "the agent to deliver once the server is back")
    rows = reader(spawned.url, spawned.token, "alice/p/down").metric_rows("train")
    assert [row["data"]["i"] for row in rows] == list(range(2000))


def test_a_run_interrupted_at_close_leaves_its_session_in_the_spool_not_to_the_agent(server, spool, agent):
    """Ctrl-C during the close is the user's "stop": the agent drops the session; the spool keeps it."""
    set_faults(server, [{"match": "ingest", "action": "status", "status": 503, "times": 1000000}])
    code = """
    import os, signal, threading
    from ml_dash import Experiment
    exp = Experiment("alice/p/interrupted")
    exp.run.start()
    for i in range(1000):
        exp.metrics("train").log(i=i)
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    try:
        exp.run.complete()
    except KeyboardInterrupt:
        print("INTERRUPTED", flush=True)
    """
    proc = run_client(code, _run_env(spool, server))
    assert "INTERRUPTED" in proc.stdout, proc.stderr[-3000:]
    assert "ml-dash-agent flush" in proc.stderr and "keeps them" not in proc.stderr, proc.stderr
    set_faults(server, [])
    # The agent let it go: flushing it by hand works (the agent would hold its lock otherwise).
    done = run_agent(["flush", str(spool)], client_env(spool, server.url, server.token))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _rows(server, "interrupted") == list(range(1000))
    assert sessions(spool) == []


def test_an_agent_with_an_idle_limit_leaves_a_kept_session_to_flush_when_it_exits(spawned, spool):
    """An agent a run started (``--idle``) does not live on for a server that never comes back:
    idle means no run connected, and what it kept stays in the spool for ``ml-dash-agent flush``."""
    spawned.kill()
    with running_agent(spool, "--idle", "1", ML_DASH_RETRY_MAX_WAIT="0.5") as agent:
        env = client_env(spool, spawned.url, spawned.token, uploader="agent", retry_max_wait=0.5)
        proc = run_client(LEAVES.format(name="idle", n=500), env)
        assert proc.returncode == 0 and "keeps them" in proc.stderr, proc.stderr[-3000:]
        wait_for(lambda: agent.poll() is not None, 30, "the idle agent to exit with the session kept")
    assert len(sessions(spool)) == 1
    spawned.restart()
    done = run_agent(["flush", str(spool)], client_env(spool, spawned.url, spawned.token))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = reader(spawned.url, spawned.token, "alice/p/idle").metric_rows("train")
    assert [row["data"]["i"] for row in rows] == list(range(500))
    assert sessions(spool) == []
