"""The scale-out store beside the embedded one, in the same run: ingest from 4 concurrent clients
(columnar metric records, as the agent sends them) with the embedded store, PostgreSQL with 1
server process and with 2 (``--workers 2``); range reads of 1M rows; series at 1,000 buckets of a
10M-row metric.

    python -m benchmarks.scaleout [--quick] [--repeat 3] [--out PATH]

It starts its own PostgreSQL cluster (Debian's binaries, as the tests do) with the default
durability settings (fsync on, synchronous_commit on): an acknowledged batch is on disk, as with
the embedded store. Servers run in their own processes; the load generator is this process.
Figures are medians (and min-max) of ``--repeat`` runs; ratios are against the embedded store
measured in the same run. ``--quick`` runs everything small once: a smoke test, not a measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import orjson

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.services import PgCluster, missing_pg  # noqa: E402  (the tests' throwaway cluster, durable here)


def _server_env(store: Optional[str] = None, blobs: Optional[str] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["PYTHONPATH"] = str(REPO)
    if store:
        env["ML_DASH_SERVER_STORE"] = store
        env["ML_DASH_SERVER_BLOBS"] = blobs
    return env


def _start(kind: str, work: Path, cluster: PgCluster = None, db: Optional[str] = None):
    """(url, token, process) of a server of ``kind``: embedded | postgres | postgres-2."""
    from ml_dash.server import create_token, spawn_server
    from ml_dash.server.settings import ServerSettings

    root = work / f"root-{kind}"
    if kind == "embedded":
        token = create_token(root, "bench")
        url, proc = spawn_server(root, extra_args=["--max-concurrent-writes", "64"], env=_server_env(), timeout=60)
        return url, token, proc
    settings = ServerSettings(store=cluster.admin_url(db), blobs=str(work / "blobs"))
    token = create_token(root, "bench", settings=settings)
    extra = ["--max-concurrent-writes", "64"] + (["--workers", "2"] if kind == "postgres-2" else [])
    url, proc = spawn_server(root, extra_args=extra, env=_server_env(settings.store, settings.blobs), timeout=120)
    return url, token, proc


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except Exception:
        proc.kill()


def _cpu(procs) -> float:
    """CPU seconds (user + system) of processes and their children, those still alive."""
    import psutil

    total = 0.0
    for p in procs:
        try:
            for q in [p, *p.children(recursive=True)]:
                t = q.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _postmaster(cluster: PgCluster):
    import psutil

    return psutil.Process(int((cluster.data / "postmaster.pid").read_text().split()[0]))


def _ingest_once(url: str, token: str, steps: int, server=None, cluster: PgCluster = None) -> Dict[str, Any]:
    """One run of the ingest probe (4 clients); with the CPU seconds the server processes and
    PostgreSQL spent during it (psutil), per million points."""
    import psutil

    from benchmarks.probes.ingest import _main

    watched = {
        "server": [psutil.Process(server.pid)] if server is not None else [],
        "postgresql": [_postmaster(cluster)] if cluster is not None else [],
    }
    before = {k: _cpu(v) for k, v in watched.items()}
    got = asyncio.run(
        _main({"url": url, "token": token, "clients": 4, "steps": steps, "batch": 20_000, "encoding": "zstd"})
    )
    millions = got["points"] / 1e6
    got["cpu_s_per_million_points"] = {k: (_cpu(v) - before[k]) / millions for k, v in watched.items() if v}
    return got


def _median(xs: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": len(xs)}


def _p99(xs: List[float]) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(0.99 * (len(s) - 1))))]


def _fill_metric(url: str, token: str, prefix: str, rows: int, per: int = 50_000) -> float:
    """One metric of ``rows`` rows (loss, acc, step), sent as columnar records; seconds taken."""
    import urllib.request

    import zstandard

    z = zstandard.ZstdCompressor(level=1)
    t0 = time.perf_counter()
    seq, now = 0, time.time()
    session = "fill" + os.urandom(6).hex()
    for a in range(0, rows, per):
        k = min(per, rows - a)
        lines = [orjson.dumps({"v": 1, "session": session, "prefix": prefix})]
        for b in range(a, a + k, 5_000):
            m = min(5_000, a + k - b)
            lines.append(
                orjson.dumps(
                    {
                        "seq": seq,
                        "kind": "metrics",
                        "n": m,
                        "name": "train",
                        "ts": [now + (b + j) * 1e-3 for j in range(m)],
                        "cols": {
                            "loss": [1.0 / (b + j + 1) for j in range(m)],
                            "acc": [((b + j) % 1000) / 1000 for j in range(m)],
                            "step": list(range(b, b + m)),
                        },
                    }
                )
            )
            seq += m
        req = urllib.request.Request(
            url + "/api/v1/ingest",
            data=z.compress(b"\n".join(lines)),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/x-ndjson",
                "Content-Encoding": "zstd",
            },
        )
        with urllib.request.urlopen(req, timeout=300) as resp:
            answer = json.loads(resp.read())
        assert answer["acked_seq"] == seq - 1, answer
    return time.perf_counter() - t0


def _time(fn, repeat: int) -> Dict[str, float]:
    fn()  # warm: connections, caches
    xs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        xs.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": statistics.median(xs), "p99_ms": _p99(xs), "min_ms": min(xs), "runs": repeat}


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steps", type=int, default=250_000, help="metric rows per client per ingest run (3 points each)")
    p.add_argument("--series-rows", type=int, default=10_000_000)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.repeat, args.steps, args.series_rows = 1, 5_000, 200_000
    why = missing_pg()
    if why:
        print(f"not available: {why}")
        return 0
    work = Path(tempfile.mkdtemp(prefix="mldash-bench-scaleout-"))
    os.chmod(work, 0o711)  # PostgreSQL runs as another user when we are root: it must reach its folder
    cluster = PgCluster(work / "pg").start(durable=True)
    results: Dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "repeat": args.repeat,
        "quick": args.quick,
    }
    try:
        from ml_dash.server.stores.postgres import apply_migrations

        # -- ingest -------------------------------------------------------------------------------
        ingest: Dict[str, Any] = {}
        for kind in ("embedded", "postgres", "postgres-2"):
            db = None
            if kind != "embedded":
                db = cluster.new_database()
                apply_migrations(cluster.admin_url(db))
            url, token, proc = _start(kind, work, cluster, db)
            try:
                runs = [_ingest_once(url, token, args.steps, proc, cluster if db else None) for _ in range(args.repeat)]
            finally:
                _stop(proc)
            bad = [r["verify"]["problems"] for r in runs if not r["verify"]["ok"]]
            cpu = {
                k: statistics.median(r["cpu_s_per_million_points"][k] for r in runs)
                for k in runs[0]["cpu_s_per_million_points"]
            }
            ingest[kind] = {
                "points_per_s": _median([r["points_per_s"] for r in runs]),
                "points": runs[0]["points"],
                "framing": runs[0]["framing"],
                "read_back_ok": not bad,
                "cpu_s_per_million_points": cpu,
            }
            print(
                f"ingest {kind:<11} {ingest[kind]['points_per_s']['median'] / 1e6:.2f} M points/s "
                f"[{ingest[kind]['points_per_s']['min'] / 1e6:.2f}-{ingest[kind]['points_per_s']['max'] / 1e6:.2f}]"
                f"  CPU s per M points: "
                + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
                + ("" if not bad else " READ-BACK FAILED"),
                flush=True,
            )
        base = ingest["embedded"]["points_per_s"]["median"]
        for kind in ("postgres", "postgres-2"):
            ingest[kind]["ratio_to_embedded"] = ingest[kind]["points_per_s"]["median"] / base
        results["ingest"] = ingest

        # -- reads --------------------------------------------------------------------------------
        results["reads"] = _reads(work, cluster, args)
    finally:
        cluster.destroy()
        import shutil

        shutil.rmtree(work, ignore_errors=True)  # the stores' data: gigabytes after a full run
    out = (
        Path(args.out)
        if args.out
        else REPO / "benchmarks" / "results" / f"scaleout-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


def _reads(work: Path, cluster: PgCluster, args) -> Dict[str, Any]:
    from ml_dash._store import ExperimentReader
    from ml_dash.server.limits import Limits
    from ml_dash.server.settings import ServerSettings
    from ml_dash.server.stores.postgres import PgBackend, apply_migrations
    from ml_dash.server.stores.postgres._series import column, series_by_index

    out: Dict[str, Any] = {}
    million = 1_000_000 if not args.quick else 100_000
    db = cluster.new_database()
    apply_migrations(cluster.admin_url(db))
    url, token, proc = _start("postgres", work, cluster, db)
    try:
        out["fill_1m_s"] = _fill_metric(url, token, "bench/read/one-million", million)
        out["fill_series_s"] = _fill_metric(url, token, "bench/read/ten-million", args.series_rows)
    finally:
        _stop(proc)
    eurl, etoken, eproc = _start("embedded", work)
    try:
        _fill_metric(eurl, etoken, "bench/read/one-million", million)
        out["embedded_fill_series_s"] = _fill_metric(eurl, etoken, "bench/read/ten-million", args.series_rows)
    finally:
        _stop(eproc)
    backend = PgBackend.open(ServerSettings(store=cluster.admin_url(db), blobs=str(work / "blobs")), None, Limits())
    repeat = 3 if args.quick else 20
    try:
        with backend.pool.connection() as conn:
            mid = conn.execute(
                "SELECT m.id FROM metrics m JOIN experiments e ON e.id = m.experiment_id WHERE e.prefix = %s",
                ("bench/read/one-million",),
            ).fetchone()[0]
            got = column(conn, mid, "loss", 0, million)
            assert len(got) == million and got[0] == 1.0 and got[-1] == 1.0 / million
            out["pg_range_read_1m_one_field"] = _time(lambda: column(conn, mid, "loss", 0, million), repeat)
            full = series_by_index(conn, "bench/read/ten-million", "train", "loss", None, None, 1000)
            assert full["mode"] == "buckets" and full["count"] == args.series_rows and len(full["points"]["x"]) <= 1000
            out["pg_series_1000_buckets_full"] = _time(
                lambda: series_by_index(conn, "bench/read/ten-million", "train", "loss", None, None, 1000), repeat
            )
            lo = args.series_rows // 3
            out["pg_series_1000_buckets_zoom_1pct"] = _time(
                lambda: series_by_index(
                    conn, "bench/read/ten-million", "train", "loss", lo, lo + args.series_rows // 100, 1000
                ),
                repeat,
            )
    finally:
        backend.close()
    # the embedded store: its read model (float columns + chunk summaries cached beside the layout,
    # as the server keeps them), the same reads; and the local reader's rows, for scale
    from ml_dash._readmodel import LayoutReadModel
    from ml_dash._readmodel._columns import MetricColumns

    eroot = work / "root-embedded"
    data = eroot / "bench/read/one-million/metrics/train/data.jsonl"
    cols = MetricColumns(data, work / "embedded-cache", None, source="bench")
    t0 = time.perf_counter()
    cols.refresh()
    out["embedded_columns_first_build_1m_ms"] = (time.perf_counter() - t0) * 1000
    assert len(cols.values("loss", 0, million)) == million
    out["embedded_range_read_1m_one_field"] = _time(lambda: cols.values("loss", 0, million), repeat)
    model = LayoutReadModel(eroot, work / "embedded-series-cache")
    t0 = time.perf_counter()
    first = model.series("bench/read/ten-million", "train", "loss", buckets=1000)
    out["embedded_series_first_build_ms"] = (time.perf_counter() - t0) * 1000
    assert first["count"] == args.series_rows
    out["embedded_series_1000_buckets_full"] = _time(
        lambda: model.series("bench/read/ten-million", "train", "loss", buckets=1000), repeat
    )
    lo = args.series_rows // 3
    out["embedded_series_1000_buckets_zoom_1pct"] = _time(
        lambda: model.series(
            "bench/read/ten-million", "train", "loss", start=lo, end=lo + args.series_rows // 100, buckets=1000
        ),
        repeat,
    )
    model.close()
    reader = ExperimentReader(eroot, "bench/read/one-million")
    t0 = time.perf_counter()
    rows = reader.metric_rows("train")
    out["embedded_range_read_1m_rows_reader_ms"] = (time.perf_counter() - t0) * 1000
    assert len(rows) == million
    for k, v in out.items():
        print(f"{k}: {v}", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
