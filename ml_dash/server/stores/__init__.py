"""Where a server keeps its data: one interface, two stores.

* ``embedded`` (the default): the local layout + an SQLite index + a blob folder under ``--root``
  (:mod:`ml_dash.server.store`, :mod:`.index`, :mod:`.reads`, :mod:`.blobs`). Zero setup, one
  process, and the folder is a ``dash_root`` the SDK and upstream read.
* ``postgres`` (:mod:`.postgres`): PostgreSQL for everything but file bytes, and a blob store
  (an S3-compatible bucket, :mod:`.s3`, or a shared folder) for those. Any number of stateless
  server processes share them.

A :class:`Backend` bundles the four parts every request handler uses; each is called from the
server's thread pool (never on the event loop), so a store may block:

* ``store``: ``ingest(batch, crash_before_commit=False) -> answer`` applies a parsed batch exactly once
  (the planning, :func:`ml_dash.server.ingest.plan_batch`, is shared), ``recover()``, ``close()``;
* ``reads``: ``experiments``, ``experiment``, ``params``, ``logs``, ``metric_names``,
  ``metric_rows``, ``files`` answer the read routes' bodies; ``file(prefix, id)`` gives
  ``(source, entry)`` where the source is a :class:`~pathlib.Path` or a :class:`BlobSource`;
* ``index``: tokens (``add_token``, ``token_owner``, ``list_tokens``, ``revoke_tokens``) and
  ``experiments(owner, project)`` (prefixes);
* ``blobs``: ``size(checksum)`` and ``upload(checksum, limit)`` (``write(chunk)``, ``finish() ->
  created``, ``abort()``, ``size``);
* ``read_model()``: the dashboard's reads (series, summary, table), a
  :class:`ml_dash._readmodel.ReadModel`.

Another backend (a document database, a columnar engine for metric rows) implements the same four
parts; nothing above this package changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator, Optional, Protocol

if TYPE_CHECKING:
    from pathlib import Path

    from ..._readmodel import ReadModel
    from ..limits import Limits
    from ..settings import ServerSettings

__all__ = ["Backend", "BlobSource", "open_backend"]


class BlobSource(Protocol):
    """File bytes that are not a local file (an S3 object): size, and the bytes of a range."""

    size: int

    def chunks(self, start: int, stop: int) -> AsyncIterator[bytes]:
        """The bytes ``start .. stop-1``, streamed (call on the server's event loop)."""


class Backend:
    """The parts of one store (see the module doc)."""

    kind = "?"

    def __init__(self, store: Any, reads: Any, index: Any, blobs: Any):
        self.store = store
        self.reads = reads
        self.index = index
        self.blobs = blobs

    def describe(self) -> str:
        """Where the data is, for the start-up banner (never a password)."""
        raise NotImplementedError

    def read_model(self) -> ReadModel:
        """The :class:`ml_dash._readmodel.ReadModel` of this store: what the series, summary and
        table routes (the dashboard's) ask."""
        raise NotImplementedError

    def shared_secret(self, name: str) -> Optional[bytes]:
        """A secret every process of this store shares (None: keep it in the server folder)."""
        return None

    def close(self) -> None:
        self.store.close()
        self.index.close()


def open_backend(settings: Optional[ServerSettings], root: Path, limits: Limits) -> Backend:
    """The backend the settings name (``settings.store``: None for the embedded store)."""
    if settings is None or settings.store is None:
        from .embedded import EmbeddedBackend

        return EmbeddedBackend(root, limits)
    from .postgres import PgBackend

    return PgBackend.open(settings, root, limits)
