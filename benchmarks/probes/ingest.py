"""Server ingest: points/s the server stores from several concurrent clients.

Each client is one writer session on its own experiment, POSTing NDJSON batches (PROTOCOL.md)
one after another, as the agent does. The bodies are built and compressed *before* the clock
starts, so the figure is the server's rate, not this load generator's encoding speed. A point is
one scalar value; each metric event carries 3. The count is checked on the read API afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, Dict, List, Tuple


def _bodies(session: str, prefix: str, steps: int, batch: int, encoding: str) -> Tuple[List[bytes], str]:
    """Compressed request bodies for one client, encoded as the agent encodes them when it can."""
    import orjson

    from .wire import _bodies as pack
    from .wire import _limits

    now = time.time()
    rows = [{"loss": 1.0 / (i + 1), "acc": i / steps, "lr": 0.001, "_ts": now + i * 1e-5} for i in range(steps)]
    head = [
        orjson.dumps({"seq": 0, "kind": "experiment", "ts": now, "description": "ingest benchmark"}),
        orjson.dumps({"seq": 1, "kind": "status", "ts": now, "status": "RUNNING", "reason": None}),
    ]
    try:
        from ml_dash.agent._columns import encode_metric_rows

        payloads, _counts, _bad = encode_metric_rows(2, "train", rows)
        max_events, max_bytes = _limits(batch)
        how = "columnar records (the agent's encoder)"
    except ImportError:  # an agent that sends one event per row
        payloads = []
        for i, r in enumerate(rows):
            data = dict(r)
            ts = data.pop("_ts")
            payloads.append(orjson.dumps({"seq": 2 + i, "kind": "metric", "ts": ts, "name": "train", "data": data}))
        max_events, max_bytes = batch, 4 << 20
        how = "one event per row"
    # pack() frames with the wire probe's header line; each client's body needs its own session.
    bodies = []
    for body in pack(head + payloads, max_events, max_bytes)[0]:
        first_nl = body.index(b"\n")
        body = orjson.dumps({"v": 1, "session": session, "prefix": prefix}) + body[first_nl:]
        bodies.append(_compress(body, encoding))
    return bodies, f"{how}, bodies of ≤{max_events:,} events and ≤{max_bytes / 2**20:g} MiB"


def _compress(body: bytes, encoding: str) -> bytes:
    from .wire import agent_levels

    gzip_level, zstd_level = agent_levels()  # as the agent compresses
    if encoding == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=zstd_level).compress(body)
    if encoding == "gzip":
        import gzip

        return gzip.compress(body, compresslevel=gzip_level)
    return body


async def _client(session, url: str, headers: Dict[str, str], bodies: List[bytes]) -> Dict[str, Any]:
    stored = 0
    for body in bodies:
        async with session.post(url + "/api/v1/ingest", data=body, headers=headers) as resp:
            answer = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"ingest answered {resp.status}: {str(answer)[:300]}")
            stored += int(answer.get("stored", 0))
    return {"stored": stored}


async def _main(args: Dict[str, Any]) -> Dict[str, Any]:
    import aiohttp

    url, token = args["url"], args["token"]
    clients, steps, batch = int(args["clients"]), int(args["steps"]), int(args["batch"])
    encoding = args.get("encoding", "zstd")
    tag = os.urandom(4).hex()
    prefixes = [f"bench/ingest/c{c}-{tag}" for c in range(clients)]
    t_build = time.perf_counter()
    built = [_bodies(f"ingest{c}{tag}", p, steps, batch, encoding) for c, p in enumerate(prefixes)]
    bodies, framing = [b for b, _ in built], built[0][1]
    build_s = time.perf_counter() - t_build
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"}
    if encoding != "identity":
        headers["Content-Encoding"] = encoding
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as session:
        t0 = time.perf_counter()
        answers = await asyncio.gather(*[_client(session, url, headers, b) for b in bodies])
        elapsed = time.perf_counter() - t0
        rows = await _verify(session, url, token, prefixes, steps)
    stored_events = sum(a["stored"] for a in answers)
    metric_events = clients * steps
    return {
        "clients": clients,
        "steps_per_client": steps,
        "framing": framing,
        "requests": sum(map(len, bodies)),
        "encoding": encoding,
        "elapsed_s": elapsed,
        "build_s": build_s,
        "stored_events": stored_events,
        "body_bytes": sum(len(b) for bs in bodies for b in bs),
        "points": metric_events * 3,
        "points_per_s": metric_events * 3 / elapsed,
        "rows_per_s": metric_events / elapsed,
        "verify": rows,
    }


async def _verify(session, url: str, token: str, prefixes: List[str], steps: int) -> Dict[str, Any]:
    """The last row of each client's metric must have index steps-1, and nothing after it."""
    headers = {"Authorization": f"Bearer {token}"}
    found = 0
    problems = []
    for p in prefixes:
        params = {"prefix": p, "name": "train", "start": str(steps - 1), "limit": "10"}
        async with session.get(url + "/api/v1/metric", params=params, headers=headers) as resp:
            body = await resp.json(content_type=None)
        rows = body.get("rows", []) if resp.status == 200 else []
        if len(rows) == 1 and rows[0].get("index") == steps - 1:
            found += steps
        else:
            problems.append(f"{p}: status {resp.status}, {len(rows)} rows from index {steps - 1}")
    return {
        "rows": found,
        "expected": steps * len(prefixes),
        "ok": not problems,
        "problems": problems,
        "how": "read API: last index of each client's metric",
    }


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    return asyncio.run(_main(args))
