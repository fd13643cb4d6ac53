"""Trees written by upstream ml-dash read correctly; ours read correctly by upstream.

The fixture tree under tests/fixtures/upstream_dash was written by hand in upstream's format,
with the defects upstream is known to write: a duplicated metric index, bare NaN/Infinity
literals, parameters.json without createdAt, an empty parameters.json, a soft-deleted file.

When ML_DASH_UPSTREAM_PYTHON names an interpreter with upstream ml-dash 0.11 installed (CI sets
one up), the same checks run against the real upstream package, in both directions.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from ml_dash import Experiment
from ml_dash._store import ExperimentReader, list_experiments

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "upstream_dash"
RUN1 = "alice/proj/vision/run-1"


@pytest.fixture
def upstream_tree(tmp_path) -> Path:
    root = tmp_path / "dash"
    shutil.copytree(FIXTURE, root)
    return root


def test_fixture_tree_reads(upstream_tree):
    assert list_experiments(upstream_tree) == ["alice/proj/broken", RUN1]
    r = ExperimentReader(upstream_tree, RUN1)
    info = r.experiment()
    assert info["description"] == "ResNet run" and info["tags"] == ["resnet"] and "status" not in info
    assert r.params() == {"learning_rate": 0.0005, "model.layers.hidden": 128, "optimizer": "adam"}
    logs = r.logs()
    assert [(log["sequenceNumber"], log["level"]) for log in logs] == [(0, "info"), (1, "warn"), (2, "error")]
    assert logs[1]["metadata"] == {"epoch": 3}
    rows = r.metric_rows("train")
    assert [x["index"] for x in rows] == [0, 1, 2, 3]  # the duplicate index 2 is read once
    assert math.isnan(rows[3]["data"]["loss"]) and rows[3]["data"]["grad"] == math.inf
    assert r.metric_names() == [None, "train"]
    assert r.metric_rows(None)[0]["data"]["x"] == 1
    (model,) = r.files()  # notes.txt is soft-deleted
    assert model["filename"] == "model.pth" and r.file_path(model).read_bytes() == b"weights-v1"
    assert len(r.files(include_deleted=True)) == 2
    assert ExperimentReader(upstream_tree, "alice/proj/broken").params() == {}


def test_resume_an_upstream_tree(upstream_tree):
    with Experiment(prefix=RUN1, dash_root=str(upstream_tree), tags=["resumed"]).run as exp:
        exp.metrics("train").log(loss=0.2, epoch=5)
        exp.log("resumed")
        exp.params.set(optimizer="sgd")
        assert exp.params.get()["optimizer"] == "sgd"
    r = ExperimentReader(upstream_tree, RUN1)
    assert [x["index"] for x in r.metric_rows("train")] == [0, 1, 2, 3, 4]
    assert [log["sequenceNumber"] for log in r.logs()] == [0, 1, 2, 3]
    assert (upstream_tree / RUN1 / "logs/.log_sequence").read_text() == "4"
    doc = json.loads((upstream_tree / RUN1 / "parameters.json").read_text())
    assert doc["version"] == 3 and "createdAt" in doc
    meta = json.loads((upstream_tree / RUN1 / "metrics/train/metadata.json").read_text())
    assert meta["nextIndex"] == 5 and meta["totalDataPoints"] == 5
    info = r.experiment()
    assert info["tags"] == ["resumed"] and info["description"] == "ResNet run" and info["status"] == "COMPLETED"


UPSTREAM = os.environ.get("ML_DASH_UPSTREAM_PYTHON")
needs_upstream = pytest.mark.skipif(not UPSTREAM, reason="set ML_DASH_UPSTREAM_PYTHON to a python with ml-dash 0.11")


def _upstream(code: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_") and k != "PYTHONPATH"}
    proc = subprocess.run(
        [UPSTREAM, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@needs_upstream
def test_upstream_reads_our_tree(tmp_path):
    with Experiment(prefix="alice/proj/ours", dash_root=str(tmp_path / ".dash"), description="ours").run as exp:
        exp.log("hello", level="warning", epoch=1)
        exp.params.set(lr=0.1, model={"h": 2})
        for i in range(5):
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
        exp.files("models").save(b"abc", name="w.bin")
    out = _upstream(
        """
        import json
        from pathlib import Path
        from ml_dash.storage import LocalStorage
        s = LocalStorage(Path(".dash"))
        a = ("alice", "proj", "alice/proj/ours")
        print(json.dumps({
            "params": s.read_parameters(*a),
            "rows": s.read_metric_data(*a, "train", 1, 10),
            "metrics": s.list_metrics(*a),
            "files": s.list_files(*a),
        }))
    """,
        tmp_path,
    )
    got = json.loads(out)
    assert got["params"] == {"lr": 0.1, "model.h": 2}
    assert [r["data"]["step"] for r in got["rows"]["data"]] == [1, 2, 3, 4]
    assert got["metrics"][0]["name"] == "train" and got["metrics"][0]["totalDataPoints"] == "5"
    assert [f["filename"] for f in got["files"]] == ["w.bin"]


@needs_upstream
def test_we_read_upstreams_tree_and_it_resumes_ours(tmp_path):
    _upstream(
        """
        from ml_dash import Experiment
        with Experiment(prefix="alice/proj/up-run", dash_root=".dash", tags=["t"]).run as exp:
            exp.log("hello", level="warn", epoch=1)
            exp.params.set(lr=0.1, model={"h": 2})
            for i in range(5):
                exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
            exp.metrics("train").log(loss=float("nan"), step=5)
            open("w.bin", "wb").write(b"abc")
            exp.files("models").save("w.bin")
    """,
        tmp_path,
    )
    root = tmp_path / ".dash"
    r = ExperimentReader(root, "alice/proj/up-run")
    assert r.params() == {"lr": 0.1, "model.h": 2}
    rows = r.metric_rows("train")
    assert [x["data"]["step"] for x in rows] == list(range(6)) and math.isnan(rows[5]["data"]["loss"])
    assert r.logs()[0]["metadata"] == {"epoch": 1}
    (f,) = r.files()
    assert r.file_path(f).read_bytes() == b"abc"
    # ours continues upstream's numbering, then upstream continues ours
    with Experiment(prefix="alice/proj/up-run", dash_root=str(root)).run as exp:
        exp.metrics("train").log(loss=0.1, step=6)
        exp.log("ours")
    _upstream(
        """
        from ml_dash import Experiment
        with Experiment(prefix="alice/proj/up-run", dash_root=".dash").run as exp:
            exp.metrics("train").log(loss=0.05, step=7)
            exp.log("upstream again")
    """,
        tmp_path,
    )
    assert [(x["index"], x["data"]["step"]) for x in r.metric_rows("train")] == [(i, i) for i in range(8)]
    assert [log["sequenceNumber"] for log in r.logs()] == [0, 1, 2]
