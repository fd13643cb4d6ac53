"""Upstream 0.11's files API and tracks in remote mode, against a real server on loopback.

Tracks and file deletions are protocol events (``track``, ``file_delete``): stored once, read back
through the server's read API, and visible in the server's root, which is a dash_root.
"""

from __future__ import annotations

import json

from ml_dash import Experiment
from ml_dash._store import ExperimentReader

from ..server._client import ingest

P = "alice/proj/remote-dropin"


def test_tracks_and_files_through_the_server(server, tmp_path):
    with Experiment(prefix=P, dash_url=server.url).run as exp:
        for i in range(300):
            exp.tracks("robot/pos").append(x=float(i), _ts=i / 10)
        exp.tracks("robot/pos").append(extra="merged", _ts=0.0)
        exp.tracks("cam").append(frame=1)
        exp.files.save_text("a,b\n", to="results/m.csv")
        exp.files.save_json({"lr": 0.1}, to="cfg.json")
        exp.files("models", bindrs=["ckpt"]).save_blob(b"w", to="w.bin")
        exp.files.save_blob(b"bye", to="gone.bin")
        exp.files.delete("gone.bin")
        exp.files.save_json({"lr": 0.2}, to="cfg.json")
        exp.files("cfg.json", description="final", tags=["best"]).update()
        assert exp.flush(timeout=30)
        (cfg,) = exp.files.list("cfg.json")
        assert (cfg["description"], cfg["tags"]) == ("final", ["best"])
        entries = exp.tracks("robot/pos").list_entries()
        assert len(entries) == 300 and entries[0] == {"timestamp": 0.0, "x": 0.0, "extra": "merged"}
        assert [e["x"] for e in exp.tracks("robot/pos").slice(1.0, 1.2)] == [10.0, 11.0, 12.0]
        assert sorted(exp.tracks.topics()) == ["cam", "robot/pos"]
        assert exp.files("results/m.csv").read_text() == "a,b\n"
        assert json.loads(exp.files("cfg.json").read_text()) == {"lr": 0.2}
        assert not exp.files("gone.bin").exists()
        assert [f["filename"] for f in exp.bindrs("ckpt").list()] == ["w.bin"]
        assert exp.files.download("results/*.csv", to=str(tmp_path / "dl"))[0].read_text() == "a,b\n"
    r = ExperimentReader(server.layout(), P)
    lines = (server.layout() / P / "tracks" / "robot_pos" / "data.jsonl").read_text().splitlines()
    assert sum(1 for line in lines if json.loads(line)["timestamp"] != 0.0) == 299  # each entry stored once
    gone = [e for e in r.files(include_deleted=True) if e["filename"] == "gone.bin"]
    assert gone[0]["deletedAt"] and r.file_path(gone[0]).read_bytes() == b"bye"
    assert [e["bindrs"] for e in r.files() if e["filename"] == "w.bin"] == [["ckpt"]]


def test_server_refuses_a_topic_that_shares_a_folder(server):
    head = [
        {"seq": 0, "kind": "track", "topic": "a/b", "timestamp": 1.0, "data": {"x": 1}},
        {"seq": 1, "kind": "track", "topic": "a_b", "timestamp": 1.0, "data": {"x": 2}},
        {"seq": 2, "kind": "track", "topic": "ok", "timestamp": float("inf"), "data": {}},
        {"seq": 3, "kind": "file_delete", "id": "../x"},
        {"seq": 4, "kind": "file_delete", "id": "123"},
    ]
    a = ingest(server.url, server.token, "sessTRACK01", P, head)
    assert a.status == 200, a
    assert {r["seq"]: r["code"] for r in a.json["rejected"]} == {1: "path_conflict", 2: "bad_ts", 3: "bad_file_id"}
    assert a.json["acked_seq"] == 4
    again = ingest(
        server.url,
        server.token,
        "sessTRACK02",
        P,
        [{"seq": 0, "kind": "track", "topic": "a_b", "timestamp": 2.0, "data": {}}],
    )
    assert [r["code"] for r in again.json["rejected"]] == ["path_conflict"]
    assert ExperimentReader(server.layout(), P).track_entries("a/b") == [{"timestamp": 1.0, "x": 1}]


