"""A mistake shows up at once: a bad ``dash_url`` fails when the Experiment is built, an error no
retry can fix is not retried, and a closing run never retries without a pause.

Real server on loopback, real client processes; faults from the server's fault plan, connections
counted by a real TCP forwarder in front of the server.
"""

from __future__ import annotations

import socket
import threading
from typing import List

import pytest

from ml_dash import Experiment, InvalidDashUrl, MlDashError

from .conftest import client_env, run_agent, run_client, sessions, set_faults, stats

BAD_URLS = [
    "127.0.0.1:8765",
    "htp://x",
    "localhost:8765",
    "http://",
    "http:///api",
    "ftp://host/",
    "http://host:0",
    "http://host:99999",
    "http://ho st:1",
    "http://host\x1b[2J:1",
    "http://alice:secret@host:1",
    "http://host:1/?token=x",
    "http://host:1/#x",
]
GOOD_URLS = [
    "http://127.0.0.1:8765",
    "https://dash.example.org",
    "HTTPS://dash.example.org/dash/",
    "http://[::1]:8765",
    "http://localhost:1",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_a_bad_dash_url_fails_when_the_experiment_is_built(url, monkeypatch, spool):
    with pytest.raises(InvalidDashUrl) as caught:
        Experiment("alice/p/url", dash_url=url)
    err = caught.value
    assert isinstance(err, ValueError) and isinstance(err, MlDashError)
    assert "http://" in str(err) and "secret" not in str(err) and "\x1b" not in str(err)
    # the same from the environment
    monkeypatch.setenv("ML_DASH_URL", url)
    with pytest.raises(InvalidDashUrl):
        Experiment("alice/p/url")
    assert not spool.exists()  # nothing was spooled, no sender started


@pytest.mark.parametrize("url", GOOD_URLS)
def test_server_urls_are_accepted(url):
    exp = Experiment("alice/p/url", dash_url=url)
    assert exp.mode == "remote" and exp.config.dash_url == url


def test_flush_refuses_a_bad_dash_url(spool):
    spool.mkdir(mode=0o700)
    out = run_agent(["flush", str(spool), "--dash-url", "127.0.0.1:8765"], client_env(spool, None, None))
    assert out.returncode == 2 and "not a server URL" in out.stderr, out.stderr


def test_a_bad_url_in_a_real_run_fails_at_once_with_no_spool(spool):
    proc = run_client(
        """
        from ml_dash import Experiment
        with Experiment("alice/p/url", dash_url="127.0.0.1:8765").run as exp:
            exp.log("never")
    """,
        client_env(spool, None, "tok", shutdown_timeout=20),
        timeout=15,
    )
    assert proc.returncode == 1 and "InvalidDashUrl" in proc.stderr and "not a server URL" in proc.stderr
    assert sessions(spool) == []


def test_a_closing_run_pauses_between_tries(server, spool):
    # Every request is answered 503 without Retry-After: while closing, each new try must still
    # come after a pause, so 3 s of closing cost a few requests, not thousands.
    set_faults(server, [{"match": "any", "action": "status", "status": 503, "times": 1_000_000}])
    proc = run_client(
        """
        from ml_dash import Experiment
        with Experiment("alice/p/spin").run as exp:
            exp.log("one")
    """,
        client_env(spool, server.url, server.token, shutdown_timeout=3),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "not uploaded" in proc.stderr and "ml-dash-agent flush" in proc.stderr
    counts = stats(server)["counts"]
    tries = counts.get("info", 0) + counts.get("ingest", 0)
    assert 1 <= tries <= 40, counts  # the upper bound is the point; under load the first try can come late
    assert len(sessions(spool)) == 1  # nothing lost


class _CountingForwarder:
    """Accepts TCP connections on loopback, counts them, and forwards their bytes to ``port``."""

    def __init__(self, port: int):
        self._target = port
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.accepted = 0
        self._open: List[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            up = socket.create_connection(("127.0.0.1", self._target))
            self._open += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                pipe = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                self._threads.append(pipe)
                pipe.start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        # shutdown() wakes the threads blocked in accept() and recv(); close() alone would not.
        for s in (self._sock, *self._open):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=5)
        for s in (self._sock, *self._open):
            s.close()


def test_a_tls_failure_is_not_retried(server, spool):
    # https:// to a server that speaks plain http: the handshake fails the same way every time.
    env = client_env(spool, server.url, server.token, offline=1)
    assert (
        run_client(
            """
        from ml_dash import Experiment
        with Experiment("alice/p/tls").run as exp:
            exp.log("kept")
    """,
            env,
        ).returncode
        == 0
    )
    fwd = _CountingForwarder(int(server.url.rsplit(":", 1)[1]))
    try:
        env = client_env(spool, None, server.token)
        out = run_agent(["flush", str(spool), "--dash-url", f"https://127.0.0.1:{fwd.port}"], env)
        assert out.returncode == 1
        assert "not retried" in out.stdout and "SSL" in out.stdout, out.stdout + out.stderr
        assert fwd.accepted == 1
        # a live run to the same URL stops its sender at once and reports, instead of retrying
        live = run_client(
            """
            from ml_dash import Experiment
            with Experiment("alice/p/tls").run as exp:
                exp.log("also kept")
        """,
            client_env(spool, f"https://127.0.0.1:{fwd.port}", server.token, shutdown_timeout=20),
        )
        assert live.returncode == 0 and "not retried" in live.stderr and "not uploaded" in live.stderr, live.stderr
        assert fwd.accepted == 2
    finally:
        fwd.close()
    assert len(sessions(spool)) == 2  # both runs' events are still in the spool
