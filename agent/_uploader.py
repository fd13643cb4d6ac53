"""Delivers one session folder to the server: read a batch back from disk, deliver it, record the
acknowledgement, trim. Used by the live sender and by ``ml-dash-agent flush`` alike.

Nothing is deleted before the server has acknowledged it: a segment goes when every record in it
is at or below ``acked_seq``, a blob when its file event is, and the folder when the writer is
done and everything in it is acknowledged or quarantined.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, List, Optional, Tuple

from ml_dash._errors import ProtocolError

from ._client import IngestClient
from ._reader import Chunk, Entry, SessionReader
from ._session import SessionDir, blob_path, unlink_counting
from ._tally import Tally

__all__ = ["SessionUploader", "Tally", "BATCH_MAX_EVENTS", "BATCH_MAX_BYTES"]

#: Largest batch, in events and in (uncompressed) bytes. Big enough that a request costs little
#: per event, small enough that a retry resends little and a batch never nears the server's limits.
BATCH_MAX_EVENTS = 50_000
BATCH_MAX_BYTES = 4 << 20


class SessionUploader:
    """Uploads one session; the caller holds its sender lock."""

    def __init__(
        self,
        sdir: SessionDir,
        client: IngestClient,
        on_progress: Callable[[int, int], object] = lambda events, nbytes: None,
        on_trim: Callable[[int, int], None] = lambda record_bytes, blob_bytes: None,
    ):
        self.sdir = sdir
        manifest = sdir.manifest or {}
        self.prefix = str(manifest.get("prefix"))
        self.acked = sdir.read_ack()
        self.reader = SessionReader(sdir, self.acked + 1)
        self.client = client
        self.tally = Tally()
        self.removed = False
        self._set_aside: set[Any] = set()
        self._next: Optional[Tuple[Chunk, bool]] = (
            None  # (chunk, finished) read ahead while the previous batch was in flight
        )
        self._on_progress = on_progress
        self._on_trim = on_trim

    def _limits(self) -> Tuple[int, int]:
        info = self.client.info
        events, nbytes = BATCH_MAX_EVENTS, BATCH_MAX_BYTES
        if info is not None:
            events = max(1, min(events, info.max_events))
            nbytes = max(1024, min(nbytes, info.max_decoded_bytes // 2))
        return events, nbytes

    def _quarantine(self, seq: Optional[int], reason: str, record: bytes, n: int = 1) -> None:
        """Set ``record`` aside; it stands for seqs ``seq .. seq + n - 1`` (rows of a columnar record)."""
        self.tally.quarantined += n
        if seq is None:
            self._set_aside.add(seq)
        else:
            self._set_aside.update(range(seq, seq + n))
        self.sdir.quarantine(seq, reason, record)

    async def step(self, finished: bool) -> bool:
        """Send one batch; True when there was nothing left to read (for now)."""
        max_events, max_bytes = self._limits()
        self._set_aside = set()
        ahead, self._next = self._next, None
        chunk, read_finished = (
            ahead if ahead is not None else (self.reader.read(max_events, max_bytes, finished), finished)
        )
        # A read made before the writer finished has not looked at a torn or bad tail: not the end yet.
        at_end = chunk.at_end and read_finished == finished
        for reason, raw in chunk.lost:
            self._quarantine(None, reason, raw)
        if not chunk.entries:
            return at_end
        for e in chunk.entries:
            if e.raw or (e.kind == b"gap" and e.reason == "missing_from_spool"):
                self._quarantine(e.seq, e.reason, e.raw)
        sending = asyncio.ensure_future(
            self.client.deliver(self.sdir.id, self.prefix, chunk.entries, str(self.sdir.blobs), self._quarantine)
        )
        try:
            if not chunk.at_end:
                # Read the next batch from disk while the server works on this one (one batch ahead at most).
                await asyncio.sleep(0)
                self._next = (self.reader.read(max_events, max_bytes, finished), finished)
            out = await sending
        except BaseException:
            sending.cancel()
            self._next = None
            self.reader.seek(self.acked + 1)  # nothing more is known to be stored: read it again next time
            raise
        self.tally.duplicates += out.duplicates
        if out.acked_seq > self.acked:
            new = out.acked_seq
            nbytes, events = self._newly_acked(chunk.entries, new)
            self.tally.events += events
            self.tally.bytes += nbytes
            self.acked = new
            self.sdir.write_ack(new)
            blob_bytes = self._drop_blobs(out.files, new)
            self._on_trim(self.reader.trim(new), blob_bytes)
            self._on_progress(events, nbytes)
        if out.resume_from is not None:
            self._next = None
            self.reader.seek(out.resume_from)
            return False
        return at_end and self._next is None

    def _newly_acked(self, entries: List[Entry], new: int) -> Tuple[int, int]:
        """(spool bytes, events delivered) that an ack moving from ``self.acked`` to ``new`` accounts for.

        A record's bytes count once its last seq is acknowledged; its events (seqs, not counting
        gaps and what was quarantined) count as they are acknowledged, so a record the server
        took in two parts is counted once.
        """
        old, aside = self.acked, self._set_aside
        nbytes = events = 0
        for e in entries:
            lo, hi = max(e.seq, old + 1), min(e.seq + e.n - 1, new)
            if lo > hi:
                continue
            if hi == e.seq + e.n - 1:
                nbytes += e.size
            if e.kind != b"gap":
                events += hi - lo + 1
                if aside:
                    events -= sum(1 for s in aside if s is not None and lo <= s <= hi)
        return nbytes, events

    def unsent(self, written: int) -> int:
        """Events not yet sent when ``written`` seqs exist (a batch read ahead counts as unsent)."""
        ahead = sum(e.n for e in self._next[0].entries) if self._next is not None else 0
        return written - self.reader.next_seq + ahead

    def _drop_blobs(self, files: Dict[int, str], acked: int) -> int:
        freed = 0
        for seq, file_id in files.items():
            path = blob_path(self.sdir.blobs, file_id)
            if seq <= acked and path is not None:
                freed += unlink_counting(path)
        return freed

    async def run_to_end(self, finished: Callable[[], bool]) -> bool:
        """Upload until nothing is left to read; remove the folder if the writer is done. True when removed."""
        stalls = 0
        while True:
            done = finished()  # decided before reading, so nothing written after it is missed
            acked_before = self.acked
            if not await self.step(done):
                continue
            if not done:
                if finished():
                    continue  # the writer finished meanwhile: one more, final, read
                return False
            if self.reader.next_seq - 1 <= self.acked:
                self.finish()
                return True
            # Read to the end but not all acknowledged: ask again from the acknowledgement.
            stalls = 0 if self.acked > acked_before else stalls + 1
            if stalls > 3:
                raise ProtocolError(f"the server does not acknowledge session {self.sdir.id} past seq {self.acked}")
            self.reader.seek(self.acked + 1)

    def finish(self) -> None:
        """Everything is acknowledged (or quarantined) and no more will come: delete the folder."""
        self.sdir.remove()
        self.removed = True
