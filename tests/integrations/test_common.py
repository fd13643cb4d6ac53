"""What the framework hooks share, without any framework: hyperparameters made storable, names
grouped into metrics, and the experiment a hook owns (started, ended, resumed) or only borrows."""

from __future__ import annotations

import argparse
import enum
import math

import pytest

from ml_dash import Experiment, InvalidPrefix, load_config
from ml_dash.integrations._common import HookRun, default_prefix, group_fields, plain_params


class Color(enum.IntEnum):
    RED = 1


class Zero:  # the shape of a 0-d numpy/torch value
    ndim = 0

    def item(self):
        return 2.5


def test_plain_params_keeps_what_stores_and_strs_the_rest():
    ns = argparse.Namespace(lr=0.1, layers=[64, 64], act=math.sqrt, nested={1: "one", "t": (1, 2)})
    out = plain_params(
        {"ns": ns, "color": Color.RED, "x": Zero(), "s": {3}, "none": None, "long": "y" * 5000, "obj": object}
    )
    assert out["ns"]["lr"] == 0.1 and out["ns"]["layers"] == [64, 64]
    assert out["ns"]["act"] == "<built-in function sqrt>"
    assert out["ns"]["nested"] == {"1": "one", "t": [1, 2]}
    assert out["color"] == 1 and type(out["color"]) is int
    assert out["x"] == 2.5 and out["s"] == [3] and out["none"] is None
    assert out["long"] == "y" * 5000  # strings are the SDK's to bound, not ours
    assert out["obj"] == "<class 'object'>"


def test_plain_params_cuts_a_long_repr():
    class Big:
        def __str__(self):
            return "z" * 5000

    assert plain_params(Big()) == "z" * 1000 + "..."


def test_group_fields_by_the_last_separator():
    grouped = group_fields(
        {"train/loss": 1, "val/acc/top1": 2, "val_loss": 3, "/odd": 4, "trailing/": 5}, default="metrics"
    )
    assert grouped == {
        "train": {"loss": 1},
        "val/acc": {"top1": 2},
        "metrics": {"val_loss": 3, "/odd": 4, "trailing/": 5},
    }


def test_hook_owns_what_it_starts_ends_it_and_resumes_on_a_later_write(dash_root):
    run = HookRun("test", prefix="alice/hooks/owned", dash_root=str(dash_root))
    assert run.owned and not run.started
    run.get().metrics("m").log(x=1)
    run.end("COMPLETED")
    assert not run.started
    run.end("COMPLETED")  # twice is harmless
    again = run.get()  # a write after the end resumes the same prefix
    again.metrics("m").log(x=2)
    run.end("FAILED", "RuntimeError: late")
    exp = Experiment(prefix="alice/hooks/owned", dash_root=str(dash_root))
    assert [r["data"]["x"] for r in exp.metrics("m").read()] == [1, 2]
    info = exp.info()
    assert info["status"] == "FAILED" and info["status_reason"] == "RuntimeError: late"


def test_hook_never_ends_a_running_experiment_it_was_given(dash_root):
    with Experiment(prefix="alice/hooks/borrowed", dash_root=str(dash_root)).run as exp:
        run = HookRun("test", experiment=exp)
        assert not run.owned and run.get() is exp
        run.end("COMPLETED")
        assert exp.status == "RUNNING"


def test_bad_arguments_fail_before_training(dash_root):
    with pytest.raises(InvalidPrefix):
        HookRun("test", prefix="only", dash_root=str(dash_root))  # (owner/name is upstream's valid two-segment form)
    with Experiment(prefix="alice/hooks/x", dash_root=str(dash_root)).run as exp:
        with pytest.raises(ValueError, match="not both"):
            HookRun("test", experiment=exp, prefix="alice/hooks/y")


def test_default_prefix(monkeypatch):
    monkeypatch.setenv("ML_DASH_PREFIX", "alice/p/from-env")
    assert default_prefix("keras") == "alice/p/from-env"
    monkeypatch.delenv("ML_DASH_PREFIX")
    cfg = load_config({"USER": "bob"})
    owner, project, name = default_prefix("keras", cfg).split("/")
    assert owner == "bob" and project and name.startswith("keras-")
