"""The read model: what the dashboard, the CLI and ``exp.metrics(name).series(...)`` ask of a store.

* :class:`~._columns.MetricColumns`: one metric file as numeric columns with per-chunk summaries,
  kept up to date by byte offset as the file grows (files written by the server or by a local SDK
  process alike), in memory or with a sidecar cache on disk;
* :mod:`._series`: downsampled series (last/min/max per bucket) and live increments from them;
* :class:`~._catalog.Catalog`: an incrementally refreshed catalogue of the experiments in a folder;
* :mod:`._table`: the experiments table (filter, search, sort, page, columns) over the catalogue;
* :class:`~._model.LayoutReadModel`: all of it over a local layout folder (a ``dash_root`` or a
  server root), behind the small :class:`~._model.ReadModel` interface a store implements.

numpy is imported by these modules; nothing here is imported by ``import ml_dash``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the lazy attributes below are, for type checkers
    from ._catalog import Catalog
    from ._columns import MetricColumns
    from ._model import LayoutReadModel, ReadModel
    from ._table import TableQuery


__all__ = ["LayoutReadModel", "ReadModel", "TableQuery", "MetricColumns", "Catalog"]

_WHERE = {
    "LayoutReadModel": "._model",
    "ReadModel": "._model",
    "TableQuery": "._table",
    "MetricColumns": "._columns",
    "Catalog": "._catalog",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
