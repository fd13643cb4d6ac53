"""Columnar ``metrics`` events on the server: storing, exactly-once with overlap, per-row and
per-record rejections, and hostile input (always an answer, never a 500)."""

from __future__ import annotations

import math

import orjson
import pytest

from ml_dash._remote_read import RemoteReader

from ._client import batch_body, get, ingest, post

P = "alice/proj/cols"


def rec(seq, n, name="train", ts=None, **cols):
    """A columnar record; columns default to step/loss over ``n`` rows."""
    if not cols:
        cols = {"step": list(range(seq, seq + n)), "loss": [1.0 / (s + 1) for s in range(seq, seq + n)]}
    if ts is None:
        ts = [1700000000.0 + s for s in range(seq, seq + n)]
    return {"seq": seq, "kind": "metrics", "n": n, "name": name, "ts": ts, "cols": cols}


def rows(server, name="train"):
    return RemoteReader(server.url, server.token, P).metric_rows(name)


def test_store_and_read_back_mixed_with_per_row_events(server):
    events = [
        {"seq": 0, "kind": "status", "ts": 1700000000.0, "status": "RUNNING", "reason": None},
        rec(1, 3),
        {"seq": 4, "kind": "metric", "ts": 1700000004.0, "name": "train", "data": {"step": 4, "loss": 0.2}},
        rec(5, 2, ts=[1700000005.0, None]),
        rec(7, 2, name=None, ts=None, x=["NaN", "-Infinity"], nested=[{"a": [1]}, None]),
        {"seq": 9, "kind": "log", "ts": 1700000009.0, "level": "info", "message": "hi"},
    ]
    events[4]["ts"] = None
    a = ingest(server.url, server.token, "sessCOLS01", P, events, encoding="zstd")
    assert a.status == 200, a
    assert a.json == {"session": "sessCOLS01", "acked_seq": 9, "stored": 10, "duplicates": 0, "rejected": []}
    got = rows(server)
    assert [r["index"] for r in got] == list(range(6))
    assert [r["data"]["step"] for r in got] == [1, 2, 3, 4, 5, 6]
    assert got[0]["data"] == {"step": 1, "loss": 0.5, "_ts": 1700000001.0}
    assert got[5]["data"]["_ts"] > 1700000006.0  # a null ts is the server's time of storing
    unnamed = rows(server, None)
    assert math.isnan(unnamed[0]["data"]["x"]) and unnamed[1]["data"]["x"] == -math.inf
    assert unnamed[0]["data"]["nested"] == {"a": [1]} and unnamed[1]["data"]["nested"] is None


def test_resend_and_overlap_inside_a_record_store_once(server):
    a = ingest(server.url, server.token, "sessCOLS02", P, [rec(0, 5)])
    assert a.json["acked_seq"] == 4
    # the same record again: all duplicates
    a = ingest(server.url, server.token, "sessCOLS02", P, [rec(0, 5)])
    assert a.json == {"session": "sessCOLS02", "acked_seq": 4, "stored": 0, "duplicates": 5, "rejected": []}
    # a record straddling acked_seq (seqs 3..9): only 5..9 are new
    a = ingest(server.url, server.token, "sessCOLS02", P, [rec(3, 7), rec(10, 2)])
    assert a.json == {"session": "sessCOLS02", "acked_seq": 11, "stored": 7, "duplicates": 2, "rejected": []}
    assert [r["data"]["step"] for r in rows(server)] == list(range(12))
    assert [r["index"] for r in rows(server)] == list(range(12))
    # per-row events of the same seqs (an older client's spool) are duplicates too
    per_row = [{"seq": s, "kind": "metric", "ts": 1.0, "name": "train", "data": {"step": -1}} for s in range(8, 12)]
    assert ingest(server.url, server.token, "sessCOLS02", P, per_row).json["duplicates"] == 4
    # a batch starting after acked_seq + 1 is a gap even when a record would cover it
    a = ingest(server.url, server.token, "sessCOLS02", P, [rec(13, 2)])
    assert a.status == 409 and a.json["acked_seq"] == 11


def test_a_bad_value_rejects_only_its_row(server):
    r = rec(0, 5, ts=[1700000000.0, "soon", 1700000002.0, -5, 1700000004.0])
    a = ingest(server.url, server.token, "sessCOLS03", P, [r, rec(5, 1)])
    assert a.status == 200, a
    assert a.json["acked_seq"] == 5 and a.json["stored"] == 4
    assert [(x["seq"], x["code"]) for x in a.json["rejected"]] == [(1, "bad_ts"), (3, "bad_ts")]
    assert [x["data"]["step"] for x in rows(server)] == [0, 2, 4, 5]


def test_a_value_nesting_deeper_than_a_per_row_event_may_rejects_its_row(server):
    deep = 1
    for _ in range(130):
        deep = [deep]
    ok = 1
    for _ in range(120):
        ok = [ok]
    a = ingest(server.url, server.token, "sessCOLS04", P, [rec(0, 3, ts=[1.0, 2.0, 3.0], v=[ok, deep, 3])])
    assert a.status == 200, a
    assert [(x["seq"], x["code"]) for x in a.json["rejected"]] == [(1, "too_deep")]
    assert len(rows(server)) == 2


