"""Step cost: N steps of 3 scalars with one tool, timed per call or not, in 1 or several threads.

Timed mode wraps each call in two ``perf_counter_ns`` reads; that costs itself (quoted as
``timer`` and measured in this same process), and it perturbs the tool, so the parent also runs
an untimed ("plain") process, whose loop time is the un-instrumented figure.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any, Dict

from . import tools
from .timing import dir_bytes, latency_stats, make_loop, maxrss_mib, new_timings, rss_mib, timer_overhead_ns


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    """args: tool, n, timed (bool), threads (int), workdir."""
    t_begin = time.perf_counter()
    tool, n, timed = args["tool"], int(args["n"]), bool(args["timed"])
    threads, workdir = int(args.get("threads", 1)), args["workdir"]
    os.makedirs(workdir, exist_ok=True)
    adapter = tools.get(tool)
    adapter.load(workdir)
    t_loaded = time.perf_counter()
    names = adapter.open(workdir)
    t_opened = time.perf_counter()
    # The timer's own cost, measured here because it depends on this process's state.
    timer = timer_overhead_ns() if timed else None
    loop = make_loop(adapter.STMT, names, timed)
    rss_before = rss_mib()
    pc = time.perf_counter_ns
    if threads == 1:
        out = new_timings(n if timed else 0)
        t0 = time.perf_counter()
        loop(0, n, n, out, pc)
        t1 = time.perf_counter()
        outs = [out]
    else:
        t0, t1, outs = _threaded(loop, n, threads, timed)
    rss_after_loop = rss_mib()
    t2 = time.perf_counter()
    extra = adapter.close()
    t3 = time.perf_counter()
    result: Dict[str, Any] = {
        "tool": tool,
        "n": n,
        "threads": threads,
        "timed": timed,
        "load_s": t_loaded - t_begin,
        "open_s": t_opened - t_loaded,
        "loop_s": t1 - t0,
        "close_s": t3 - t2,
        "loop_close_s": t3 - t0,
        "mean_step_us": (t1 - t0) / n * 1e6,
        "rss_before_loop_mib": rss_before,
        "rss_after_loop_mib": rss_after_loop,
        "maxrss_mib": maxrss_mib(),
        "python": sys.version.split()[0],
        **extra,
    }
    if timed:
        samples = outs[0] if len(outs) == 1 else [x for o in outs for x in o]
        result["latency"] = latency_stats(samples)
        result["timer"] = timer
    return result


def _threaded(loop, n: int, threads: int, timed: bool):
    """Split the n steps into contiguous slices, one per thread, all released at once."""
    per = n // threads
    outs = [new_timings(per if timed else 0) for _ in range(threads)]
    gate = threading.Barrier(threads + 1)
    pc = time.perf_counter_ns

    errors: list = []

    def work(k: int) -> None:
        gate.wait()
        try:
            loop(k * per, (k + 1) * per, n, outs[k], pc)
        except BaseException as exc:  # a thread's exception must fail the run, not vanish on stderr
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    t1 = time.perf_counter()
    if errors:
        raise RuntimeError(f"{len(errors)} of {threads} threads failed; first: {type(errors[0]).__name__}: {errors[0]}")
    return t0, t1, outs


def verify(args: Dict[str, Any]) -> Dict[str, Any]:
    """Run after the measured process exited: count the stored rows, and the bytes on disk."""
    adapter = tools.get(args["tool"])
    adapter.load(args["workdir"])  # sets the environment the tool's reader needs (e.g. mlflow's store)
    result = adapter.verify(args["workdir"], int(args["n"]))
    result["disk_bytes"] = dir_bytes(args["workdir"])
    return result


def import_check(args: Dict[str, Any]) -> Dict[str, Any]:
    """Which heavy modules ``import ml_dash`` pulls in (reported, never asserted)."""
    if args.get("path"):
        sys.path.insert(0, args["path"])  # the regular install run_import measures
    before = set(sys.modules)
    t0 = time.perf_counter()
    import ml_dash

    t1 = time.perf_counter()
    new = set(sys.modules) - before
    watch = ["aiohttp", "asyncio", "numpy", "orjson", "tenacity", "aiofiles", "ssl", "zstandard"]
    return {
        "import_s_in_process": t1 - t0,
        "modules_added": len(new),
        "loaded": {m: (m in sys.modules) for m in watch},
        "aiohttp_loaded": "aiohttp" in sys.modules,
        "ml_dash_file": getattr(ml_dash, "__file__", None),
        "cwd": os.getcwd(),
    }
