"""Console capture: stdout and stderr teed into the run's logs, line by line.

How it works, and why:

* The ``write`` of the current ``sys.stdout`` and ``sys.stderr`` objects is wrapped in place (the
  objects themselves stay), so a ``logging.StreamHandler`` made before the run started, which holds
  the stream object, is captured too. Text goes to the terminal first, unchanged and synchronously;
  only then is a copy split into lines. A stream object that refuses a new attribute is replaced in
  ``sys`` by a thin proxy instead.
* ``\\n`` ends a line. Within a line, ``\\r`` starts it over, so a progress bar (tqdm) that redraws
  itself thousands of times is stored once, as the state it showed last.
* Complete lines go to a bounded in-memory list and are handed to ``exp.log`` by a thread of ours,
  never in the writer's thread: a ``print`` never waits on the run's queue, and a logging handler
  that holds its lock while writing cannot deadlock with the queue's writer.
* No recursion: text written by ml-dash's own threads (``ml-dash-*``: the worker, the sender, this
  forwarder) is shown but not captured, so our own messages never come back into the run in a loop.
* Output written below Python (by C code to file descriptor 1 or 2, or by child processes) is not
  captured: catching it would mean putting a pipe between the program and its terminal, which
  changes what the program sees (``isatty``) and loses the terminal's output if the process dies.
* Durability: a line reaches the queue at once and the store within ``flush_interval`` (0.5 s); a
  SIGKILL loses at most the lines of that last window. A line still unfinished at the end of the run
  (no ``\\n`` yet) is stored as it stands.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
import weakref

from .._fork import start_without_signals
from .._report import warn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, ClassVar, Dict, List, Optional

    from .._experiment import Experiment

__all__ = ["ConsoleCapture", "LineSplitter", "not_captured"]

#: Complete lines waiting for the forwarder; past this many, new lines are dropped (counted).
MAX_QUEUED_LINES = 100_000
_OWN_THREADS = "ml-dash"
_active: "weakref.WeakSet[ConsoleCapture]" = weakref.WeakSet()
#: ``_quiet.on`` is set while this thread writes text the run already holds (a log line's echo).
_quiet = threading.local()


class not_captured:
    """Within this block, text this thread writes reaches the terminal but is not captured."""

    def __enter__(self) -> None:
        _quiet.on = True

    def __exit__(self, *exc: object) -> None:
        _quiet.on = False


class LineSplitter:
    """Turns written text into lines: ``\\n`` ends a line, ``\\r`` within a line starts it over."""

    __slots__ = ("_pending", "_max")

    def __init__(self, max_chars: int):
        self._pending = ""
        self._max = max_chars

    def feed(self, text: str) -> List[str]:
        """The lines that ``text`` completes (possibly none)."""
        if "\n" not in text:
            pending = self._pending + text
            if "\r" in text:
                pending = _last_redraw(pending)
            if len(pending) > self._max:  # a line that never ends is stored in pieces
                self._pending = ""
                return _chunks(pending, self._max)
            self._pending = pending
            return []
        parts = (self._pending + text).split("\n")
        self._pending = _last_redraw(parts.pop())
        out: List[str] = []
        for part in parts:
            out.extend(_chunks(_final_state(part), self._max))
        return out

    def rest(self) -> Optional[str]:
        """The unfinished line, if it holds anything but blanks; forgets it."""
        pending, self._pending = _final_state(self._pending), ""
        return pending if pending.strip() else None


def _final_state(line: str) -> str:
    """What a terminal shows last for a line: the text after its last ``\\r`` (a trailing one, as in
    ``\\r\\n``, ends the line rather than starting it over)."""
    if "\r" not in line:
        return line
    line = line.rstrip("\r")
    return line[line.rfind("\r") + 1 :]


def _last_redraw(pending: str) -> str:
    """Drop every redraw of an unfinished line but the last (bounded memory for progress bars)."""
    cut = pending.rfind("\r", 0, len(pending) - 1)
    return pending if cut < 0 else pending[cut + 1 :]


def _chunks(line: str, size: int) -> List[str]:
    return [line] if len(line) <= size else [line[i : i + size] for i in range(0, len(line), size)]


class ConsoleCapture:
    """Tees ``sys.stdout`` and ``sys.stderr`` into ``exp``'s logs until :meth:`stop`."""

    def __init__(self, exp: "Experiment"):
        self._exp = exp
        limit = max(1, exp.config.max_string_bytes)
        self._splitters: Dict[str, LineSplitter] = {"stdout": LineSplitter(limit), "stderr": LineSplitter(limit)}
        self._lock = threading.Lock()
        self._lines: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        #: Set at stop and in a forked child: text passes to the terminal, nothing is kept.
        self._muted = False
        self._dropped = 0
        self._failed = 0
        self._undo: List[Callable[[], None]] = []
        self._thread = threading.Thread(target=self._forward, name=f"ml-dash-console:{exp.prefix}", daemon=True)

    @classmethod
    def start(cls, exp: "Experiment") -> "ConsoleCapture":
        cap = cls(exp)
        start_without_signals(cap._thread)
        for name in ("stdout", "stderr"):
            cap._wrap(name)
        _active.add(cap)
        return cap

    # -- the writer's side: runs inside every print -------------------------------------------------

    def feed(self, stream: str, text: str) -> None:
        """Split ``text`` written to ``stream`` into lines and queue the complete ones."""
        if self._muted or getattr(_quiet, "on", False) or threading.current_thread().name.startswith(_OWN_THREADS):
            return
        with self._lock:
            lines = self._splitters[stream].feed(text)
            if not lines:
                return
            room = MAX_QUEUED_LINES - len(self._lines)
            if room < len(lines):
                self._dropped += len(lines) - max(room, 0)
                lines = lines[: max(room, 0)]
            self._lines.extend((stream, line) for line in lines)
        self._wake.set()

    def _wrap(self, name: str) -> None:
        stream = getattr(sys, name, None)
        if stream is None:  # pythonw, or a closed stream: nothing to capture
            return
        tap = _Tap.attach(name, stream, self)
        self._undo.append(lambda: tap.detach(self))

    # -- the forwarder: our own thread -----------------------------------------------------------------

    def _forward(self) -> None:
        exp = self._exp
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch = list(self._lines)
                self._lines.clear()
            for stream, line in batch:
                try:
                    exp.log(line, level="info", stream=stream)
                except Exception:  # a closed run, a value refused: count it, keep the rest
                    self._failed += 1
            if self._stopping and not self._lines:
                return

    # -- end ---------------------------------------------------------------------------------------------

    def stop(self, deadline: float) -> None:
        """Restore the streams, store unfinished lines, and wait for the forwarder to hand everything over."""
        import time

        for undo in reversed(self._undo):
            undo()
        self._undo.clear()
        _active.discard(self)
        with self._lock:
            for name, splitter in self._splitters.items():
                rest = splitter.rest()
                if rest is not None:
                    self._lines.append((name, rest))
            self._muted = True
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(max(0.0, deadline - time.monotonic()))
        lost = self._dropped + self._failed + len(self._lines)
        if lost:
            warn(
                f"{self._exp.prefix}: {lost} console line(s) not stored ({self._dropped} over the queue bound of "
                f"{MAX_QUEUED_LINES}, {self._failed} refused, {len(self._lines)} left at the deadline)"
            )

    def _after_fork_in_child(self) -> None:
        # The forwarder does not exist in a forked child (a DataLoader worker, say): show its
        # output, capture nothing; the parent's capture goes on. The lock may have been held by
        # a thread that does not exist here.
        self._muted = True
        self._lock = threading.Lock()


