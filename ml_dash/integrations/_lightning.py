"""The PyTorch Lightning logger's behaviour, shared by ``lightning.pytorch`` and ``pytorch_lightning``.

The two packages have distinct ``Logger`` base classes, so each public module builds its class
from this mixin and its own base; nothing here imports either package.
"""

from __future__ import annotations

import os

from ._common import HookRun, group_fields, plain_params, status_of_current_exception

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional, Set, Tuple, Union

    from .._experiment import Experiment

__all__ = ["LoggerMethods"]


class LoggerMethods:
    """Sends a Lightning ``Trainer``'s metrics, hyperparameters, status and (optionally)
    checkpoints to an ml-dash experiment.

    ::

        from lightning.pytorch import Trainer
        from ml_dash.integrations.lightning import MlDashLogger

        trainer = Trainer(logger=MlDashLogger("alice/mnist/baseline"))

    **Names.** Lightning's own group separator, ``/``, names the metric: ``self.log("train/loss",
    ...)`` becomes field ``loss`` of metric ``train``, ``"val/acc/top1"`` field ``top1`` of metric
    ``val/acc``. Names without a ``/`` (``"val_loss"``, ``"lr-Adam"``) are fields of one metric,
    ``default_metric`` (``"metrics"``, like Lightning's ``CSVLogger`` and its ``metrics.csv``).
    Every row also holds ``step`` (the trainer's ``global_step``, i.e. optimizer steps) and, as
    Lightning adds it, ``epoch``.

    **Hyperparameters** (``save_hyperparameters()``, the datamodule's) go to ``exp.params``; a value
    the SDK cannot store (a class, a loss object) is stored as its ``str``.

    **Status.** ``finalize("success")`` (end of ``fit``, ``validate``, ``test``, ``predict``)
    marks COMPLETED, ``finalize("failed")`` marks FAILED with the exception, or CANCELLED after
    Ctrl-C. Only an experiment the logger started is ended: pass a running experiment as
    ``experiment=`` to keep its lifecycle yours. A later ``trainer.test()`` resumes the same prefix.

    **Ranks.** Only global rank 0 creates the experiment and writes; other ranks do nothing, so a
    DDP run is one experiment, not one per process.

    **Checkpoints** (``log_checkpoints``): ``False`` (default) uploads none; ``True`` uploads the
    best and the last checkpoint when ``fit`` ends successfully; ``"all"`` uploads each checkpoint
    file as ``ModelCheckpoint`` saves it. They go to the experiment's files under ``checkpoints/``
    with metadata ``monitor``, ``score``, ``best``. The file is copied when it is uploaded.

    **save()** does nothing: the experiment's background worker writes within
    ``ML_DASH_FLUSH_INTERVAL`` anyway, and Lightning calls ``save()`` after every ``log_metrics``.
    """

    #: Set by each public module: a function returning this process's global rank.
    _global_rank: Any = staticmethod(lambda: 0)

    def __init__(
        self,
        prefix: Optional[str] = None,
        *,
        experiment: Optional[Experiment] = None,
        log_checkpoints: Union[bool, str] = False,
        default_metric: str = "metrics",
        **experiment_kwargs: Any,
    ):
        super().__init__()
        if log_checkpoints not in (False, True, "all"):
            raise ValueError("log_checkpoints must be False, True or 'all'")
        self._run = HookRun("lightning", experiment, prefix, **experiment_kwargs)
        self._log_checkpoints = log_checkpoints
        self._default_metric = default_metric
        self._checkpoint_callback: Any = None
        self._uploaded: Set[Tuple[str, float]] = set()

    # -- identity (every rank, never creating the experiment) ---------------------------------------

    @property
    def name(self) -> str:
        """The experiment's ``owner/project``."""
        owner, project = self._run.prefix.split("/")[:2]
        return f"{owner}/{project}"

    @property
    def version(self) -> str:
        """The rest of the prefix (``folder/.../name``): with ``name``, where Lightning puts checkpoints."""
        return self._run.prefix.split("/", 2)[2]

    @property
    def prefix(self) -> str:
        return self._run.prefix

    @property
    def experiment(self) -> Any:
        """The running :class:`~ml_dash.Experiment` on rank 0 (started at first use); a do-nothing
        stand-in on other ranks."""
        if self._global_rank() != 0:
            return _Nothing()
        return self._run.get()

    # -- Lightning's calls ---------------------------------------------------------------------------

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if self._global_rank() != 0:
            return
        params = plain_params(params)
        if not isinstance(params, dict):
            params = {"hparams": params}
        if params:
            self._run.get().params.set(**params)

    def log_metrics(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        if self._global_rank() != 0 or not metrics:
            return
        exp = self._run.get()
        metrics = dict(metrics)
        extra: Dict[str, float] = {} if step is None else {"step": step}
        if "epoch" in metrics:
            extra["epoch"] = metrics.pop("epoch")
        for metric, fields in group_fields(metrics, self._default_metric).items():
            exp.metrics(metric).log(**{**extra, **fields})

    def save(self) -> None:
        """Nothing to do: the background worker writes within ``ML_DASH_FLUSH_INTERVAL``."""

    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if self._global_rank() != 0 or not self._log_checkpoints:
            return
        self._checkpoint_callback = checkpoint_callback
        if self._log_checkpoints == "all":
            self._upload_checkpoints(checkpoint_callback, everything=True)

    def finalize(self, status: str) -> None:
        if self._global_rank() != 0 or not self._run.started:
            return
        if status == "success":
            if self._log_checkpoints is True and self._checkpoint_callback is not None:
                self._upload_checkpoints(self._checkpoint_callback, everything=False)
            self._run.end("COMPLETED")
        else:
            failed, reason = status_of_current_exception()
            self._run.end(failed, reason or f"Lightning finalize({status!r})")

    # -- checkpoints ---------------------------------------------------------------------------------

    def _upload_checkpoints(self, callback: Any, everything: bool) -> None:
        best = getattr(callback, "best_model_path", "") or ""
        paths = [best, getattr(callback, "last_model_path", "") or ""]
        scores: Dict[str, Any] = {}
        if everything:
            scores = {str(k): v for k, v in (getattr(callback, "best_k_models", None) or {}).items()}
            paths += list(scores)
        files = self._run.get().files("checkpoints")
        for path in dict.fromkeys(p for p in paths if p):
            if not os.path.isfile(path):
                continue
            key = (path, os.path.getmtime(path))
            if key in self._uploaded:
                continue
            score = scores.get(path, getattr(callback, "best_model_score", None) if path == best else None)
            files.save(
                path,
                metadata={
                    "monitor": getattr(callback, "monitor", None),
                    "score": plain_params(score),
                    "best": path == best,
                },
            )
            self._uploaded.add(key)

    def __getstate__(self) -> Dict[str, Any]:
        # A spawned process (ddp_spawn) gets the settings, not the parent's running experiment.
        state = dict(self.__dict__)
        state["_checkpoint_callback"] = None  # a weak proxy Lightning handed us: not picklable
        return state


class _Nothing:
    """What ``logger.experiment`` is on ranks other than 0: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> "_Nothing":
        return self
