"""Bytes on the wire per float point, for identity / gzip / zstd.

The metric rows are made as the SDK makes them (the user's 3 fields plus ``_ts`` taken with
``time.time()`` at loop speed) and encoded the way the agent sends them, with the agent's own
code when it can be imported: columnar ``metrics`` records (``ml_dash.agent._columns``), packed
into request bodies up to the uploader's batch limits, compressed with the agent's codec settings.
Older agents (one event per row) and no agent at all (an encoder following PROTOCOL.md) are
fallbacks; the result names the encoder used. Bytes per point = body bytes / (rows × 3).
"""

from __future__ import annotations

import gzip
import time
from typing import Any, Callable, Dict, List, Tuple

SESSION, PREFIX = "benchwire0001", "bench/wire/run"


def _payloads(rows: List[Dict[str, Any]]) -> Tuple[List[bytes], str]:
    """Wire events for the rows, and which encoder made them."""
    try:
        from ml_dash.agent._columns import MAX_ROWS, encode_metric_rows

        payloads, counts, bad = encode_metric_rows(0, "train", rows)
        if bad or sum(counts) != len(rows):
            raise RuntimeError(f"agent encoder dropped rows: {bad[:1]}")
        return payloads, f"the agent's columnar records (ml_dash.agent._columns, ≤{MAX_ROWS} rows each)"
    except ImportError:  # the agent is not importable (a checkout without it): what PROTOCOL.md describes
        import orjson

        out = []
        for i, r in enumerate(rows):
            data = dict(r)
            ts = data.pop("_ts")
            out.append(orjson.dumps({"seq": i, "kind": "metric", "ts": ts, "name": "train", "data": data}))
        return out, "an encoder following PROTOCOL.md (agent not importable)"


def _bodies(payloads: List[bytes], max_events: int, max_bytes: int) -> Tuple[List[bytes], str]:
    """Request bodies: a header line, then events, cut at the uploader's limits."""
    try:
        from ml_dash.agent._wire import batch_body
    except ImportError:
        import orjson

        def batch_body(session: str, prefix: str, events: List[bytes]) -> bytes:
            return b"\n".join([orjson.dumps({"v": 1, "session": session, "prefix": prefix}), *events]) + b"\n"

    bodies, cur, size = [], [], 0
    for p in payloads:
        if cur and (len(cur) >= max_events or size + len(p) + 1 > max_bytes):
            bodies.append(batch_body(SESSION, PREFIX, cur))
            cur, size = [], 0
        cur.append(p)
        size += len(p) + 1
    if cur:
        bodies.append(batch_body(SESSION, PREFIX, cur))
    return bodies, f"bodies of ≤{max_events:,} events and ≤{max_bytes / 2**20:g} MiB"


def agent_levels() -> Tuple[int, int]:
    """(gzip, zstd) levels the agent compresses with; the protocol-era defaults without an agent."""
    try:
        from ml_dash.agent._wire import GZIP_LEVEL, ZSTD_LEVEL

        return GZIP_LEVEL, ZSTD_LEVEL
    except ImportError:
        return 1, 3


def _limits(default_events: int) -> Tuple[int, int]:
    try:
        from ml_dash.agent._uploader import BATCH_MAX_BYTES, BATCH_MAX_EVENTS

        return BATCH_MAX_EVENTS, BATCH_MAX_BYTES
    except ImportError:
        return default_events, 4 << 20


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    n = int(args["n"])
    now = time.time
    rows = [{"loss": 1.0 / (i + 1), "acc": i / n, "lr": 0.001, "_ts": now()} for i in range(n)]
    payloads, how = _payloads(rows)
    max_events, max_bytes = _limits(int(args["batch"]))
    bodies, framing = _bodies(payloads, max_events, max_bytes)
    import zstandard

    GZIP_LEVEL, ZSTD_LEVEL = agent_levels()

    codecs: Dict[str, Callable[[bytes], bytes]] = {
        "none": lambda b: b,
        "gzip": lambda b: gzip.compress(b, compresslevel=GZIP_LEVEL, mtime=0),
        "zstd": lambda b: zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(b),
        # Not what the agent sends: level 3, for comparison.
        "zstd-3": lambda b: zstandard.ZstdCompressor(level=3).compress(b),
    }
    out: Dict[str, Any] = {}
    points = n * 3
    for name, fn in codecs.items():
        t0 = time.perf_counter()
        size = sum(len(fn(b)) for b in bodies)
        out[name] = {
            "bytes": size,
            "bytes_per_point": size / points,
            "bytes_per_row": size / n,
            "compress_s": time.perf_counter() - t0,
        }
    return {
        "n": n,
        "points": points,
        "encoder": how,
        "framing": framing,
        "bodies": len(bodies),
        "events": len(payloads),
        "codecs": out,
        "levels": {"gzip": GZIP_LEVEL, "zstd": ZSTD_LEVEL},
    }
