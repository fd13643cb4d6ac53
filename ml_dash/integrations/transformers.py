"""Hugging Face ``transformers``: ``MlDashCallback``, a ``TrainerCallback``.

::

    from transformers import Trainer, TrainingArguments
    from ml_dash.integrations.transformers import MlDashCallback

    args = TrainingArguments(output_dir="out", report_to="none")
    trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=[MlDashCallback("alice/glue/bert")])

**Why not** ``report_to="ml-dash"``: ``report_to`` accepts only the names in transformers' own table
of integrations (``INTEGRATION_TO_CALLBACK``); the library offers no way for a third party to add
one. Pass the callback in ``callbacks=`` instead (``Trainer.add_callback`` works too), and set
``report_to="none"`` unless you want the others as well.

How names, steps, parameters and status map: see :class:`MlDashCallback`.
"""

from __future__ import annotations

from transformers import TrainerCallback

from ._common import HookRun, plain_params

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

    from .._experiment import Experiment

__all__ = ["MlDashCallback"]

#: Prefixes the Trainer puts on evaluation and prediction metrics, and the metric each goes to.
PHASES = (("eval_", "eval"), ("test_", "test"), ("predict_", "predict"))


class MlDashCallback(TrainerCallback):
    """Sends a ``Trainer``'s hyperparameters, model config, logs and status to an ml-dash experiment.

    **Names**, following the ``train/``, ``eval/`` grouping the Trainer's users know from its other
    integrations: ``eval_loss`` becomes field ``loss`` of metric ``eval`` (``test_`` and
    ``predict_`` likewise); everything else the Trainer logs during training (``loss``,
    ``grad_norm``, ``learning_rate``) goes to metric ``train`` under its own name, and so does the
    summary ``train()`` logs at its end (``train_runtime``, ``train_loss``, ``total_flos``, ...).
    Every row holds ``step`` (``state.global_step``, optimizer steps) and ``epoch`` (fractional,
    as the Trainer reports it).

    **Parameters** at ``on_train_begin``: every ``TrainingArguments`` field (its
    ``to_sanitized_dict()``) at the top level (``learning_rate``, ``num_train_epochs``, ...), and
    the model's config under ``model.`` (``model.hidden_size``), with ``model.num_parameters``.

    **Status**: ``on_train_end`` marks COMPLETED an experiment this callback started (pass a
    running one as ``experiment=`` to keep its status yours). The Trainer tells callbacks nothing
    when training raises; the process-wide hooks then mark the run FAILED when the exception
    ends the program. An ``evaluate()`` after ``train()`` resumes the same prefix.

    **Ranks**: only the world's process zero writes.

    ``prefix`` defaults to ``ML_DASH_PREFIX``, else ``<user>/<project folder>/transformers-<time>``.
    Keyword arguments other than ``experiment`` go to :class:`~ml_dash.Experiment`.
    """

    def __init__(
        self, prefix: Optional[str] = None, *, experiment: Optional[Experiment] = None, **experiment_kwargs: Any
    ):
        self._run = HookRun("transformers", experiment, prefix, **experiment_kwargs)

    @property
    def experiment(self) -> Experiment:
        """The experiment written to (started at the first write)."""
        return self._run.get()

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        params: Dict[str, Any] = plain_params(args.to_sanitized_dict())
        config = getattr(model, "config", None)
        model_params: Dict[str, Any] = {}
        if config is not None and hasattr(config, "to_dict"):
            model_params.update(plain_params(config.to_dict()))
        if hasattr(model, "num_parameters"):
            model_params["num_parameters"] = model.num_parameters()
        if model_params:
            params["model"] = model_params
        self._run.get().params.set(**params)

    def on_log(self, args: Any, state: Any, control: Any, logs: Optional[Dict[str, Any]] = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        exp = self._run.get()
        extra: Dict[str, Any] = {"step": state.global_step}
        if state.epoch is not None:
            extra["epoch"] = state.epoch
        for metric, fields in _route(logs).items():
            exp.metrics(metric).log(**{**extra, **fields})

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._run.end("COMPLETED")


def _route(logs: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """``{"eval_loss": .., "loss": .., "epoch": ..}`` -> ``{"eval": {"loss": ..}, "train": {"loss": ..}}``;
    ``epoch`` is not routed (every row gets it). A value the SDK cannot store is stored as its str."""
    out: Dict[str, Dict[str, Any]] = {}
    for key, value in logs.items():
        if key == "epoch":
            continue
        if not isinstance(value, (int, float)):
            value = plain_params(value)
        metric, field = "train", key
        for prefix, phase in PHASES:
            if key.startswith(prefix):
                metric, field = phase, key[len(prefix) :]
                break
        out.setdefault(metric, {})[field] = value
    return out
