"""Timed loops and small measurement helpers shared by every probe.

Every tool's loop is generated from the same template (as ``timeit`` does), so each tool runs the
exact same loop body around its own logging statement: the values are computed outside the timed
region, and only the logging call sits between the two ``perf_counter_ns`` reads.
"""

from __future__ import annotations

import bisect
import os
import resource
import time
from array import array
from typing import Any, Callable, Dict, Iterable, List, Optional

__all__ = [
    "make_loop",
    "timer_overhead_ns",
    "latency_stats",
    "rss_mib",
    "maxrss_mib",
    "dir_bytes",
    "count_lines",
]

# The loop body every tool gets. ``STMT`` is the tool's logging statement; it sees the names
# ``i``, ``loss``, ``acc``, ``lr`` plus whatever the probe passes in ``names``.
_TIMED = """
def _loop(start, stop, n, out, pc):
    for i in range(start, stop):
        loss = 1.0 / (i + 1)
        acc = i / n
        lr = 0.001
        t0 = pc()
        {stmt}
        out[i - start] = pc() - t0
"""

_PLAIN = """
def _loop(start, stop, n, out, pc):
    for i in range(start, stop):
        loss = 1.0 / (i + 1)
        acc = i / n
        lr = 0.001
        {stmt}
"""


def make_loop(stmt: str, names: Dict[str, Any], timed: bool) -> Callable:
    """Compile ``_loop(start, stop, n, out, pc)`` running ``stmt`` once per step.

    With ``timed``, ``out[k]`` receives the nanoseconds of step ``start + k``. The statement's
    free names are bound as globals of the generated function (a dict lookup, the same cost a
    user's module-level loop pays).
    """
    src = (_TIMED if timed else _PLAIN).format(stmt=stmt)
    ns: Dict[str, Any] = dict(names)
    exec(compile(src, f"<loop: {stmt}>", "exec"), ns)  # noqa: S102  (the benchmark's own statements)
    return ns["_loop"]


def new_timings(n: int) -> array:
    """A preallocated array of n int64 (no per-call allocation inside the timed loop)."""
    return array("q", bytes(8 * n))


def timer_overhead_ns(samples: int = 200_000) -> Dict[str, float]:
    """The cost of an empty ``t0 = pc(); out[k] = pc() - t0`` region, in this process."""
    loop = make_loop("pass", {}, timed=True)
    out = new_timings(samples)
    loop(0, samples, samples, out, time.perf_counter_ns)
    return latency_stats(out)


def latency_stats(samples: Iterable[int]) -> Dict[str, float]:
    """Median, p99, p99.9 and max of nanosecond samples, in microseconds, and how many calls
    took over 1, 2 and 10 ms (the stalls a training loop would feel)."""
    s = sorted(samples)
    n = len(s)
    if not n:
        return {}

    def q(p: float) -> float:
        return s[min(n - 1, int(p * n))] / 1000.0

    return {
        "median_us": q(0.5),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": s[-1] / 1000.0,
        "mean_us": sum(s) / n / 1000.0,
        "n": n,
        "over_1ms": n - bisect.bisect_right(s, 1_000_000),
        "over_2ms": n - bisect.bisect_right(s, 2_000_000),
        "over_10ms": n - bisect.bisect_right(s, 10_000_000),
    }


def rss_mib() -> float:
    """Current resident set size of this process (from /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def maxrss_mib() -> float:
    """Peak RSS of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def dir_bytes(path: str) -> int:
    """Total size of the regular files under ``path``."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def count_lines(path: str) -> int:
    """Number of newline-terminated lines in a file (0 when missing)."""
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def find_files(root: str, predicate: Callable[[str], bool]) -> List[str]:
    """Paths under ``root`` whose file name satisfies ``predicate``."""
    found = []
    for r, _dirs, files in os.walk(root):
        found.extend(os.path.join(r, f) for f in files if predicate(f))
    return sorted(found)


def clock() -> Dict[str, Optional[float]]:
    """Child-side reference instants (CLOCK_MONOTONIC is system-wide, so the parent can compare)."""
    return {"monotonic": time.monotonic()}
