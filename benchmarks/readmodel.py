"""``python -m benchmarks.readmodel``: the read model's figures of issue #8, measured (never asserted).

- **Series read**: one metric grows to 1M, 2M, 5M and 10M rows (written by the SDK's own writer);
  at each size the read model picks up the growth (indexing throughput, rows/s), then a chart's
  queries are timed: the whole metric at 1,000 buckets, a zoom on its middle tenth, the worst
  zoom (just under 256 rows per bucket: every value of the range is read), x = step, and a live
  increment (the last 100 rows). Each in process (the read model's own time, what a server
  request spends besides HTTP) and through a real server process over HTTP on loopback. Baseline
  of the same run: the whole column already in float64 reduced to 1,000 buckets with numpy (what
  any per-row method costs at least; parsing the JSONL instead is the indexing figure).
- **Table of 10,000 experiments**: the catalogue's first build, a refresh with nothing changed,
  and table pages (default, sorted by a metric column with two extra columns, filtered by glob +
  search + status, a page deep in the list), in process and over HTTP; each also right after the
  server stored data for one experiment (the page reads that experiment again and filters and
  sorts anew). The full refresh runs in the background and is timed on its own.

Medians and p99 of repeated queries. Prints markdown; writes JSON to
``benchmarks/results/readmodel-<date>.json`` (git-ignored). ``--quick``: small sizes, for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
PREFIX = "bench/series/run"


def _pct(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _timed(fn: Callable[[], Any], repeat: int) -> Dict[str, Any]:
    fn()  # warm: the first call may read what a previous step appended
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return {
        "median_ms": statistics.median(times) * 1e3,
        "p99_ms": _pct(times, 0.99) * 1e3,
        "min_ms": min(times) * 1e3,
        "n": repeat,
        "answer": out,
    }


def _http(url: str, route: str, query: Dict[str, Any]) -> Callable[[], Any]:
    q = urllib.parse.urlencode(query)

    def call() -> Any:
        with urllib.request.urlopen(f"{url}/api/v1/{route}?{q}", timeout=600) as resp:
            return json.loads(resp.read())

    return call


# -- series ----------------------------------------------------------------------------------------------


def _append_rows(root: Path, start: int, stop: int, rnd: random.Random) -> None:
    """Rows ``start..stop-1`` of the metric, with the SDK's writer (in batches of 100,000)."""
    from ml_dash._names import parse_prefix
    from ml_dash._store import ExperimentWriter

    w = ExperimentWriter(root, parse_prefix(PREFIX))
    try:
        with w.lock():
            if not w.paths.experiment_json.exists():
                w.upsert_experiment({}, time.time())
        for lo in range(start, stop, 100_000):
            hi = min(stop, lo + 100_000)
            rows = [
                {"loss": 1.0 / (i + 1) + rnd.random() * 0.01, "step": i, "_ts": 1.7e9 + i * 0.01} for i in range(lo, hi)
            ]
            if lo <= stop // 2 < hi:
                rows[stop // 2 - lo]["loss"] = 1e6  # one spike, which min/max must keep
            with w.lock():
                w.append_metric("train", rows, time.time())
    finally:
        w.close()


def _brute(cols: Any, buckets: int) -> Callable[[], Any]:
    import numpy as np

    def call() -> Any:
        y = cols.values("loss", 0, cols.rows)
        starts = (np.arange(buckets) * len(y)) // buckets
        return int(np.maximum.reduceat(y, starts).argmax())

    return call


def bench_series(work: Path, sizes: List[int], repeat: int) -> Dict[str, Any]:
    from ml_dash._readmodel import LayoutReadModel
    from ml_dash.server import spawn_server
    from ml_dash.server.index import server_dir

    root = work / "series-root"
    root.mkdir(parents=True)
    model = LayoutReadModel(root, cache_dir=server_dir(root) / "series")  # the cache the server reads
    rnd = random.Random(1)
    out: Dict[str, Any] = {"sizes": []}
    have = 0
    url, proc = spawn_server(root, auth=False)
    try:
        for size in sizes:
            t = time.perf_counter()
            _append_rows(root, have, size, rnd)
            write_s = time.perf_counter() - t
            t = time.perf_counter()
            model.summary(PREFIX)  # the first read after the growth parses it into the cache
            index_s = time.perf_counter() - t
            new_rows, have = size - have, size
            first = model.series(PREFIX, "train", "loss", buckets=1000)
            cols = model._columns(model._paths(PREFIX), "train")  # for the baseline only
            zoom = (int(size * 0.45), int(size * 0.55) - 1)
            worst = (size // 2, size // 2 + 255 * 1000 - 1)
            queries = {
                "whole metric, 1,000 buckets": dict(field="loss", buckets=1000),
                "middle tenth, 1,000 buckets": dict(field="loss", start=zoom[0], end=zoom[1], buckets=1000),
                "255k-row zoom, 1,000 buckets (every value read)": dict(
                    field="loss", start=worst[0], end=worst[1], buckets=1000
                ),
                "x = step, whole metric": dict(field="loss", x="step", buckets=1000),
                "live: rows after last_index - 100": dict(field="loss", after=size - 101),
            }
            entry: Dict[str, Any] = {
                "rows": size,
                "write_s": write_s,
                "new_rows": new_rows,
                "index_s": index_s,
                "index_rows_per_s": new_rows / index_s,
                "queries": {},
            }
            for label, q in queries.items():
                if "after" in q:
                    local = _timed(lambda q=q: model.increments(PREFIX, "train", q["field"], after=q["after"]), repeat)
                else:
                    local = _timed(lambda q=q: model.series(PREFIX, "train", **q), repeat)
                http = _timed(_http(url, "series", {"prefix": PREFIX, "name": "train", **q}), repeat)
                a = http.pop("answer")
                local.pop("answer")
                check = a.get("count", None)
                entry["queries"][label] = {
                    "local": local,
                    "http": http,
                    "mode": a["mode"],
                    "points": len(a["points"]["x"]),
                    "count": check,
                }
            spike = max(v for v in first["points"]["max"])
            entry["spike_kept"] = spike == 1e6
            entry["baseline"] = _timed(_brute(cols, 1000), max(3, repeat // 3))
            entry["baseline"].pop("answer")
            out["sizes"].append(entry)
            _progress(f"series: {size:,} rows measured")
    finally:
        proc.terminate()
        proc.wait(30)
    return out


# -- table -----------------------------------------------------------------------------------------------


def seed_table(root: Path, n: int) -> None:
    """``n`` experiments written as the SDK lays them out (JSON files written plainly: a seed)."""
    import orjson

    from ml_dash._store._jsonio import iso_utc

    rnd = random.Random(7)
    for i in range(n):
        owner = ("alice", "bob", "carol", "dave")[i % 4]
        prefix = f"{owner}/{('vision', 'nlp', 'rl')[i % 3]}/sweep{i % 50:02d}/run{i:05d}"
        d = root / prefix
        (d / "metrics" / "train").mkdir(parents=True)
        status = rnd.choice(["COMPLETED", "COMPLETED", "FAILED", "CANCELLED", "RUNNING"])
        start = 1.76e9 + rnd.random() * 1e6
        exp = {
            "name": prefix.rsplit("/", 1)[1],
            "project": prefix.split("/")[1],
            "prefix": prefix,
            "description": rnd.choice(["baseline", "resnet-50 sweep", "ablation: no dropout", None]),
            "tags": rnd.sample(["resnet", "bert", "fast", "gpu"], 2),
            "created_at": iso_utc(start),
            "status": status,
            "started_at": iso_utc(start),
        }
        if status != "RUNNING":
            exp["ended_at"] = iso_utc(start + rnd.random() * 5000)
        (d / "experiment.json").write_bytes(orjson.dumps(exp))
        params = {
            "lr": rnd.choice([0.1, 0.01, 0.001]),
            "batch_size": rnd.choice([32, 64, 128]),
            "model.layers": rnd.randint(2, 12),
            "optimizer": rnd.choice(["adam", "sgd"]),
        }
        (d / "parameters.json").write_bytes(orjson.dumps({"version": 1, "data": params}))
        lines = [
            orjson.dumps(
                {
                    "index": k,
                    "data": {"loss": rnd.random(), "acc": rnd.random(), "step": k, "_ts": start + k},
                    "createdAt": iso_utc(start),
                }
            )
            for k in range(20)
        ]
        (d / "metrics" / "train" / "data.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def bench_table(work: Path, n: int, repeat: int) -> Dict[str, Any]:
    from ml_dash._readmodel import LayoutReadModel, TableQuery
    from ml_dash.server import spawn_server

    root = work / "table-root"
    root.mkdir(parents=True)
    t = time.perf_counter()
    seed_table(root, n)
    seed_s = time.perf_counter() - t
    model = LayoutReadModel(root, background=True)  # as the server has it
    t = time.perf_counter()
    model.catalog.refresh()
    build_s = time.perf_counter() - t
    refresh = _timed(model.catalog.refresh, max(3, repeat // 3))
    refresh.pop("answer")
    queries = {
        "first page (by prefix)": TableQuery(),
        "sorted by m:train:loss desc, 2 columns": TableQuery(
            sort="m:train:loss", order="desc", columns=("m:train:loss", "p:lr")
        ),
        "glob + search + 2 statuses, by duration": TableQuery(
            glob="alice/*", q="resnet", status=("COMPLETED", "FAILED"), sort="duration"
        ),
        "page 101 (offset 5,000)": TableQuery(offset=5000, limit=50, columns=("m:train:acc",)),
    }
    touched = sorted(p.parent for p in root.glob("*/*/*/*/experiment.json"))[:50]
    out: Dict[str, Any] = {
        "experiments": n,
        "seed_s": seed_s,
        "first_build_s": build_s,
        "refresh": refresh,
        "queries": {},
    }
    url, proc = spawn_server(root, auth=False)
    try:
        _http(url, "table", {"limit": 1})()  # the server's own first build
        for label, q in queries.items():
            local = _timed(lambda q=q: model.table(q), repeat)
            answer = local.pop("answer")

            k = [0]

            def after_change(q=q, k=k) -> Any:
                folder = touched[k[0] % len(touched)]
                k[0] += 1
                os.utime(folder, None)  # as an atomic rewrite of experiment.json does
                model.stored(folder.relative_to(root).as_posix())  # what the server's ingest says
                return model.table(q)

            changed = _timed(after_change, repeat)
            changed.pop("answer")
            params = {
                "glob": q.glob,
                "q": q.q,
                "status": ",".join(q.status) or None,
                "sort": q.sort,
                "order": q.order,
                "offset": q.offset,
                "limit": q.limit,
                "columns": ",".join(q.columns) or None,
            }
            http = _timed(_http(url, "table", {k2: v for k2, v in params.items() if v is not None}), repeat)
            http.pop("answer")
            out["queries"][label] = {
                "local": local,
                "after_change": changed,
                "http": http,
                "total": answer["total"],
                "rows": len(answer["rows"]),
            }
    finally:
        proc.terminate()
        proc.wait(30)
    _progress(f"table: {n:,} experiments measured")
    return out


# -- report ----------------------------------------------------------------------------------------------


def _progress(msg: str) -> None:
    print(f"[readmodel] {msg}", file=sys.stderr, flush=True)


def _ms(d: Dict[str, Any]) -> str:
    return f"{d['median_ms']:.2f} / {d['p99_ms']:.2f}"


def render(r: Dict[str, Any]) -> str:
    m = r["meta"]
    lines = [
        f"### Read model, {m['date']}",
        "",
        (
            f"Machine: {m['nproc']} cores, load average {m['load']}; Python {m['python']}; ml_dash at {m['commit']}; "
            f"{m['repeat']} repetitions per query."
        ),
        "",
    ]
    s = r.get("series")
    if s:
        lines += [
            "#### Series read (one metric, 3 fields + `_ts`): median / p99 ms",
            "",
            "| rows | picked up (rows/s) | query | in process | over HTTP | mode, points | baseline: numpy over the whole column |",
            "|---|---|---|---|---|---|---|",
        ]
        for e in s["sizes"]:
            first = True
            for label, q in e["queries"].items():
                lines.append(
                    f"| {e['rows']:,} | {e['index_rows_per_s'] / 1e3:,.0f}k | {label} | {_ms(q['local'])} | "
                    f"{_ms(q['http'])} | {q['mode']}, {q['points']} | "
                    + (f"{_ms(e['baseline'])}" if first else "")
                    + " |"
                )
                if first:
                    first = False
        lines += [
            "",
            "A spike of 1e6 at the middle row shows in the whole-metric max at every size: "
            + ", ".join(f"{e['rows']:,}: {'yes' if e['spike_kept'] else 'NO'}" for e in s["sizes"])
            + ".",
            "",
        ]
    t = r.get("table")
    if t:
        lines += [
            f"#### Table of {t['experiments']:,} experiments: median / p99 ms",
            "",
            (
                f"Catalogue: first build {t['first_build_s']:.1f} s; a full refresh with nothing changed (in the background, "
                f"at most once a second while pages are asked for) {_ms(t['refresh'])} ms."
            ),
            "",
            "| page | matching | in process, repeated | in process, right after the server stored data for an experiment | over HTTP, repeated |",
            "|---|---|---|---|---|",
        ]
        for label, q in t["queries"].items():
            lines.append(
                f"| {label} | {q['total']:,} | {_ms(q['local'])} | {_ms(q['after_change'])} | {_ms(q['http'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.readmodel", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small sizes (a smoke test; the figures mean nothing)")
    p.add_argument("--repeat", type=int, default=None, help="repetitions per query (default 30; quick 3)")
    p.add_argument("--only", choices=("series", "table"), default=None)
    p.add_argument("--out", default=None, help="JSON results path")
    p.add_argument("--workdir", default=None, help="where the data is written (default: a temporary folder)")
    a = p.parse_args(argv)
    sizes = [20_000, 60_000] if a.quick else [1_000_000, 2_000_000, 5_000_000, 10_000_000]
    experiments = 300 if a.quick else 10_000
    repeat = a.repeat or (3 if a.quick else 30)
    work = Path(tempfile.mkdtemp(prefix="ml-dash-readmodel-", dir=a.workdir))
    import platform
    import subprocess

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    results: Dict[str, Any] = {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "nproc": os.cpu_count(),
            "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
            "python": platform.python_version(),
            "commit": commit or "?",
            "repeat": repeat,
            "quick": a.quick,
        }
    }
    try:
        if a.only in (None, "series"):
            results["series"] = bench_series(work, sizes, repeat)
        if a.only in (None, "table"):
            results["table"] = bench_table(work, experiments, repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = render(results)
    out = Path(a.out or REPO / "benchmarks" / "results" / time.strftime("readmodel-%Y%m%d-%H%M%S.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    results["markdown"] = text
    out.write_text(json.dumps(results, indent=1, default=str))
    print(text)
    _progress(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
