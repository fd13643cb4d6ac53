"""Every limit of the server, in one frozen dataclass; all are advertised in ``GET /api/v1/info``.

Where each is enforced: bodies and their decoding in :mod:`.receive` and :mod:`.decode`, the
estimated memory of a parsed batch in :mod:`.batch`, events in :mod:`.ingest`, slots and
connections in :mod:`.app` and :mod:`.connections`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict

__all__ = ["Limits"]

_MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Every size, count and time limit of the server (PROTOCOL.md, "Limits")."""

    max_body_bytes: int = 8 * _MiB
    max_decoded_bytes: int = 64 * _MiB
    #: The memory a batch may take once parsed, as estimated from its decoded bytes before they are
    #: parsed (see :func:`.batch.estimate`). Bounds what one request costs, whatever its JSON holds.
    max_parsed_bytes: int = 160 * _MiB
    max_event_bytes: int = 1 * _MiB
    #: Events per batch, counting each row of a columnar ``metrics`` event (each takes a seq).
    max_events_per_batch: int = 100_000
    #: Rows (``n``) of one columnar ``metrics`` event; the event as a whole stays within max_event_bytes.
    max_event_rows: int = 10_000
    max_fields: int = 1000
    max_name_bytes: int = 255
    max_blob_bytes: int = 5 * 1024 * _MiB
    max_page: int = 10_000
    #: Ingest requests handled at once; more are answered 503 with Retry-After.
    max_concurrent_writes: int = 16
    #: Blob uploads handled at once, apart from ingest: slow uploads never hold up batches.
    max_concurrent_blobs: int = 8
    #: Seconds a connection may wait for its first request line and headers, or sit idle between
    #: requests, or send no byte of a request body, before it is closed.
    idle_timeout_s: int = 20
    #: Slowest average rate of a request body once it has taken idle_timeout_s; slower is closed.
    min_body_bytes_per_s: int = 4096

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)
