"""One training run of a tiny model in one framework with one logger, timed step by step.

Runs in the interpreter that has the frameworks (``python -m benchmarks.integrations --python``).
A timing callback notes the wall clock and the training thread's CPU time at the end of every
training step; a step's time is the gap between two such notes, so it holds everything the framework does between them, the
loggers' work included (Lightning calls ``log_metrics`` after the step's callbacks; the Trainer
calls ``on_log`` before ``on_step_end``; Keras runs its callbacks in order).
"""

from __future__ import annotations

import os
import time
from typing import Any, Dict, List

#: Each logger's variant of each framework: none, the framework's own file logger, ours.
VARIANTS = {
    "lightning": ("none", "csv", "ml-dash"),
    "transformers": ("none", "tensorboard", "ml-dash"),
    "keras": ("none", "csv", "ml-dash"),
}


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    """args: framework, variant, steps, workdir, prefix."""
    os.makedirs(args["workdir"], exist_ok=True)
    os.chdir(args["workdir"])
    t0 = time.perf_counter()
    import torch

    # One intra-op thread: the tiny models gain nothing from more, and an idle pool's spinning
    # would count as the training thread's CPU time on a busy machine.
    torch.set_num_threads(1)
    fn = {"lightning": _lightning, "transformers": _transformers, "keras": _keras}[args["framework"]]
    marks: List[tuple] = []
    fit_s, versions = fn(args, marks)
    wall = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    cpu = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    return {
        "steps_timed": len(wall),
        "step_s": wall,
        "step_cpu_s": cpu,
        "train_s": marks[-1][0] - marks[0][0] if marks else None,
        "fit_s": fit_s,
        "process_s": time.perf_counter() - t0,
        "versions": versions,
    }


def _mark() -> tuple:
    """Wall time, and CPU time of this (the training) thread: the second is what a hook's work in
    the training thread costs, whatever else the machine is doing."""
    return time.perf_counter(), time.thread_time()


def _lightning(args: Dict[str, Any], marks: List[tuple]):
    import lightning.pytorch as pl
    import torch

    class Tiny(pl.LightningModule):
        def __init__(self, lr: float = 0.05, hidden: int = 16):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("train/loss", loss)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    class Marks(pl.Callback):
        def on_train_batch_end(self, *a, **k):
            marks.append(_mark())

    n = int(args["steps"])
    torch.manual_seed(0)
    x = torch.randn(n * 8, 8)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True)), batch_size=8)
    variant = args["variant"]
    if variant == "none":
        logger: Any = False
    elif variant == "csv":
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(save_dir="csv", name="tiny", version=0)
    else:
        from ml_dash.integrations.lightning import MlDashLogger

        logger = MlDashLogger(args["prefix"], dash_root=".dash")
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=logger,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        callbacks=[Marks()],
    )
    t = time.perf_counter()
    trainer.fit(Tiny(), data)
    return time.perf_counter() - t, {"lightning": pl.__version__, "torch": torch.__version__}


def _transformers(args: Dict[str, Any], marks: List[tuple]):
    import torch
    import transformers

    class Marks(transformers.TrainerCallback):
        def on_step_end(self, *a, **k):
            marks.append(_mark())

    n = int(args["steps"])
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 64, (n * 4, 8), generator=g)
    train = [{"input_ids": row, "labels": int(row[0] % 2)} for row in ids]
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
    )
    model = transformers.BertForSequenceClassification(config)
    variant = args["variant"]
    callbacks: List[Any] = [Marks()]
    if variant == "ml-dash":
        from ml_dash.integrations.transformers import MlDashCallback

        callbacks.append(MlDashCallback(args["prefix"], dash_root=".dash"))
    targs = transformers.TrainingArguments(
        output_dir="hf-out",
        num_train_epochs=1,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        report_to="tensorboard" if variant == "tensorboard" else "none",
    )
    trainer = transformers.Trainer(model=model, args=targs, train_dataset=train, callbacks=callbacks)
    trainer.remove_callback(transformers.trainer_callback.PrinterCallback)  # a print per step in every variant
    t = time.perf_counter()
    trainer.train()
    return time.perf_counter() - t, {"transformers": transformers.__version__, "torch": torch.__version__}


