"""Ingest and read back through the read API and RemoteReader; exactly-once; seq gaps; rejects."""

from __future__ import annotations

import math

import pytest

from ml_dash._errors import AuthError, RemoteError
from ml_dash._remote_read import RemoteReader
from ml_dash._store import ExperimentReader

from ._client import batch_body, get, ingest, metric_events, post

P = "alice/proj/run-1"


def full_batch():
    return [
        {
            "seq": 0,
            "kind": "experiment",
            "ts": 1700000000.0,
            "description": "ResNet",
            "tags": ["a"],
            "bindrs": [],
            "metadata": {"k": 1},
        },
        {"seq": 1, "kind": "status", "ts": 1700000000.5, "status": "RUNNING", "reason": None},
        {"seq": 2, "kind": "metric", "ts": 1700000001.0, "name": "train", "data": {"loss": 0.5, "epoch": 1}},
        {
            "seq": 3,
            "kind": "log",
            "ts": 1700000001.5,
            "level": "info",
            "message": "Training started",
            "metadata": {"epoch": 1},
        },
        {"seq": 4, "kind": "params", "ts": 1700000002.0, "data": {"lr": 0.001, "model.layers": 2}},
        {"seq": 5, "kind": "metric", "ts": 1700000003.0, "name": "train", "data": {"loss": "NaN", "epoch": 2}},
        {"seq": 6, "kind": "metric", "ts": 1700000003.0, "name": None, "data": {"x": "-Infinity"}},
        {"seq": 7, "kind": "status", "ts": 1700000004.0, "status": "COMPLETED", "reason": None},
    ]


@pytest.mark.parametrize("encoding", [None, "gzip", "zstd"])
def test_ingest_and_read_back(server, encoding):
    a = ingest(server.url, server.token, "sessAAAA01", P, full_batch(), encoding=encoding)
    assert a.status == 200, a
    assert a.json == {"session": "sessAAAA01", "acked_seq": 7, "stored": 8, "duplicates": 0, "rejected": []}

    r = RemoteReader(server.url, server.token, P)
    exp = r.experiment()
    assert exp["description"] == "ResNet" and exp["tags"] == ["a"] and exp["metadata"] == {"k": 1}
    assert exp["status"] == "COMPLETED" and exp["started_at"] and exp["ended_at"]
    assert r.params() == {"lr": 0.001, "model.layers": 2}
    assert r.metric_names() == [None, "train"]
    rows = r.metric_rows("train")
    assert [row["index"] for row in rows] == [0, 1]
    assert rows[0]["data"] == {"loss": 0.5, "epoch": 1, "_ts": 1700000001.0}
    assert math.isnan(rows[1]["data"]["loss"]) and rows[1]["createdAt"]
    assert r.metric_rows(None)[0]["data"]["x"] == -math.inf
    logs = r.logs()
    assert [(x["sequenceNumber"], x["level"], x["message"], x["metadata"]) for x in logs] == [
        (0, "info", "Training started", {"epoch": 1})
    ]
    assert logs[0]["timestamp"].startswith("2023-11-14T22:13:21.5")

    # the server root is a dash_root (an export of the PostgreSQL store is one): the SDK's local reader sees the same
    local = ExperimentReader(server.layout(), P)
    assert local.metric_rows("train")[0]["data"]["loss"] == 0.5
    assert local.experiment()["status"] == "COMPLETED"

    listed = get(server.url, server.token, "experiments", owner="alice").json["experiments"]
    assert [e["prefix"] for e in listed] == [P]
    assert get(server.url, server.token, "experiments", glob="bob/*").json == {"experiments": []}


def test_resend_three_times_stores_once(server):
    events = metric_events(0, 50) + [{"seq": 50, "kind": "log", "ts": 1.0, "level": "warn", "message": "m"}]
    answers = [ingest(server.url, server.token, "sessRESEND", P, events) for _ in range(4)]
    assert answers[0].json["stored"] == 51
    for a in answers[1:]:
        assert a.status == 200 and a.json["acked_seq"] == 50
        assert a.json["stored"] == 0 and a.json["duplicates"] == 51
    # an overlapping batch stores only its new part
    a = ingest(server.url, server.token, "sessRESEND", P, metric_events(40, 20, base=40))
    assert a.json == {"session": "sessRESEND", "acked_seq": 59, "stored": 9, "duplicates": 11, "rejected": []}
    r = RemoteReader(server.url, server.token, P)
    rows = r.metric_rows("train")
    assert [row["index"] for row in rows] == list(range(59))
    assert [row["data"]["step"] for row in rows] == list(range(50)) + list(range(51, 60))
    assert len(r.logs()) == 1


