"""Concurrent experiments in one process: 1, 10, 100, 1,000 experiments, local and remote, with
the floor (N files written by hand) of the same run alongside. See probes/sweep.py."""

from __future__ import annotations

import shutil
import tempfile
from typing import Any, Dict, List

from ..harness import Child, spawn
from ..report import cell, paired, rows_cell, table, vals
from ..server_ctl import Server, remote_sdk_missing
from ..settings import Settings
from .common import progress, record, short

COUNTS = (1, 10, 100, 1000)
TOOLS = ("floor", "local", "remote")


def run_sweep(s: Settings, ours: Child, scratch: str) -> Dict[str, Any]:
    rows = s.sweep_rows
    counts = [c for c in COUNTS if c <= rows and (c <= 100 or not s.quick)]  # --quick: under a minute
    no_remote = remote_sdk_missing(ours)
    runs: Dict[str, Dict[str, List[Dict[str, Any]]]] = {str(c): {t: [] for t in TOOLS} for c in counts}
    reps = min(s.repeat, 3)  # 12 processes a repetition, the biggest taking a minute
    for rep in range(reps):
        for c in counts:
            for tool in TOOLS:
                if tool == "remote" and no_remote:
                    continue
                runs[str(c)][tool].append(_one(s, ours, scratch, c, rows, tool))
                rec = runs[str(c)][tool][-1]
                r = rec.get("result", {})
                progress(
                    f"[sweep] {c} experiments, {tool}, rep {rep + 1}/{reps}: "
                    f"threads {r.get('threads_peak')} start {r.get('start_s', float('nan')):.2f}s "
                    f"{r.get('rows_per_s', 0):,.0f} rows/s "
                    f"{'ok' if rec['valid'] else 'INVALID ' + short(rec.get('error') or str(rec.get('verify')))}"
                )
    return {
        "rows": rows,
        "counts": counts,
        "runs": runs,
        **({"remote_reason": f"remote mode not available: {no_remote}"} if no_remote else {}),
    }


def _one(s: Settings, ours: Child, scratch: str, count: int, rows: int, tool: str) -> Dict[str, Any]:
    workdir = tempfile.mkdtemp(prefix=f"sweep-{tool}-", dir=scratch)
    args: Dict[str, Any] = {"tool": tool, "experiments": count, "rows": rows, "workdir": workdir}
    try:
        if tool != "remote":
            run = spawn("sweep", args, ours, s.timeout)
            return record(run, spawn("sweep-verify", args, ours, s.timeout) if run.ok else None)
        root = tempfile.mkdtemp(prefix="server-sweep-", dir=scratch)
        try:
            with Server(ours, root) as srv:
                args.update(url=srv.url, token=srv.token)
                run = spawn("sweep", args, ours, s.timeout)
                rec = record(run, spawn("sweep-verify", args, ours, s.timeout) if run.ok else None)
            rec["server"] = srv.stats
            return rec
        finally:
            shutil.rmtree(root, ignore_errors=True)
    except Exception as exc:  # a server that fails to start is a result, not a crash
        return {"ok": False, "valid": False, "error": f"{type(exc).__name__}: {exc}", "result": {}}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def sweep_table(w: Dict[str, Any]) -> str:
    header = [
        "experiments",
        "mode",
        "threads (process)",
        "start s",
        "loop s",
        "until durable s",
        "rows/s",
        "rows/s ×floor",
        "close s",
        "peak RSS MiB",
        "rows read back",
    ]
    out: List[List[str]] = []
    for c in w["counts"]:
        by_tool = w["runs"][str(c)]
        floor_rate = vals(by_tool.get("floor", []), "result.rows_per_s")
        for tool in TOOLS:
            runs = by_tool.get(tool, [])
            if not runs:
                if tool == "remote" and w.get("remote_reason"):
                    out.append([f"{c:,}", tool, w["remote_reason"]] + [""] * (len(header) - 3))
                continue
            rate = vals(runs, "result.rows_per_s")
            until = [
                None if a is None or b is None else a + b
                for a, b in zip(vals(runs, "result.loop_s"), vals(runs, "result.flush_s"))
            ]
            out.append(
                [
                    f"{c:,}",
                    tool,
                    cell(vals(runs, "result.threads_peak"), "{:.0f}"),
                    cell(vals(runs, "result.start_s"), "{:.3f}"),
                    cell(vals(runs, "result.loop_s"), "{:.3f}"),
                    cell(until, "{:.3f}"),
                    cell(rate, "{:,.0f}"),
                    "—" if tool == "floor" else cell(paired(rate, floor_rate), "{:.2f}×"),
                    cell(vals(runs, "result.close_s"), "{:.3f}"),
                    cell(vals(runs, "maxrss_mib"), "{:.0f}"),
                    rows_cell(runs),
                ]
            )
    note = (
        f"{w['rows']:,} rows of 3 scalars in total, round-robin over the experiments from one thread; "
        "threads are the process's (main thread included) at their peak; until durable = loop + flush of "
        "every experiment (local: on disk; remote: acknowledged by the server on loopback); the floor writes "
        "orjson lines to N files opened at start. Rows/s = rows / until durable."
    )
    return "#### Concurrent experiments in one process\n\n" + table(header, out) + "\n\n" + note
