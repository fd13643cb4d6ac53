"""ml-dash: an experiment tracker that costs a training loop nothing and loses nothing.

Public API::

    from ml_dash import Experiment, ml_dash_experiment, RUN

    with Experiment(prefix="alice/project/my-experiment").run as exp:
        exp.log("Training started")
        exp.params.set(learning_rate=0.001)
        exp.metrics("train").log(loss=0.5, epoch=1)
        exp.files("models").save("model.pth")
"""

from ._config import Config, load_config
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
from ._experiment import Experiment, OperationMode, ml_dash_experiment
from ._files import FileInfo
from ._run_info import RUN

__version__ = "0.1.0"

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
