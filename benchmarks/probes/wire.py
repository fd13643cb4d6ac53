"""Bytes on the wire per float point, for identity / gzip / zstd.

The metric records are made as the SDK makes them (the user's 3 fields plus ``_ts`` taken with
``time.time()`` at loop speed), encoded with the agent's own encoder and batch framing when it
can be imported (else with an encoder following PROTOCOL.md), cut into bodies of ``batch``
events, and compressed with the agent's codec settings. Bytes per point = body bytes / (events × 3).
"""

from __future__ import annotations

import gzip
import time
from typing import Any, Callable, Dict, List, Tuple


def _encoders() -> Tuple[Callable, Callable, str]:
    try:
        from ml_dash.agent._wire import batch_body, encode_item

        return encode_item, batch_body, "the agent's encoder (ml_dash.agent._wire)"
    except Exception:  # the agent is optional here: fall back to the protocol's event shape
        import orjson

        def encode_item(seq: int, item: tuple) -> bytes:
            data = dict(item[2])
            ts = data.pop("_ts")
            return orjson.dumps({"seq": seq, "kind": "metric", "ts": ts, "name": item[1], "data": data})

        def batch_body(session: str, prefix: str, payloads: List[bytes]) -> bytes:
            return b"\n".join([orjson.dumps({"v": 1, "session": session, "prefix": prefix}), *payloads]) + b"\n"

        return encode_item, batch_body, "an encoder following PROTOCOL.md (agent not importable)"


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    n, batch = int(args["n"]), int(args["batch"])
    encode_item, batch_body, how = _encoders()
    now = time.time
    items = []
    for i in range(n):
        items.append(("m", "train", {"loss": 1.0 / (i + 1), "acc": i / n, "lr": 0.001, "_ts": now()}))
    bodies = []
    for start in range(0, n, batch):
        payloads = [encode_item(start + k, it) for k, it in enumerate(items[start:start + batch])]
        bodies.append(batch_body("benchwire0001", "bench/wire/run", payloads))
    import zstandard

    codecs = {"none": lambda b: b,
              "gzip": lambda b: gzip.compress(b, compresslevel=1, mtime=0),
              "zstd": lambda b: zstandard.ZstdCompressor(level=3).compress(b),
              # Not what the agent sends: shown because level 1 compressed metric JSONL better in
              # an earlier measurement on this kind of machine.
              "zstd-1": lambda b: zstandard.ZstdCompressor(level=1).compress(b)}
    out: Dict[str, Any] = {}
    points = n * 3
    for name, fn in codecs.items():
        t0 = time.perf_counter()
        size = sum(len(fn(b)) for b in bodies)
        out[name] = {"bytes": size, "bytes_per_point": size / points, "bytes_per_row": size / n,
                     "compress_s": time.perf_counter() - t0}
    return {"n": n, "batch": batch, "points": points, "encoder": how, "codecs": out,
            "levels": {"gzip": 1, "zstd": 3}}
