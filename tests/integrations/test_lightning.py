"""PyTorch Lightning: a real ``fit`` of a tiny model on the CPU, read back from the store."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from ml_dash import Experiment

from ._frameworks import require

pl = require("lightning.pytorch")
torch = require("torch")

from ml_dash.integrations.lightning import MlDashLogger  # noqa: E402

STEPS_PER_EPOCH = 4  # 32 samples, batches of 8


class Tiny(pl.LightningModule):
    def __init__(self, lr: float = 0.1, hidden: int = 8, dtype=torch.float32, fail_at_step: int = -1):
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        self.loss_fn = torch.nn.MSELoss()
        self.fail_at_step = fail_at_step

    def training_step(self, batch, batch_idx):
        if self.global_step == self.fail_at_step:
            raise RuntimeError(f"boom at step {self.global_step}")
        x, y = batch
        loss = self.loss_fn(self.net(x), y)
        self.log("train/loss", loss)
        self.log("lr", 0.1)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = self.loss_fn(self.net(x), y)
        self.log("val_loss", loss)
        self.log("val/mae", (self.net(x) - y).abs().mean())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = x.sum(dim=1, keepdim=True)
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)


def _trainer(tmp_path, logger, epochs=2, **kwargs):
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_fit_writes_metrics_params_and_status(tmp_path, dash_root):
    logger = MlDashLogger("alice/lightning/fit", dash_root=str(dash_root))
    assert (logger.name, logger.version) == ("alice/lightning", "fit")
    _trainer(tmp_path, logger).fit(Tiny(), _loader(), _loader())

    exp = Experiment(prefix="alice/lightning/fit", dash_root=str(dash_root))
    assert exp.info()["status"] == "COMPLETED"
    assert set(exp.metrics.names()) == {"train", "val", "metrics"}
    train = [r["data"] for r in exp.metrics("train").read()]
    # One row per optimizer step, named by the part after the group separator.
    assert [r["step"] for r in train] == list(range(2 * STEPS_PER_EPOCH))
    assert [r["epoch"] for r in train] == [0] * STEPS_PER_EPOCH + [1] * STEPS_PER_EPOCH
    assert all(set(r) == {"loss", "step", "epoch", "_ts"} and r["loss"] >= 0 for r in train)
    # Names without the separator share the default metric: per-step "lr", per-epoch "val_loss".
    flat = [r["data"] for r in exp.metrics("metrics").read()]
    assert [r["lr"] for r in flat if "lr" in r] == [pytest.approx(0.1)] * (2 * STEPS_PER_EPOCH)
    val_loss = [r for r in flat if "val_loss" in r]
    assert [(r["epoch"], r["step"]) for r in val_loss] == [(0, STEPS_PER_EPOCH - 1), (1, 2 * STEPS_PER_EPOCH - 1)]
    val = [r["data"] for r in exp.metrics("val").read()]
    assert [r["epoch"] for r in val] == [0, 1] and all(r["mae"] >= 0 for r in val)
    params = exp.params.get()
    assert params["lr"] == 0.1 and params["hidden"] == 8 and params["fail_at_step"] == -1
    assert params["dtype"] == "torch.float32"  # an object is stored by its str; the rest is not lost


def test_failure_marks_failed_with_the_exception(tmp_path, dash_root):
    logger = MlDashLogger("alice/lightning/fails", dash_root=str(dash_root))
    with pytest.raises(RuntimeError, match="boom"):
        _trainer(tmp_path, logger).fit(Tiny(fail_at_step=3), _loader())
    info = Experiment(prefix="alice/lightning/fails", dash_root=str(dash_root)).info()
    assert info["status"] == "FAILED" and "RuntimeError: boom at step 3" in info["status_reason"]
    rows = Experiment(prefix="alice/lightning/fails", dash_root=str(dash_root)).metrics("train").read()
    assert [r["data"]["step"] for r in rows] == [0, 1, 2]


def test_a_running_experiment_of_the_user_is_not_ended(tmp_path, dash_root):
    with Experiment(prefix="alice/lightning/mine", dash_root=str(dash_root)).run as exp:
        _trainer(tmp_path, MlDashLogger(experiment=exp), epochs=1).fit(Tiny(), _loader())
        assert exp.status == "RUNNING"
        exp.metrics("after").log(x=1.0)
    assert exp.info()["status"] == "COMPLETED"
    assert len(exp.metrics("train").read()) == STEPS_PER_EPOCH and len(exp.metrics("after").read()) == 1


def test_test_after_fit_resumes_the_same_experiment(tmp_path, dash_root):
    logger = MlDashLogger("alice/lightning/then-test", dash_root=str(dash_root))
    trainer = _trainer(tmp_path, logger, epochs=1)
    model = Tiny()
    trainer.fit(model, _loader())
    trainer.validate(model, _loader())
    exp = Experiment(prefix="alice/lightning/then-test", dash_root=str(dash_root))
    assert exp.info()["status"] == "COMPLETED"
    assert len(exp.metrics("train").read()) == STEPS_PER_EPOCH
    assert [r["data"]["step"] for r in exp.metrics("val").read()] == [STEPS_PER_EPOCH]


@pytest.mark.parametrize("mode, expected", [(True, {"best"}), ("all", {"epoch=0", "epoch=1"})])
def test_checkpoints_uploaded_as_files(tmp_path, dash_root, mode, expected):
    from lightning.pytorch.callbacks import ModelCheckpoint

    logger = MlDashLogger("alice/lightning/ckpt", dash_root=str(dash_root), log_checkpoints=mode)
    ckpt = ModelCheckpoint(monitor="val_loss", save_top_k=2, filename="{epoch}")
    _trainer(tmp_path, logger, callbacks=[ckpt]).fit(Tiny(), _loader(), _loader())
    files = Experiment(prefix="alice/lightning/ckpt", dash_root=str(dash_root)).files("checkpoints").list()
    best = [f for f in files if f.metadata["best"]]
    assert len(best) >= 1 and best[-1].filename == ckpt.best_model_path.rsplit("/", 1)[1]
    assert all(f.metadata["monitor"] == "val_loss" and f.size > 0 for f in files)
    names = {f.filename.removesuffix(".ckpt") for f in files}
    if mode is True:
        assert len(files) == 1
    else:
        assert names == expected


DDP_SCRIPT = """
import torch, lightning.pytorch as pl
from tests.integrations.test_lightning import Tiny, _loader
from ml_dash.integrations.lightning import MlDashLogger
logger = MlDashLogger("alice/lightning/ddp", dash_root=r"{root}")
trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp", logger=logger, log_every_n_steps=1,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=r"{tmp}")
trainer.fit(Tiny(), _loader())
print("rank", trainer.global_rank, "done")
"""


def test_ddp_two_processes_write_one_experiment_from_rank_zero(tmp_path, dash_root):
    """A real two-process DDP run (gloo on the CPU): Lightning starts the second rank itself."""
    repo = pathlib.Path(__file__).resolve().parents[2]
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT.format(root=dash_root, tmp=tmp_path))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["PYTHONPATH"] = str(repo)
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(line for line in proc.stdout.splitlines() if line.startswith("rank")) == [
        "rank 0 done",
        "rank 1 done",
    ]
    exp = Experiment(prefix="alice/lightning/ddp", dash_root=str(dash_root))
    # 32 samples over 2 ranks: 2 batches of 8 per rank per epoch; only rank 0 wrote, once per step.
    assert [r["data"]["step"] for r in exp.metrics("train").read()] == [0, 1]
    assert exp.info()["status"] == "COMPLETED"
    assert exp.params.get()["hidden"] == 8


def test_the_older_pytorch_lightning_package(tmp_path, dash_root):
    ptl = require("pytorch_lightning")
    from ml_dash.integrations.pytorch_lightning import MlDashLogger as PtlLogger

    class Old(ptl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(4, 1)

        def training_step(self, batch, batch_idx):
            loss = torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    logger = PtlLogger("alice/lightning/ptl", dash_root=str(dash_root))
    ptl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=logger,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    ).fit(Old(), _loader())
    exp = Experiment(prefix="alice/lightning/ptl", dash_root=str(dash_root))
    assert exp.info()["status"] == "COMPLETED"
    assert [r["data"]["step"] for r in exp.metrics("train").read()] == list(range(STEPS_PER_EPOCH))
