"""Moving data between the embedded layout and the scale-out store.

* :func:`import_root` (``ml-dash server migrate --from DIR``): every experiment of a local layout
  folder (an embedded server root or any ``dash_root``, upstream's included) into PostgreSQL, with
  the file bytes into the blob store; from a server root also its tokens (hashes) and writer
  sessions with their ``acked_seq``, so an agent that resumes a session after the move stores
  nothing twice. An experiment the database already has is skipped (and reported), so a move that
  was cut short can simply be run again.
* :func:`export_store` (``ml-dash server export --to DIR``): the scale-out store written back out as
  a ``dash_root`` (the files a local run writes), which the SDK and upstream read.

Metric rows are streamed: at most one chunk of rows per metric is in memory on the way in, one
chunk on the way out. A row keeps its index, data and ``_ts``; its ``createdAt`` (the server's time
of storing) becomes that of the first row of its chunk (chunks are at most 4,096 rows).

The two directions live in :mod:`.pg_import` and :mod:`.pg_export`; this module is where the
command line (:mod:`.cli`) and the tests import them from.
"""

from __future__ import annotations

from .pg_export import export_store
from .pg_import import import_root

__all__ = ["import_root", "export_store"]
