"""Upstream ml-dash 0.11's calls around logs, params, metrics and the experiment object, on ours.

Each test reads the stored data back (our reader, or upstream's where ML_DASH_UPSTREAM_PYTHON is
set); the whole-script runs in both modes are in ``tests/test_dropin_scripts.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ml_dash import RUN, Experiment, FileInfo, InvalidValue, OperationMode
from ml_dash._store import ExperimentReader

UPSTREAM = os.environ.get("ML_DASH_UPSTREAM_PYTHON")
needs_upstream = pytest.mark.skipif(not UPSTREAM, reason="set ML_DASH_UPSTREAM_PYTHON to a python with ml-dash 0.11")


def _upstream(code: str, cwd) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_") and k != "PYTHONPATH"}
    env["ML_DASH_NO_VERSION_CHECK"] = "1"
    proc = subprocess.run(
        [UPSTREAM, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_log_metadata_keyword_is_the_metadata_not_a_nested_key(dash_root):
    with Experiment(prefix="a/p/logmd", dash_root=str(dash_root)).run as exp:
        exp.log("epoch done", level="info", metadata={"epoch": 5, "loss": 0.25})
        exp.log("both", metadata={"a": 1, "b": 1}, b=2)
        exp.log("plain", step=3)
        with pytest.raises(InvalidValue, match="must be a dict"):
            exp.log("bad", metadata=[1, 2])
    logs = ExperimentReader(dash_root, "a/p/logmd").logs()
    assert [(log["message"], log.get("metadata")) for log in logs] == [
        ("epoch done", {"epoch": 5, "loss": 0.25}),
        ("both", {"a": 1, "b": 2}),
        ("plain", {"step": 3}),
    ]


@needs_upstream
def test_upstream_writes_log_metadata_the_way_we_now_do(tmp_path):
    _upstream(
        """
        from ml_dash import Experiment
        with Experiment(prefix="a/p/up", dash_root=".dash").run as exp:
            exp.log("epoch done", level="info", metadata={"epoch": 5}, step=1)
    """,
        tmp_path,
    )
    with Experiment(prefix="a/p/ours", dash_root=str(tmp_path / ".dash")).run as exp:
        exp.log("epoch done", level="info", metadata={"epoch": 5}, step=1)
    up = ExperimentReader(tmp_path / ".dash", "a/p/up").logs()[0]
    ours = ExperimentReader(tmp_path / ".dash", "a/p/ours").logs()[0]
    assert up["metadata"] == ours["metadata"] == {"epoch": 5, "step": 1}


def test_log_helpers_store_and_echo_as_upstream(dash_root, capsys):
    with Experiment(prefix="a/p/helpers", dash_root=str(dash_root)).run as exp:
        exp.logs.info("loading", shard=1)
        exp.logs.debug("shape")
        exp.logs.warn("lr constant")
        exp.logs.error("nan at step", step=150)
        exp.logs.fatal("oom")
        with pytest.warns(DeprecationWarning):
            exp.log(metadata={"run": 7}).info("fluent")  # upstream's deprecated builder
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "[INFO] loading [shard=1]",
        "[DEBUG] shape",
        "[WARN] lr constant",
        "[INFO] fluent [run=7]",
    ]
    assert err.splitlines() == ["[ERROR] nan at step [step=150]", "[FATAL] oom"]
    logs = ExperimentReader(dash_root, "a/p/helpers").logs()
    assert [(log["level"], log["message"], log.get("metadata")) for log in logs] == [
        ("info", "loading", {"shard": 1}),
        ("debug", "shape", None),
        ("warn", "lr constant", None),
        ("error", "nan at step", {"step": 150}),
        ("fatal", "oom", None),
        ("info", "fluent", {"run": 7}),
    ]


def test_log_echo_switch(dash_root, capsys, monkeypatch):
    monkeypatch.setenv("ML_DASH_LOG_ECHO", "0")
    with Experiment(prefix="a/p/quiet", dash_root=str(dash_root)).run as exp:
        exp.logs.error("stored, not printed")
    assert capsys.readouterr() == ("", "")
    assert [log["message"] for log in ExperimentReader(dash_root, "a/p/quiet").logs()] == ["stored, not printed"]


def test_echo_is_not_captured_twice(dash_root, monkeypatch):
    monkeypatch.setenv("ML_DASH_CAPTURE_CONSOLE", "1")
    with Experiment(prefix="a/p/capture", dash_root=str(dash_root)).run as exp:
        exp.logs.info("once")
        print("printed")
    messages = [log["message"] for log in ExperimentReader(dash_root, "a/p/capture").logs()]
    assert messages.count("once") == 1 and "printed" in messages and not any("[INFO]" in m for m in messages)


class Args:
    batch_size = 64
    lr = 0.001
    _private = 1

    class Nested:  # a nested class is skipped, as upstream does
        x = 1

    def method(self):
        return 1


@dataclasses.dataclass
class TrainingConfig:
    lr: float = 1e-3
    momentum: float = 0.9


def test_params_from_classes_and_objects(dash_root):
    with Experiment(prefix="a/p/params", dash_root=str(dash_root)).run as exp:
        exp.params.log(Args=Args)
        exp.params.set(training=TrainingConfig(lr=5e-4), cli=argparse.Namespace(seed=3, data="x"))
        exp.params.set(model={"layers": {"hidden": 128}})
        got = exp.params.get()
        nested = exp.params.get(flatten=False)
    assert got == {
        "Args.batch_size": 64,
        "Args.lr": 0.001,
        "training.lr": 5e-4,
        "training.momentum": 0.9,
        "cli.seed": 3,
        "cli.data": "x",
        "model.layers.hidden": 128,
    }
    assert nested["model"] == {"layers": {"hidden": 128}} and nested["Args"]["lr"] == 0.001
    assert exp.params.flatten_dict({"a": {"b": 1}}, sep="/") == {"a/b": 1}
    assert exp.params.unflatten_dict({"a/b": 1}, sep="/") == {"a": {"b": 1}}


def test_metrics_nested_dicts_go_to_named_metrics(dash_root):
    with Experiment(prefix="a/p/nested", dash_root=str(dash_root)).run as exp:
        exp.metrics.log(epoch=3, train=dict(loss=0.48, accuracy=0.8), eval=dict(loss=0.52), _flush=True)
        exp.metrics.log(eval=dict(loss=0.5))  # no shared fields: nothing for the unnamed metric
        exp.metrics.log(epoch=4).flush()
        with pytest.raises(ValueError):
            exp.metrics.log(epoch=5, **{"bad/../name": {"x": 1}})
    r = ExperimentReader(dash_root, "a/p/nested")
    data = lambda name: [{k: v for k, v in row["data"].items() if k != "_ts"} for row in r.metric_rows(name)]
    assert data(None) == [{"epoch": 3}, {"epoch": 4}]
    assert data("train") == [{"epoch": 3, "loss": 0.48, "accuracy": 0.8}]
    assert data("eval") == [{"epoch": 3, "loss": 0.52}, {"loss": 0.5}]


def test_metric_ts_and_flush_are_control_keys(dash_root):
    with Experiment(prefix="a/p/ts", dash_root=str(dash_root)).run as exp:
        exp.metrics("m").log(x=1, _ts=1000.5)
        exp.metrics("m").log(x=2, _ts=-1, _flush=True)
        exp.metrics("m").log(x=3)
        with pytest.raises(InvalidValue, match="_ts"):
            exp.metrics("m").log(x=4, _ts="soon")
    rows = [row["data"] for row in ExperimentReader(dash_root, "a/p/ts").metric_rows("m")]
    assert [(r["x"], r["_ts"]) for r in rows[:2]] == [(1, 1000.5), (2, 1000.5)]
    assert rows[2]["_ts"] > 1e9 and all("_flush" not in r for r in rows) and len(rows) == 3


def test_metric_read_stats_list_all_as_upstream(dash_root):
    with Experiment(prefix="a/p/read", dash_root=str(dash_root)).run as exp:
        for i in range(5):
            exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
        exp.metrics("eval").log(loss=0.5)
        page = exp.metrics("train").read(start_index=1, limit=2)
        assert [r["index"] for r in page] == [1, 2]  # still our list of rows
        assert page["total"] == 2 and page["hasMore"] is True and page["startIndex"] == 1 and page["endIndex"] == 2
        assert [p["data"]["step"] for p in page["data"]] == [1, 2]
        rest = exp.metrics("train").read(start_index=3, limit=10)
        assert rest["hasMore"] is False and len(rest["data"]) == 2
        stats = exp.metrics("train").stats()
        assert stats["totalDataPoints"] == "5" and stats["name"] == "train"
        listed = {m["name"]: m["totalDataPoints"] for m in exp.metrics("train").list_all()}
        assert listed == {"train": "5", "eval": "1"} and exp.metrics.list_all() == exp.metrics("x").list_all()
        with pytest.raises(FileNotFoundError):
            exp.metrics("nothing").stats()
        described = exp.metrics("val_loss", description="validation", tags=["v"], metadata={"split": "val"})
        described.log(loss=0.3)
        assert exp.metrics("val_loss").stats()["description"] == "validation"


def test_summary_cache_and_buffer(dash_root):
    with Experiment(prefix="a/p/summary", dash_root=str(dash_root)).run as exp:
        train = exp.metrics("train")
        for v in (1.0, 2.0, 3.0, float("nan"), None):
            train.summary_cache.store(loss=v)
        assert (
            train.summary_cache.peek("loss", limit=2)["loss"][0] != train.summary_cache.peek("loss", limit=2)["loss"][0]
        )  # NaN
        train.summary_cache.set(epoch=1)
        train.summary_cache.summarize()
        train.summary_cache.summarize()  # an empty window logs nothing
        cum = exp.metrics("cum")
        cum.summary_cache.store(loss=1.0)
        cum.summary_cache.summarize(clear=False)
        cum.summary_cache.store(loss=3.0)
        cum.summary_cache.summarize(clear=False)
        for v in (1.0, 2.0, 3.0, 4.0):
            exp.metrics("a").buffer(loss=v)
            exp.metrics("b").buffer(loss=v * 10)
        assert exp.metrics.buffer.peek()["a/loss"] == [1.0, 2.0, 3.0, 4.0]
        exp.metrics.buffer.log_summary("mean", "max", "count", "p50", step=9)
        exp.metrics.buffer.log_summary()  # empty: nothing
        with pytest.raises(ValueError, match="aggregation"):
            exp.metrics.buffer.log_summary("mode")
        with pytest.raises(InvalidValue, match="numbers"):
            train.summary_cache.store(loss="high")
    r = ExperimentReader(dash_root, "a/p/summary")
    data = lambda name: [{k: v for k, v in row["data"].items() if k != "_ts"} for row in r.metric_rows(name)]
    assert data("train") == [
        {"epoch": 1, "loss.mean": 2.0, "loss.min": 1.0, "loss.max": 3.0, "loss.count": 3, "loss.std": 1.0}
    ]
    assert [row["loss.mean"] for row in data("cum")] == [1.0, 2.0]
    assert data("a") == [{"step": 9, "loss.mean": 2.5, "loss.max": 4.0, "loss.count": 4, "loss.p50": 2.5}]
    assert data("b")[0]["loss.mean"] == 25.0


def test_experiment_object_attributes(dash_root):
    exp = Experiment(
        prefix="alice/vision/run-42",
        dash_root=str(dash_root),
        readme="BERT on SQuAD",
        metadata={"gpu": "A100"},
        tags=["t"],
        bindrs=["ckpt"],
    )
    assert exp.readme == exp.description == "BERT on SQuAD" and exp.metadata == {"gpu": "A100"}
    assert exp.mode is OperationMode.LOCAL and exp.mode == "local" and exp.id is None and exp.data is None
    assert exp.bindrs == ["ckpt"]
    with exp.run as e:
        assert (e.run.prefix, e.run.owner, e.run.project, e.run.name) == (
            "alice/vision/run-42",
            "alice",
            "vision",
            "run-42",
        )
        assert e.run.id.isdigit() and e.run.now == RUN.now and e.run.status == "RUNNING"
        e.name = "run-42-retrained"  # a display name, as upstream's setter: the data stays at the prefix
        assert e.name == "run-42-retrained"
        e.metrics("train").log(loss=0.1)
    assert ExperimentReader(dash_root, "alice/vision/run-42").experiment()["description"] == "BERT on SQuAD"


def test_prefix_from_environment_and_run_template(dash_root, monkeypatch, tmp_path):
    monkeypatch.setenv("ML_DASH_PREFIX", "alice/envproj/from-env")
    assert Experiment(dash_root=str(dash_root)).prefix == "alice/envproj/from-env"
    monkeypatch.delenv("ML_DASH_PREFIX")
    monkeypatch.setenv("ML_DASH_USER", "bob")
    first = Experiment(dash_root=str(dash_root))
    second = Experiment(dash_root=str(dash_root), user="carol")
    assert first.owner == "bob" and first.project == "scratch" and second.owner == "carol"
    assert first.prefix.split("/")[2:4] == [f"{RUN.now:%Y}", f"{RUN.now:%m-%d}"]
    assert int(second.name) == int(first.name) + 1  # job_counter, upstream's {now:%H.%M.%S}/{job_counter:03d}
    with pytest.raises(TypeError, match="unexpected keyword"):
        Experiment(prefix="a/b/c", dash_root=str(dash_root), colour="red")


def test_run_user_falls_back_to_the_login_name_when_no_variable_names_one(tmp_path):
    """A container or a batch job often sets no $USER: RUN.user (and the default prefix) then takes
    the process's login name from the password database, as `whoami` does."""
    import pwd

    env = {k: v for k, v in os.environ.items() if k not in ("ML_DASH_USER", "USER", "USERNAME", "ML_DASH_PREFIX")}
    code = "from ml_dash import RUN; print(RUN.user); print(RUN.prefix.split('/')[0])"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    name = pwd.getpwuid(os.getuid()).pw_name
    assert out.stdout.split() == [name, name]
    env["USER"] = "frank"  # a variable still wins
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["frank", "frank"]


