"""Hugging Face transformers: a real ``Trainer.train`` of a tiny config-built model on the CPU,
offline (no weights or data from a hub), read back from the store."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub, even by accident
from ._frameworks import require

transformers = require("transformers")
torch = require("torch")
require("accelerate")  # the Trainer needs it

from ml_dash import Experiment  # noqa: E402
from ml_dash.integrations.transformers import MlDashCallback  # noqa: E402

SAMPLES, BATCH, EPOCHS = 32, 8, 2
STEPS = SAMPLES // BATCH * EPOCHS


class Pairs(torch.utils.data.Dataset):
    """Random token sequences whose label is whether the first token is even."""

    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 50, (n, 6), generator=g)

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        ids = self.ids[i]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": int(ids[0] % 2)}


def _model():
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


def _trainer(tmp_path, callback, **overrides):
    args = dict(
        output_dir=str(tmp_path / "out"),
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=BATCH,
        learning_rate=5e-3,
        logging_steps=1,
        eval_strategy="epoch",
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    args.update(overrides)
    return transformers.Trainer(
        model=_model(),
        args=transformers.TrainingArguments(**args),
        train_dataset=Pairs(SAMPLES, 0),
        eval_dataset=Pairs(16, 1),
        callbacks=[callback],
    )


def test_train_writes_metrics_params_model_config_and_status(tmp_path, dash_root):
    trainer = _trainer(tmp_path, MlDashCallback("alice/hf/train", dash_root=str(dash_root)))
    trainer.train()

    exp = Experiment(prefix="alice/hf/train", dash_root=str(dash_root))
    assert exp.info()["status"] == "COMPLETED"
    assert set(exp.metrics.names()) == {"train", "eval"}
    train = [r["data"] for r in exp.metrics("train").read()]
    per_step = [r for r in train if "loss" in r]
    assert [r["step"] for r in per_step] == list(range(1, STEPS + 1))
    assert all({"loss", "learning_rate", "grad_norm", "epoch", "step"} <= set(r) for r in per_step)
    assert per_step[-1]["epoch"] == pytest.approx(EPOCHS)
    (summary,) = [r for r in train if "train_runtime" in r]
    assert summary["step"] == STEPS and summary["train_loss"] > 0 and "total_flos" in summary
    evals = [r["data"] for r in exp.metrics("eval").read()]
    assert [(r["step"], r["epoch"]) for r in evals] == [(STEPS // 2, 1.0), (STEPS, 2.0)]
    assert all(r["loss"] > 0 and "runtime" in r for r in evals)

    params = exp.params.get()
    assert params["learning_rate"] == 5e-3 and params["num_train_epochs"] == EPOCHS
    assert params["per_device_train_batch_size"] == BATCH
    assert params["model.hidden_size"] == 16 and params["model.model_type"] == "bert"
    assert params["model.num_parameters"] == trainer.model.num_parameters()
    assert params["model.id2label.0"] == "LABEL_0"  # int keys of the config stored as str


def test_evaluate_after_train_resumes_the_same_experiment(tmp_path, dash_root):
    cb = MlDashCallback("alice/hf/then-eval", dash_root=str(dash_root))
    trainer = _trainer(tmp_path, cb, eval_strategy="no")
    trainer.train()
    assert Experiment(prefix="alice/hf/then-eval", dash_root=str(dash_root)).info()["status"] == "COMPLETED"
    metrics = trainer.evaluate()
    exp = cb.experiment  # resumed by the evaluation's log; the process's exit would mark it COMPLETED
    assert exp.status == "RUNNING"
    (row,) = [r["data"] for r in exp.metrics("eval").read()]
    assert row["loss"] == pytest.approx(metrics["eval_loss"]) and row["step"] == STEPS
    assert len([r for r in exp.metrics("train").read() if "loss" in r["data"]]) == STEPS
    exp.run.complete()


def test_a_running_experiment_of_the_user_is_not_ended(tmp_path, dash_root):
    with Experiment(prefix="alice/hf/mine", dash_root=str(dash_root)).run as exp:
        _trainer(tmp_path, MlDashCallback(experiment=exp), num_train_epochs=1).train()
        assert exp.status == "RUNNING"
    assert exp.info()["status"] == "COMPLETED"
    assert len([r for r in exp.metrics("train").read() if "loss" in r["data"]]) == STEPS // EPOCHS


def test_report_to_cannot_name_a_third_party_integration(tmp_path, dash_root):
    """The documented reason for ``callbacks=``: transformers refuses names outside its own table."""
    with pytest.raises(ValueError, match="not supported"):
        _trainer(tmp_path, MlDashCallback("alice/hf/report-to", dash_root=str(dash_root)), report_to="ml-dash")


def test_prefix_from_the_environment(tmp_path, dash_root, monkeypatch):
    monkeypatch.setenv("ML_DASH_PREFIX", "alice/hf/from-env")
    cb = MlDashCallback(dash_root=str(dash_root))
    assert cb.experiment.prefix == "alice/hf/from-env"
    cb.experiment.run.complete()
