"""The test-only fault plan and stats, and load shedding with Retry-After."""

from __future__ import annotations

import json
import threading
import time

import pytest

from ml_dash._remote_read import RemoteReader

from ..conftest import wait_for
from ._client import auth, batch_body, get, ingest, metric_events, post, request

P = "alice/proj/faults"


def set_faults(url, rules, token):
    a = request(url, "PUT", "/api/v1/_test/faults", json.dumps(rules).encode(), auth(token))
    assert a.status == 200, a
    return a


def acked(url, token, session):
    return post(url, token, batch_body(session, P, [])).json["acked_seq"]


def test_status_fault_with_retry_after_and_stats(server):
    set_faults(
        server.url,
        [
            {"match": "ingest", "action": "status", "status": 503, "retry_after": 2, "times": 2},
            {"match": "blobs", "action": "status", "status": 429},
        ],
        server.token,
    )
    t0 = time.time()
    for _ in range(2):
        a = ingest(server.url, server.token, "sessFLT001", P, metric_events(0, 3))
        assert a.status == 503 and a.headers["retry-after"] == "2" and a.json["error"]["code"] == "injected_fault"
    assert acked(server.url, server.token, "sessFLT001") == -1  # nothing stored
    assert ingest(server.url, server.token, "sessFLT001", P, metric_events(0, 3)).status == 200
    assert (
        request(
            server.url, "PUT", "/api/v1/blobs/" + "a" * 64, b"x", {"Authorization": f"Bearer {server.token}"}
        ).status
        == 429
    )
    assert request(server.url, "GET", "/api/v1/_test/faults", headers=auth(server.token)).json == {"rules": []}
    stats = get(server.url, server.token, "_test/stats").json
    assert stats["counts"]["ingest"] == 4 and stats["counts"]["blobs"] == 1
    assert stats["statuses"]["ingest"] == [503, 503, 200, 200]
    arrivals = stats["arrivals"]["ingest"]
    assert len(arrivals) == 4 and t0 <= arrivals[0] <= arrivals[-1] <= time.time()


def test_drop_after_commit_stores_but_does_not_answer(server):
    set_faults(server.url, [{"match": "ingest", "action": "drop_after_commit"}], server.token)
    with pytest.raises(OSError):
        ingest(server.url, server.token, "sessFLT002", P, metric_events(0, 5))
    assert acked(server.url, server.token, "sessFLT002") == 4  # it was committed
    a = ingest(server.url, server.token, "sessFLT002", P, metric_events(0, 5))  # the client resends
    assert a.json["duplicates"] == 5 and a.json["stored"] == 0
    assert len(RemoteReader(server.url, server.token, P).metric_rows("train")) == 5


def test_close_before_stores_nothing(server):
    set_faults(server.url, [{"match": "any", "action": "close_before"}], server.token)
    with pytest.raises(OSError):
        ingest(server.url, server.token, "sessFLT003", P, metric_events(0, 5))
    assert acked(server.url, server.token, "sessFLT003") == -1


def test_hang_then_load_shedding(small_server):
    """A hanging request holds the only write slot: the next one is shed with 503 + Retry-After."""
    s = small_server
    set_faults(s.url, [{"match": "ingest", "action": "hang"}], s.token)
    errors = []

    def hang():
        try:
            ingest(s.url, s.token, "sessFLT004", P, metric_events(0, 1), timeout=60)
        except OSError as exc:  # the server closes it at shutdown
            errors.append(exc)

    t = threading.Thread(target=hang, daemon=True)
    t.start()
    wait_for(lambda: get(s.url, s.token, "_test/stats").json["counts"].get("ingest") == 1)
    a = ingest(s.url, s.token, "sessFLT005", P, metric_events(0, 1))
    assert a.status == 503 and a.json["error"]["code"] == "overloaded" and int(a.headers["retry-after"]) >= 1
    # reads are not writes: still served
    assert get(s.url, s.token, "experiments").status == 200


def test_bad_fault_plans(server):
    for bad in (
        {"match": "ingest"},
        [{"match": "x", "action": "hang"}],
        [{"action": "status"}],
        [{"action": "hang", "times": 0}],
    ):
        assert (
            request(server.url, "PUT", "/api/v1/_test/faults", json.dumps(bad).encode(), auth(server.token)).status
            == 400
        )


def test_no_fault_routes_without_fault_injection(tmp_path):
    from ml_dash.server import run_in_thread

    with run_in_thread(tmp_path / "r", auth=False) as h:
        assert request(h.url, "PUT", "/api/v1/_test/faults", b"[]").status == 404
        assert request(h.url, "GET", "/api/v1/_test/stats").status == 404
        assert get(h.url, None, "info").json["auth_required"] is False
        # without auth every write is allowed (loopback only)
        assert ingest(h.url, None, "sessNOAUTH", "anyone/p/x", metric_events(0, 2)).json["acked_seq"] == 1