def test_gap_is_409_with_acked_seq(server):
    assert ingest(server.url, server.token, "sessGAP001", P, metric_events(0, 3)).status == 200
    a = ingest(server.url, server.token, "sessGAP001", P, metric_events(5, 3))
    assert a.status == 409 and a.json["error"]["code"] == "seq_gap" and a.json["acked_seq"] == 2
    assert len(RemoteReader(server.url, server.token, P).metric_rows("train")) == 3
    # a new session must start at 0
    a = ingest(server.url, server.token, "sessGAP002", P, metric_events(1, 1))
    assert a.status == 409 and a.json["acked_seq"] == -1


def test_header_only_batch_tells_acked_seq(server):
    assert post(server.url, server.token, batch_body("sessQUERY1", P, [])).json["acked_seq"] == -1
    ingest(server.url, server.token, "sessQUERY1", P, metric_events(0, 4))
    assert post(server.url, server.token, batch_body("sessQUERY1", P, [])).json["acked_seq"] == 3


def test_invalid_events_are_rejected_and_consumed(server):
    events = [
        {"seq": 0, "kind": "metric", "ts": 1.0, "name": "../escape", "data": {"a": 1}},
        {"seq": 1, "kind": "metric", "ts": 1.0, "name": "ok", "data": {"a": 1}},
        {"seq": 2, "kind": "log", "ts": 1.0, "level": "loud", "message": "x"},
        {"seq": 3, "kind": "teleport", "ts": 1.0},
        {"seq": 4, "kind": "metric", "ts": "yesterday", "name": "ok", "data": {"a": 2}},
        {"seq": 5, "kind": "metric", "ts": 1.0, "name": "ok", "data": [1, 2]},
        {"seq": 6, "kind": "status", "ts": 1.0, "status": "EXPLODED"},
        {"seq": 7, "kind": "gap", "ts": 1.0, "reason": "corrupt spool record"},
        {"seq": 8, "kind": "metric", "ts": 1.0, "name": "ok", "data": {"a": 3}},
    ]
    a = ingest(server.url, server.token, "sessREJ001", P, events)
    assert a.status == 200 and a.json["acked_seq"] == 8 and a.json["stored"] == 3
    assert [(r["seq"], r["code"]) for r in a.json["rejected"]] == [
        (0, "invalid_name"),
        (2, "bad_level"),
        (3, "unknown_kind"),
        (4, "bad_ts"),
        (5, "bad_field"),
        (6, "bad_status"),
    ]
    rows = RemoteReader(server.url, server.token, P).metric_rows("ok")
    assert [(r["index"], r["data"]["a"]) for r in rows] == [(0, 1), (1, 3)]
    assert not (server.root / "alice" / "proj" / "escape").exists()


def test_session_is_bound_to_its_first_prefix(server):
    assert ingest(server.url, server.token, "sessBIND01", P, metric_events(0, 1)).status == 200
    a = ingest(server.url, server.token, "sessBIND01", "alice/proj/other", metric_events(1, 1))
    assert a.status == 409 and a.json["error"]["code"] == "session_prefix_mismatch"


def test_paging_and_levels(server):
    n = 2500
    for start in range(0, n, 1000):
        k = min(1000, n - start)
        events = [
            {
                "seq": start + i,
                "kind": "log",
                "ts": 1.0,
                "level": "error" if (start + i) % 100 == 0 else "info",
                "message": f"line {start + i}",
            }
            for i in range(k)
        ]
        assert ingest(server.url, server.token, "sessPAGE01", P, events).json["acked_seq"] == start + k - 1
    page = get(server.url, server.token, "logs", prefix=P, start=1234, limit=10).json
    assert [x["sequenceNumber"] for x in page["logs"]] == list(range(1234, 1244)) and page["next"] == 1244
    r = RemoteReader(server.url, server.token, P)
    assert [x["message"] for x in r.logs(start=2498)] == ["line 2498", "line 2499"]
    errors = r.logs(level="error")
    assert [x["sequenceNumber"] for x in errors] == list(range(0, n, 100))
    assert len(r.logs(limit=1100)) == 1100 and len(r.logs()) == n
    ingest(server.url, server.token, "sessPAGE02", P, metric_events(0, 12000))
    rows = r.metric_rows("train", start=5, limit=11000)
    assert [x["index"] for x in rows] == list(range(5, 11005))
    assert r.metric_rows("train", start=11990) == r.metric_rows("train")[11990:]


def test_remote_reader_errors(server):
    with pytest.raises(AuthError):
        RemoteReader(server.url, "mld_wrong", P).params()
    with pytest.raises(AuthError):
        RemoteReader(server.url, None, P).params()
    assert RemoteReader(server.url, server.token, "alice/proj/nothing").experiment() == {}
    assert RemoteReader(server.url, server.token, "alice/proj/nothing").metric_rows("x") == []
    with pytest.raises(RemoteError) as info:
        RemoteReader(server.url, server.token, "alice/../etc").params()
    assert info.value.status == 400
    with pytest.raises(RemoteError):
        RemoteReader("http://127.0.0.1:1", server.token, P).params()
