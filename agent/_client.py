"""What the server's answers mean, and what to do about them (no I/O of its own: see _transport).

``IngestClient.deliver`` takes a run of consecutive spool entries and gets the server to consume
every seq in it, or says where to resume:

* 200: acknowledged; per-event ``rejected`` entries are quarantined (the server consumed them); a
  rejected row of a columnar record is quarantined on its own, as a one-row record.
* 429/502/503/504, no connection, no answer: retried under the one :class:`~._retry.RetryPolicy`.
* 400, 413 and 500 (the batch, or one event in it, is bad): the batch is split in halves and each
  half sent on its own, down to single events; a columnar record is then split into records of
  fewer rows, down to one row; a single event that is still refused is quarantined and replaced
  by a ``gap`` event per seq, so everything else keeps flowing. A transient 500 costs a few extra
  requests and loses nothing.
* 415: fall back to the next encoding (zstd, gzip, identity).
* 409 ``seq_gap`` / an ack short of the batch: resume from the server's ``acked_seq + 1``.
* 409 ``blob_missing``: upload the blob, send again.
* 401/403: :class:`AuthFailed`: stop sending, keep the spool, tell the user.
* 407 (from a proxy, ``_proxy``): :class:`~._retry.Unrecoverable`: the same, about the proxy's credentials.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Set, Tuple

import orjson

from ml_dash._errors import AuthError, ProtocolError

from ._columns import slice_record
from ._reader import Entry
from ._retry import RETRY_STATUSES, ConnectFailed, Control, Retryable, RetryPolicy, Unrecoverable, parse_retry_after
from ._session import blob_path
from ._wire import ENCODINGS, batch_body, compress, gap_event

if TYPE_CHECKING:  # aiohttp loads only in the sender thread, through _transport
    from ._transport import Response, Transport

__all__ = ["IngestClient", "Outcome", "AuthFailed", "ServerInfo", "Quarantine"]

#: Called with (seq or None, reason, bytes[, seqs it stands for]) before a record is given up on.
Quarantine = Callable[..., None]

_SPLIT_STATUSES = frozenset({400, 413, 500})


class AuthFailed(AuthError):
    """401/403: sending stops until a human fixes the token or the permission."""


@dataclass
class ServerInfo:
    encodings: Tuple[str, ...] = ("gzip", "identity")
    max_events: int = 100_000
    max_decoded_bytes: int = 64 << 20
    auth_required: bool = True


@dataclass
class Outcome:
    acked_seq: int = -1
    duplicates: int = 0
    quarantined: int = 0
    #: Set when the server wants the session resent from this seq (seq_gap, short ack).
    resume_from: Optional[int] = None
    #: file id by seq, for the file events in what was delivered (their blobs can go).
    files: Dict[int, str] = field(default_factory=dict)


def _as_gaps(e: Entry, reason: str) -> List[Entry]:
    """Gap events for every seq of ``e`` (the spool bytes ride on the first)."""
    why = f"quarantined: {reason}"[:200]
    return [
        e._replace(seq=s, payload=gap_event(s, why), kind=b"gap", n=1, size=e.size if s == e.seq else 0)
        for s in range(e.seq, e.seq + e.n)
    ]


def _halves(e: Entry) -> Optional[List[Entry]]:
    """A columnar record of several rows as two records of half the rows (None if it cannot be read)."""
    mid = e.seq + e.n // 2
    a = slice_record(e.payload, e.seq, mid - 1)
    b = slice_record(e.payload, mid, e.seq + e.n - 1)
    if a is None or b is None:
        return None
    return [e._replace(payload=a, n=mid - e.seq), e._replace(seq=mid, payload=b, n=e.seq + e.n - mid, size=0)]


class IngestClient:
    """Policy for one server: discovery, blob upload, batch delivery."""

    def __init__(self, transport: "Transport", policy: RetryPolicy, control: Control):
        self.transport = transport
        self.policy = policy
        self.control = control
        self.info: Optional[ServerInfo] = None
        self._encodings: Tuple[str, ...] = ()
        self._blobs_present: Set[str] = set()
        #: Human-readable last trouble (no token in it), and whether the server answered at all lately.
        self.last_error: Optional[str] = None
        self.reachable: Optional[bool] = None
        self.requests = 0
        self.retries = 0

    # -- plumbing ----------------------------------------------------------------------------------

    def _on_retry(self, exc: BaseException, wait: float) -> None:
        self.retries += 1
        self.last_error = str(exc)
        self.reachable = not isinstance(exc, ConnectFailed)

    async def _call(self, fn: Callable[[], Any]) -> "Response":
        async def attempt() -> "Response":
            self.requests += 1
            try:
                resp: Response = await fn()
            except ConnectFailed:
                self.reachable = False
                raise
            self.reachable = True
            if resp.status in RETRY_STATUSES:
                raise Retryable(resp.status, parse_retry_after(resp.headers.get("retry-after")), resp.error())
            if resp.status in (401, 403):
                what = "no valid token" if resp.status == 401 else "the token may not write here"
                self.last_error = f"HTTP {resp.status} ({what}): {resp.error()}"
                raise AuthFailed(self.last_error, status=resp.status)
            if resp.status == 407:
                self.last_error = (
                    "HTTP 407: the proxy refused ml-dash's credentials (the user and password in "
                    "HTTP_PROXY / HTTPS_PROXY, e.g. http://user:password@proxy:3128)"
                )
                raise Unrecoverable(self.last_error, status=407)
            return resp

        try:
            return await self.policy.call(self.control, attempt, self._on_retry)
        except Exception as exc:
            self.last_error = str(exc)
            raise

    def use(self, info: ServerInfo) -> None:
        """Take limits another client of the same server discovered (no request)."""
        self.info = info
        self._encodings = info.encodings

    async def discover(self) -> ServerInfo:
        """GET /info: encodings and limits (retried like everything else)."""
        resp = await self._call(self.transport.info)
        body = resp.json()
        if resp.status != 200 or body.get("protocol") != 1:
            raise ProtocolError(
                f"the server does not speak ml-dash protocol 1 (HTTP {resp.status}: {resp.error()})", status=resp.status
            )
        limits = body.get("limits") or {}
        offered = tuple(e for e in ENCODINGS if e in (body.get("accept_encoding") or ["identity"]))
        self.info = ServerInfo(
            encodings=offered or ("identity",),
            max_events=int(limits.get("max_events_per_batch", 100_000)),
            max_decoded_bytes=int(limits.get("max_decoded_bytes", 64 << 20)),
            auth_required=bool(body.get("auth_required", True)),
        )
        self._encodings = self.info.encodings
        return self.info

    # -- delivery ----------------------------------------------------------------------------------

    async def deliver(
        self, session: str, prefix: str, entries: List[Entry], blob_dir: str, quarantine: Quarantine
    ) -> Outcome:
        """Get the server to consume ``entries`` (consecutive seqs), splitting and quarantining as needed."""
        out = Outcome()
        spans: List[List[Entry]] = [entries]
        blob_retries = 0
        while spans:
            span = spans.pop(0)
            span = await self._with_blobs(span, blob_dir, quarantine, out)
            resp = await self._post(session, prefix, span)
            body = resp.json()
            last = span[-1].last
            if resp.status == 200:
                acked = int(body.get("acked_seq", -1))
                out.acked_seq = max(out.acked_seq, acked)
                out.duplicates += int(body.get("duplicates", 0))
                self._quarantine_rejected(span, body.get("rejected") or [], quarantine, out)
                if acked < last:
                    out.resume_from = acked + 1
                    return out
                continue
            code = (body.get("error") or {}).get("code") if isinstance(body.get("error"), dict) else None
            if resp.status == 409 and code == "seq_gap":
                acked = int(body.get("acked_seq", -1))
                out.acked_seq = max(out.acked_seq, acked)
                if acked < last:
                    out.resume_from = acked + 1
                    return out
                continue
            if resp.status == 409 and code == "blob_missing":
                checksum = str(body.get("checksum"))
                self._blobs_present.discard(checksum)
                blob_retries += 1
                if blob_retries > 3:  # uploaded, yet still missing: set that file event aside
                    span = self._set_aside(span, checksum, "blob_missing after upload", quarantine, out)
                spans.insert(0, span)
                continue
            if resp.status == 415 and len(self._encodings) > 1:
                self._encodings = self._encodings[1:]
                spans.insert(0, span)
                continue
            if resp.status in _SPLIT_STATUSES:
                if len(span) > 1:
                    mid = len(span) // 2
                    spans[:0] = [span[:mid], span[mid:]]
                    continue
                e = span[0]
                halves = _halves(e) if e.n > 1 else None
                if halves is not None:  # a columnar record: fewer rows, down to the bad one
                    spans.insert(0, halves)
                    continue
                if e.kind != b"gap":
                    # One event the server will not take, whatever we do: set it aside, send gaps instead.
                    reason = f"http_{resp.status}: {resp.error()}"
                    quarantine(e.seq, reason, e.payload, e.n)
                    out.quarantined += e.n
                    spans.insert(0, _as_gaps(e, reason))
                    continue
            raise ProtocolError(f"unexpected answer to ingest: HTTP {resp.status}: {resp.error()}", status=resp.status)
        return out

    async def _post(self, session: str, prefix: str, span: List[Entry]) -> "Response":
        body = batch_body(session, prefix, [e.payload for e in span])
        encodings = self._encodings
        data, encoding = compress(body, encodings)
        del body
        return await self._call(lambda: self.transport.ingest(data, encoding))

    def _quarantine_rejected(
        self, span: List[Entry], rejected: List[Dict[str, Any]], quarantine: Quarantine, out: Outcome
    ) -> None:
        if not rejected:
            return
        firsts = [e.seq for e in span]
        for r in rejected:
            seq = r.get("seq") if isinstance(r, dict) else None
            if type(seq) is not int:
                continue
            e = span[max(0, bisect_right(firsts, seq) - 1)]
            if not e.seq <= seq <= e.last or e.kind == b"gap":
                continue  # not ours, or a gap (whose record is in the quarantine already)
            n = r.get("n", 1)
            hi = min(e.last, seq + (n if type(n) is int and n > 0 else 1) - 1)
            record = e.payload
            if (seq, hi) != (e.seq, e.last):  # some rows of a columnar record: set aside just those
                record = slice_record(e.payload, seq, hi) or e.payload
            quarantine(seq, f"rejected {r.get('code')}: {r.get('message')}", record, hi - seq + 1)
            out.quarantined += hi - seq + 1

    def _set_aside(
        self, span: List[Entry], checksum: str, reason: str, quarantine: Quarantine, out: Outcome
    ) -> List[Entry]:
        result = []
        for e in span:
            if e.kind == b"file" and orjson.loads(e.payload).get("checksum") == checksum:
                quarantine(e.seq, reason, e.payload)
                out.quarantined += 1
                e = _as_gaps(e, reason)[0]
            result.append(e)
        return result

    # -- blobs -------------------------------------------------------------------------------------

    async def _with_blobs(self, span: List[Entry], blob_dir: str, quarantine: Quarantine, out: Outcome) -> List[Entry]:
        """Make sure every blob a file event of ``span`` names is on the server; events whose blob
        cannot be uploaded are quarantined and replaced by gaps."""
        if not any(e.kind == b"file" for e in span):
            return span
        result = []
        for e in span:
            if e.kind == b"file":
                event = orjson.loads(e.payload)
                problem = await self._ensure_blob(event, blob_dir)
                if problem is not None:
                    quarantine(e.seq, problem, e.payload)
                    out.quarantined += 1
                    e = _as_gaps(e, problem)[0]
                else:
                    out.files[e.seq] = str(event.get("id"))
            result.append(e)
        return result

    async def _ensure_blob(self, event: Dict[str, Any], blob_dir: str) -> Optional[str]:
        checksum = str(event.get("checksum") or "")
        if checksum in self._blobs_present:
            return None
        resp = await self._call(lambda: self.transport.head_blob(checksum))
        if resp.status == 200:
            self._blobs_present.add(checksum)
            return None
        path = blob_path(blob_dir, event.get("id"))
        if path is None:
            return "blob_refused: the file id is not a plain name (it must not be a path)"
        try:
            size = os.path.getsize(path)
        except OSError:
            return "blob_lost: the file's bytes are no longer in the spool"
        resp = await self._call(lambda: self.transport.put_blob(checksum, path, size))
        if resp.status in (200, 201):
            self._blobs_present.add(checksum)
            return None
        if resp.status in (400, 413):
            return f"blob_refused http_{resp.status}: {resp.error()}"
        raise ProtocolError(f"unexpected answer to blob upload: HTTP {resp.status}: {resp.error()}", status=resp.status)
