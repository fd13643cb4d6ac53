"""Remote: the step-cost loop against our server on loopback, until every event is acknowledged.

The clock stops when ``exp.flush()`` returns (the SDK's promise: everything logged before it is
acknowledged by the server) and ``run.complete()`` returned; the count is then checked on the
server's read API, from another process.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict

from .timing import dir_bytes, latency_stats, make_loop, maxrss_mib, new_timings, rss_mib, timer_overhead_ns
from .tools import Ours, verify_ours


def open_remote(args: Dict[str, Any]):
    """An experiment in remote mode with its spool under the run's own folder."""
    os.environ["ML_DASH_SPOOL_DIR"] = os.path.join(args["workdir"], "spool")
    if args.get("uploader"):
        os.environ["ML_DASH_UPLOADER"] = args["uploader"]
    from ml_dash import Experiment

    exp = Experiment(args["prefix"], dash_url=args["url"], token=args["token"])
    exp.run.start()
    return exp


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    """args: url, token, prefix, n, timed, workdir, uploader (optional: "agent" hands the upload to
    an agent already serving ``workdir/spool``)."""
    t_begin = time.perf_counter()
    n, timed = int(args["n"]), bool(args["timed"])
    os.makedirs(args["workdir"], exist_ok=True)
    exp = open_remote(args)
    t_opened = time.perf_counter()
    timer = timer_overhead_ns() if timed else None
    loop = make_loop(Ours.STMT, {"m": exp.metrics("train")}, timed)
    out = new_timings(n if timed else 0)
    rss_before = rss_mib()
    t0 = time.perf_counter()
    loop(0, n, n, out, time.perf_counter_ns)
    t1 = time.perf_counter()
    acked = exp.flush(timeout=float(args.get("flush_timeout", 600)))
    t2 = time.perf_counter()
    exp.run.complete()
    t3 = time.perf_counter()
    res: Dict[str, Any] = {
        "n": n,
        "timed": timed,
        "open_s": t_opened - t_begin,
        "loop_s": t1 - t0,
        "flush_s": t2 - t1,
        "close_s": t3 - t2,
        "until_acked_s": t3 - t0,
        "acked": acked,
        "rss_before_loop_mib": rss_before,
        "maxrss_mib": maxrss_mib(),
        "spool_bytes_after": dir_bytes(os.path.join(args["workdir"], "spool")),
        "python": sys.version.split()[0],
    }
    counters = _agent_counters(exp)
    if counters:
        res["agent_counters"] = counters
    if timed:
        res["latency"] = latency_stats(out)
        res["timer"] = timer
    return res


def _agent_counters(exp) -> Dict[str, Any]:
    """Whatever the remote sink says about itself (bytes sent etc.), if it says anything."""
    sink = getattr(exp, "_sink", None)
    for name in ("stats", "counters"):
        fn = getattr(sink, name, None)
        try:
            value = fn() if callable(fn) else fn
        except Exception:
            continue
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if isinstance(v, (int, float, str, bool))}
    return {}


def verify(args: Dict[str, Any]) -> Dict[str, Any]:
    """Read the rows back from the server (directly, not through any proxy)."""
    os.environ["ML_DASH_SPOOL_DIR"] = os.path.join(args["workdir"], "verify-spool")
    result = verify_ours("", args["prefix"], {"train": int(args["n"])}, dash_url=args["read_url"], token=args["token"])
    result["spool_bytes"] = dir_bytes(os.path.join(args["workdir"], "spool"))
    return result