@pytest.mark.parametrize(
    "bad, code",
    [
        ({"cols": {"a": [1, 2]}}, "bad_field"),  # a column shorter than n
        ({"cols": {"a": [1, 2, 3], "b": [1, 2, 3, 4]}}, "bad_field"),  # ragged
        ({"cols": {"a": 5}}, "bad_field"),
        ({"cols": [[1, 2, 3]]}, "bad_field"),
        ({"cols": None}, "bad_field"),
        ({"cols": {"_ts": [1, 2, 3]}}, "bad_field"),
        ({"cols": {f"c{i}": [1, 2, 3] for i in range(1001)}}, "too_many_fields"),
        ({"ts": [1.0, 2.0]}, "bad_ts"),
        ({"ts": 5}, "bad_ts"),
        ({"name": "../up"}, "invalid_name"),
        ({"name": "a/./b"}, "invalid_name"),
        ({"name": 7}, "invalid_name"),
        ({"name": "ab/" * 100}, "name_too_long"),
    ],
)
def test_a_malformed_record_is_rejected_whole_and_its_seqs_consumed(server, bad, code):
    r = rec(1, 3, ts=[1.0, 2.0, 3.0], a=[1, 2, 3])
    r.update(bad)
    events = [{"seq": 0, "kind": "gap", "reason": "x"}, r, rec(4, 1)]
    a = ingest(server.url, server.token, "sessCOLS05", P, events)
    assert a.status == 200, a
    assert a.json["acked_seq"] == 4 and a.json["stored"] == 2
    assert [(x["seq"], x.get("n"), x["code"]) for x in a.json["rejected"]] == [(1, 3, code)]
    assert [x["data"]["step"] for x in rows(server)] == [4]


def test_a_rejected_record_straddling_acked_seq_reports_its_new_rows(server):
    assert ingest(server.url, server.token, "sessCOLS06", P, [rec(0, 2)]).json["acked_seq"] == 1
    r = rec(0, 5, name="../x")
    a = ingest(server.url, server.token, "sessCOLS06", P, [r])
    assert a.json["acked_seq"] == 4 and a.json["duplicates"] == 2
    assert [(x["seq"], x.get("n")) for x in a.json["rejected"]] == [(2, 3)]


@pytest.mark.parametrize("n", [0, -1, 10_001, 1.0, True, "3", None, [3]])
def test_bad_n_is_a_malformed_batch(server, n):
    r = rec(0, 3)
    r["n"] = n
    a = ingest(server.url, server.token, "sessCOLS07", P, [r])
    assert a.status == 400 and a.json["error"]["code"] == "bad_seq", a


def test_seqs_must_follow_n(server):
    a = ingest(server.url, server.token, "sessCOLS08", P, [rec(0, 3), rec(2, 1)])
    assert a.status == 400 and a.json["error"]["code"] == "bad_seq"
    a = ingest(server.url, server.token, "sessCOLS08", P, [rec(0, 3), rec(4, 1)])
    assert a.status == 400 and a.json["error"]["code"] == "bad_seq"


def test_limits_count_rows(small_server):
    # max_events_per_batch (100) counts each row; max_event_bytes (4096) the record as a whole
    s = small_server
    a = ingest(s.url, s.token, "sessCOLS09", P, [rec(0, 60), rec(60, 60)])
    assert a.status == 413 and a.json["error"]["code"] == "too_many_events"
    big = rec(0, 80, ts=[1.0] * 80, a=["x" * 60] * 80)
    a = ingest(s.url, s.token, "sessCOLS09", P, [big, rec(80, 2)])
    assert a.status == 200, a
    assert [(x["seq"], x.get("n"), x["code"]) for x in a.json["rejected"]] == [(0, 80, "event_too_large")]
    assert a.json["acked_seq"] == 81 and a.json["stored"] == 2


def test_huge_claims_cost_nothing(server):
    # n at the limit with one short column: rejected without building 10,000 rows of anything
    r = rec(0, 10_000, ts=None, a=[1])
    a = ingest(server.url, server.token, "sessCOLS10", P, [r])
    assert a.status == 200 and a.json["rejected"][0]["code"] == "bad_field" and a.json["acked_seq"] == 9999
    # a body of many huge claims is refused by the row count before anything is stored
    body = batch_body("sessCOLS11", P, [rec(i * 10_000, 10_000, ts=None, a=[1]) for i in range(11)])
    a = post(server.url, server.token, body, encoding="gzip")
    assert a.status == 413 and a.json["error"]["code"] == "too_many_events"


@pytest.mark.parametrize(
    "line",
    [
        b'{"seq":0,"kind":"metrics","n":2,"name":"t","ts":[1,2],"cols":{"a":[1,{"b":[]}]}}',
        b'{"seq":0,"kind":"metrics","n":1,"name":"t","ts":[1e400],"cols":{}}',
        b'{"seq":0,"kind":"metrics","n":1,"name":"t","ts":[true],"cols":{"a":[1]}}',
        b'{"seq":0,"kind":"metrics","n":2,"name":"t","ts":[1,"NaN"],"cols":{"a":[true,false]}}',
        b'{"seq":0,"kind":"metrics","n":1,"name":"","ts":null,"cols":{"":[1]}}',
        b'{"seq":0,"kind":"metrics","n":1,"name":"t\\u0000x","ts":null,"cols":{"a":[1]}}',
        b'{"seq":0,"kind":"metrics","n":1}',
        b'{"seq":0,"kind":"metrics","n":3,"ts":[1,2,3],"cols":{"a":[1,2,3],"b":{"0":1}}}',
    ],
)
def test_hostile_records_never_500(server, line):
    body = orjson.dumps({"v": 1, "session": "sessCOLS12", "prefix": P}) + b"\n" + line + b"\n"
    a = post(server.url, server.token, body, encoding="zstd")
    assert a.status in (200, 400), a
    assert get(server.url, server.token, "metric", prefix=P, name="t").status in (200, 404)
