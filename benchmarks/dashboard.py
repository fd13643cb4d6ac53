"""``python -m benchmarks.dashboard``: the dashboard in headless Chromium, measured (never asserted).

Two figures of issue #8:

- **experiment page, 100 metrics**: from navigation until every chart in the first screen has
  drawn its data (and separately until all 100 have, scrolling through), in a fresh browser
  context each time (nothing cached). Baseline of the same run: the same page of an experiment
  with no metrics (what the page costs before any chart).
- **live latency**: a process logs one row every 0.25 s into a local store that the dashboard
  serves; the page is open on the run. Latency of a row = when the chart's last point became
  that row (the page notes it, by a MutationObserver on the chart) − when ``log()`` was called.
  Baseline of the same run: when the row reached the disk (a thread watching the file), i.e.
  what the SDK's batching alone costs; the rest is the dashboard's polling and drawing.

Needs Playwright and Debian's chromium (as the page tests). Prints markdown; writes JSON to
``benchmarks/results/dashboard-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ML_DASH_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--no-first-run",
    "--disable-extensions",
]

VISIBLE_DRAWN = """() => {
  const charts = [...document.querySelectorAll('.chart')];
  if (!charts.length) return false;
  const inView = charts.filter(c => { const r = c.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; });
  return inView.length > 0 && inView.every(c => c.dataset.points && c.dataset.points !== '0');
}"""
ALL_DRAWN = """(n) => {
  const charts = [...document.querySelectorAll('.chart')];
  return charts.length >= n && charts.every(c => c.dataset.points && c.dataset.points !== '0');
}"""


def _pct(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _summary(xs: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(xs), "p99": _pct(xs, 0.99), "min": min(xs), "max": max(xs), "n": len(xs)}


def seed_wide(root: Path, metrics: int, rows: int) -> str:
    """One experiment with ``metrics`` metrics of one field each, ``rows`` rows apiece, written by the SDK."""
    from ml_dash import Experiment

    prefix = "bench/dashboard/wide"
    with Experiment(prefix=prefix, dash_root=str(root)).run as exp:
        handles = [exp.metrics(f"m{j:03d}") for j in range(metrics)]
        for i in range(rows):
            for j, h in enumerate(handles):
                h.log(value=(i % 97) * 0.01 + j)
    with Experiment(prefix="bench/dashboard/empty", dash_root=str(root)).run as exp:
        exp.log("nothing else")
    return prefix


def bench_page(browser, url: str, metrics: int, repeat: int) -> Dict[str, Any]:
    first, every, empty = [], [], []
    for rep in range(repeat + 1):  # the first round warms the browser and the server up: discarded
        if rep == 1:
            first.clear(), every.clear(), empty.clear()
        for kind in ("empty", "wide"):
            ctx = browser.new_context(viewport={"width": 1400, "height": 900})
            page = ctx.new_page()
            errors: List[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            t0 = time.perf_counter()
            page.goto(f"{url}/e/bench/dashboard/{kind}", wait_until="commit")
            if kind == "empty":
                page.wait_for_selector("#charts .empty")
                page.wait_for_selector("#logs .line")
                empty.append(time.perf_counter() - t0)
            else:
                page.wait_for_function(VISIBLE_DRAWN, polling="raf", timeout=60_000)
                first.append(time.perf_counter() - t0)
                # then every chart: scroll through, as a person looking for one would
                page.evaluate("""async () => { for (let y = 0; y < document.body.scrollHeight; y += innerHeight / 2) {
                  scrollTo(0, y); await new Promise(r => requestAnimationFrame(r)); } }""")
                page.wait_for_function(ALL_DRAWN, arg=metrics, polling="raf", timeout=120_000)
                every.append(time.perf_counter() - t0)
            if errors:
                raise RuntimeError(f"page errors: {errors}")
            ctx.close()
    return {
        "first_screen_s": _summary(first),
        "all_charts_s": _summary(every),
        "empty_page_s": _summary(empty),
        "ratio_first_to_empty": statistics.median(first) / statistics.median(empty),
    }


WRITER = """
import json, os, sys, time
from ml_dash import Experiment
root, stop, out, interval = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
where = {"dash_root": root} if root else {}  # no root: remote mode, to $ML_DASH_URL
with Experiment(prefix="bench/dashboard/live", **where).run as exp, open(out, "w") as f:
    m = exp.metrics("live")
    i = 0
    while not os.path.exists(stop):
        t = time.time()
        m.log(v=i * 0.5)
        f.write(json.dumps([i, t]) + "\\n"); f.flush()
        i += 1
        time.sleep(interval)
