"""Many concurrent experiments in one process (a sweep run in-process): threads, RSS, start time
and rows per second for N experiments, local and remote, against a floor of N files.

``rows`` rows in total (3 scalars each) are logged round-robin over the N experiments from one
thread, so every N does the same work; then every experiment is flushed (local: on disk; remote:
acknowledged by the server) and completed.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Dict, List


def _os_threads() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return threading.active_count()


def _raise_fd_limit() -> None:
    # A thousand experiments hold a few descriptors each; some systems' soft limit is 1024.
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ImportError, ValueError, OSError):
        pass


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    n, rows, tool, workdir = args["experiments"], args["rows"], args["tool"], args["workdir"]
    per = rows // n
    _raise_fd_limit()
    threads_before = _os_threads()
    t0 = time.perf_counter()
    if tool == "floor":
        import orjson

        opt = orjson.OPT_APPEND_NEWLINE
        files = [open(os.path.join(workdir, f"e{i}.jsonl"), "wb") for i in range(n)]
        t1 = time.perf_counter()
        for step in range(per):
            for f in files:
                f.write(
                    orjson.dumps({"loss": 1.0 / (step + 1), "acc": 0.5, "lr": 0.001, "_ts": time.time()}, option=opt)
                )
        t2 = time.perf_counter()
        for f in files:
            f.flush()
        t3 = time.perf_counter()
        threads_peak = _os_threads()
        for f in files:
            f.close()
        t4 = time.perf_counter()
    else:
        from ml_dash import Experiment

        kw = (
            {"dash_url": args["url"], "token": args["token"]}
            if tool == "remote"
            else {"dash_root": os.path.join(workdir, ".dash")}
        )
        exps = [Experiment(f"bench/sweep/e{i}", **kw).run.start() for i in range(n)]
        builders = [e.metrics("train") for e in exps]
        t1 = time.perf_counter()
        peak: List[int] = [_os_threads()]
        for step in range(per):
            for b in builders:
                b.log(loss=1.0 / (step + 1), acc=0.5, lr=0.001)
            if step % max(1, per // 4) == 0:
                peak.append(_os_threads())
        t2 = time.perf_counter()
        ok = all(e.flush(600) for e in exps)
        t3 = time.perf_counter()
        peak.append(_os_threads())
        if not ok:
            raise RuntimeError("an experiment did not flush within 600 s")
        for e in exps:
            e.run.complete()
        t4 = time.perf_counter()
        threads_peak = max(peak)
    total = per * n
    return {
        "tool": tool,
        "experiments": n,
        "rows": total,
        "threads_before": threads_before,
        "threads_peak": threads_peak,
        "start_s": t1 - t0,
        "loop_s": t2 - t1,
        "flush_s": t3 - t2,
        "close_s": t4 - t3,
        "rows_per_s": total / max(1e-9, t3 - t1),
    }


def verify(args: Dict[str, Any]) -> Dict[str, Any]:
    n, rows, tool, workdir = args["experiments"], args["rows"], args["tool"], args["workdir"]
    per = rows // n
    got = 0
    problems = []
    for i in range(n):
        if tool == "floor":
            with open(os.path.join(workdir, f"e{i}.jsonl"), "rb") as f:
                count = sum(1 for _ in f)
        else:
            if tool == "remote":
                from ml_dash._remote_read import RemoteReader

                r: Any = RemoteReader(args["url"], args["token"], f"bench/sweep/e{i}")
            else:
                from ml_dash._store import ExperimentReader

                r = ExperimentReader(os.path.join(workdir, ".dash"), f"bench/sweep/e{i}")
            count = len(r.metric_rows("train"))
        got += count
        if count != per and len(problems) < 3:
            problems.append(f"e{i}: {count} rows, expected {per}")
    return {"ok": not problems and got == per * n, "rows": got, "expected": per * n, "problems": problems}
