"""``from ml_dash.auto_start import dxp``: upstream's ready-made experiment.

``dxp`` is an :class:`~ml_dash.Experiment` made at import with every setting from the environment:
the prefix from ``ML_DASH_PREFIX`` (else ``RUN.prefix``'s template), the server from ``ML_DASH_URL``
with ``ML_DASH_TOKEN`` (remote mode; local mode in ``ML_DASH_ROOT`` when no server is set). As
upstream's, it is not started at import: ``with dxp.run:`` or ``dxp.run.start()``. A run still
open when the interpreter exits is completed (FAILED after an uncaught exception), as every run is.
"""

from __future__ import annotations

from ._experiment import Experiment

__all__ = ["dxp"]

dxp = Experiment()
