"""The experiments table: filter, search, sort and page against a brute-force computation over what
was written; a local SDK process's new and changed experiments show up; HTTP answers and errors."""

from __future__ import annotations

import math
import random
import subprocess
import sys
import textwrap
from typing import Any, Dict, List, Optional

import pytest

from ml_dash._names import parse_prefix
from ml_dash._readmodel import LayoutReadModel, TableQuery
from ml_dash._readmodel._series import QueryError
from ml_dash._store import ExperimentWriter

from ..conftest import wait_for
from ..server._client import auth, get, request

T0 = 1767225600.0  # 2026-01-01


def seed(root, n: int = 60, seed: int = 11) -> List[Dict[str, Any]]:
    """Write ``n`` experiments with the SDK's writer; what was written, for the brute force."""
    rnd = random.Random(seed)
    specs = []
    for i in range(n):
        owner = rnd.choice(["alice", "bob"])
        prefix = f"{owner}/{rnd.choice(['vision', 'nlp'])}/{rnd.choice(['sweep', 'base'])}/run{i:03d}"
        status = rnd.choice(["RUNNING", "COMPLETED", "FAILED", "CANCELLED", None])
        start, length = T0 + rnd.randint(0, 10_000), rnd.randint(1, 5000)
        lr = rnd.choice([0.1, 0.01, 0.001, None])
        rows = rnd.randint(0, 30)
        losses = [rnd.random() for _ in range(rows)]
        if rows and rnd.random() < 0.1:
            losses[-1] = math.nan
        spec = {
            "prefix": prefix,
            "status": status,
            "start": start if status else None,
            "end": start + length if status not in (None, "RUNNING") else None,
            "tags": rnd.sample(["resnet", "bert", "baseline", "Fast"], rnd.randint(0, 2)),
            "description": rnd.choice([None, "First try", "ResNet-50 on ImageNet", "ablation: no dropout"]),
            "lr": lr,
            "rows": rows,
            "loss": losses[-1] if rows else None,
            "logs": rnd.randint(0, 4),
            "files": rnd.randint(0, 2),
        }
        w = ExperimentWriter(root, parse_prefix(prefix))
        with w.lock():
            w.upsert_experiment({"description": spec["description"], "tags": spec["tags"]}, T0)
            if status:
                w.set_status("RUNNING", start)
                if status != "RUNNING":
                    w.set_status(status, start + length)
            if lr is not None:
                w.merge_params({"lr": lr, "model.layers": i % 4}, T0)
            if rows:
                w.append_metric("train", [{"loss": v, "step": k} for k, v in enumerate(losses)], T0)
            if spec["logs"]:
                w.append_logs([(T0, "info", f"line {k}", None) for k in range(spec["logs"])])
            if spec["files"]:
                w.add_files([{"id": f"{i}{k}", "path": "/", "filename": f"f{k}.txt"} for k in range(spec["files"])])
        w.close()
        specs.append(spec)
    return specs


def _value(spec: Dict[str, Any], key: str, now: float) -> Any:
    if key == "prefix":
        return spec["prefix"]
    if key == "status":
        return spec["status"]
    if key == "startedAt":
        return spec["start"]
    if key == "duration":
        if spec["start"] is None:
            return None
        return (spec["end"] if spec["end"] is not None else now) - spec["start"]
    if key == "rows":
        return spec["rows"]
    if key == "m:train:loss":
        return spec["loss"]
    if key == "p:lr":
        return spec["lr"]
    raise KeyError(key)


def brute(specs, glob=None, q=None, status=(), sort="prefix", order="asc", now=None) -> List[str]:
    import fnmatch

    out = sorted(specs, key=lambda s: s["prefix"])
    if glob:
        out = [s for s in out if fnmatch.fnmatchcase(s["prefix"], glob)]
    if status:
        out = [s for s in out if s["status"] in status]
    if q:
        out = [s for s in out if q.lower() in " ".join([s["prefix"], s["description"] or "", *s["tags"]]).lower()]
    have = [s for s in out if _value(s, sort, now) is not None]
    none = [s for s in out if _value(s, sort, now) is None]

    def rank(v):
        return (0, v if v == v else math.inf) if isinstance(v, (int, float)) else (1, str(v))

    have.sort(key=lambda s: rank(_value(s, sort, now)), reverse=order == "desc")
    return [s["prefix"] for s in have + none]


@pytest.fixture
def seeded(tmp_path):
    root = tmp_path / "root"
    return root, seed(root), LayoutReadModel(root)


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"glob": "alice/*"},
        {"glob": "*/vision/sweep/*", "order": "desc"},
        {"q": "resnet"},
        {"q": "FAST"},
        {"status": ("FAILED", "CANCELLED")},
        {"status": ("RUNNING",), "sort": "startedAt"},
        {"sort": "status", "order": "desc"},
        {"sort": "duration"},
        {"sort": "rows", "order": "desc"},
        {"sort": "m:train:loss"},
        {"sort": "p:lr", "order": "desc", "glob": "bob/*"},
    ],
)
def test_filters_and_sorts_match_brute_force(seeded, query):
    _root, specs, model = seeded
    now = 1.9e9  # durations of running experiments grow with the clock: pin it
    from ml_dash._readmodel._table import run_table

    q = TableQuery(**query, limit=1000, columns=("m:train:loss", "p:lr", "p:model.layers", "m:nope:x"))
    answer = run_table(model.catalog.entries(), q, now=now)
    want = brute(specs, now=now, **query)
    assert [r["prefix"] for r in answer["rows"]] == want
    assert answer["total"] == len(want)
    by_prefix = {s["prefix"]: s for s in specs}
    for row in answer["rows"]:
        s = by_prefix[row["prefix"]]
        assert row["status"] == s["status"] and row["tags"] == s["tags"] and row["description"] == s["description"]
        assert row["counts"] == {"metric_rows": s["rows"], "logs": s["logs"], "files": s["files"]}
        want_loss = s["loss"]
        got_loss = row["values"]["m:train:loss"]
        assert (
            (got_loss is None and want_loss is None)
            or got_loss == want_loss
            or (math.isnan(got_loss) and math.isnan(want_loss))
        )
        assert row["values"]["p:lr"] == s["lr"] and row["values"]["m:nope:x"] is None
        if s["start"] is not None:
            assert abs(row["duration"] - _value(s, "duration", now)) < 1e-3
        else:
            assert row["duration"] is None
        assert [row["owner"], row["project"]] == row["prefix"].split("/")[:2]
        assert row["name"] == row["prefix"].split("/")[-1]
    if answer["rows"]:
        assert "m:train:loss" in answer["available"]["metrics"] or not any(s["rows"] for s in specs)


