"""The one place that decides what is retried, how often, and how long to wait.

What is retryable (PROTOCOL.md, "Retry rules"): connection errors, timeouts, and the answers
429, 502, 503, 504. Nothing else is: a 400/413/415 is the batch's fault (the client quarantines
it), 401/403 needs a human, and so does :class:`Unrecoverable` (a URL aiohttp cannot use, a TLS
handshake or certificate that fails: the same request would fail the same way). Waits grow exponentially with jitter and are never shorter than the
server's ``Retry-After``.

Shutdown: when the run begins to close, a backoff sleep ends at once and later waits are short,
because the exit deadline is better spent trying than sleeping; a ``Retry-After`` is still
honoured in full. Short, never zero: a closing run pauses at least ``CLOSING_PAUSE`` before each
new try, so a server that keeps answering 503 costs a few requests per second, not a spinning CPU. When the deadline passes the closer cancels the sender, which ends any sleep or
request. A server that refuses connections while we close is taken to be down, and we stop at
once so that the program exits quickly with the flush command.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Optional, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from ml_dash._errors import ProtocolError

__all__ = [
    "RetryPolicy",
    "Control",
    "Retryable",
    "TransportError",
    "ConnectFailed",
    "RequestTimeout",
    "Unrecoverable",
    "RETRY_STATUSES",
    "parse_retry_after",
    "CLOSING_PAUSE",
]

T = TypeVar("T")

#: HTTP answers that mean "try again later".
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Longest Retry-After we obey; a bigger one is clamped (a misconfigured proxy must not stall a run for hours).
MAX_RETRY_AFTER = 300.0
#: Once closing began, a wait before a new try (a backoff, or between rounds) lasts at most this
#: long: the exit deadline is better spent trying, yet no try follows another without a pause. Seconds.
CLOSING_PAUSE = 0.25


class TransportError(Exception):
    """The request did not get an answer (raised by the transport, retryable)."""


class ConnectFailed(TransportError):
    """No connection: the server is down or unreachable."""


class RequestTimeout(TransportError):
    """Connected, but the answer did not come in time (or the connection broke mid-answer)."""


class Unrecoverable(ProtocolError):
    """The request cannot succeed by being sent again (bad URL for the transport, TLS failure):
    never retried; the sender stops and the spool keeps the data until the user fixes the cause."""


class Retryable(Exception):
    """A retryable HTTP answer (429/502/503/504), with the server's Retry-After in seconds if any."""

    def __init__(self, status: int, retry_after: Optional[float], message: str = ""):
        super().__init__(f"HTTP {status}" + (f": {message}" if message else ""))
        self.status = status
        self.retry_after = retry_after


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


class Control:
    """Shutdown state shared by the sender and its retry sleeps; lives in the sender's event loop."""

    def __init__(self) -> None:
        self.closing = False
        self._wake = asyncio.Event()

    def begin_close(self) -> None:
        """Called (in the loop) when the run starts closing: end backoff sleeps now."""
        self.closing = True
        self._wake.set()

    def keep_trying(self) -> None:
        """In the loop: nobody waits any more (the run left its session to the agent): back to
        the live pace, and a server that is down no longer ends a round."""
        self.closing = False

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake at once when closing begins; once closing, pause ``CLOSING_PAUSE`` at most."""
        if seconds <= 0:
            return
        if self.closing:
            await asyncio.sleep(min(seconds, CLOSING_PAUSE))
            return
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass


@dataclass(frozen=True)
class RetryPolicy:
    """How one request is retried. ``attempts`` and ``max_delay`` bound one round; the caller
    decides what happens after a round gives up (the live sender waits and starts a new round)."""

    attempts: int = 12
    max_delay: float = 120.0
    initial: float = 0.2
    max_wait: float = 10.0
    jitter: float = 0.5
    #: Longest backoff once closing began (Retry-After still applies in full).
    closing_wait: float = 0.5

    def retrying(
        self, control: Control, on_retry: Optional[Callable[[BaseException, float], None]] = None
    ) -> AsyncRetrying:
        # Exponential backoff plus random jitter (tenacity's wait_exponential_jitter, spelled the same on 8.x and 9.x).
        backoff = wait_exponential(multiplier=self.initial, max=self.max_wait) + wait_random(0, self.jitter)
        floor = [0.0]  # Retry-After of the last answer; wait() sets it, the sleep() right after reads it

        def wait(rs: RetryCallState) -> float:
            seconds = backoff(rs)
            if control.closing:
                seconds = min(seconds, self.closing_wait)
            exc = rs.outcome.exception() if rs.outcome is not None else None
            floor[0] = getattr(exc, "retry_after", None) or 0.0
            return max(seconds, floor[0])

        def stop_when_down_at_close(rs: RetryCallState) -> bool:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            return control.closing and isinstance(exc, ConnectFailed)

        async def sleep(seconds: float) -> None:
            # The part up to Retry-After is not cut short by closing: the server asked for it.
            hard = min(seconds, floor[0])
            if hard > 0:
                await asyncio.sleep(hard)
            await control.sleep(seconds - hard)

        def before_sleep(rs: RetryCallState) -> None:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            if on_retry is not None and exc is not None:  # only exceptions are retried
                on_retry(exc, rs.upcoming_sleep)

        return AsyncRetrying(
            sleep=sleep,
            # tenacity calls each part; its annotations only name its own stop classes
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_delay) | stop_when_down_at_close,  # type: ignore[operator]
            wait=wait,
            retry=retry_if_exception_type((TransportError, Retryable)),
            before_sleep=before_sleep,
            reraise=True,
        )

    async def call(
        self,
        control: Control,
        fn: Callable[[], Awaitable[T]],
        on_retry: Optional[Callable[[BaseException, float], None]] = None,
    ) -> T:
        """Run ``fn`` under this policy; the last error is re-raised when the round gives up."""
        return await self.retrying(control, on_retry)(fn)
