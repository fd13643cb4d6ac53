"""What every framework hook shares: the experiment it writes to, and turning a framework's
hyperparameters into values the SDK stores.

No framework is imported here.
"""

from __future__ import annotations

import sys

from .._config import load_config
from .._experiment import Experiment

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Dict, Optional

__all__ = ["HookRun", "plain_params", "group_fields", "default_prefix", "status_of_current_exception"]

#: Longest text kept for a hyperparameter that is stored by its ``repr`` (a model object, say).
MAX_REPR = 1000


class HookRun:
    """The experiment a hook writes to.

    * ``experiment=`` a running :class:`~ml_dash.Experiment`: the hook writes to it and never ends
      it; the user's code decides its status.
    * ``experiment=`` one not started yet, or ``prefix=`` (with any ``Experiment`` keyword
      arguments), or neither: the hook starts it at first use and ends it when the framework
      says training ended. A write after that (an evaluation after training, say) opens the same
      prefix again, which resumes it; leaving the process then marks it COMPLETED.
    """

    def __init__(
        self,
        framework: str,
        experiment: "Optional[Experiment]" = None,
        prefix: "Optional[str]" = None,
        **experiment_kwargs: Any,
    ):
        if experiment is not None and (prefix is not None or experiment_kwargs):
            raise ValueError("give either experiment= or prefix= (with Experiment arguments), not both")
        if experiment is None:
            # Built now, not at the first step: a bad prefix or argument fails before training starts.
            # Nothing is written and no thread starts until the run starts.
            experiment = Experiment(
                prefix or default_prefix(framework, experiment_kwargs.get("config")), **experiment_kwargs
            )
        self._exp = experiment
        self.owned = experiment.status != "RUNNING"
        self.prefix = experiment.prefix

    def __getstate__(self) -> Dict[str, Any]:
        # A spawned process (ddp_spawn) gets where to write, not the parent's running experiment.
        return {"prefix": self.prefix, "config": self._exp.config, "owned": self.owned}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self._exp = Experiment(state["prefix"], config=state["config"])
        self.prefix = state["prefix"]
        self.owned = state["owned"]

    @property
    def started(self) -> bool:
        return self._exp.status == "RUNNING"

    def get(self) -> Experiment:
        """The running experiment, started (or resumed) here when this hook owns it."""
        exp = self._exp
        if exp.status == "RUNNING" or not self.owned:
            return exp  # a user's experiment they ended is not reopened behind their back
        if exp.status is not None:  # ended by us earlier: a new handle on the prefix resumes it
            exp = self._exp = Experiment(exp.prefix, config=exp.config)
        exp.run.start()
        return exp

    def end(self, status: str, reason: "Optional[str]" = None) -> None:
        """Record ``status`` and close, when this hook owns the experiment and it is running."""
        if not (self.owned and self.started):
            return
        if status == "COMPLETED":
            self._exp.run.complete()
        elif status == "CANCELLED":
            self._exp.run.cancel(reason)
        else:
            self._exp.run.fail(reason)


def default_prefix(framework: str, config: Any = None) -> str:
    """``ML_DASH_PREFIX``, else ``<user>/<project folder>/<framework>-<time ml_dash was imported>``."""
    cfg = config or load_config()
    if cfg.prefix:
        return cfg.prefix
    from .._run_info import RUN

    return f"{cfg.user}/{RUN.project}/{framework}-{RUN.now:%Y%m%d-%H%M%S}"


def status_of_current_exception() -> tuple[Any, ...]:
    """``(status, reason)`` for the exception being handled now: Ctrl-C cancels, anything else fails."""
    exc = sys.exc_info()[1]
    if isinstance(exc, KeyboardInterrupt):
        return "CANCELLED", "KeyboardInterrupt"
    if exc is None:
        return "FAILED", None
    return "FAILED", f"{type(exc).__name__}: {exc}"


def plain_params(value: Any) -> Any:
    """A framework's hyperparameters as values the SDK stores.

    Numbers, bools, strings and None stay; numpy/torch scalars become numbers; lists, tuples and
    sets become lists; mappings and ``argparse.Namespace`` become dicts with str keys; anything
    else (a class, a loss function, a dtype) is stored as its ``str``, cut at 1,000 characters.
    Frameworks hand loggers such objects routinely, and refusing the whole set for one of them
    would lose the rest.
    """
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return value
    if isinstance(value, dict) or (hasattr(value, "items") and callable(value.items)):
        try:
            return {str(k): plain_params(v) for k, v in value.items()}
        except Exception:
            pass
    if t.__name__ == "Namespace" and hasattr(value, "__dict__"):
        return {str(k): plain_params(v) for k, v in vars(value).items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain_params(v) for v in value]
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", None) == 0:
        try:
            return plain_params(item())
        except Exception:
            pass
    if isinstance(value, (int, float)):  # IntEnum, numpy.float64, ...
        return float(value) if isinstance(value, float) else int(value)
    text = str(value)
    return text if len(text) <= MAX_REPR else text[:MAX_REPR] + "..."


def group_fields(metrics: Dict[str, Any], default: str, separator: str = "/") -> Dict[str, Dict[str, Any]]:
    """``{"train/loss": 1, "acc": 2}`` -> ``{"train": {"loss": 1}, default: {"acc": 2}}``: the part
    before the last ``separator`` names the metric, the rest the field."""
    out: Dict[str, Dict[str, Any]] = {}
    for key, value in metrics.items():
        metric, sep, field = key.rpartition(separator)
        if not sep or not metric.strip(separator) or not field:
            metric, field = default, key
        out.setdefault(metric, {})[field] = value
    return out
