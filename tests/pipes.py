"""A child process's output, read line by line with a deadline.

``pipe.readline()`` blocks until the child writes a whole line or closes the pipe: inside a
polling loop its deadline never fires, and a child that stays silent hangs the test until the
suite's timeout, with nothing to show. :class:`Lines` reads the pipe in a daemon thread into a
queue, so a wait gives up at its deadline and its failure says everything the child printed.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from typing import IO, Callable, List, Optional

__all__ = ["Lines", "read_line", "DUMP_STACKS_ON_SIGUSR1", "with_stacks"]

#: Prepend to a child's program: ``SIGUSR1`` then prints every thread's stack on its stderr
#: (see :func:`with_stacks`).
DUMP_STACKS_ON_SIGUSR1 = "import faulthandler as _fh, signal as _sig; _fh.register(_sig.SIGUSR1, all_threads=True)\n"


class Lines:
    """Every line of ``pipe`` (a text pipe of a child), read by a thread of its own."""

    def __init__(self, pipe: IO[str], name: str = "output"):
        self.name = name
        self.lines: List[str] = []  # every line taken from the queue so far, in order
        self.closed = False  # the child closed the pipe (exited), and every line was taken
        self._queue: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._pump, args=(pipe,), name=f"lines-{name}", daemon=True).start()

    def _pump(self, pipe: IO[str]) -> None:
        try:
            for line in iter(pipe.readline, ""):
                self._queue.put(line)
        except (OSError, ValueError):  # closed under us: the test is done with it
            pass
        finally:
            self._queue.put(None)

    def _take(self, timeout: float) -> Optional[str]:
        """The next line; None when the pipe closed; raises queue.Empty after ``timeout`` seconds."""
        if self.closed:
            return None
        line = self._queue.get(timeout=max(0.0, timeout))
        if line is None:
            self.closed = True
        else:
            self.lines.append(line)
        return line

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, match: Callable[[str], object], timeout: float, what: str) -> str:
        """The first line (not yet taken) for which ``match`` is true; fails the test after
        ``timeout`` seconds or when the pipe closes first, saying what the child printed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._take(deadline - time.monotonic())
            except queue.Empty:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; {self.name} so far:\n{self.text}"
                ) from None
            if line is None:
                raise AssertionError(f"{self.name} closed before {what}; it said:\n{self.text}")
            if match(line):
                return line

    def rest(self, timeout: float) -> str:
        """Everything the child prints from here until it closes the pipe (at most ``timeout`` s)."""
        start = len(self.lines)
        deadline = time.monotonic() + timeout
        while not self.closed:
            try:
                self._take(deadline - time.monotonic())
            except queue.Empty:
                raise AssertionError(f"{self.name} still open after {timeout}s; it said:\n{self.text}") from None
        return "".join(self.lines[start:])


def read_line(pipe: IO[str], timeout: float, what: str) -> str:
    """The next line of ``pipe``, waited for at most ``timeout`` seconds; the test fails after that,
    or when the pipe closes first. For a child that prints one line and then waits (the pipe stays
    the caller's: ``communicate()`` may read it afterwards)."""
    got: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=lambda: got.put(pipe.readline()), name=f"read-line-{what}", daemon=True).start()
    try:
        line = got.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None
    if not line:
        raise AssertionError(f"the pipe closed before {what}")
    return line


def with_stacks(proc: subprocess.Popen, err: Lines, failure: AssertionError) -> AssertionError:
    """``failure`` with every thread's stack of ``proc`` added (a child started with
    :data:`DUMP_STACKS_ON_SIGUSR1`, still running, whose stderr ``err`` reads)."""
    if proc.poll() is not None:
        return failure
    seen = len(err.lines)
    proc.send_signal(signal.SIGUSR1)
    try:
        err.wait_for(lambda line: line.startswith("Thread 0x") or "most recent call first" in line, 5, "stacks")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # the dump is a burst of lines: take what comes of it
            try:
                if err._take(0.2) is None:
                    break
            except queue.Empty:
                break
    except AssertionError:
        pass
    return AssertionError(f"{failure}\n--- the child's threads ---\n{''.join(err.lines[seen:])}")
