"""Server file I/O: blob uploads and file downloads, MB/s, from several concurrent clients.

Each client uploads one blob of ``mib`` MiB (random bytes made before the clock starts) with
``PUT /api/v1/blobs/{sha256}``, links it into its own experiment with a file event, then downloads
it ``reads`` times with ``GET /api/v1/file``. Uploads and downloads are timed apart; every download
is checked against the sha256 it was uploaded under.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any, Dict, List


async def _client(session, url: str, token: str, c: int, data: bytes, reads: int, tag: str) -> Dict[str, Any]:
    import orjson

    headers = {"Authorization": f"Bearer {token}"}
    checksum = hashlib.sha256(data).hexdigest()
    t0 = time.perf_counter()
    async with session.put(f"{url}/api/v1/blobs/{checksum}", data=data, headers=headers) as resp:
        if resp.status not in (200, 201):
            raise RuntimeError(f"upload answered {resp.status}: {(await resp.text())[:300]}")
    up = time.perf_counter() - t0
    prefix = f"bench/files/c{c}-{tag}"
    body = b"\n".join(
        [
            orjson.dumps({"v": 1, "session": f"files{c}{tag}", "prefix": prefix}),
            orjson.dumps(
                {
                    "seq": 0,
                    "kind": "file",
                    "ts": time.time(),
                    "id": f"f{c}",
                    "path": "/",
                    "filename": "blob.bin",
                    "checksum": checksum,
                    "size": len(data),
                }
            ),
        ]
    )
    async with session.post(
        f"{url}/api/v1/ingest", data=body, headers={**headers, "Content-Type": "application/x-ndjson"}
    ) as resp:
        if resp.status != 200:
            raise RuntimeError(f"file event answered {resp.status}: {(await resp.text())[:300]}")
    down, ok = [], 0
    for _ in range(reads):
        h = hashlib.sha256()
        t0 = time.perf_counter()
        async with session.get(f"{url}/api/v1/file", params={"prefix": prefix, "id": f"f{c}"}, headers=headers) as resp:
            async for chunk in resp.content.iter_chunked(1 << 20):
                h.update(chunk)
        down.append(time.perf_counter() - t0)
        ok += h.hexdigest() == checksum
    return {"up_s": up, "down_s": down, "verified": ok}


async def _main(args: Dict[str, Any]) -> Dict[str, Any]:
    import aiohttp

    clients, mib, reads = int(args["clients"]), int(args["mib"]), int(args["reads"])
    tag = os.urandom(4).hex()
    blobs = [os.urandom(mib << 20) for _ in range(clients)]
    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=None)) as session:
        t0 = time.perf_counter()
        got: List[Dict[str, Any]] = await asyncio.gather(
            *[_client(session, args["url"], args["token"], c, blobs[c], reads, tag) for c in range(clients)]
        )
        elapsed = time.perf_counter() - t0
    total_up = clients * mib
    up_wall = max(g["up_s"] for g in got)
    down_wall = max(sum(g["down_s"]) for g in got)
    return {
        "clients": clients,
        "mib": mib,
        "reads": reads,
        "elapsed_s": elapsed,
        "upload_mb_s": total_up * 1.048576 / up_wall,
        "download_mb_s": total_up * reads * 1.048576 / down_wall,
        "verify": {
            "ok": all(g["verified"] == reads for g in got),
            "rows": sum(g["verified"] for g in got),
            "expected": clients * reads,
            "how": "sha256 of every download",
        },
    }


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    return asyncio.run(_main(args))