def _keras(args: Dict[str, Any], marks: List[tuple]):
    import keras
    import numpy as np

    class Marks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            marks.append(_mark())

    n = int(args["steps"])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n * 8, 8)).astype("float32")
    y = (x.sum(axis=1) > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")]
    )
    model.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    variant = args["variant"]
    callbacks: List[Any] = []
    if variant == "csv":
        callbacks.append(keras.callbacks.CSVLogger("keras.csv"))
    elif variant == "ml-dash":
        from ml_dash.integrations.keras import MlDashCallback

        callbacks.append(MlDashCallback(args["prefix"], dash_root=".dash"))
    callbacks.append(Marks())  # last: a step's time then includes the loggers before it
    t = time.perf_counter()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=callbacks)
    return time.perf_counter() - t, {"keras": keras.__version__, "backend": keras.backend.backend()}


# -- the hook's own call, driven directly ------------------------------------------------------------


def calls(args: Dict[str, Any]) -> Dict[str, Any]:
    """args: framework, variant ("base": the framework's do-nothing hook; its file logger; "ml-dash"),
    n, workdir, prefix. The call the framework makes once per logged step, n times, each timed."""
    os.makedirs(args["workdir"], exist_ok=True)
    os.chdir(args["workdir"])
    n, framework, variant = int(args["n"]), args["framework"], args["variant"]
    call, close = {"lightning": _lightning_call, "transformers": _transformers_call, "keras": _keras_call}[framework](
        variant, args["prefix"], n
    )
    pc = time.perf_counter_ns
    times = [0] * n
    cpu0 = time.thread_time()
    for i in range(n):
        t = pc()
        call(i)
        times[i] = pc() - t
    cpu = time.thread_time() - cpu0
    t = time.perf_counter()
    close()
    close_s = time.perf_counter() - t
    empty = [0] * 1000
    for i in range(1000):  # the timer's own cost, to subtract
        t = pc()
        empty[i] = pc() - t
    times.sort()
    timer = sorted(empty)[500]
    return {
        "median_us": (times[n // 2] - timer) / 1e3,
        "p99_us": (times[int(n * 0.99)] - timer) / 1e3,
        "mean_us": (sum(times) / n - timer) / 1e3,
        "thread_cpu_per_call_us": cpu / n * 1e6,
        "close_s": close_s,
        "timer_us": timer / 1e3,
    }


def _lightning_call(variant: str, prefix: str, n: int):
    if variant == "base":
        from lightning.pytorch.loggers.logger import DummyLogger

        logger: Any = DummyLogger()
    elif variant == "csv":
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(save_dir="csv", name="tiny", version=0)
    else:
        from ml_dash.integrations.lightning import MlDashLogger

        logger = MlDashLogger(prefix, dash_root=".dash")
    logger.log_hyperparams({"lr": 0.05, "hidden": 16})

    def call(i: int) -> None:  # what Lightning's logger connector does per logged step
        logger.log_metrics({"train/loss": 0.5 + i * 1e-6, "epoch": 0}, step=i)
        logger.save()

    return call, lambda: logger.finalize("success")


def _transformers_call(variant: str, prefix: str, n: int):
    import transformers
    from transformers.trainer_callback import TrainerControl, TrainerState

    args = transformers.TrainingArguments(output_dir="hf-out", report_to="none", use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    if variant == "base":
        cb: Any = transformers.TrainerCallback()
    elif variant == "tensorboard":
        from transformers.integrations import TensorBoardCallback

        cb = TensorBoardCallback()
    else:
        from ml_dash.integrations.transformers import MlDashCallback

        cb = MlDashCallback(prefix, dash_root=".dash")
    cb.on_train_begin(args, state, control)

    def call(i: int) -> None:  # the Trainer's on_log per logged step
        state.global_step, state.epoch = i + 1, (i + 1) / n
        cb.on_log(
            args,
            state,
            control,
            logs={"loss": 0.5 + i * 1e-6, "grad_norm": 1.0, "learning_rate": 5e-5, "epoch": state.epoch},
        )

    return call, lambda: cb.on_train_end(args, state, control)


def _keras_call(variant: str, prefix: str, n: int):
    import keras

    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    if variant == "base":
        cb: Any = keras.callbacks.Callback()
    elif variant == "csv":
        cb = keras.callbacks.CSVLogger("keras.csv")
    else:
        from ml_dash.integrations.keras import MlDashCallback

        cb = MlDashCallback(prefix, dash_root=".dash")
    cb.set_model(model)
    cb.set_params({"epochs": 1, "steps": n, "verbose": 0})
    cb.on_train_begin()
    cb.on_epoch_begin(0)

    def call(i: int) -> None:  # Keras' on_train_batch_end per batch (CSVLogger's is its base no-op)
        cb.on_train_batch_end(i, {"loss": 0.5 + i * 1e-6, "accuracy": 0.75})

    def close() -> None:
        cb.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.75})
        cb.on_train_end()

    return call, close
