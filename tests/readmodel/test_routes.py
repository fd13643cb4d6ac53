"""The read model over HTTP: /api/v1/series and /api/v1/summary on a real server, growth written by
a real SDK process picked up live, and the SDK's series call in local and remote mode."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time

import pytest

from ml_dash import Experiment, NotFound
from ml_dash._readmodel._columns import CHUNK

from ..conftest import wait_for
from ..server._client import get, ingest
from . import _brute as B

P = "alice/proj/run"


def _metrics_events(n: int, name: str = "train", seq: int = 0):
    cols = {"loss": [1.0 / (i + 1) for i in range(n)], "step": list(range(n))}
    cols["loss"][n // 2] = "NaN"
    cols["loss"][n // 3] = "Infinity"
    return [
        {"seq": seq, "kind": "metrics", "n": n, "name": name, "ts": [1700000000.0 + i for i in range(n)], "cols": cols}
    ]


def test_series_and_summary_over_http(server):
    n = 5000
    assert ingest(server.url, server.token, "sessRM0001", P, _metrics_events(n)).status == 200
    a = get(server.url, server.token, "series", prefix=P, name="train", field="loss", buckets=10)
    assert a.status == 200, a
    body = a.json
    assert body["mode"] == "buckets" and body["total"] == n and body["count"] == n and body["last_index"] == n - 1
    assert body["name"] == "train" and body["field"] == "loss" and body["x"] == "index"
    assert sum(body["points"]["n"]) == n and "Infinity" in body["points"]["max"]
    raw = get(
        server.url,
        server.token,
        "series",
        prefix=P,
        name="train",
        field="loss",
        x="step",
        start=n // 2 - 1,
        end=n // 2 + 1,
    ).json
    assert raw["mode"] == "raw" and raw["points"]["x"] == [n // 2 - 1, n // 2, n // 2 + 1]
    assert raw["points"]["y"][1] == "NaN" and raw["x_sorted"] is True
    ts = get(
        server.url,
        server.token,
        "series",
        prefix=P,
        name="train",
        field="step",
        x="_ts",
        start=1700000000.0 + 10,
        end=1700000000.0 + 12,
    ).json
    assert ts["points"] == {"x": [1700000010, 1700000011, 1700000012], "y": [10, 11, 12]}
    inc = get(server.url, server.token, "series", prefix=P, name="train", field="step", after=4990, limit=4).json
    assert inc["mode"] == "raw" and inc["points"]["y"] == [4991, 4992, 4993, 4994] and inc["cursor"] == 4994
    assert inc["more"] is True and inc["last_index"] == n - 1
    s = get(server.url, server.token, "summary", prefix=P).json
    assert s["metrics"][0]["count"] == n and s["metrics"][0]["fields"]["step"]["max"] == n - 1
    assert s["metrics"][0]["fields"]["loss"]["max"] == "Infinity" and s["logs"] == 0


@pytest.mark.parametrize(
    "query,status,code",
    [
        ({"prefix": "alice/proj/nothing", "name": "train", "field": "loss"}, 404, "not_found"),
        ({"prefix": P, "name": "eval", "field": "loss"}, 404, "not_found"),
        ({"prefix": P, "name": "train", "field": "nope"}, 404, "not_found"),
        ({"prefix": P, "name": "train", "field": "loss", "x": "epoch"}, 404, "not_found"),
        ({"prefix": P, "name": "train", "field": "loss", "buckets": "0"}, 400, "bad_query"),
        ({"prefix": P, "name": "train", "field": "loss", "buckets": "many"}, 400, "bad_query"),
        ({"prefix": P, "name": "train", "field": "loss", "start": "nan"}, 400, "bad_query"),
        ({"prefix": P, "name": "train", "field": "loss", "after": "x"}, 400, "bad_query"),
        ({"prefix": P, "name": "train", "field": "loss", "after": "1", "limit": "0"}, 400, "bad_query"),
        ({"name": "train", "field": "loss"}, 400, "bad_query"),
        ({"prefix": "alice/.ml-dash-server/x", "name": "train", "field": "loss"}, 400, "invalid_prefix"),
        ({"prefix": P, "name": "../../x", "field": "loss"}, 400, "invalid_name"),
    ],
)
def test_series_errors(server, query, status, code):
    assert ingest(server.url, server.token, "sessRM0002", P, _metrics_events(10)).status == 200
    a = get(server.url, server.token, "series", **query)
    assert a.status == status and a.json["error"]["code"] == code, a


def test_read_routes_need_a_token(server):
    assert ingest(server.url, server.token, "sessRM0003", P, _metrics_events(10)).status == 200
    for route, query in (
        ("series", {"prefix": P, "name": "train", "field": "loss"}),
        ("summary", {"prefix": P}),
        ("table", {}),
    ):
        assert get(server.url, None, route, **query).status == 401
        assert get(server.url, "mld_wrong", route, **query).status == 401
        assert get(server.url, server.token, route, **query).status == 200


_WRITER = """
    import sys, time
    from ml_dash import Experiment
    batches, per = int(sys.argv[1]), int(sys.argv[2])
    with Experiment(prefix="alice/proj/live", dash_root=sys.argv[3]).run as exp:
        for b in range(batches):
            for i in range(b * per, (b + 1) * per):
                exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
            exp.flush()
            time.sleep(0.05)
