"""PyTorch Lightning (the ``lightning`` package): ``MlDashLogger``, a ``lightning.pytorch`` ``Logger``.

::

    from lightning.pytorch import Trainer
    from ml_dash.integrations.lightning import MlDashLogger

    trainer = Trainer(logger=MlDashLogger("alice/mnist/baseline"))

For the older ``pytorch_lightning`` package use :mod:`ml_dash.integrations.pytorch_lightning`.
How names, steps, status, ranks and checkpoints map: see :class:`MlDashLogger`.
"""

from __future__ import annotations

from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ._lightning import LoggerMethods

__all__ = ["MlDashLogger"]


class MlDashLogger(LoggerMethods, Logger):
    __doc__ = LoggerMethods.__doc__
    _global_rank = staticmethod(lambda: getattr(rank_zero_only, "rank", 0))