"""

OBSERVE = """() => {
  window.__drawn = [];
  const watch = () => {
    const c = document.querySelector('.chart[data-key="live:v"]');
    if (!c) return setTimeout(watch, 20);
    new MutationObserver(() => window.__drawn.push([Number(c.dataset.lastX), Date.now() / 1000]))
      .observe(c, { attributes: true, attributeFilter: ['data-last-x'] });
  };
  watch();
}"""


def _watch_disk(path: Path, stop: threading.Event, seen: Dict[int, float]) -> None:
    """When each row index reached the disk (the file polled every 5 ms)."""
    offset = 0
    while not stop.is_set():
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        now = time.time()
        cut = chunk.rfind(b"\n") + 1
        for line in chunk[:cut].splitlines():
            idx = json.loads(line)["index"]
            seen.setdefault(idx, now)
        offset += cut
        time.sleep(0.005)


def bench_live(browser, url: str, root: Path, seconds: float, interval: float, remote: bool) -> Dict[str, Any]:
    """``remote``: the process logs to the server at ``url`` (agent, spool, HTTP), else into ``root``."""
    work = Path(tempfile.mkdtemp(prefix="ml-dash-live-"))
    stop_file, log_file = work / "stop", work / "logged.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    if remote:
        env.update(ML_DASH_URL=url, ML_DASH_SPOOL_DIR=str(work / "spool"), ML_DASH_PRINT_URL="0")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(WRITER),
            "" if remote else str(root),
            str(stop_file),
            str(log_file),
            str(interval),
        ],
        env=env,
    )
    data = root / "bench/dashboard/live/metrics/live/data.jsonl"
    on_disk: Dict[int, float] = {}
    halt = threading.Event()
    watcher = threading.Thread(target=_watch_disk, args=(data, halt, on_disk), daemon=True)
    watcher.start()
    try:
        deadline = time.time() + 30
        while not data.exists() and time.time() < deadline:
            time.sleep(0.05)
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.add_init_script(f"({OBSERVE})();")
        page.goto(f"{url}/e/bench/dashboard/live")
        page.wait_for_selector('.chart[data-key="live:v"] canvas', timeout=30_000)
        page.wait_for_timeout(seconds * 1000)
        # a loaded machine may open the page late: wait for a few live draws past the first one
        page.wait_for_function("(k) => (window.__drawn || []).length >= k", arg=4, timeout=90_000)
        drawn = page.evaluate("window.__drawn")
        ctx.close()
    finally:
        stop_file.touch()
        writer.wait(60)
        halt.set()
        watcher.join()
    logged = dict(json.loads(line) for line in log_file.read_text().splitlines())
    first_drawn: Dict[int, float] = {}
    for last_x, t in drawn:
        first_drawn.setdefault(int(last_x), t)
    if not drawn:
        raise RuntimeError("the live chart was never drawn")
    t_open = drawn[0][1]  # the page's first draw: rows logged before it were not drawn live
    lat, disk = [], []
    for idx in sorted(logged):
        if logged[idx] <= t_open or idx not in on_disk:
            continue
        # drawn when the chart's last point first reached this row (or passed it in one draw)
        t_draw = next((t for x, t in sorted(first_drawn.items()) if x >= idx), None)
        if t_draw is None:
            continue
        lat.append(t_draw - logged[idx])
        disk.append(on_disk[idx] - logged[idx])
    if not lat:
        raise RuntimeError("no live point was drawn")
    return {
        "latency_s": _summary(lat),
        "to_disk_s": _summary(disk),
        "rows": len(lat),
        "dashboard_share_s": statistics.median(lat) - statistics.median(disk),
    }


def main(argv: List[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dashboard", description=__doc__.splitlines()[0])
    p.add_argument("--metrics", type=int, default=100)
    p.add_argument("--rows", type=int, default=10_000, help="rows per metric of the wide experiment")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--live-seconds", type=float, default=20)
    p.add_argument("--quick", action="store_true", help="small and short: checks that it runs")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if a.quick:
        a.metrics, a.rows, a.repeat, a.live_seconds = 12, 500, 1, 8
    from playwright.sync_api import sync_playwright

    from ml_dash.server import run_in_thread

    from .meta import collect_meta
    from .settings import Settings

    root = Path(tempfile.mkdtemp(prefix="ml-dash-bench-dash-")) / ".dash"
    t = time.perf_counter()
    seed_wide(root, a.metrics, a.rows)
    print(f"seeded {a.metrics} metrics x {a.rows:,} rows in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    server = run_in_thread(root, auth=False, read_only=True)
    remote_root = root.parent / "server-root"
    remote_server = run_in_thread(remote_root, auth=False)  # loopback, no token: the remote run's target
    results: Dict[str, Any] = {"meta": collect_meta(Settings()), "metrics": a.metrics, "rows": a.rows}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            results["page"] = bench_page(browser, server.url, a.metrics, a.repeat)
            results["live"] = bench_live(browser, server.url, root, a.live_seconds, 0.25, remote=False)
            if not a.quick:  # --quick checks the page and the local live path; the remote one takes minutes under load
                results["live_remote"] = bench_live(
                    browser, remote_server.url, remote_root, a.live_seconds, 0.25, remote=True
                )
            browser.close()
    finally:
        server.stop()
        remote_server.stop()
    out = Path(a.out) if a.out else REPO / "benchmarks" / "results" / f"dashboard-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    pg, lv = results["page"], results["live"]
    f = lambda s: f"{s['median'] * 1000:.0f} ms [{s['min'] * 1000:.0f}–{s['max'] * 1000:.0f}]"  # noqa: E731
    print(f"\n### Dashboard ({a.metrics} metrics x {a.rows:,} rows; {a.repeat} fresh browser contexts)\n")
    print("| figure | median [min–max] | target |")
    print("|---|---|---|")
    print(f"| experiment page, first screen of charts drawn | {f(pg['first_screen_s'])} | ≤ 1 s |")
    print(f"| the same, all {a.metrics} charts drawn (scrolling through) | {f(pg['all_charts_s'])} | |")
    print(f"| baseline: page of an experiment with no metrics | {f(pg['empty_page_s'])} | |")
    print(
        f"| live: log() → point drawn ({lv['rows']} rows, one per 0.25 s) | {f(lv['latency_s'])}, p99 {lv['latency_s']['p99'] * 1000:.0f} ms | ≤ 3 s |"
    )
    print(f"| baseline: log() → row on disk (SDK batching) | {f(lv['to_disk_s'])} | |")
    lr = results.get("live_remote")
    if lr:
        print(
            f"| live, remote run: log() → server → point drawn ({lr['rows']} rows) | {f(lr['latency_s'])}, p99 {lr['latency_s']['p99'] * 1000:.0f} ms | ≤ 3 s |"
        )
        print(f"| baseline: log() → row on the server's disk (spool, upload, ingest) | {f(lr['to_disk_s'])} | |")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
