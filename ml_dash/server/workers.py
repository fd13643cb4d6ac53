"""``ml-dash server --workers N``: N server processes on one port (``SO_REUSEPORT``), supervised.

The parent binds the port first (with ``SO_REUSEPORT``, without listening: it never takes a
connection) so that port 0 picks one free port for all; each worker is ``python -m
ml_dash.server`` with the same arguments, listening on that port; the kernel spreads connections
across the workers. The workers share nothing but the store, so any of them can take any batch.

A worker that dies (``kill -9``, out of memory) is started again after a short pause; what it had
acknowledged is in the database, and the clients' retries land on the others meanwhile. SIGTERM or
SIGINT to the parent stops every worker cleanly.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable, List, Optional

__all__ = ["serve_workers", "child_argv"]

_RESTART_PAUSE = 1.0
# The parent's stdout carries its own lines and the workers' lines relayed by one thread per
# worker: one at a time, or a relayed line lands inside the listening line (print writes the text
# and its newline apart), and whoever reads the URL from that line gets a broken one.
_STDOUT = threading.Lock()


def child_argv(argv: List[str], port: int) -> List[str]:
    """The server's own arguments for a worker: without ``--workers``, on ``port``, with port sharing."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--port"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--port=")):
            continue
        out.append(arg)
    return out + ["--port", str(port), "--reuse-port"]


class _Worker:
    def __init__(self, cmd: List[str], listening: str):
        self.cmd = cmd
        self.listening = listening
        self.proc: Optional[subprocess.Popen[Any]] = None
        self.url: Optional[str] = None
        self.ready = threading.Event()

    @property
    def running(self) -> subprocess.Popen[Any]:
        """The process (``start`` has been called)."""
        assert self.proc is not None
        return self.proc

    def start(self) -> None:
        self.ready.clear()
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=None, text=True, bufsize=1)
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[Any]) -> None:
        assert proc.stdout is not None  # a pipe
        for line in proc.stdout:
            m = re.search(re.escape(self.listening) + r"(\S+)", line)
            if m and not self.ready.is_set():
                self.url = m.group(1)
                self.ready.set()
                continue  # the parent prints the one listening line
            with _STDOUT:
                sys.stdout.write(f"[worker {proc.pid}] {line}")
                sys.stdout.flush()
        self.ready.set()


def serve_workers(
    argv: List[str], host: str, port: int, workers: int, listening: str, on_ready: Callable[[str], None]
) -> int:
    """Run ``workers`` server processes on one port until SIGTERM/SIGINT; the exit code."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((host, port))
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    port = holder.getsockname()[1]
    cmd = [sys.executable, "-m", "ml_dash.server", *child_argv(argv, port)]
    pool = [_Worker(cmd, listening) for _ in range(workers)]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for w in pool:
            w.start()
        for w in pool:
            w.ready.wait(120)
            if w.url is None:
                print("error: a worker did not start (its messages are above)", file=sys.stderr)
                return 1
        with _STDOUT:
            on_ready(pool[0].url or "")  # every worker said its URL (above)
            print(f"{workers} workers: " + " ".join(str(w.running.pid) for w in pool), flush=True)
        while not stop.wait(0.2):
            for w in pool:
                code = w.running.poll()
                if code is not None and not stop.is_set():
                    print(f"worker {w.running.pid} ended ({code}); starting another", file=sys.stderr, flush=True)
                    time.sleep(_RESTART_PAUSE)
                    w.start()
                    w.ready.wait(120)
                    with _STDOUT:
                        print(f"worker {w.running.pid} started", flush=True)
        return 0
    finally:
        for w in pool:
            if w.proc is not None and w.proc.poll() is None:
                w.proc.terminate()
        for w in pool:
            if w.proc is not None:
                try:
                    w.proc.wait(30)
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    w.proc.wait(10)
        holder.close()
