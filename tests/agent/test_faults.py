"""Server faults from the server's own fault plan: retries, Retry-After, lost answers, refusals."""

from __future__ import annotations

import asyncio
import json
import time

from ml_dash import Experiment, load_config
from ml_dash._events import LogEvent
from ml_dash.agent._flush import flush_sessions
from ml_dash.agent._retry import RetryPolicy
from ml_dash.agent._session import SessionDir
from ml_dash.agent._spool import SpoolWriter

from .conftest import log_messages, reader, set_faults, stats, wait_for


def _exp(server, prefix, **overrides):
    config = load_config().with_overrides(retry_max_wait=0.3, **overrides)
    return Experiment(prefix, dash_url=server.url, token=server.token, config=config)


def _ingest(server):
    st = stats(server)
    return st["arrivals"].get("ingest", []), st["statuses"].get("ingest", [])


def test_retry_after_is_honoured_even_while_closing(server):
    set_faults(server, [{"match": "ingest", "action": "status", "status": 429, "retry_after": 2, "times": 1}])
    exp = _exp(server, "alice/p/ra").run.start()
    exp.log("one")
    exp.run.complete()  # closing starts at once: the 429's Retry-After must still be waited out
    arrivals, statuses = _ingest(server)
    assert statuses[0] == 429 and all(s == 200 for s in statuses[1:])
    assert arrivals[1] - arrivals[0] >= 2.0, f"retried after {arrivals[1] - arrivals[0]:.2f}s"
    assert log_messages(server.url, server.token, "alice/p/ra") == ["one"]


def test_5xx_sequence_and_dropped_connections_store_each_event_once(server):
    set_faults(
        server,
        [
            {"match": "ingest", "action": "status", "status": 503, "times": 2},
            {"match": "ingest", "action": "status", "status": 500, "times": 1},
            {"match": "ingest", "action": "status", "status": 502, "times": 1},
            {"match": "ingest", "action": "close_before", "times": 1},
            {"match": "ingest", "action": "status", "status": 504, "times": 1},
        ],
    )
    with _exp(server, "alice/p/5xx").run as exp:
        for i in range(300):
            exp.log(f"m{i}")
        assert exp.flush(30)
    _, statuses = _ingest(server)
    assert statuses[:4] == [503, 503, 500, 502] and 504 in statuses
    assert log_messages(server.url, server.token, "alice/p/5xx") == [f"m{i}" for i in range(300)]


def test_answer_lost_after_commit_three_times_stored_once(server):
    set_faults(server, [{"match": "ingest", "action": "drop_after_commit", "times": 3}])
    with _exp(server, "alice/p/dropped").run as exp:
        for i in range(100):
            exp.log(f"m{i}")
            exp.metrics("x").log(i=i)
        assert exp.flush(30)
    arrivals, _ = _ingest(server)
    assert len(arrivals) >= 4
    r = reader(server.url, server.token, "alice/p/dropped")
    assert [x["message"] for x in r.logs()] == [f"m{i}" for i in range(100)]
    assert [row["data"]["i"] for row in r.metric_rows("x")] == list(range(100))


def test_event_the_server_rejects_is_quarantined_and_the_rest_flows(server, spool, caplog):
    huge = "é" * 700_000  # within the SDK's character limit, over the server's 1 MiB event limit in UTF-8
    with _exp(server, "alice/p/rejected").run as exp:
        exp.log("before")
        exp.log(huge)
        exp.log("after")
    assert log_messages(server.url, server.token, "alice/p/rejected") == ["before", "after"]
    assert "quarantined: 1" in caplog.text
    [qfile] = (spool / "quarantine").iterdir()
    [record] = [json.loads(line) for line in qfile.read_text().splitlines()]
    assert record["prefix"] == "alice/p/rejected" and "rejected" in record["reason"]
    assert json.loads(record["record"])["message"] == huge


def _spooled_session(root, url, prefix, n):
    sdir = SessionDir.create(root, url, prefix)
    w = SpoolWriter(sdir, fsync_interval=1.0, warn_bytes=1 << 40, max_bytes=1 << 40)
    w.append([LogEvent(1.0, "info", f"m{i}") for i in range(n)])
    w.close()
    sdir.writer_lock.release()  # as if the run had ended
    return sdir


def _flush(root, url, token):
    return asyncio.run(flush_sessions(root, url, lambda u: token, RetryPolicy(attempts=4, max_wait=0.3)))


def test_bad_request_isolates_the_one_bad_event(server, spool):
    _spooled_session(spool, server.url, "alice/p/split", 4)
    # [0..3] -> 400, [0, 1] -> 400, [0] -> 400: only event 0 is set aside, its seq sent as a gap
    set_faults(server, [{"match": "ingest", "action": "status", "status": 400, "times": 3}])
    summary = _flush(spool, server.url, server.token)
    assert not summary.left and summary.tally.quarantined == 1 and summary.tally.events == 3
    assert log_messages(server.url, server.token, "alice/p/split") == ["m1", "m2", "m3"]
    [qfile] = (spool / "quarantine").iterdir()
    record = json.loads(qfile.read_text())
    assert record["seq"] == 0 and record["reason"].startswith("http_400")


def test_spool_cut_at_every_byte_of_its_last_records(server, spool):
    n = 8
    template = _spooled_session(spool / "template", server.url, "alice/p/template", n)
    data = template.segment_path(0).read_bytes()
    ends = [i + 1 for i, b in enumerate(data) if b == 0x0A]
    cuts = list(range(ends[n - 3], len(data) + 1))  # every byte of the last two records
    for cut in cuts:
        sdir = _spooled_session(spool, server.url, f"alice/cut/c{cut}", n)
        seg = sdir.segment_path(0)
        seg.write_bytes(seg.read_bytes()[:cut])
    # one byte flipped in the middle of a segment
    flipped = _spooled_session(spool, server.url, "alice/cut/flipped", n)
    seg = flipped.segment_path(0)
    raw = bytearray(seg.read_bytes())
    raw[ends[3] + 20] ^= 0x01  # inside record 4
    seg.write_bytes(bytes(raw))
    summary = _flush(spool, server.url, server.token)
    assert not summary.left
    for cut in cuts:
        complete = sum(1 for e in ends if e <= cut)
        got = log_messages(server.url, server.token, f"alice/cut/c{cut}")
        assert got == [f"m{i}" for i in range(complete)], cut
    assert log_messages(server.url, server.token, "alice/cut/flipped") == [f"m{i}" for i in range(n) if i != 4]
    reasons = [
        json.loads(line)["reason"] for q in (spool / "quarantine").iterdir() for line in q.read_text().splitlines()
    ]
    torn = sum(1 for c in cuts if c not in ends)
    assert reasons.count("torn_tail") == torn and reasons.count("corrupt_record") == 1


def test_backoff_sleeps_end_when_the_run_closes(server):
    # Six 503s without Retry-After: backing off through them takes 6 s or more (0.2 s doubling).
    set_faults(server, [{"match": "ingest", "action": "status", "status": 503, "times": 6}])
    config = load_config().with_overrides(retry_max_wait=10.0)
    exp = Experiment("alice/p/wake", dash_url=server.url, token=server.token, config=config).run.start()
    exp.log("x")
    wait_for(lambda: len(_ingest(server)[0]) >= 4, timeout=20, what="four tries")
    start = time.monotonic()
    exp.run.complete()
    assert time.monotonic() - start < 3.0  # the remaining backoff (>= 3.2 s) was cut short
    assert log_messages(server.url, server.token, "alice/p/wake") == ["x"]
