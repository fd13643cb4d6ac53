"""The read side of the spool: records back from disk in order, checked, with their gaps explained.

The sender never keeps events in memory beyond one batch: it reads them back from the segments,
so an outage of any length costs disk, not RAM. Records that fail their CRC, and torn tails,
are never sent. A run of unreadable records between two good ones becomes ``gap`` events for the
seqs in between (the server consumes them, so the session keeps flowing) and the bad bytes go to
the quarantine. Unreadable bytes after the last good record of a finished session hold no seq
anyone waits for: they are quarantined and nothing is sent for them.

A record may cover several seqs (a columnar ``metrics`` record: ``Entry.n``); the cursor then
moves past all of them, an unreadable one becomes a gap per seq it held, and a cursor placed
inside a record (the server acknowledged part of it) returns the whole record: the server stores
only its tail.
"""

from __future__ import annotations

from bisect import bisect_left
from functools import partial
from itertools import accumulate, repeat
from typing import List, NamedTuple, Optional, Tuple

from ._framing import Line, check_block, check_line, count_of, kind_of, seq_of, split_lines
from ._session import SessionDir, unlink_counting
from ._wire import gap_event

__all__ = ["Entry", "Chunk", "SessionReader"]

_READ = 1 << 20
_FILE = b'"kind":"file"'
_ROWS = b'"kind":"metrics"'


class Entry(NamedTuple):
    """One event to send: a record from the spool, or a gap standing in for unreadable ones."""

    seq: int
    payload: bytes
    kind: bytes  # b"file", b"gap", or b"" for every other kind (the reader does not look closer)
    size: int  # spool bytes it accounts for
    reason: str = ""  # for gaps: why the record is missing
    raw: bytes = b""  # for gaps: the unreadable bytes, for the quarantine
    n: int = 1  # seqs the record covers: seq .. seq + n - 1 (a columnar metrics record: its rows)

    @property
    def last(self) -> int:
        return self.seq + self.n - 1


#: Entry from a tuple of its fields, in C (``Entry._make`` adds a Python-level check per entry).
_new_entry = partial(tuple.__new__, Entry)


class Chunk(NamedTuple):
    entries: List[Entry]
    #: Unreadable bytes with no seq (after the last good record of a finished session): (reason, bytes).
    lost: List[Tuple[str, bytes]]
    #: True when the reader has reached the end of everything there is (for now).
    at_end: bool