"""


def test_growth_written_by_a_running_sdk_process_is_picked_up_live(local_server, tmp_path):
    batches, per = 30, 300
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_WRITER), str(batches), str(per), str(local_server.root)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        q = {"prefix": "alice/proj/live", "name": "train", "field": "loss", "x": "step"}
        wait_for(lambda: get(local_server.url, None, "series", **q, buckets=10).status == 200, 30, "the metric")
        got, cursor, live_increments = [], -1, 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = proc.poll() is None
            a = get(local_server.url, None, "series", **q, after=cursor).json
            got += list(zip(a["points"]["x"], a["points"]["y"]))
            cursor = a["cursor"]
            if a["count"] and running:
                live_increments += 1
            if not running and cursor == batches * per - 1:
                break
            time.sleep(0.05)
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert live_increments >= 2, "growth must show while the process is still writing"
    assert got == [(i, 1.0 / (i + 1)) for i in range(batches * per)]  # every row once, in order
    whole = get(local_server.url, None, "series", **q, buckets=7).json
    assert whole["total"] == batches * per and sum(whole["points"]["n"]) == batches * per
    B.check_buckets(whole, B.rows(local_server.root, "alice/proj/live", "train"), "loss", "step")


def _log_rows(exp, n):
    for i in range(n):
        exp.metrics("train").log(loss=math.nan if i == 7 else 1.0 / (i + 1), step=i)
    exp.metrics.log(value=3)


def test_sdk_series_is_the_same_in_local_and_remote_mode(server, tmp_path):
    n = 3 * CHUNK + 11
    with Experiment(P, dash_root=str(tmp_path / "local")).run as local:
        _log_rows(local, n)
    with Experiment(P, dash_url=server.url, token=server.token).run as remote:
        _log_rows(remote, n)
    for exp in (local, remote):
        assert exp.summary()["metrics"][1]["count"] == n
    for kwargs in (
        {"buckets": 5},
        {"x": "step", "start": 3, "end": 9},
        {"after": n - 3},
        {"x": "step", "start": 100, "end": 600, "buckets": 20},
    ):
        a = local.metrics("train").series("loss", **kwargs)
        b = remote.metrics("train").series("loss", **kwargs)
        assert {k: v for k, v in a.items() if k != "points"} == {k: v for k, v in b.items() if k != "points"}
        assert all(B.same(u, v) for k in a["points"] for u, v in zip(a["points"][k], b["points"][k])), kwargs
        assert all(len(a["points"][k]) == len(b["points"][k]) for k in a["points"])
    raw = local.metrics("train").series("loss", x="step", start=6, end=8)
    assert raw["points"]["x"] == [6, 7, 8] and math.isnan(raw["points"]["y"][1])
    for exp in (local, remote):
        assert exp.metrics(None).series("value")["points"] == {"x": [0], "y": [3]}
        with pytest.raises(NotFound):
            exp.metrics("nope").series("loss")
        with pytest.raises(NotFound):
            exp.metrics("train").series("nope")
        with pytest.raises(ValueError):
            exp.metrics("train").series("loss", buckets=0)


def test_reading_an_experiment_that_does_not_exist_raises_not_found(server, tmp_path):
    for exp in (
        Experiment("alice/proj/never", dash_root=str(tmp_path / "local")),
        Experiment("alice/proj/never", dash_url=server.url, token=server.token),
    ):
        for read in (
            exp.info,
            exp.params.get,
            exp.logs.read,
            exp.metrics.names,
            exp.files.list,
            exp.summary,
            lambda exp=exp: exp.metrics("train").read(),
            lambda exp=exp: exp.metrics("train").series("loss"),
        ):
            with pytest.raises(NotFound) as info:
                read()
            assert "alice/proj/never" in str(info.value)
