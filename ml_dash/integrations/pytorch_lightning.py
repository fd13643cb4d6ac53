"""PyTorch Lightning (the older ``pytorch_lightning`` package): ``MlDashLogger``.

Same behaviour as :mod:`ml_dash.integrations.lightning`, built on ``pytorch_lightning``'s own
``Logger`` class, which is the one a ``pytorch_lightning.Trainer`` accepts.
"""

from __future__ import annotations

from pytorch_lightning.loggers.logger import Logger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from ._lightning import LoggerMethods

__all__ = ["MlDashLogger"]


class MlDashLogger(LoggerMethods, Logger):
    __doc__ = LoggerMethods.__doc__
    _global_rank = staticmethod(lambda: getattr(rank_zero_only, "rank", 0))
