"""Markdown tables from the raw records: step cost, threads, mixed, remote, outage, ingest, import,
and the targets table.

Each cell is ``median [min–max]`` over the repetitions of the run; ratios are computed per
repetition against the baseline's repetition of the same index (measured minutes apart at most),
then summarised the same way.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence

from .harness import dig, summary
from .workloads.common import short

Runs = List[Dict[str, Any]]


def cell(values: Sequence[Optional[float]], fmt: str = "{:.2f}", scale: float = 1.0) -> str:
    s = summary(v * scale for v in values if v is not None)
    if s is None:
        return "—"
    if s["n"] == 1 or fmt.format(s["min"]) == fmt.format(s["max"]):
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}–{fmt.format(s['max'])}]"


def med(values: Sequence[Optional[float]]) -> Optional[float]:
    s = summary(values)
    return None if s is None else s["median"]


def valid(runs: Runs) -> Runs:
    return [r for r in runs if r.get("valid")]


def vals(runs: Runs, path: str) -> List[Optional[float]]:
    return [dig(r, path) for r in runs]


def net(runs: Runs, pct: str) -> List[Optional[float]]:
    """Per-call percentile minus the timer's median in the same process (not below 0)."""
    out = []
    for r in runs:
        raw, timer = dig(r, f"result.latency.{pct}"), dig(r, "result.timer.median_us")
        out.append(None if raw is None else max(0.0, raw - (timer or 0.0)))
    return out


def paired(a: List[Optional[float]], b: List[Optional[float]]) -> List[Optional[float]]:
    """Ratios a[k] / b[k] for repetitions where both exist."""
    return [x / y if x is not None and y else None for x, y in zip(a, b)]


def rows_cell(runs: Runs) -> str:
    if not runs:
        return "—"
    good = sum(1 for r in runs if r.get("valid"))
    ver = [r.get("verify", {}) for r in runs]
    exp = next((v.get("expected") for v in ver if v.get("expected") is not None), None)
    got = [v.get("rows") for v in ver if v.get("rows") is not None]
    if good == len(runs):
        return f"{exp:,} ✓" if exp is not None else "✓"
    why = next(
        (
            r.get("error") or str(r.get("verify", {}).get("problems") or r.get("verify", {}).get("error") or "")
            for r in runs
            if not r.get("valid")
        ),
        "",
    )
    return f"✗ INVALID ({good}/{len(runs)} ok; rows {got}; {short(why, 80)})"


