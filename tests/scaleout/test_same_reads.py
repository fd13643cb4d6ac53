"""The same batches sent to an embedded server and to a PostgreSQL one read back the same through
every read route the dashboard uses (table, summary, series with each kind of x, live increments),
and the same through the protocol's read routes."""

from __future__ import annotations

from ml_dash.server import create_token, run_in_thread

from ..server._client import get, ingest

A = "alice/proj/vision/run-a"
B = "alice/proj/vision/run-b"


def _batches():
    n = 30_000
    a = [
        {"seq": 0, "kind": "experiment", "ts": 1700000000.0, "description": "resnet run", "tags": ["resnet", "v1"]},
        {"seq": 1, "kind": "status", "ts": 1700000000.0, "status": "RUNNING"},
        {"seq": 2, "kind": "params", "ts": 1700000001.0, "data": {"lr": 0.1, "model.depth": 50, "opt": "sgd"}},
        *[
            {
                "seq": 3 + k,
                "kind": "metrics",
                "n": 5000,
                "name": "train",
                "ts": [1700000002.0 + i * 0.01 for i in range(k, k + 5000)],
                "cols": {
                    "loss": [1.0 / (i + 1) if i % 997 else "NaN" for i in range(k, k + 5000)],
                    "step": list(range(k, k + 5000)),
                    "epoch": [i // 3000 for i in range(k, k + 5000)],
                },
            }
            for k in range(0, n, 5000)
        ],
        {"seq": 3 + n, "kind": "metric", "ts": 1700000400.0, "name": "eval", "data": {"acc": 0.7, "tag": "x" * 300}},
        {"seq": 4 + n, "kind": "log", "ts": 1700000401.0, "level": "info", "message": "done"},
        {"seq": 5 + n, "kind": "status", "ts": 1700000500.0, "status": "COMPLETED"},
    ]
    b = [
        {"seq": 0, "kind": "experiment", "ts": 1700000000.0, "description": "vit run", "tags": ["vit"]},
        {"seq": 1, "kind": "status", "ts": 1700000000.0, "status": "RUNNING"},
        {"seq": 2, "kind": "params", "ts": 1700000001.0, "data": {"lr": 0.01, "opt": "adam"}},
        {"seq": 3, "kind": "metric", "ts": 1700000002.0, "name": "train", "data": {"loss": 2.0, "step": 0}},
        {"seq": 4, "kind": "metric", "ts": 1700000003.0, "name": "train", "data": {"loss": "Infinity", "step": 1}},
        {"seq": 5, "kind": "metric", "ts": 1700000004.0, "name": None, "data": {"gpu": 0.5}},
    ]
    return a, b


QUERIES = [
    ("table", {}),
    ("table", {"sort": "m:train:loss", "order": "desc", "columns": "m:train:loss,p:lr,m::gpu,p:model.depth"}),
    ("table", {"q": "vit", "status": "RUNNING"}),
    ("table", {"glob": "alice/proj/*/run-a", "sort": "duration"}),
    ("table", {"sort": "p:lr", "limit": 1, "offset": 1, "columns": "p:opt"}),
    ("summary", {"prefix": A}),
    ("summary", {"prefix": B}),
    ("series", {"prefix": A, "name": "train", "field": "loss", "buckets": 50}),
    ("series", {"prefix": A, "name": "train", "field": "loss", "start": 100, "end": 180}),
    (
        "series",
        {"prefix": A, "name": "train", "field": "loss", "x": "step", "start": 2500, "end": 9000, "buckets": 100},
    ),
    ("series", {"prefix": A, "name": "train", "field": "loss", "x": "_ts", "start": 1700000010, "end": 1700000011}),
    ("series", {"prefix": A, "name": "train", "field": "loss", "x": "epoch", "buckets": 5}),
    ("series", {"prefix": B, "name": "train", "field": "loss"}),
    ("series", {"prefix": B, "field": "gpu"}),
    ("series", {"prefix": A, "name": "train", "field": "loss", "after": 29_990, "limit": 5}),
    ("series", {"prefix": A, "name": "train", "field": "loss", "x": "step", "after": 29_997}),
    ("series", {"prefix": A, "name": "train", "field": "nope"}),
    ("series", {"prefix": A, "name": "nope", "field": "loss"}),
    ("series", {"prefix": "alice/proj/none", "name": "train", "field": "loss"}),
    ("metric", {"prefix": A, "name": "train", "start": 29_995}),
    ("experiments", {}),
]


def _ask(url, token):
    out = []
    for route, q in QUERIES:
        a = get(url, token, route, **q)
        body = a.json
        if route == "table":
            for row in body["rows"]:
                row.pop("duration")  # a running experiment's duration grows while we ask
                row.pop("lastActivity")  # a file's mtime here, the batch's commit time there
        if route == "summary" and a.status == 200:
            body.pop("lastActivity")
        if route == "metric":
            for row in body["rows"]:
                row.pop("createdAt")
        out.append((a.status, body))
    return out


def test_embedded_and_postgresql_answer_the_same(tmp_path, pg_settings):
    answers = []
    for settings in (None, pg_settings):
        root = tmp_path / ("embedded" if settings is None else "pg")
        token = create_token(root, "alice", settings=settings)
        with run_in_thread(root, settings=settings) as h:
            a, b = _batches()
            assert ingest(h.url, token, "sessSAMEA01", A, a).json["rejected"] == []
            assert ingest(h.url, token, "sessSAMEB01", B, b).json["rejected"] == []
            answers.append(_ask(h.url, token))
    embedded, postgres = answers
    for (route, q), e, p in zip(QUERIES, embedded, postgres):
        if route == "series" and e[1].get("mode") == "buckets":
            # bucket edges follow each store's chunks: compare what the contract fixes
            for body in (e[1], p[1]):
                pts = body["points"]
                assert len(pts["x"]) <= int(q.get("buckets", 1000)) and sorted(pts["x"]) == pts["x"]
            assert (e[0], e[1]["count"], e[1]["total"], sum(e[1]["points"]["n"])) == (
                p[0],
                p[1]["count"],
                p[1]["total"],
                sum(p[1]["points"]["n"]),
            ), (route, q)
            assert max(map(_f, e[1]["points"]["max"])) == max(map(_f, p[1]["points"]["max"])), (route, q)
            continue
        if e != p:
            _diff(list(e), list(p))
        assert e == p, (route, q)


def _f(v):
    return float(v.replace("Infinity", "inf")) if isinstance(v, str) else v


def _diff(a, b, path=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in set(a) | set(b):
            _diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{path}[{i}]")
    elif a != b:
        print("DIFF", path, repr(a)[:200], repr(b)[:200])