def test_run_is_callable_and_has_upstreams_attributes(monkeypatch):
    monkeypatch.setenv("ML_DASH_USER", "dora")
    run = RUN()
    assert (
        run is RUN and run.user == "dora" and run.date == f"{RUN.now:%Y%m%d}" and run.datetime_str.startswith(run.date)
    )
    assert run.prefix.startswith("dora/scratch/")
    with pytest.raises(AttributeError):
        RUN(colour="red")


def test_run_prefix_of_a_script_outside_the_working_folders_project(tmp_path):
    """The default prefix comes from the running script and the project around it, every time:
    reading it once must not pin the working folder's project (``python -m pytest`` from a venv
    outside the checkout, a launcher installed elsewhere)."""
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    script = tmp_path / "tools" / "launch.py"
    script.parent.mkdir()
    script.write_text("from ml_dash import RUN\nprint(RUN.project)\nprint(RUN.prefix)\nprint(RUN.prefix)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["ML_DASH_USER"] = "erin"
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=project / "sub", env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    cwd_project, first, second = proc.stdout.split()
    assert first == second and first.startswith("erin/scratch/") and first.split("/")[4] == "tools"
    assert cwd_project == "proj"  # with no entry set, RUN.project is the working folder's project


def test_file_info_is_a_mapping(dash_root):
    with Experiment(prefix="a/p/fileinfo", dash_root=str(dash_root)).run as exp:
        info = exp.files("models").save(b"weights", name="w.bin")
        listed = exp.files("models").list()
    assert isinstance(info, FileInfo) and info["sizeBytes"] == 7 == info.size and "checksum" in info
    d = dict(info)
    assert d["filename"] == "w.bin" and d["path"] == "/models" and set(d) >= {"id", "contentType", "uploadedAt"}
    assert list(info) == list(d) and len(info) == len(d) and info.get("nope") is None
    assert listed == [info] and info == d
    assert json.loads(json.dumps(dict(info)))["checksum"] == info.checksum
