"""Bad input: a clear error at the call, and nothing else lost."""

from __future__ import annotations

import math

import pytest

from ml_dash import Experiment, ExperimentStateError, InvalidPrefix, InvalidValue, ValueTooLarge
from ml_dash._store import ExperimentReader


@pytest.mark.parametrize(
    "prefix, problem",
    [
        ("", "empty"),
        ("alice", "at least 2"),
        ("alice//name", "empty segment"),
        ("alice/project/../../etc", "'..'"),
        ("alice/./name", "'.'"),
        ("alice/project\\evil/name", "backslash"),
        ("/etc/passwd/x", "absolute"),
        ("alice/pro\x00ject/name", "control character"),
        ("alice/pro\nject/name", "control character"),
        ("alice/project/" + "x" * 300, "longer than"),
    ],
)
def test_invalid_prefix_names_the_problem(prefix, problem, dash_root):
    with pytest.raises(InvalidPrefix, match=problem):
        Experiment(prefix=prefix, dash_root=str(dash_root))
    assert not dash_root.exists()


def test_invalid_prefix_is_a_value_error():
    with pytest.raises(ValueError):
        Experiment(prefix="a")


def test_two_segment_prefix_is_upstreams_owner_name_in_local_mode_only(dash_root):
    exp = Experiment(prefix="alice/flush-demo", dash_root=str(dash_root))
    assert (exp.owner, exp.project, exp.name) == ("alice", "flush-demo", "flush-demo")
    with exp.run:
        exp.metrics("m").log(x=1)
    assert ExperimentReader(dash_root, "alice/flush-demo/x").paths.dir.parent == dash_root / "alice" / "flush-demo"
    assert (dash_root / "alice" / "flush-demo" / "metrics" / "m" / "data.jsonl").exists()
    with pytest.raises(InvalidPrefix, match="local mode only"):
        Experiment(prefix="alice/flush-demo", dash_url="http://127.0.0.1:9")


def test_prefix_parts(dash_root):
    exp = Experiment(prefix="alice/project/vision/resnet/run-1", dash_root=str(dash_root))
    assert (exp.owner, exp.project, exp.name, exp.folder) == ("alice", "project", "run-1", "vision/resnet")
    assert Experiment(prefix="alice/project/run/", dash_root=str(dash_root)).prefix == "alice/project/run"


def test_use_before_start_and_after_close(dash_root):
    exp = Experiment(prefix="a/b/c", dash_root=str(dash_root))
    for call in (
        lambda: exp.log("x"),
        lambda: exp.metrics("m").log(a=1),
        lambda: exp.params.set(a=1),
        lambda: exp.files.save(b"x", name="f"),
    ):
        with pytest.raises(ExperimentStateError, match="not started"):
            call()
    exp.run.start()
    exp.run.complete()
    with pytest.raises(ExperimentStateError, match="closed"):
        exp.metrics("m").log(a=1)
    with pytest.raises(ExperimentStateError):
        exp.run.complete()


def test_bad_values_raise_at_call_and_do_not_poison_the_batch(dash_root):
    class Opaque:
        pass

    with Experiment(prefix="a/b/c", dash_root=str(dash_root)).run as exp:
        m = exp.metrics("train")
        m.log(step=0, loss=1.0)
        with pytest.raises(InvalidValue, match=r"'bad'.*Opaque"):
            m.log(step=1, bad=Opaque())
        with pytest.raises(InvalidValue, match="keys must be str"):
            m.log(step=1, nested={1: 2})
        with pytest.raises(InvalidValue):
            exp.params.set(obj=object())
        with pytest.raises(InvalidValue):
            exp.log("msg", extra=Opaque())
        with pytest.raises(InvalidValue, match="message must be str"):
            exp.log(42)
        with pytest.raises(ValueError, match="unknown log level"):
            exp.log("x", level="loud")
        m.log(step=1, loss=0.5)
        m.log(step=2, big=2**80, nested={"big": -(2**70)})
    rows = ExperimentReader(dash_root, "a/b/c").metric_rows("train")
    assert [(r["index"], r["data"]["step"]) for r in rows] == [(0, 0), (1, 1), (2, 2)]
    assert rows[2]["data"]["big"] == str(2**80) and rows[2]["data"]["nested"] == {"big": str(-(2**70))}
    assert ExperimentReader(dash_root, "a/b/c").params() == {}


