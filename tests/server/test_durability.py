"""Crashes: kill -9 right after an ack, a crash between write and commit, restart and resend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from ml_dash._remote_read import RemoteReader
from ml_dash.server import create_token, spawn_server

from ._client import ingest, metric_events, request

P = "alice/proj/crash"


@pytest.fixture
def proc_server(tmp_path):
    root = tmp_path / "root"
    token = create_token(root, "alice")
    procs = []

    def start():
        url, proc = spawn_server(root, fault_injection=True)
        procs.append(proc)
        return url, proc

    yield root, token, start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(30)


def _logs_and_rows(url, token):
    r = RemoteReader(url, token, P)
    return r.metric_rows("train"), r.logs()


def test_kill_9_right_after_ack_keeps_the_data(proc_server):
    _root, token, start = proc_server
    url, proc = start()
    events = metric_events(0, 1000) + [
        {"seq": 1000, "kind": "log", "ts": 1.0, "level": "info", "message": "end"},
        {"seq": 1001, "kind": "params", "ts": 1.0, "data": {"lr": 0.1}},
    ]
    a = ingest(url, token, "sessKILL01", P, events)
    assert a.status == 200 and a.json["acked_seq"] == 1001
    os.kill(proc.pid, signal.SIGKILL)  # no chance to flush anything
    proc.wait(10)
    url, proc = start()
    rows, logs = _logs_and_rows(url, token)
    assert [r["index"] for r in rows] == list(range(1000)) and rows[999]["data"]["step"] == 999
    assert [x["message"] for x in logs] == ["end"]
    assert RemoteReader(url, token, P).params() == {"lr": 0.1}
    # the client never saw the ack (say): it resends; nothing is stored twice
    for _ in range(2):
        a = ingest(url, token, "sessKILL01", P, events)
        assert a.json["stored"] == 0 and a.json["duplicates"] == 1002
    rows, logs = _logs_and_rows(url, token)
    assert len(rows) == 1000 and len(logs) == 1


def test_crash_between_write_and_commit_rolls_back(proc_server):
    root, token, start = proc_server
    url, proc = start()
    assert ingest(url, token, "sessROLL01", P, metric_events(0, 10)).json["acked_seq"] == 9
    data_file = root / P / "metrics" / "train" / "data.jsonl"
    size_before = data_file.stat().st_size
    # the next batch is written and fsynced, then the process dies before the commit
    r = request(
        url,
        "PUT",
        "/api/v1/_test/faults",
        json.dumps([{"match": "ingest", "action": "crash_before_commit"}]).encode(),
        {"Authorization": f"Bearer {token}"},
    )
    assert r.status == 200
    batch = metric_events(10, 5, base=10) + [
        {"seq": 15, "kind": "log", "ts": 1.0, "level": "info", "message": "half"},
        {"seq": 16, "kind": "params", "ts": 1.0, "data": {"lr": 0.5}},
        {"seq": 17, "kind": "metric", "ts": 1.0, "name": "fresh", "data": {"x": 1}},
    ]
    with pytest.raises(OSError):
        ingest(url, token, "sessROLL01", P, batch)
    assert proc.wait(10) == 70
    assert data_file.stat().st_size > size_before  # the rows were on disk when it died
    url, proc = start()  # recovery cuts them back
    assert data_file.stat().st_size == size_before
    rows, logs = _logs_and_rows(url, token)
    assert len(rows) == 10 and logs == []
    r = RemoteReader(url, token, P)
    assert r.params() == {} and r.metric_names() == ["train"]
    # the client resends: stored exactly once, indices contiguous
    a = ingest(url, token, "sessROLL01", P, batch)
    assert a.json["acked_seq"] == 17 and a.json["stored"] == 8
    rows, logs = _logs_and_rows(url, token)
    assert [x["index"] for x in rows] == list(range(15)) and [x["data"]["step"] for x in rows] == list(range(15))
    assert [x["message"] for x in logs] == ["half"] and r.params() == {"lr": 0.5}
    assert r.metric_rows("fresh")[0]["data"]["x"] == 1


def test_sigterm_is_a_clean_shutdown(proc_server):
    _root, token, start = proc_server
    url, proc = start()
    assert ingest(url, token, "sessTERM01", P, metric_events(0, 3)).status == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_two_writer_processes_get_contiguous_indices(server, tmp_path):
    """Two real processes, each its own session, one experiment: indices 0..N-1, each row once."""
    script = tmp_path / "writer.py"
    script.write_text(
        textwrap.dedent("""
        import sys, urllib.request, orjson
        url, token, session, batches, per = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        head = orjson.dumps({"v": 1, "session": session, "prefix": "alice/proj/ddp"})
        seq = 0
        for b in range(batches):
            lines = [head]
            for i in range(per):
                lines.append(orjson.dumps({"seq": seq, "kind": "metric", "ts": 1.0, "name": "train",
                                           "data": {"writer": session, "i": b * per + i}}))
                seq += 1
            lines.append(orjson.dumps({"seq": seq, "kind": "log", "ts": 1.0, "level": "info", "message": f"{session} {b}"}))
            seq += 1
            req = urllib.request.Request(url + "/api/v1/ingest", data=b"\\n".join(lines), headers={
                "Authorization": "Bearer " + token, "Content-Type": "application/x-ndjson"})
            for attempt in range(2):  # each batch sent twice: the resend must store nothing
                urllib.request.urlopen(req).read()
    """)
    )
    batches, per = 40, 250
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), server.url, server.token, f"sessDDP00{k}", str(batches), str(per)]
        )
        for k in range(2)
    ]
    for p in procs:
        assert p.wait(60) == 0
    r = RemoteReader(server.url, server.token, "alice/proj/ddp")
    rows = r.metric_rows("train")
    assert [x["index"] for x in rows] == list(range(2 * batches * per))
    for k in range(2):
        mine = [x["data"]["i"] for x in rows if x["data"]["writer"] == f"sessDDP00{k}"]
        assert mine == list(range(batches * per))  # each row once, in the writer's order
    logs = r.logs()
    assert [x["sequenceNumber"] for x in logs] == list(range(2 * batches))
