"""Keras 3: ``MlDashCallback``, a ``keras.callbacks.Callback`` (any backend: torch, JAX, TensorFlow).

::

    from ml_dash.integrations.keras import MlDashCallback

    model.fit(x, y, epochs=10, callbacks=[MlDashCallback("alice/mnist/keras")])

How names, steps, parameters and status map: see :class:`MlDashCallback`.
"""

from __future__ import annotations

import keras

from ._common import HookRun, plain_params

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

    from .._experiment import Experiment

__all__ = ["MlDashCallback"]


class MlDashCallback(keras.callbacks.Callback):
    """Sends a Keras ``fit``'s metrics, parameters and status to an ml-dash experiment.

    **Names** are Keras' own, as ``History`` and ``CSVLogger`` show them, in two metrics:

    * ``epoch``: one row per epoch with the epoch's logs as Keras names them (``loss``,
      ``accuracy``, ``val_loss``, ``val_accuracy``, ``learning_rate``, ...), plus ``epoch``
      (0-based, as Keras counts) and ``step`` (batches trained so far);
    * ``batch``: every ``batch_every`` training batches (1 by default; 0 turns batch rows off), the
      batch's logs (Keras reports running means over the epoch so far), plus ``step`` (batches
      trained so far, counted across epochs, from 1) and ``epoch``.

    **Parameters** at ``on_train_begin``: ``epochs`` and ``steps_per_epoch`` of the ``fit`` call,
    the optimizer's config under ``optimizer.`` (``optimizer.learning_rate``, ...), and
    ``model.name`` and ``model.num_parameters``.

    **Status**: ``on_train_end`` marks COMPLETED an experiment this callback started (pass a
    running one as ``experiment=`` to keep its status yours). Keras tells callbacks nothing when
    ``fit`` raises; the process-wide hooks then mark the run FAILED when the exception ends the
    program. Another ``fit`` with the same callback resumes the same prefix.

    ``prefix`` defaults to ``ML_DASH_PREFIX``, else ``<user>/<project folder>/keras-<time>``.
    Keyword arguments other than ``experiment`` and ``batch_every`` go to :class:`~ml_dash.Experiment`.
    """

    def __init__(
        self,
        prefix: Optional[str] = None,
        *,
        experiment: Optional[Experiment] = None,
        batch_every: int = 1,
        **experiment_kwargs: Any,
    ):
        super().__init__()
        if not isinstance(batch_every, int) or batch_every < 0:
            raise ValueError("batch_every must be an int >= 0 (0: no batch rows)")
        self._run = HookRun("keras", experiment, prefix, **experiment_kwargs)
        self._batch_every = batch_every
        self._step = 0
        self._epoch = 0
        self._batch_metric: Any = None
        self._epoch_metric: Any = None

    @property
    def experiment(self) -> Experiment:
        """The experiment written to (started at the first write)."""
        return self._run.get()

    def on_train_begin(self, logs: Optional[Dict[str, Any]] = None) -> None:
        exp = self._run.get()
        self._batch_metric = exp.metrics("batch")
        self._epoch_metric = exp.metrics("epoch")
        fit = self.params or {}
        params: Dict[str, Any] = {"epochs": fit.get("epochs"), "steps_per_epoch": fit.get("steps")}
        model = self.model
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None:
            try:
                params["optimizer"] = plain_params(optimizer.get_config())
            except Exception:  # a custom optimizer without a config
                params["optimizer"] = {"name": type(optimizer).__name__}
        if model is not None:
            params["model"] = {"name": model.name, "num_parameters": int(model.count_params())}
        exp.params.set(**params)

    def on_epoch_begin(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        self._step += 1
        every = self._batch_every
        if every and logs and self._step % every == 0:
            self._batch_metric.log(**{**_plain(logs), "step": self._step, "epoch": self._epoch})

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if logs:
            self._epoch_metric.log(**{**_plain(logs), "epoch": epoch, "step": self._step})

    def on_train_end(self, logs: Optional[Dict[str, Any]] = None) -> None:
        self._run.end("COMPLETED")


def _plain(logs: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for key, value in logs.items():
        out[key] = value if type(value) in (float, int) else plain_params(value)
    return out
