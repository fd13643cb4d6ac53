"""Columnar metric records end to end: SDK -> spool -> agent -> server -> read back, with crashes,
overlapping acknowledgements, a server that takes fewer rows per record, and rejected rows."""

from __future__ import annotations

import json
import math
import signal

import orjson

from ml_dash import Experiment
from ml_dash._store import ExperimentReader
from ml_dash.agent._framing import frame
from ml_dash.agent._reader import SessionReader
from ml_dash.agent._session import SessionDir
from ml_dash.server import Limits, create_token, run_in_thread

from ..pipes import Lines
from .conftest import client_env, reader, run_agent, sessions, start_client


def _log_everything(exp, n=3000):
    """Rows whose key sets change, with NaN, infinities, None, nested values, ints and bools."""
    train = exp.metrics("train")
    for i in range(n):
        row = {"step": i, "loss": 1.0 / (i + 1)}
        if i % 7 == 0:
            row["acc"] = None  # present and None: not the same as missing
        if i % 11 == 0:
            row["val"] = {"k": [i, math.inf]}
        if i % 13 == 0:
            row["loss"] = math.nan
        train.log(**row)
        if i % 500 == 0:
            exp.metrics.log(flag=i % 1000 == 0, x=-math.inf)


def _norm(rows):
    """Rows without the timestamp, NaN made comparable."""
    out = []
    for r in rows:
        d = {k: ("nan" if isinstance(v, float) and v != v else v) for k, v in r["data"].items() if k != "_ts"}
        out.append((r["index"], d))
    return out


def test_round_trip_matches_local_mode(server, spool, tmp_path):
    prefix = "alice/proj/columns"
    with Experiment(prefix, dash_url=server.url, token=server.token).run as exp:
        _log_everything(exp)
    with Experiment(prefix, dash_root=str(tmp_path / "local")).run as exp:
        _log_everything(exp)
    remote, local = reader(server.url, server.token, prefix), ExperimentReader(tmp_path / "local", prefix)
    assert remote.metric_names() == local.metric_names() == [None, "train"]
    for name in (None, "train"):
        got, want = remote.metric_rows(name), local.metric_rows(name)
        assert _norm(got) == _norm(want) and len(got) == (3000 if name else 6)
        assert all(r["data"]["_ts"] > 1.7e9 for r in got)
    train = remote.metric_rows("train")
    assert "acc" not in train[1]["data"] and train[7]["data"]["acc"] is None
    assert train[11]["data"]["val"] == {"k": [11, math.inf]} and math.isnan(train[13]["data"]["loss"])
    # the spool held columnar records, a seq per row
    assert sessions(spool) == []


KILLED = """
import time
from ml_dash import Experiment
exp = Experiment("alice/p/killed-cols").run.start()
m = exp.metrics("train")
for i in range(5000):
    m.log(step=i, loss=1.0 / (i + 1))
assert exp.flush(30)
print("ACKED", time.time(), flush=True)
i = 5000
while True:
    m.log(step=i, loss=1.0 / (i + 1), **({{"extra": i}} if i % 700 == 0 else {{}}))
    if i % 1000 == 0:
        print("LOGGED", i, time.time(), flush=True)
        time.sleep(0.05)  # spread over several worker intervals, some sent and acknowledged, some not
    i += 1
"""


def test_kill_9_mid_run_then_flush_stores_exactly_the_spooled_rows(server, spool):
    env = client_env(spool, server.url, server.token)
    proc = start_client(KILLED.format(), env)
    out, err = Lines(proc.stdout, "stdout"), Lines(proc.stderr, "stderr")

    def logged_2s_after_flush(line):
        fields = line.split()
        return fields[0] == "LOGGED" and float(fields[2]) - float(out.lines[0].split()[1]) > 2.0

    try:
        out.wait_for(logged_2s_after_flush, 60, "the client to log for 2 s after its flush")
    except AssertionError as failure:
        raise AssertionError(f"{failure}\nstderr: {err.text}") from None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    [session] = sessions(spool)
    spooled, records = [], 0
    r = SessionReader(SessionDir(session), 0)
    while True:
        chunk = r.read(100_000, 64 << 20, finished=True)
        for e in chunk.entries:
            rec = orjson.loads(e.payload)
            if rec["kind"] == "metrics":
                records += 1
                spooled += rec["cols"]["step"]
        if chunk.at_end:
            break
    assert records < len(spooled) / 100 and spooled == list(range(len(spooled))) and len(spooled) > 5000
    done = run_agent(["flush", str(spool), "--dash-url", server.url], client_env(spool, None, server.token))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = reader(server.url, server.token, "alice/p/killed-cols").metric_rows("train")
    assert [x["data"]["step"] for x in rows] == spooled and [x["index"] for x in rows] == list(range(len(spooled)))
    assert all(("extra" in x["data"]) == (x["data"]["step"] % 700 == 0) for x in rows if x["data"]["step"] >= 5000)
    assert sessions(spool) == []


