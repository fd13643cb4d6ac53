"""Each code block of the spec (experiments.md), run as written in local mode, then read back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ml_dash import RUN, Experiment, ml_dash_experiment
from ml_dash._store import ExperimentReader

from ..conftest import run_script


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch, tmp_path):
    # The spec's blocks use the default dash_root ".dash", relative to the working folder.
    monkeypatch.chdir(tmp_path)


def _reader(prefix: str, root: str = ".dash") -> ExperimentReader:
    return ExperimentReader(root, prefix)


def test_context_manager_block():
    with Experiment(prefix="alice/project/my-experiment").run as exp:
        exp.log("Training started")
        exp.params.set(learning_rate=0.001)

    r = _reader("alice/project/my-experiment")
    assert [log["message"] for log in r.logs()] == ["Training started"]
    assert r.params() == {"learning_rate": 0.001}
    assert r.experiment()["status"] == "COMPLETED"


def test_decorator_block():
    losses = iter([0.9 - 0.05 * i for i in range(10)])

    def train_epoch():
        return next(losses)

    @ml_dash_experiment(prefix="alice/project/my-experiment")
    def train_model(experiment):
        experiment.log("Training started")
        experiment.params.set(learning_rate=0.001)

        for epoch in range(10):
            loss = train_epoch()
            experiment.metrics("train").log(loss=loss, epoch=epoch)

        return "Training complete!"

    result = train_model()

    assert result == "Training complete!"
    rows = _reader("alice/project/my-experiment").metric_rows("train")
    assert [r["index"] for r in rows] == list(range(10))
    assert [r["data"]["epoch"] for r in rows] == list(range(10))
    assert rows[3]["data"]["loss"] == pytest.approx(0.75)


def test_decorator_passes_arguments_and_injects_by_name():
    @ml_dash_experiment(prefix="alice/project/deco-args")
    def train(lr, experiment, steps=2):
        for i in range(steps):
            experiment.metrics("m").log(lr=lr, i=i)
        return lr * steps

    assert train(0.5, steps=3) == 1.5
    assert len(_reader("alice/project/deco-args").metric_rows("m")) == 3


def test_direct_block():
    exp = Experiment(prefix="alice/project/my-experiment")
    exp.run.start()

    try:
        exp.log("Training started")
        exp.params.set(learning_rate=0.001)
    finally:
        exp.run.complete()

    r = _reader("alice/project/my-experiment")
    assert r.logs()[0]["message"] == "Training started"
    assert r.experiment()["status"] == "COMPLETED"


def _make_project(root: Path) -> Path:
    (root / "my-project").mkdir()
    (root / "my-project" / "pyproject.toml").write_text("[project]\nname='x'\n")
    for sub in ("experiments/vision/resnet", "experiments/nlp/bert"):
        (root / "my-project" / sub).mkdir(parents=True)
    return root / "my-project"


RUN_SCRIPT = """
from ml_dash import RUN, Experiment

# Set entry point - RUN auto-detects project root and computes prefix
RUN.entry = __file__

# Now use the auto-computed prefix
with Experiment(
    prefix=f"{RUN.user}/{RUN.project}/{RUN.path_stem}",
    dash_root=".dash"
).run as exp:
    exp.log(f"Running from {RUN.entry}")
    exp.params.set(script=str(RUN.entry))
