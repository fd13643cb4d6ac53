"""A TCP proxy on loopback that can blackhole: the outage of the outage workload.

SIGUSR1 starts the outage: bytes in both directions are swallowed and new connections are
accepted but never answered (what a dead route looks like to the client: no reset, just
silence until its own timeouts fire). SIGUSR2 ends it: every connection that lived through the
outage is closed (its byte stream lost data, so it cannot continue), new ones are forwarded again.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any, Dict, Set
from urllib.parse import urlsplit


class _Proxy:
    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.down = False
        self.conns: Set[asyncio.StreamWriter] = set()
        self.swallowed = 0
        self.outages = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.conns.add(writer)
        upstream = None
        try:
            if self.down:
                await self._swallow(reader)
                return
            up_reader, upstream = await asyncio.open_connection(self.host, self.port)
            self.conns.add(upstream)
            await asyncio.gather(self._pipe(reader, upstream), self._pipe(up_reader, writer))
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    self.conns.discard(w)
                    w.close()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            self.swallowed += len(data)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                writer.close()
                return
            if self.down:
                self.swallowed += len(data)
                continue
            writer.write(data)
            await writer.drain()

    def set_down(self, down: bool) -> None:
        if self.down and not down:
            for w in list(self.conns):
                w.transport.abort()
            self.conns.clear()
        if down and not self.down:
            self.outages += 1
        self.down = down


async def _main(args: Dict[str, Any]) -> Dict[str, Any]:
    target = urlsplit(args["target"])
    proxy = _Proxy(target.hostname or "127.0.0.1", target.port or 80)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, proxy.set_down, True)
    loop.add_signal_handler(signal.SIGUSR2, proxy.set_down, False)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tmp = args["ready_file"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"url": f"http://127.0.0.1:{port}", "pid": os.getpid()}, f)
    os.replace(tmp, args["ready_file"])
    await stop.wait()
    server.close()
    return {"swallowed_bytes": proxy.swallowed, "outages": proxy.outages}


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    return asyncio.run(_main(args))
