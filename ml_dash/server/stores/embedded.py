"""The embedded store behind the :mod:`..stores` interface: the local layout under ``--root``."""

from __future__ import annotations

from pathlib import Path

from ..._readmodel import ReadModel
from ..blobs import BlobStore
from ..index import Index
from ..limits import Limits
from ..reads import Reads
from ..store import Store
from . import Backend

__all__ = ["EmbeddedBackend"]


class EmbeddedBackend(Backend):
    kind = "embedded"

    def __init__(self, root: Path, limits: Limits) -> None:
        self.root = Path(root)
        index = Index(self.root)
        blobs = BlobStore(self.root)
        store = Store(self.root, index, blobs, limits)
        reads = Reads(self.root, index, limits.max_page)
        store.on_rollback = reads.forget_offsets
        super().__init__(store, reads, index, blobs)

    def describe(self) -> str:
        return str(self.root)

    def read_model(self) -> ReadModel:
        from ..._readmodel import LayoutReadModel
        from ..index import server_dir

        return LayoutReadModel(self.root, server_dir(self.root) / "series", background=True)
