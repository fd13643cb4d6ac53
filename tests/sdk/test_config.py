"""Configuration comes from ML_DASH_* variables in one place; explicit arguments win."""

from __future__ import annotations

import pytest

from ml_dash import Experiment, load_config


def test_environment_is_read_and_typed():
    cfg = load_config(
        {
            "ML_DASH_ROOT": "/data/dash",
            "ML_DASH_URL": "http://h:1",
            "ML_DASH_OFFLINE": "yes",
            "ML_DASH_BATCH_EVENTS": "123",
            "ML_DASH_FLUSH_INTERVAL": "0.25",
            "USER": "bob",
            "ML_DASH_TOKEN": "secret-token",
        }
    )
    assert (cfg.dash_root, cfg.dash_url, cfg.offline, cfg.batch_events, cfg.flush_interval, cfg.user) == (
        "/data/dash",
        "http://h:1",
        True,
        123,
        0.25,
        "bob",
    )
    assert "secret-token" not in repr(cfg)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ValueError, match="ML_DASH_BATCH_EVENTS"):
        load_config({"ML_DASH_BATCH_EVENTS": "many"})
    with pytest.raises(ValueError, match="ML_DASH_DROP_POLICY"):
        load_config({"ML_DASH_DROP_POLICY": "maybe"})


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        load_config({}).dash_root = "x"


def test_explicit_arguments_win_and_dash_root_means_local(monkeypatch, tmp_path):
    monkeypatch.setenv("ML_DASH_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("ML_DASH_ROOT", str(tmp_path / "from-env"))
    assert Experiment(prefix="a/b/c").mode == "remote"
    exp = Experiment(prefix="a/b/c", dash_root=str(tmp_path / "explicit"))
    assert exp.mode == "local" and exp.config.dash_root == str(tmp_path / "explicit")
    with exp.run:
        exp.log("here")
    assert (tmp_path / "explicit/a/b/c/logs/logs.jsonl").is_file()
    assert not (tmp_path / "from-env").exists()


def test_duck_typed_0d_tensor_values(dash_root):
    class ZeroDim:  # the shape of a torch/jax 0-d tensor: .item(), .ndim == 0, .shape == ()
        ndim, shape = 0, ()

        def __init__(self, v):
            self.v = v

        def item(self):
            return self.v

    class Vector(ZeroDim):
        ndim, shape = 1, (3,)

    from ml_dash import InvalidValue

    with Experiment(prefix="a/b/t", dash_root=str(dash_root)).run as exp:
        exp.metrics("m").log(loss=ZeroDim(0.25), step=ZeroDim(3))
        with pytest.raises(InvalidValue, match="Vector"):
            exp.metrics("m").log(loss=Vector(1.0))
        (row,) = exp.metrics("m").read()
    assert row["data"]["loss"] == 0.25 and row["data"]["step"] == 3
