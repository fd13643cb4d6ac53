"""The local layout: paths, writer and reader. Shared by local mode and the reference server."""

from ._layout import ExperimentPaths
from ._reader import ExperimentReader, list_experiments
from ._writer import ExperimentWriter

__all__ = ["ExperimentPaths", "ExperimentWriter", "ExperimentReader", "list_experiments"]
