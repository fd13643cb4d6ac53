"""Fixtures: a real server on loopback (port 0) in a thread, with fault injection, and tokens."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ml_dash.server import Limits, create_token, run_in_thread

from ..conftest import layout_of


@pytest.fixture
def server(tmp_path, store_settings):
    """A server in a thread on each store in turn (``kind``: "embedded" or "postgres"; only the
    embedded store's ``root`` is a dash_root)."""
    root = tmp_path / "server-root"
    alice = create_token(root, "alice", settings=store_settings)
    bob = create_token(root, "bob", settings=store_settings)
    handle = run_in_thread(root, port=0, fault_injection=True, settings=store_settings)
    kind = "embedded" if store_settings is None else "postgres"
    try:
        yield SimpleNamespace(
            url=handle.url,
            root=root,
            token=alice,
            alice=alice,
            bob=bob,
            handle=handle,
            kind=kind,
            settings=store_settings,
            layout=lambda: layout_of(root, store_settings, tmp_path / "exported"),
        )
    finally:
        handle.stop()


@pytest.fixture
def small_server(tmp_path, store_settings):
    """A server with small limits, to test them cheaply (on each store in turn)."""
    root = tmp_path / "small-root"
    token = create_token(root, "alice", settings=store_settings)
    limits = Limits(
        max_body_bytes=64 * 1024,
        max_decoded_bytes=256 * 1024,
        max_event_bytes=4096,
        max_events_per_batch=100,
        max_fields=10,
        max_name_bytes=40,
        max_blob_bytes=1024,
        max_concurrent_writes=1,
    )
    handle = run_in_thread(root, port=0, fault_injection=True, limits=limits, settings=store_settings)
    kind = "embedded" if store_settings is None else "postgres"
    try:
        yield SimpleNamespace(url=handle.url, root=root, token=token, limits=limits, kind=kind)
    finally:
        handle.stop()


class Spawned:
    """Servers in their own processes on one root, started on demand (``start()``) and stopped at
    the end of the test; for tests that restart, kill -9 or read a server's own memory."""

    def __init__(self, root):
        self.root = root
        self.token = create_token(root, "alice")
        self.bob = create_token(root, "bob")
        self.procs = []
        self.url = None
        self.proc = None

    def start(self, *args: str, fault_injection: bool = True, preexec_fn=None):
        from ml_dash.server import spawn_server

        self.url, self.proc = spawn_server(
            self.root, fault_injection=fault_injection, extra_args=args, preexec_fn=preexec_fn
        )
        self.procs.append(self.proc)
        return self.url

    def stop(self) -> int:
        """SIGTERM (a clean shutdown); the exit code."""
        self.proc.terminate()
        return self.proc.wait(30)


@pytest.fixture
def spawned(tmp_path):
    s = Spawned(tmp_path / "spawned-root")
    try:
        yield s
    finally:
        for p in s.procs:
            if p.poll() is None:
                p.kill()
            p.wait(30)
