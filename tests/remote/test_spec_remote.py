"""The spec's remote-mode blocks, run as written against our server (its URL in place of
https://api.dash.ml), and the same checks in local and remote mode through one read interface."""

from __future__ import annotations

import math

import pytest

from ml_dash import Experiment
from ml_dash._store import ExperimentReader

from ..conftest import run_script


def test_remote_mode_block(server):
    with Experiment(prefix="alice/project/my-experiment", dash_url=server.url).run as exp:
        exp.log("Using remote server")

    assert [log["message"] for log in exp.logs.read()] == ["Using remote server"]
    # The server's root is a dash_root in the local layout.
    assert (
        ExperimentReader(server.layout(), "alice/project/my-experiment").logs()[0]["message"] == "Using remote server"
    )


def test_automatic_status_blocks(server):
    # Normal completion - status becomes COMPLETED
    with Experiment(prefix="alice/ml/training", dash_url=server.url).run as exp:
        exp.log("Training...")
        # Status automatically set to COMPLETED on exit
    assert exp.info()["status"] == "COMPLETED"

    # Exception handling - status becomes FAILED
    with pytest.raises(ValueError), Experiment(prefix="alice/ml/training", dash_url=server.url).run as exp:
        exp.log("Training...")
        raise ValueError("Training failed!")
        # Status automatically set to FAILED on exception
    info = exp.info()
    assert info["status"] == "FAILED" and "Training failed!" in info["status_reason"]
    assert [log["message"] for log in exp.logs.read()] == ["Training...", "Training..."]


@pytest.mark.parametrize("outcome", ["complete", "interrupt", "error"])
def test_manual_status_control_block(server, outcome):
    exp = Experiment(prefix="alice/ml/training", dash_url=server.url)
    exp.run.start()
    exp.flush()
    assert exp.info()["status"] == "RUNNING"

    try:
        exp.log("Training...")
        if outcome == "interrupt":
            raise KeyboardInterrupt
        if outcome == "error":
            raise RuntimeError("boom")
        exp.run.complete()
    except KeyboardInterrupt:
        exp.run.cancel()
    except Exception as e:
        exp.log(f"Error: {e}")
        exp.run.fail()

    expected = {"complete": "COMPLETED", "interrupt": "CANCELLED", "error": "FAILED"}[outcome]
    info = exp.info()
    assert info["status"] == expected and info["started_at"] <= info["ended_at"]
    messages = [log["message"] for log in exp.logs.read()]
    assert messages == (["Training...", "Error: boom"] if outcome == "error" else ["Training..."])


def test_resume_by_prefix_across_processes(server, tmp_path):
    code = f"""
        import sys
        from ml_dash import Experiment
        epoch = int(sys.argv[1]) if len(sys.argv) > 1 else 0
        with Experiment(prefix="alice/ml/long-training", dash_url={server.url!r}).run as exp:
            exp.log("epoch %d" % epoch)
            exp.metrics("train").log(loss=0.5 / (epoch + 1), epoch=epoch)
    """
    env = {"ML_DASH_TOKEN": server.token, "ML_DASH_SPOOL_DIR": str(tmp_path / "spool")}
    for epoch in (1, 2):
        proc = run_script(
            code.replace("int(sys.argv[1]) if len(sys.argv) > 1 else 0", str(epoch)), cwd=tmp_path, env=env
        )
        assert proc.returncode == 0, proc.stderr
    exp = Experiment(prefix="alice/ml/long-training", dash_url=server.url)
    assert [(r["index"], r["data"]["epoch"]) for r in exp.metrics("train").read()] == [(0, 1), (1, 2)]
    assert [(log["sequenceNumber"], log["message"]) for log in exp.logs.read()] == [(0, "epoch 1"), (1, "epoch 2")]


@pytest.fixture(params=["local", "remote"])
def where(request, tmp_path):
    if request.param == "local":
        return {"dash_root": str(tmp_path / ".dash")}
    return {"dash_url": request.getfixturevalue("server").url}


def test_same_reads_in_both_modes(where, tmp_path):
    model = tmp_path / "model.pth"
    model.write_bytes(b"weights")
    with Experiment(prefix="alice/test/demo", description="both", tags=["t"], **where).run as exp:
        exp.log("Training started", level="info")
        exp.log("careful", level="warning", epoch=2)
        exp.params.set(lr=0.001, batch_size=32, model={"depth": 4})
        for i in range(2500):
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
        exp.metrics("val").log(loss=math.nan, step=0)
        exp.metrics.log(x=1)
        info = exp.files("models").save(str(model))
    model.write_bytes(b"changed")

    assert exp.info()["description"] == "both" and exp.info()["status"] == "COMPLETED"
    assert exp.params.get() == {"lr": 0.001, "batch_size": 32, "model.depth": 4}
    logs = exp.logs.read()
    assert [(log["sequenceNumber"], log["level"], log["message"]) for log in logs] == [
        (0, "info", "Training started"),
        (1, "warn", "careful"),
    ]
    assert logs[1]["metadata"] == {"epoch": 2}
    rows = exp.metrics("train").read()
    assert [r["index"] for r in rows] == list(range(2500))
    assert [r["data"]["step"] for r in rows] == list(range(2500))
    assert rows[9]["data"]["loss"] == pytest.approx(0.1)
    assert [r["index"] for r in exp.metrics("train").read(start=2400, limit=50)] == list(range(2400, 2450))
    assert math.isnan(exp.metrics("val").read()[0]["data"]["loss"])
    assert sorted(exp.metrics.names(), key=str) == [None, "train", "val"]
    (listed,) = exp.files("models").list()
    assert listed.checksum == info.checksum and listed.size == 7
    assert exp.files.download(listed, tmp_path / "back.pth").read_bytes() == b"weights"
