"""Keras 3 (torch backend): a real ``fit`` of a tiny model on the CPU, read back from the store."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
from ._frameworks import require

keras = require("keras")
if not keras.__version__.startswith("3"):
    pytest.skip(f"keras {keras.__version__} is not Keras 3", allow_module_level=True)
np = require("numpy")

from ml_dash import Experiment  # noqa: E402
from ml_dash.integrations.keras import MlDashCallback  # noqa: E402

SAMPLES, BATCH, EPOCHS = 64, 16, 3
STEPS_PER_EPOCH = SAMPLES // BATCH


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1, activation="sigmoid")],
        name="tiny",
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, 4)).astype("float32")
    return x, (x.sum(axis=1) > 0).astype("float32")


def test_fit_writes_epoch_and_batch_metrics_params_and_status(dash_root):
    model = _model()
    x, y = _data()
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=EPOCHS,
        validation_data=_data(1),
        verbose=0,
        callbacks=[MlDashCallback("alice/keras/fit", dash_root=str(dash_root))],
    )

    exp = Experiment(prefix="alice/keras/fit", dash_root=str(dash_root))
    assert exp.info()["status"] == "COMPLETED"
    assert set(exp.metrics.names()) == {"batch", "epoch"}
    epochs = [r["data"] for r in exp.metrics("epoch").read()]
    assert [r["epoch"] for r in epochs] == list(range(EPOCHS))
    assert [r["step"] for r in epochs] == [STEPS_PER_EPOCH * (e + 1) for e in range(EPOCHS)]
    # The same numbers as Keras' own History, under the same names.
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert [r[name] for r in epochs] == pytest.approx(history.history[name]), name
    batches = [r["data"] for r in exp.metrics("batch").read()]
    assert [r["step"] for r in batches] == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    assert [r["epoch"] for r in batches] == [e for e in range(EPOCHS) for _ in range(STEPS_PER_EPOCH)]
    assert all({"loss", "accuracy"} <= set(r) for r in batches)
    # The last batch of an epoch reports the epoch's running mean: the epoch's training loss.
    last_of_epoch = [r["loss"] for r in batches if r["step"] % STEPS_PER_EPOCH == 0]
    assert last_of_epoch == pytest.approx([r["loss"] for r in epochs], rel=1e-5)

    params = exp.params.get()
    assert params["epochs"] == EPOCHS and params["steps_per_epoch"] == STEPS_PER_EPOCH
    assert params["optimizer.name"] == "adam" and params["optimizer.learning_rate"] == pytest.approx(0.01)
    assert params["model.name"] == "tiny" and params["model.num_parameters"] == model.count_params() == 4 * 8 + 8 + 9


def test_batch_every_thins_batch_rows_and_zero_turns_them_off(dash_root):
    x, y = _data()
    _model().fit(
        x,
        y,
        batch_size=BATCH,
        epochs=EPOCHS,
        verbose=0,
        callbacks=[MlDashCallback("alice/keras/every3", dash_root=str(dash_root), batch_every=3)],
    )
    _model().fit(
        x,
        y,
        batch_size=BATCH,
        epochs=EPOCHS,
        verbose=0,
        callbacks=[MlDashCallback("alice/keras/none", dash_root=str(dash_root), batch_every=0)],
    )
    every3 = Experiment(prefix="alice/keras/every3", dash_root=str(dash_root))
    assert [r["data"]["step"] for r in every3.metrics("batch").read()] == [3, 6, 9, 12]
    none = Experiment(prefix="alice/keras/none", dash_root=str(dash_root))
    assert none.metrics.names() == ["epoch"] and len(none.metrics("epoch").read()) == EPOCHS
    with pytest.raises(ValueError, match="batch_every"):
        MlDashCallback("alice/keras/bad", dash_root=str(dash_root), batch_every=-1)


def test_a_second_fit_resumes_and_steps_go_on(dash_root):
    model = _model()
    x, y = _data()
    cb = MlDashCallback("alice/keras/twice", dash_root=str(dash_root), batch_every=0)
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[cb])
    model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[cb])
    exp = Experiment(prefix="alice/keras/twice", dash_root=str(dash_root))
    assert exp.info()["status"] == "COMPLETED"
    assert [r["data"]["step"] for r in exp.metrics("epoch").read()] == [STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH]


def test_a_running_experiment_of_the_user_is_not_ended(dash_root):
    x, y = _data()
    with Experiment(prefix="alice/keras/mine", dash_root=str(dash_root)).run as exp:
        _model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[MlDashCallback(experiment=exp)])
        assert exp.status == "RUNNING"
    assert exp.info()["status"] == "COMPLETED" and len(exp.metrics("epoch").read()) == 1