def test_pages_cover_the_sorted_list_once(seeded):
    _root, specs, model = seeded
    full = [r["prefix"] for r in model.table(TableQuery(sort="m:train:loss", order="desc", limit=1000))["rows"]]
    paged = []
    for offset in range(0, len(specs) + 7, 7):
        page = model.table(TableQuery(sort="m:train:loss", order="desc", offset=offset, limit=7))
        assert page["total"] == len(specs) and page["offset"] == offset and page["limit"] == 7
        paged += [r["prefix"] for r in page["rows"]]
    assert paged == full and sorted(paged) == sorted(s["prefix"] for s in specs)


def test_strict_answers_name_non_finite_values(seeded):
    _root, specs, model = seeded
    answer = model.table(TableQuery(columns=("m:train:loss",), limit=1000), strict=True)
    nan_rows = [s["prefix"] for s in specs if isinstance(s["loss"], float) and math.isnan(s["loss"])]
    assert nan_rows, "the seed has a NaN last value"
    got = {r["prefix"]: r["values"]["m:train:loss"] for r in answer["rows"]}
    assert all(got[p] == "NaN" for p in nan_rows)


@pytest.mark.parametrize(
    "query",
    [
        {"status": ("DONE",)},
        {"order": "up"},
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"sort": "loss"},
        {"columns": ("loss",)},
        {"columns": ("m:train",)},
    ],
)
def test_bad_queries_are_refused(query):
    with pytest.raises(QueryError) as info:
        TableQuery(**query).checked()
    assert info.value.status == 400


_RUN = """
    import sys, time
    from pathlib import Path
    from ml_dash import Experiment
    exp = Experiment(prefix="carol/new/run", dash_root=sys.argv[1], tags=["fresh"])
    exp.run.start()
    exp.params.set(lr=0.5)
    for i in range(5):
        exp.metrics("train").log(loss=10.0 - i)
    exp.flush()
    Path(sys.argv[2]).write_text("logged")
    while not Path(sys.argv[3]).exists():
        time.sleep(0.02)
    exp.metrics("train").log(loss=0.25)
    exp.run.complete()
"""


def test_the_table_notices_a_local_sdk_process(local_server, tmp_path):
    seed(local_server.root, 5)
    q = {"columns": "m:train:loss,p:lr", "glob": "carol/*"}
    assert get(local_server.url, None, "table", **q).json["total"] == 0
    logged, go = tmp_path / "logged", tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_RUN), str(local_server.root), str(logged), str(go)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(logged.exists, 30, "the run to log")

        def row() -> Optional[dict]:
            rows = get(local_server.url, None, "table", **q).json["rows"]
            return rows[0] if rows and rows[0]["values"]["m:train:loss"] == 6.0 else None

        r = wait_for(row, 10, "the new experiment in the table")
        assert r["prefix"] == "carol/new/run" and r["status"] == "RUNNING" and r["tags"] == ["fresh"]
        assert r["values"]["p:lr"] == 0.5 and r["counts"]["metric_rows"] == 5 and r["duration"] >= 0
        go.write_text("go")
        assert proc.wait(30) == 0, proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()

    def done() -> Optional[dict]:
        rows = get(local_server.url, None, "table", **q).json["rows"]
        return rows[0] if rows[0]["status"] == "COMPLETED" else None

    r = wait_for(done, 10, "the status change")
    assert r["values"]["m:train:loss"] == 0.25 and r["counts"]["metric_rows"] == 6 and r["endedAt"]
    assert get(local_server.url, None, "table", glob="*", status="COMPLETED,RUNNING").json["total"] >= 1


def test_table_over_http(server, tmp_path):
    if server.kind != "embedded":
        pytest.skip("experiments written beside the server as files: only the embedded store reads its folder")
    specs = seed(server.root, 20)  # written beside the server, as a local process would
    want = brute(specs, glob="alice/*", sort="startedAt", order="desc")

    def page():
        a = get(
            server.url,
            server.token,
            "table",
            glob="alice/*",
            sort="startedAt",
            order="desc",
            columns="m:train:loss",
            limit=5,
        )
        assert a.status == 200
        return a.json if a.json["total"] == len(want) else None

    body = wait_for(page, 10, "the seeded experiments")
    assert [r["prefix"] for r in body["rows"]] == want[:5]
    both = request(
        server.url, "GET", "/api/v1/table?status=FAILED&status=CANCELLED&limit=100", headers=auth(server.token)
    )
    assert [r["prefix"] for r in both.json["rows"]] == brute(specs, status=("FAILED", "CANCELLED"))
    bad = get(server.url, server.token, "table", sort="nope")
    assert bad.status == 400 and bad.json["error"]["code"] == "bad_query"