print(exp.prefix)
"""


def test_run_entry_block_computes_vision_resnet(tmp_path):
    project = _make_project(tmp_path)
    for sub in ("vision/resnet", "nlp/bert"):
        script = project / "experiments" / sub / "train.py"
        script.write_text(RUN_SCRIPT)
        proc = run_script(
            f"exec(open({str(script)!r}).read(), {{'__file__': {str(script)!r}}})", cwd=project, env={"USER": "alice"}
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == f"alice/my-project/{sub}"
        r = _reader(f"alice/my-project/{sub}", str(project / ".dash"))
        assert r.params() == {"script": str(script.resolve())}


def test_run_user_prefers_ml_dash_user(monkeypatch):
    monkeypatch.setenv("USER", "bob")
    monkeypatch.setenv("ML_DASH_USER", "alice")
    assert RUN.user == "alice"
    monkeypatch.delenv("ML_DASH_USER")
    assert RUN.user == "bob"


def test_run_attributes(tmp_path):
    project = _make_project(tmp_path)
    RUN.entry = project / "experiments" / "vision" / "resnet" / "train.py"
    try:
        assert RUN.project_root == project.resolve()
        assert RUN.project == "my-project"
        assert RUN.path_stem == "vision/resnet"
        assert RUN.now.year >= 2024
    finally:
        RUN.entry = None


def test_sweep_block(tmp_path):
    project = _make_project(tmp_path)
    sweep_dir = project / "experiments" / "vision" / "resnet" / "sweep.py"
    sweep_dir.write_text("")
    __file__ = str(sweep_dir)  # the block's own __file__
    sweep_configs = [{"lr": 0.1}, {"lr": 0.01}, {"lr": 0.001}]

    from pathlib import Path

    from ml_dash import RUN, Experiment

    # Point to sweep directory instead of __file__
    sweep_dir = Path(__file__).parent
    RUN.entry = str(sweep_dir)

    try:
        # Each job gets organized under the sweep path
        for job_id, config in enumerate(sweep_configs):
            with Experiment(prefix=f"{RUN.user}/{RUN.path_stem}/job_{job_id:03d}").run as exp:
                exp.params.set(**config)
    finally:
        RUN.entry = None

    for job_id, config in enumerate(sweep_configs):
        r = _reader(f"{RUN.user}/vision/resnet/job_{job_id:03d}")
        assert r.params() == config


def test_local_mode_block():
    with Experiment(prefix="alice/project/my-experiment", dash_root=".dash").run as exp:
        exp.log("Using local storage")

    assert Path(".dash/alice/project/my-experiment/logs/logs.jsonl").is_file()
    assert _reader("alice/project/my-experiment").logs()[0]["message"] == "Using local storage"


def test_metadata_block():
    with Experiment(
        prefix="alice/computer-vision/resnet50-imagenet",
        description="ResNet-50 training with new augmentation",
        tags=["resnet", "imagenet", "baseline"],
        bindrs=["gpu-cluster", "team-a"],
    ).run as exp:
        exp.log("Training started")

    info = json.loads(Path(".dash/alice/computer-vision/resnet50-imagenet/experiment.json").read_text())
    assert info["description"] == "ResNet-50 training with new augmentation"
    assert info["tags"] == ["resnet", "imagenet", "baseline"]
    assert info["bindrs"] == ["gpu-cluster", "team-a"]
    assert info["name"] == "resnet50-imagenet"
    assert info["project"] == "computer-vision"
    assert info["prefix"] == "alice/computer-vision/resnet50-imagenet"


def test_status_lifecycle_block_automatic():
    # Normal completion - status becomes COMPLETED
    with Experiment(prefix="alice/ml/training").run as exp:
        exp.log("Training...")
    assert _reader("alice/ml/training").experiment()["status"] == "COMPLETED"

    # Exception handling - status becomes FAILED
    with pytest.raises(ValueError, match="Training failed!"), Experiment(prefix="alice/ml/training").run as exp:
        exp.log("Training...")
        raise ValueError("Training failed!")
    info = _reader("alice/ml/training").experiment()
    assert info["status"] == "FAILED"
    assert "Training failed!" in info["status_reason"]
    assert info["started_at"] <= info["ended_at"]
    assert [log["message"] for log in _reader("alice/ml/training").logs()] == ["Training...", "Training..."]


@pytest.mark.parametrize("outcome", ["complete", "interrupt", "error"])
def test_manual_status_control_block(outcome):
    exp = Experiment(prefix="alice/ml/training")
    exp.run.start()
    assert _reader_after_flush(exp)["status"] == "RUNNING"

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
    assert _reader("alice/ml/training").experiment()["status"] == expected
    assert exp.status == expected


def _reader_after_flush(exp):
    exp.flush()
    return _reader(exp.prefix).experiment()


def test_resume_block_in_new_processes(tmp_path):
    first = """
    from ml_dash import Experiment
    with Experiment(prefix="alice/ml/long-training").run as exp:
        exp.log("Starting epoch 1")
        exp.metrics("train").log(loss=0.5, epoch=1)
    """
    later = """
    from ml_dash import Experiment
    with Experiment(prefix="alice/ml/long-training").run as exp:
        exp.log("Resuming from checkpoint")
        exp.metrics("train").log(loss=0.3, epoch=2)
    """
    for code in (first, later):
        proc = run_script(code, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    r = _reader("alice/ml/long-training")
    assert [(log["sequenceNumber"], log["message"]) for log in r.logs()] == [
        (0, "Starting epoch 1"),
        (1, "Resuming from checkpoint"),
    ]
    rows = r.metric_rows("train")
    assert [(x["index"], x["data"]["epoch"], x["data"]["loss"]) for x in rows] == [(0, 1, 0.5), (1, 2, 0.3)]
    info = r.experiment()
    assert "updated_at" in info and info["status"] == "COMPLETED"


def test_available_operations_block():
    Path("model.pth").write_bytes(b"\x00weights\x01")
    with Experiment(prefix="alice/test/demo").run as exp:
        # Logging
        exp.log("Training started", level="info")

        # Parameters
        exp.params.set(lr=0.001, batch_size=32)

        # Metrics tracking
        exp.metrics("train").log(loss=0.5, epoch=1)

        # File uploads
        exp.files("models").save("model.pth")

    r = _reader("alice/test/demo")
    assert r.logs()[0]["level"] == "info"
    assert r.params() == {"lr": 0.001, "batch_size": 32}
    assert r.metric_rows("train")[0]["data"]["loss"] == 0.5
    (entry,) = r.files()
    assert entry["path"] == "/models" and entry["filename"] == "model.pth"
    assert r.file_path(entry).read_bytes() == b"\x00weights\x01"


def test_storage_structure():
    Path("model.pth").write_bytes(b"m")
    with Experiment(prefix="alice/project/my-experiment").run as exp:
        exp.log("x")
        exp.params.set(a=1)
        exp.metrics("train").log(loss=1.0)
        info = exp.files("models").save("model.pth")
    base = Path(".dash/alice/project/my-experiment")
    assert (base / "logs" / "logs.jsonl").is_file()
    assert (base / "parameters.json").is_file()
    assert (base / "metrics" / "train" / "data.jsonl").is_file()
    assert (base / "files" / "models" / info.id / "model.pth").read_bytes() == b"m"
    # snowflake: (unix_ms << 12) | 12 bits
    assert abs((int(info.id) >> 12) / 1000 - time.time()) < 60