class _Tap:
    """The one wrapper on one stream object, shared by every capture of it (runs may overlap)."""

    _lock = threading.Lock()
    _taps: ClassVar[Dict[int, "_Tap"]] = {}

    def __init__(self, name: str, stream: Any):
        self.name = name
        self.stream = stream
        self.captures: tuple[Any, ...] = ()
        original = stream.write
        self._previous = getattr(stream, "__dict__", {}).get("write")
        self._proxy: Any = None

        def write(text: Any) -> Any:
            written = original(text)  # the terminal first, exactly as without us
            if type(text) is str and text:
                for cap in self.captures:
                    try:
                        cap.feed(name, text)
                    except Exception:  # capturing must never break the program's own output
                        pass
            return written

        self.write = write
        try:
            stream.write = write
        except (AttributeError, TypeError):  # no instance attributes: stand in for it in sys
            self._proxy = _StreamProxy(stream, write)
            setattr(sys, name, self._proxy)

    @classmethod
    def attach(cls, name: str, stream: Any, cap: "ConsoleCapture") -> "_Tap":
        with cls._lock:
            tap = cls._taps.get(id(stream))
            if tap is None or tap.stream is not stream:
                tap = cls._taps[id(stream)] = cls(name, stream)
            tap.captures = tap.captures + (cap,)
            return tap

    def detach(self, cap: "ConsoleCapture") -> None:
        with self._lock:
            self.captures = tuple(c for c in self.captures if c is not cap)
            if self.captures:
                return
            if self._taps.get(id(self.stream)) is self:
                del self._taps[id(self.stream)]
            if self._proxy is not None:
                if getattr(sys, self.name, None) is self._proxy:
                    setattr(sys, self.name, self.stream)
            elif self.stream.__dict__.get("write") is self.write:
                if self._previous is None:
                    del self.stream.write
                else:
                    self.stream.write = self._previous
            # Otherwise someone wrapped our write after us: theirs stays, and ours, with no
            # capture left, only passes text on.


class _StreamProxy:
    """Stands in for a stream object that refuses a new ``write`` attribute."""

    def __init__(self, stream: Any, write: Callable[[Any], Any]):
        self._stream = stream
        self.write = write

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _after_fork_in_child() -> None:
    _Tap._lock = threading.Lock()
    for cap in list(_active):
        cap._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
