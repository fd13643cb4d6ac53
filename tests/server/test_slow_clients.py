"""Slow clients cannot starve fast ones: bodies that trickle are cut, blob uploads and batches have
their own slots, silent or slow-header connections are closed. Real server process, raw sockets."""

from __future__ import annotations

import hashlib
import socket
import threading
import time
import urllib.parse

from ..conftest import wait_for
from ._client import auth, ingest, metric_events, request

P = "alice/proj/slow"
IDLE = 2  # the server's idle_timeout_s in these tests


def _connect(url: str) -> socket.socket:
    u = urllib.parse.urlsplit(url)
    return socket.create_connection((u.hostname, u.port), timeout=10)


def _closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed the connection (EOF or reset); False while it is open."""
    sock.settimeout(0.01)
    try:
        data = sock.recv(65536)
    except socket.timeout:
        return False
    except OSError:
        return True
    if data:  # an answer (a 503 for a shed upload, say): the connection may still close after it
        return _closed_by_server(sock)
    return True


class Trickle:
    """A blob upload that sends its body one byte every ``every`` seconds, until the server hangs up."""

    def __init__(self, url: str, token: str, every: float = 0.25):
        self.sock = _connect(url)
        data = b"x" * 1_000_000
        head = (
            f"PUT /api/v1/blobs/{hashlib.sha256(data).hexdigest()} HTTP/1.1\r\nHost: t\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head)
        self.cut = threading.Event()
        self.every = every
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                self.sock.sendall(b"x")
                if self.cut.wait(self.every):  # close() ends the pause at once
                    return
        except OSError:
            self.cut.set()

    def closed(self) -> bool:
        if self.cut.is_set():
            return True
        try:
            return _closed_by_server(self.sock)
        except OSError:
            return True

    def close(self) -> None:
        self.cut.set()
        self._thread.join(timeout=5)  # no thread of the test outlives it
        self.sock.close()


def test_slow_uploads_do_not_starve_batches_and_are_cut(spawned):
    """16 blob uploads at 4 bytes/s: batches are stored meanwhile (they used to get 503 for as long
    as the uploads lasted), and the uploads are closed for being too slow."""
    url = spawned.start("--idle-timeout-s", str(IDLE), "--min-body-bytes-per-s", "1024", fault_injection=False)
    tok = spawned.token
    slow = [Trickle(url, tok) for _ in range(16)]
    try:
        for i in range(10):
            a = ingest(url, tok, "sessFAST01", P, metric_events(i * 10, 10, base=i * 10))
            assert a.status == 200, a
        assert a.json["acked_seq"] == 99
        wait_for(lambda: all(t.closed() for t in slow), timeout=6 * IDLE, what="the slow uploads to be cut")
    finally:
        for t in slow:
            t.close()
    blob = b"a normal upload"
    a = request(url, "PUT", f"/api/v1/blobs/{hashlib.sha256(blob).hexdigest()}", blob, auth(tok))
    assert a.status == 201  # the blob slots are free again


def test_silent_and_slow_header_connections_are_closed(spawned):
    url = spawned.start("--idle-timeout-s", str(IDLE), fault_injection=False)
    silent = _connect(url)  # connects, sends nothing
    slow_headers = _connect(url)
    slow_headers.sendall(b"GET /api/v1/info HTTP/1.1\r\n")
    stop = threading.Event()

    def trickle() -> None:
        try:
            while True:
                slow_headers.sendall(b"X")  # one more byte of a header that never ends
                if stop.wait(0.2):
                    return
        except OSError:
            pass

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    kept_alive = _connect(url)  # one request, then idle on a keep-alive connection
    kept_alive.sendall(b"GET /api/v1/info HTTP/1.1\r\nHost: t\r\n\r\n")
    t0 = time.monotonic()
    try:
        wait_for(lambda: _closed_by_server(silent), timeout=4 * IDLE, what="the silent connection to be closed")
        wait_for(lambda: _closed_by_server(slow_headers), timeout=4 * IDLE, what="the slow headers to be cut")
        wait_for(lambda: _closed_by_server(kept_alive), timeout=4 * IDLE, what="the idle keep-alive to be closed")
        assert time.monotonic() - t0 >= IDLE * 0.8  # not at once: after the idle timeout
        assert request(url, "GET", "/api/v1/info").status == 200
    finally:
        stop.set()
        trickler.join(timeout=5)
        for s in (silent, slow_headers, kept_alive):
            s.close()