def test_remote_log_helpers_and_metric_reads(server):
    with Experiment(prefix=P + "-m", dash_url=server.url).run as exp:
        exp.logs.warn("careful", step=1)
        exp.log("with metadata", metadata={"epoch": 2})
        exp.metrics.log(epoch=1, train=dict(loss=0.5))
        for i in range(5):
            exp.metrics("eval").log(loss=i)
        page = exp.metrics("eval").read(start_index=1, limit=2)
        assert page["total"] == 2 and page["hasMore"] and [p["data"]["loss"] for p in page["data"]] == [1, 2]
        assert exp.metrics("eval").stats()["totalDataPoints"] == "5"
        assert {m["name"] for m in exp.metrics.list_all()} == {None, "train", "eval"}
        logs = exp.logs.read()
        assert [(log["level"], log.get("metadata")) for log in logs] == [("warn", {"step": 1}), ("info", {"epoch": 2})]
        assert exp.mode == "remote" and exp.id == P + "-m"


def test_hybrid_mode_stores_locally_and_uploads(server, tmp_path):
    from ml_dash import OperationMode

    root = tmp_path / "local"
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights")
    with Experiment(prefix=P + "-h", dash_url=server.url, dash_root=str(root)).run as exp:
        assert exp.mode is OperationMode.HYBRID and exp.local_path == root / (P + "-h")
        exp.log("both sides")
        exp.params.set(lr=0.1)
        for i in range(50):
            exp.metrics("train").log(step=i)
        exp.tracks("pos").append(x=1, _ts=1.0)
        exp.files("models").upload(str(src), to="w.bin")
        src.write_bytes(b"changed after the call")
        assert exp.flush(timeout=30)
    for where in (root, server.layout()):
        r = ExperimentReader(where, P + "-h")
        assert [log["message"] for log in r.logs()] == ["both sides"] and r.params() == {"lr": 0.1}
        assert [x["data"]["step"] for x in r.metric_rows("train")] == list(range(50))
        assert r.track_entries("pos") == [{"timestamp": 1.0, "x": 1}]
        (f,) = r.files()
        assert r.file_path(f).read_bytes() == b"weights"
        assert r.experiment()["status"] == "COMPLETED"


def test_auto_start_dxp_from_the_environment(server, tmp_path):
    from ..conftest import run_script

    code = """
        from ml_dash.auto_start import dxp
        assert dxp.run.status is None  # not started at import
        with dxp.run:
            dxp.log("hello from dxp")
            dxp.metrics("train").log(loss=0.5)
        dxp2 = __import__("ml_dash.auto_start", fromlist=["dxp"]).dxp
        assert dxp2 is dxp
    """
    local = run_script(
        code, tmp_path, env={"ML_DASH_PREFIX": "alice/auto/local", "ML_DASH_ROOT": str(tmp_path / ".dash")}
    )
    assert local.returncode == 0, local.stderr
    remote = run_script(
        code,
        tmp_path,
        env={
            "ML_DASH_PREFIX": "alice/auto/remote",
            "ML_DASH_URL": server.url,
            "ML_DASH_TOKEN": server.token,
            "ML_DASH_SPOOL_DIR": str(tmp_path / "spool"),
        },
    )
    assert remote.returncode == 0, remote.stderr
    for root, prefix in ((tmp_path / ".dash", "alice/auto/local"), (server.layout(), "alice/auto/remote")):
        r = ExperimentReader(root, prefix)
        assert [log["message"] for log in r.logs()] == ["hello from dxp"] and r.experiment()["status"] == "COMPLETED"
