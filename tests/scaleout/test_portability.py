"""``ml-dash server migrate`` (schema; ``--from`` an embedded root) and ``ml-dash server export``:
an embedded server's data moves into PostgreSQL + S3 and back out as a dash_root that reads the
same, through the server, the SDK's reader and (when installed) upstream ml-dash."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ml_dash._store import ExperimentReader, list_experiments
from ml_dash.server import create_token, run_in_thread

from ..server._client import batch_body, get, ingest, metric_events, post, request
from .conftest import settings_env

P = "alice/proj/moved"
Q = "alice/proj/vision/second"
DATA = os.urandom(100_000)


def _cli(args, env, timeout=180):
    code = "import sys; from ml_dash.server.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=timeout)


def _fill(url, token):
    """Every kind of event, columnar and per row, odd values included; two sessions."""
    events = [
        {
            "seq": 0,
            "kind": "experiment",
            "ts": 1700000000.0,
            "description": "moved run",
            "tags": ["a", "b"],
            "metadata": {"k": [1, {"x": None}]},
        },
        {"seq": 1, "kind": "status", "ts": 1700000000.5, "status": "RUNNING"},
        {"seq": 2, "kind": "params", "ts": 1700000001.0, "data": {"lr": 0.1, "model.layers": 2}},
        {"seq": 3, "kind": "params", "ts": 1700000002.0, "data": {"lr": 0.01, "note": "a\u0000b"}},
        {
            "seq": 4,
            "kind": "metrics",
            "n": 5,
            "name": "train",
            "ts": [1700000003.0 + i for i in range(5)],
            "cols": {"loss": [0.5, 0.4, "NaN", 0.2, "Infinity"], "step": [0, 1, 2, 3, 4]},
        },
        {
            "seq": 9,
            "kind": "metric",
            "ts": 1700000004.0,
            "name": "train",
            "data": {"loss": 0.1, "step": 5, "extra": "s"},
        },
        {"seq": 10, "kind": "metric", "ts": 1700000004.5, "name": None, "data": {"x": [1, 2], "ok": True}},
        {"seq": 11, "kind": "log", "ts": 1700000005.0, "level": "warn", "message": "careful", "metadata": {"e": 1}},
        {
            "seq": 12,
            "kind": "file",
            "ts": 1700000006.0,
            "id": "file01",
            "path": "/models/best",
            "filename": "w.bin",
            "checksum": hashlib.sha256(DATA).hexdigest(),
            "size": len(DATA),
            "content_type": "application/x-weights",
            "description": "best",
            "tags": ["t"],
            "metadata": {"epoch": 3},
        },
        {"seq": 13, "kind": "status", "ts": 1700000007.0, "status": "COMPLETED"},
    ]
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    assert request(url, "PUT", f"/api/v1/blobs/{hashlib.sha256(DATA).hexdigest()}", DATA, h).status == 201
    a = ingest(url, token, "sessMOVE0001", P, events)
    assert a.status == 200 and a.json["rejected"] == [], a
    assert ingest(url, token, "sessMOVE0002", Q, metric_events(0, 9000)).json["acked_seq"] == 8999
    for i in range(3):
        ingest(
            url,
            token,
            "sessMOVE0003",
            Q,
            [{"seq": i, "kind": "log", "ts": 1.0 + i, "level": "info", "message": f"line {i}"}],
        )


ROUTES = [
    ("experiments", {}),
    ("experiment", {"prefix": P}),
    ("params", {"prefix": P}),
    ("logs", {"prefix": P}),
    ("logs", {"prefix": Q, "start": 1}),
    ("metrics", {"prefix": P}),
    ("metric", {"prefix": P, "name": "train"}),
    ("metric", {"prefix": P}),
    ("metric", {"prefix": Q, "name": "train", "start": 4000, "limit": 5000}),
    ("files", {"prefix": P}),
]


def _answers(url, token):
    out = []
    for route, q in ROUTES:
        body = get(url, token, route, **q).json
        for row in body.get("rows", []):
            row.pop("createdAt")  # the server's time of storing: one per chunk after the move
        out.append(body)
    return out


def test_migrate_from_an_embedded_root_then_export(tmp_path, pg_cluster, pg_s3_settings, s3_server):
    root = tmp_path / "embedded-root"
    token = create_token(root, "alice")
    with run_in_thread(root) as h:
        _fill(h.url, token)
        before = _answers(h.url, token)
        file_before = request(
            h.url, "GET", f"/api/v1/file?prefix={P}&id=file01", headers={"Authorization": f"Bearer {token}"}
        ).raw
    assert file_before == DATA

    # the schema, then the data; the password travels in PGPASSWORD, never on the command line
    url = pg_s3_settings.store
    no_password = url.replace(":" + pg_cluster.password + "@", "@")
    env = {**settings_env(pg_s3_settings), "PGPASSWORD": pg_cluster.password}
    env.pop("ML_DASH_SERVER_STORE")
    refused = _cli(["migrate", "--store", url], env)
    assert refused.returncode == 2 and "process listing" in refused.stderr and pg_cluster.password not in refused.stderr
    done = _cli(["migrate", "--from", str(root), "--to", no_password], env)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout and "2 experiments" in done.stdout
    again = _cli(["migrate", "--from", str(root), "--to", no_password], env)  # a second run changes nothing
    assert again.returncode == 0 and "2 skipped" in again.stdout, again.stdout + again.stderr

    # the PostgreSQL server answers the same; the old token works; a resumed session stores nothing twice
    with run_in_thread(tmp_path / "unused", settings=pg_s3_settings) as h:
        assert _answers(h.url, token) == before
        got = request(h.url, "GET", f"/api/v1/file?prefix={P}&id=file01", headers={"Authorization": f"Bearer {token}"})
        assert got.raw == DATA
        assert post(h.url, token, batch_body("sessMOVE0002", Q, [])).json["acked_seq"] == 8999
        resent = ingest(h.url, token, "sessMOVE0002", Q, metric_events(8990, 20, base=8990)).json
        assert resent["duplicates"] == 10 and resent["stored"] == 10
        assert get(h.url, token, "metric", prefix=Q, name="train", start=9005).json["rows"][0]["index"] == 9005
        after = _answers(h.url, token)

    # and out again, as a dash_root
    out = tmp_path / "exported"
    done = _cli(["export", "--to", str(out)], settings_env(pg_s3_settings))
    assert done.returncode == 0, done.stderr
    assert list_experiments(out) == sorted([P, Q])
    for prefix in (P, Q):
        a, b = ExperimentReader(root, prefix), ExperimentReader(out, prefix)
        assert b.experiment() == a.experiment() and b.params() == a.params()
        assert list(b.logs()) == list(a.logs())
    a, b = ExperimentReader(root, P), ExperimentReader(out, P)
    assert b.metric_names() == a.metric_names() == [None, "train"]
    strip = lambda rows: [(r["index"], json.dumps(r["data"], sort_keys=True, default=str)) for r in rows]
    assert strip(b.metric_rows("train")) == strip(a.metric_rows("train"))
    assert strip(b.metric_rows(None)) == strip(a.metric_rows(None))
    (entry,) = b.files()
    assert b.file_path(entry).read_bytes() == DATA and entry == a.files()[0]
    rows_q = ExperimentReader(out, Q).metric_rows("train")
    assert [r["index"] for r in rows_q] == list(range(9010)) and after[-2]["rows"][0]["index"] == 4000


UPSTREAM = os.environ.get("ML_DASH_UPSTREAM_PYTHON")


@pytest.mark.skipif(not UPSTREAM, reason="set ML_DASH_UPSTREAM_PYTHON to a python with ml-dash 0.11")
def test_upstream_reads_an_export(tmp_path, pg_settings):
    with run_in_thread(tmp_path / "unused", settings=pg_settings) as h:
        token = create_token(tmp_path / "unused", "alice", settings=pg_settings)
        _fill(h.url, token)
    out = tmp_path / "exported"
    done = _cli(["export", "--to", str(out)], settings_env(pg_settings))
    assert done.returncode == 0, done.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_") and k != "PYTHONPATH"}
    proc = subprocess.run(
        [
            UPSTREAM,
            "-c",
            textwrap.dedent("""
        import json
        from pathlib import Path
        from ml_dash.storage import LocalStorage
        s = LocalStorage(Path("exported"))
        a = ("alice", "proj", "alice/proj/moved")
        print(json.dumps({"params": s.read_parameters(*a), "rows": s.read_metric_data(*a, "train", 0, 10),
                          "files": s.list_files(*a)}))
    """),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["params"]["lr"] == 0.01 and got["params"]["model.layers"] == 2
    assert [r["data"]["step"] for r in got["rows"]["data"]] == [0, 1, 2, 3, 4, 5]
    assert [f["filename"] for f in got["files"]] == ["w.bin"]