def table(header: List[str], rows: List[List[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def status_row(name: str, entry: Dict[str, Any], width: int) -> List[str]:
    text = f"{entry.get('status', 'failed')}: {short(entry.get('reason'), 140)}"
    return [name, text] + [""] * (width - 2)


# -- step cost ----------------------------------------------------------------------------------------


def steps_tables(steps: Dict[str, Any]) -> str:
    tools = steps["tools"]
    floor = tools.get("floor", {}).get("runs", {})
    f_timed, f_main = floor.get("timed", []), floor.get("plain") or floor.get("timed", [])
    head = [
        "tool",
        "call median µs",
        "call p99 µs",
        "call p99.9 µs",
        "call max µs",
        "calls > 2 ms",
        "×floor (median)",
        "loop s timed",
        "loop s plain",
        "close s",
        "loop+close s",
        "process wall s",
        "wall ×floor",
        "peak RSS MiB",
        "CPU s",
        "disk MB",
        "rows read back",
    ]
    rows = []
    for name, e in tools.items():
        if e["status"] != "ok":
            rows.append(status_row(name, e, len(head)))
            continue
        timed = e["runs"].get("timed", [])
        plain = e["runs"].get("plain", [])
        main = plain or timed
        mark = "" if plain else " †"
        label = name if e.get("peer") is False else f"{name} (peer{', ' + e['reason'] if e.get('reason') else ''})"
        rows.append(
            [
                label,
                cell(net(timed, "median_us")),
                cell(net(timed, "p99_us")),
                cell(net(timed, "p999_us"), "{:.1f}"),
                cell(net(timed, "max_us"), "{:.0f}"),
                cell(vals(timed, "result.latency.over_2ms"), "{:.0f}"),
                cell(paired(net(timed, "median_us"), net(f_timed, "median_us")), "{:.1f}×"),
                cell(vals(timed, "result.loop_s"), "{:.3f}"),
                cell(vals(plain, "result.loop_s"), "{:.3f}"),
                cell(vals(main, "result.close_s"), "{:.3f}") + mark,
                cell(vals(main, "result.loop_close_s"), "{:.3f}") + mark,
                cell(vals(main, "wall_s"), "{:.3f}") + mark,
                cell(paired(vals(main, "wall_s"), vals(f_main, "wall_s")), "{:.1f}×") + mark,
                cell(vals(main, "maxrss_mib"), "{:.0f}") + mark,
                cell(vals(main, "cpu_s"), "{:.2f}") + mark,
                cell(vals(main, "verify.disk_bytes"), "{:.1f}", 1e-6) + mark,
                rows_cell(timed + plain),
            ]
        )
    out = [
        f"### Step cost: {steps['n']:,} steps × 3 scalars, one thread",
        "",
        table(head, rows),
        "",
        (
            "Per-call figures come from the timed run, net of the timer's own cost measured in the same "
            "process (its median is subtracted). The rest comes from the untimed (plain) run; † marks tools "
            "with no plain run (they are slow enough that the timer does not matter), whose figures come "
            "from the timed run. Process wall is measured by the parent from spawn to exit (interpreter "
            "start, imports and exit included); peak RSS and CPU come from wait4 on the child."
        ),
    ]
    timers = [dig(r, "result.timer.median_us") for e in tools.values() for r in e.get("runs", {}).get("timed", [])]
    if any(t is not None for t in timers):
        out.append(f"Timer overhead per call (median over all timed runs): {med(timers):.3f} µs.")
    return "\n".join(out) + "\n\n" + threads_table(steps)


def threads_table(steps: Dict[str, Any]) -> str:
    tools, k = steps["tools"], steps["threads"]
    key = f"threads{k}"
    f_runs = tools.get("floor", {}).get("runs", {}).get(key, [])
    head = [
        "tool",
        "mean cost/step µs",
        "×floor",
        "call median µs",
        "call p99 µs",
        "call p99.9 µs",
        "call max µs",
        "calls > 10 ms",
        "loop s",
        "close s",
        "rows read back",
    ]
    rows = []
    for name, e in tools.items():
        if e["status"] != "ok":
            rows.append(status_row(name, e, len(head)))
            continue
        runs = e["runs"].get(key, [])
        if not runs:
            rows.append([name, e.get("threads_reason", "not run")] + [""] * (len(head) - 2))
            continue
        rows.append(
            [
                name,
                cell(vals(runs, "result.mean_step_us")),
                cell(paired(vals(runs, "result.mean_step_us"), vals(f_runs, "result.mean_step_us")), "{:.1f}×"),
                cell(net(runs, "median_us")),
                cell(net(runs, "p99_us")),
                cell(net(runs, "p999_us"), "{:.1f}"),
                cell(net(runs, "max_us"), "{:.0f}"),
                cell(vals(runs, "result.latency.over_10ms"), "{:.0f}"),
                cell(vals(runs, "result.loop_s"), "{:.3f}"),
                cell(vals(runs, "result.close_s"), "{:.3f}"),
                rows_cell(runs),
            ]
        )
    return "\n".join(
        [
            f"### {k} threads × {steps['n'] // k:,} steps, one experiment",
            "",
            table(head, rows),
            "",
            (
                "Mean cost per step = loop wall time / all steps (GIL hand-offs included); per-call "
                "percentiles are over every call of every thread, net of the timer."
            ),
        ]
    )


def mixed_table(mixed: Dict[str, Any]) -> str:
    runs = mixed["runs"]
    f = runs.get("floor", [])
    head = [
        "tool",
        "metric call median / p99 µs",
        "log call median µs",
        "params call median µs",
        "file save (1 MiB) median ms",
        "loop s",
        "close s",
        "process wall s",
        "wall ×floor",
        "peak RSS MiB",
        "stored (metrics, eval, logs, files)",
    ]
    rows = []
    for name, rr in runs.items():
        rows.append(
            [
                name,
                cell([dig(r, "result.latency.metric.median_us") for r in rr])
                + " / "
                + cell([dig(r, "result.latency.metric.p99_us") for r in rr]),
                cell([dig(r, "result.latency.log.median_us") for r in rr]),
                cell([dig(r, "result.latency.params.median_us") for r in rr], "{:.1f}"),
                cell([dig(r, "result.latency.save.median_us") for r in rr], "{:.2f}", 1e-3),
                cell(vals(rr, "result.loop_s"), "{:.3f}"),
                cell(vals(rr, "result.close_s"), "{:.3f}"),
                cell(vals(rr, "wall_s"), "{:.3f}"),
                cell(paired(vals(rr, "wall_s"), vals(f, "wall_s")), "{:.1f}×"),
                cell(vals(rr, "maxrss_mib"), "{:.0f}"),
                _mixed_counts(rr),
            ]
        )
    return "\n".join(
        [
            f"### Mixed: {mixed['n']:,} steps with logs, params, eval metric and checkpoint saves",
            "",
            table(head, rows),
            "",
            (
                "Per step: 3 scalars; every 100 steps a log line; every 1,000 an eval row; params at "
                "start and every 25,000; a 1 MiB checkpoint saved every 10,000 (rewritten by the loop "
                "before each save). Per-call figures include the timer (~0.1 µs)."
            ),
        ]
    )


def _mixed_counts(rr: Runs) -> str:
    if not rr:
        return "—"
    bad = [r for r in rr if not r.get("valid")]
    c = rr[0].get("verify", {}).get("counts", {})
    text = f"{c.get('train', '?'):,}, {c.get('eval', '?')}, {c.get('logs', '?')}, {c.get('files', '?')}" if c else "?"
    return (text + " ✓") if not bad else f"✗ INVALID {short(bad[0].get('error') or str(bad[0].get('verify')), 80)}"


def import_table(imp: Dict[str, Any]) -> str:
    w = imp["walls"]
    chk = imp.get("check", {})
    head = ["command", "process wall ms", "over bare python ms", "aiohttp in sys.modules after import"]
    rows = [
        ["python -c pass", cell(w["pass"], "{:.1f}", 1e3), "—", "—"],
        [
            'python -c "import ml_dash"',
            cell(w["import ml_dash"], "{:.1f}", 1e3),
            cell(imp["paired_diff_s"], "{:.1f}", 1e3),
            ("yes" if chk.get("aiohttp_loaded") else "no")
            if "aiohttp_loaded" in chk
            else f"check failed: {short(chk.get('error'))}",
        ],
    ]
    return "\n".join([f"### Import ({imp['repeat']} runs each, interleaved)", "", table(head, rows)])


def big_table(big: Dict[str, Any]) -> str:
    head = ["tool", "RSS before loop MiB", "peak RSS MiB", "growth MiB", "process wall s", "rows read back"]
    rows = []
    for name, rr in big["runs"].items():
        rows.append(
            [
                name,
                cell(vals(rr, "result.rss_before_loop_mib"), "{:.0f}"),
                cell(vals(rr, "result.maxrss_mib"), "{:.0f}"),
                cell(growth(rr), "{:.1f}"),
                cell(vals(rr, "wall_s"), "{:.1f}"),
                rows_cell(rr),
            ]
        )
    return "\n".join(
        [f"### Long run: {big['points']:,} points ({big['steps']:,} steps), one process", "", table(head, rows)]
    )


def growth(rr: Runs) -> List[Optional[float]]:
    out = []
    for r in rr:
        a, b = dig(r, "result.maxrss_mib"), dig(r, "result.rss_before_loop_mib")
        out.append(None if a is None or b is None else a - b)
    return out


def render(results: Dict[str, Any], sections: List[Callable[[Dict[str, Any]], Optional[str]]]) -> str:
    """The whole markdown report: a header, each section that has data, then the targets."""
    parts = []
    for fn in sections:
        text = fn(results)
        if text:
            parts.append(text)
    return "\n\n".join(parts) + "\n"