def _offline_run(server, prefix, n):
    with Experiment(prefix, dash_url=server.url, token=server.token, offline=True).run as exp:
        m = exp.metrics("train")
        for i in range(n):
            m.log(step=i)


def test_server_holding_part_of_a_record_stores_only_the_rest(server, spool):
    """The spool's ack hint lags behind the server, whose acked_seq is inside a record."""
    from tests.server._client import ingest

    prefix = "alice/p/overlap"
    _offline_run(server, prefix, 3000)
    [session] = sessions(spool)
    # Another uploader (an older client: one event per row) delivered seqs 0..1500 of this session.
    sdir = SessionDir(session)
    events, r = [], SessionReader(sdir, 0)
    for e in r.read(100_000, 64 << 20, True).entries:
        rec = orjson.loads(e.payload)
        if rec["kind"] != "metrics":
            events.append(rec)
            continue
        events.extend(
            {
                "seq": rec["seq"] + i,
                "kind": "metric",
                "ts": rec["ts"][i],
                "name": rec["name"],
                "data": {k: v[i] for k, v in rec["cols"].items()},
            }
            for i in range(rec["n"])
        )
    a = ingest(server.url, server.token, sdir.id, prefix, events[:1501])
    assert a.status == 200 and a.json["acked_seq"] == 1500, a
    done = run_agent(["flush", str(spool)], client_env(spool, server.url, server.token))
    assert done.returncode == 0, done.stdout + done.stderr
    rows = reader(server.url, server.token, prefix).metric_rows("train")
    assert [x["data"]["step"] for x in rows] == list(range(3000))
    assert [x["index"] for x in rows] == list(range(3000))


def test_a_server_taking_fewer_rows_per_record_gets_every_row_once(tmp_path, spool):
    """400 for records over its max_event_rows: the client splits them down until they fit."""
    root = tmp_path / "small-rows"
    token = create_token(root, "alice")
    handle = run_in_thread(root, port=0, limits=Limits(max_event_rows=100))
    try:
        prefix = "alice/p/split"
        with Experiment(prefix, dash_url=handle.url, token=token).run as exp:
            m = exp.metrics("train")
            for i in range(2500):
                m.log(step=i)
        rows = reader(handle.url, token, prefix).metric_rows("train")
        assert [x["data"]["step"] for x in rows] == list(range(2500))
        assert not (spool / "quarantine").exists() or not any((spool / "quarantine").iterdir())
    finally:
        handle.stop()


def test_a_rejected_row_is_quarantined_alone(server, spool):
    prefix = "alice/p/reject-row"
    _offline_run(server, prefix, 10)
    [session] = sessions(spool)
    sdir = SessionDir(session)
    # One more record in the spool whose third row the server refuses (a ts it cannot store).
    bad = orjson.dumps(
        {
            "seq": 13,
            "kind": "metrics",
            "n": 4,
            "name": "train",
            "ts": [1.0, 2.0, -3.0, 4.0],
            "cols": {"step": [100, 101, 102, 103]},
        }
    )
    seg = sdir.segment_path(sdir.segments()[-1])
    with open(seg, "ab") as f:
        f.write(frame(bad))
    status = run_agent(["status", str(spool)], client_env(spool, None, server.token))
    assert "17 events pending" in status.stdout, status.stdout  # the run wrote seqs 0..12, then 4 rows
    done = run_agent(["flush", str(spool), "--dash-url", server.url], client_env(spool, None, server.token))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 quarantined" in done.stdout, done.stdout
    rows = reader(server.url, server.token, prefix).metric_rows("train")
    assert [x["data"]["step"] for x in rows] == [*range(10), 100, 101, 103]
    [q] = [json.loads(line) for line in (spool / "quarantine" / f"{sdir.id}.jsonl").read_text().splitlines()]
    assert q["seq"] == 15 and "bad_ts" in q["reason"]
    record = json.loads(q["record"])
    assert (record["seq"], record["n"], record["cols"], record["ts"]) == (15, 1, {"step": [102]}, [-3.0])
