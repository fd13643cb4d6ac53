"""ml-dash: an experiment tracker that costs a training loop nothing and loses nothing.

Public API::

    from ml_dash import Experiment, ml_dash_experiment, RUN

    with Experiment(prefix="alice/project/my-experiment").run as exp:
        exp.log("Training started")
        exp.params.set(learning_rate=0.001)
        exp.metrics("train").log(loss=0.5, epoch=1)
        exp.files("models").save("model.pth")
"""

from ._errors import (
    AuthError,
    ExperimentStateError,
    InvalidDashUrl,
    InvalidPrefix,
    InvalidValue,
    MlDashError,
    NotFound,
    ProtocolError,
    QueueFull,
    RemoteError,
    SpoolNotPrivate,
    ValueTooLarge,
)
from ._experiment import Experiment, ml_dash_experiment
from ._files import FileInfo
from ._run_info import RUN

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._config import Config, load_config
    from ._mode import OperationMode

# Loaded on first use, not by `import ml_dash`: Config is a dataclass (the dataclasses module and
# what it imports cost ~10 ms) and OperationMode an Enum; an Experiment loads them when it needs them.
_LAZY = {"Config": "_config", "load_config": "_config", "OperationMode": "_mode"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ml_dash' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted([*globals(), *_LAZY])


__all__ = [
    "Experiment",
    "OperationMode",
    "ml_dash_experiment",
    "RUN",
    "Config",
    "load_config",
    "FileInfo",
    "MlDashError",
    "InvalidPrefix",
    "InvalidDashUrl",
    "InvalidValue",
    "ValueTooLarge",
    "ExperimentStateError",
    "QueueFull",
    "NotFound",
    "SpoolNotPrivate",
    "RemoteError",
    "AuthError",
    "ProtocolError",
]