class SessionReader:
    """A cursor over one session's records, from a given seq on."""

    def __init__(self, sdir: SessionDir, start_seq: int = 0):
        self.sdir = sdir
        self.seek(start_seq)

    @property
    def next_seq(self) -> int:
        return self._expect

    def seek(self, seq: int) -> None:
        """Continue from ``seq`` (after the server said where it stands)."""
        self._expect = seq
        self._seg: Optional[int] = None
        self._off = 0
        self._done = False

    def read(self, max_events: int, max_bytes: int, finished: bool) -> Chunk:
        """Up to ``max_events`` / about ``max_bytes`` of entries from the cursor on.

        ``finished`` says the writer will add nothing more, so a torn or bad tail is final.
        """
        entries: List[Entry] = []
        lost: List[Tuple[str, bytes]] = []
        if self._done:
            return Chunk(entries, lost, True)
        segs = self.sdir.segments()
        if not segs:
            return Chunk(entries, lost, True)
        if self._seg is None or self._seg not in segs:
            self._position(segs, entries)
        room = [max_events, max_bytes]  # what this call may still return
        bad: List[Line] = []  # unreadable lines not yet explained by a following good record
        scan = self._off
        confirmed_next: Optional[int] = None
        size = _READ
        while True:
            buf = self._read_at(self._seg, scan, size)  # type: ignore[arg-type]  # _position set it
            eof = len(buf) < size
            cut = buf.rfind(b"\n") + 1
            if cut and self._take(buf[:cut], scan, entries, bad, room):
                return Chunk(entries, lost, False)
            scan += cut
            tail = Line(buf[cut:], scan, scan + len(buf) - cut, False) if cut < len(buf) else None
            if not eof:
                if not cut:  # one record larger than the read size: read more at once
                    size *= 2
                continue
            # End of this segment's data for now.
            if confirmed_next is None:
                nxt = next((f for f in self.sdir.segments() if f > self._seg), None)  # type: ignore[operator]
                if nxt is not None:
                    confirmed_next = nxt  # the writer finished this segment: read its end once more
                    continue
                if not finished:
                    return Chunk(entries, lost, True)
                # The writer is done: whatever is unreadable at the end is final.
                lost.extend(("corrupt_record", ln.data) for ln in bad)
                if tail is not None:
                    lost.append(("torn_tail", tail.data))
                self._done = True
                return Chunk(entries, lost, True)
            # Move on to the next segment; bad lines here are the seqs up to its first.
            if tail is not None:
                bad.append(tail)
            if confirmed_next > self._expect:
                room[1] -= self._gaps(entries, confirmed_next, bad, "corrupt_record" if bad else "missing_record")
            elif bad:
                lost.extend(("corrupt_record", ln.data) for ln in bad)
            bad.clear()
            self._seg, self._off, scan, confirmed_next, size = confirmed_next, 0, 0, None, _READ
            if len(entries) >= max_events or room[1] <= 0:
                return Chunk(entries, lost, False)

    def _take(self, block: bytes, base: int, entries: List[Entry], bad: List[Line], room: List[int]) -> bool:
        """Entries from ``block`` (complete lines starting at file offset ``base``); True when
        ``room`` (events, bytes) ran out."""
        lines = block[:-1].split(b"\n")
        payloads = None if bad else check_block(lines)
        if payloads is not None and _ROWS in block:
            done = self._take_records(base, lines, payloads, entries, room)
            if done is not None:
                return done
        elif payloads is not None:
            first = seq_of(payloads[0])
            skip = self._expect - first
            if seq_of(payloads[-1]) == first + len(lines) - 1 and 0 <= skip <= len(lines):
                return self._take_intact(block, base, lines, payloads, first, skip, entries, room)
        # Something in here is unreadable (or out of order): go line by line.
        for line in split_lines(block, base):
            payload = check_line(line.data)
            if payload is None:
                bad.append(line)
                continue
            s = seq_of(payload)
            n = count_of(payload)
            if s + n <= self._expect:  # before the cursor (after a seek): already handled
                bad.clear()
                self._off = line.end
                continue
            if s > self._expect:
                room[1] -= self._gaps(entries, s, bad, "corrupt_record" if bad else "missing_record")
            bad.clear()
            entries.append(
                Entry(s, payload, kind_of(payload) if _FILE in payload else b"", line.end - line.start, "", b"", n)
            )
            room[0] -= n
            room[1] -= line.end - line.start
            self._expect = s + n
            self._off = line.end
            if room[0] <= 0 or room[1] <= 0:
                return True
        return False

    def _take_intact(
        self,
        block: bytes,
        base: int,
        lines: List[bytes],
        payloads: List[bytes],
        first: int,
        skip: int,
        entries: List[Entry],
        room: List[int],
    ) -> bool:
        # The common case, with the per-record work in C: every record intact and in order.
        sizes = [len(ln) + 1 for ln in lines]
        avail = len(lines) - skip
        cum = list(accumulate(sizes[skip : skip + min(avail, room[0])]))
        take = min(len(cum), bisect_left(cum, room[1]) + 1)
        if take:
            kinds = (
                [kind_of(p) if _FILE in p else b"" for p in payloads[skip : skip + take]]
                if _FILE in block
                else repeat(b"")
            )
            entries.extend(
                map(
                    _new_entry,
                    zip(
                        range(first + skip, first + skip + take),
                        payloads[skip : skip + take],
                        kinds,
                        sizes[skip : skip + take],
                        repeat(""),
                        repeat(b""),
                        repeat(1),
                    ),
                )
            )
            room[0] -= take
            room[1] -= cum[take - 1]
            self._expect = first + skip + take
        self._off = base + sum(sizes[:skip]) + (cum[take - 1] if take else 0)
        return take < avail

    def _take_records(
        self, base: int, lines: List[bytes], payloads: List[bytes], entries: List[Entry], room: List[int]
    ) -> Optional[bool]:
        """Like :meth:`_take_intact` for a block holding columnar records (a Python step per record,
        each of up to a thousand rows); None when the block is not in order from the cursor."""
        seqs = list(map(seq_of, payloads))
        ns = list(map(count_of, payloads))
        if list(accumulate(ns[:-1], initial=seqs[0])) != seqs:
            return None
        expect = self._expect
        skip = bisect_left([s + n - 1 for s, n in zip(seqs, ns)], expect)  # records wholly before the cursor
        if skip < len(seqs) and seqs[skip] > expect:
            return None  # seqs missing before this block: the line-by-line path explains them
        off = base + sum(len(ln) + 1 for ln in lines[:skip])
        for i in range(skip, len(lines)):
            if room[0] <= 0 or room[1] <= 0:
                self._off = off
                return True
            p, size = payloads[i], len(lines[i]) + 1
            entries.append(Entry(seqs[i], p, kind_of(p) if _FILE in p else b"", size, "", b"", ns[i]))
            room[0] -= ns[i]
            room[1] -= size
            off += size
            self._expect = seqs[i] + ns[i]
        self._off = off
        return room[0] <= 0 or room[1] <= 0

    def _gaps(self, entries: List[Entry], upto: int, bad: List[Line], reason: str) -> int:
        """Gap entries for seqs ``expect .. upto-1``; the unreadable bytes ride on the first."""
        raw = b"\n".join(ln.data for ln in bad)
        total = size = sum(ln.end - ln.start for ln in bad)
        for s in range(self._expect, upto):
            entries.append(Entry(s, gap_event(s, reason), b"gap", size, reason, raw))
            raw, size = b"", 0
        self._expect = upto
        return total

    def _position(self, segs: List[int], entries: List[Entry]) -> None:
        before = [f for f in segs if f <= self._expect]
        if before:
            self._seg, self._off = before[-1], 0
            return
        # The seqs wanted are no longer in the spool (trimmed after an acknowledgement the server
        # has since lost): send gaps so the session can go on, and say so in the quarantine.
        self._gaps(entries, segs[0], [], "missing_from_spool")
        self._seg, self._off = segs[0], 0

    def _read_at(self, seg: int, offset: int, size: int) -> bytes:
        try:
            with open(self.sdir.segment_path(seg), "rb") as f:
                f.seek(offset)
                return f.read(size)
        except FileNotFoundError:
            return b""

    def trim(self, acked_seq: int) -> int:
        """Delete segments whose records are all acknowledged (never the last one); returns bytes freed."""
        segs = self.sdir.segments()
        freed = 0
        for first, nxt in zip(segs, segs[1:]):
            if nxt > acked_seq + 1 or (self._seg is not None and first >= self._seg):
                break
            freed += unlink_counting(self.sdir.segment_path(first))
        return freed