def test_huge_string_refused_with_limit_in_message(dash_root):
    with Experiment(prefix="a/b/c", dash_root=str(dash_root)).run as exp:
        with pytest.raises(ValueTooLarge, match="1,048,576"):
            exp.log("x" * (100 * 1024 * 1024))
        with pytest.raises(ValueTooLarge):
            exp.metrics("m").log(note="y" * (2 * 1024 * 1024))
        exp.log("small")
    assert [log["message"] for log in ExperimentReader(dash_root, "a/b/c").logs()] == ["small"]


def test_nonfinite_floats_are_strict_json_and_read_back(dash_root):
    with Experiment(prefix="a/b/c", dash_root=str(dash_root)).run as exp:
        exp.metrics("m").log(a=math.nan, b=math.inf, c=-math.inf, d=1.5)
        exp.params.set(p=math.inf)
    raw = (dash_root / "a/b/c/metrics/m/data.jsonl").read_text()
    assert '"a":"NaN"' in raw and '"b":"Infinity"' in raw and '"c":"-Infinity"' in raw
    import json

    json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-strict JSON literal {c}"))
    (row,) = ExperimentReader(dash_root, "a/b/c").metric_rows("m")
    assert math.isnan(row["data"]["a"]) and row["data"]["b"] == math.inf and row["data"]["c"] == -math.inf
    assert ExperimentReader(dash_root, "a/b/c").params() == {"p": math.inf}


def test_numpy_scalars_and_0d_arrays(dash_root):
    np = pytest.importorskip("numpy")
    with Experiment(prefix="a/b/c", dash_root=str(dash_root)).run as exp:
        exp.metrics("m").log(f32=np.float32(0.5), i64=np.int64(7), b=np.bool_(True), arr=np.array(2.5))
        with pytest.raises(InvalidValue):
            exp.metrics("m").log(vec=np.zeros(3))
    (row,) = ExperimentReader(dash_root, "a/b/c").metric_rows("m")
    assert row["data"]["f32"] == 0.5 and row["data"]["i64"] == 7 and row["data"]["b"] is True
    assert row["data"]["arr"] == 2.5


def test_metric_names_with_slash_become_folders_and_are_validated(dash_root):
    with Experiment(prefix="a/b/c", dash_root=str(dash_root)).run as exp:
        exp.metrics("train/loss").log(v=1.0)
        exp.metrics("train").log(v=2.0)
        for bad in ("../escape", "a/../../b", "x\\y", "None"):
            with pytest.raises(InvalidPrefix):
                exp.metrics(bad)
        assert sorted(exp.metrics.names()) == ["train", "train/loss"]
    assert (dash_root / "a/b/c/metrics/train/loss/data.jsonl").is_file()
    assert not (dash_root / "a/escape").exists()


def test_names_that_would_land_on_the_stores_own_files_are_refused_at_the_call(dash_root):
    """A metric ``x/data.jsonl`` beside a metric ``x`` would need ``data.jsonl`` to be a file and a
    folder at once: refused at the call (as the server refuses it), and nothing else is lost."""
    with Experiment(prefix="a/b/c", dash_root=str(dash_root)).run as exp:
        exp.metrics("x").log(v=1)
        for bad in ("x/data.jsonl", "y/metadata.json", "data.jsonl", "/None/"):
            with pytest.raises(InvalidPrefix, match="metric name"):
                exp.metrics(bad)
        for bad in (".files_metadata.json", "/.files_metadata.json/deeper"):
            with pytest.raises(InvalidPrefix, match="file listing"):
                exp.files(bad)
        exp.files("ok/.files_metadata.json").save_text("inside a folder it is an ordinary name", to="n.txt")
        exp.metrics("x").log(v=2)
        exp.log("after")
    r = ExperimentReader(dash_root, "a/b/c")
    assert [row["data"]["v"] for row in r.metric_rows("x")] == [1, 2]
    assert sorted(p.name for p in (dash_root / "a/b/c/metrics").iterdir()) == ["x"]
    assert [entry["path"] for entry in r.files()] == ["/ok/.files_metadata.json"]
    assert [line["message"] for line in r.logs()] == ["after"]


def test_log_levels_accept_stdlib_spellings(dash_root):
    with Experiment(prefix="a/b/c", dash_root=str(dash_root)).run as exp:
        exp.log("w", level="warning", epoch=3)
        exp.log("c", level="CRITICAL")
        exp.log("d", level="debug")
        assert [log["level"] for log in exp.logs.read()] == ["warn", "fatal", "debug"]
        assert [log["message"] for log in exp.logs.read(level="warning")] == ["w"]
        assert exp.logs.read()[0]["metadata"] == {"epoch": 3}
        assert "metadata" not in exp.logs.read()[1]
