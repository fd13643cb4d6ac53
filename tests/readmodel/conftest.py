"""Fixtures: a real server on loopback (port 0) with tokens, and one serving a local dash_root
without auth (what ``ml-dash dashboard`` does)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ml_dash.server import create_token, run_in_thread


@pytest.fixture
def server(tmp_path, store_settings):
    """On each store in turn (``kind``: "embedded" or "postgres")."""
    root = tmp_path / "server-root"
    token = create_token(root, "alice", settings=store_settings)
    handle = run_in_thread(root, port=0, settings=store_settings)
    try:
        yield SimpleNamespace(
            url=handle.url, root=root, token=token, kind="embedded" if store_settings is None else "postgres"
        )
    finally:
        handle.stop()


@pytest.fixture
def local_server(tmp_path):
    """A server over a folder that local SDK processes write (no token, loopback)."""
    root = tmp_path / ".dash"
    root.mkdir()
    handle = run_in_thread(root, port=0, auth=False)
    try:
        yield SimpleNamespace(url=handle.url, root=root, token=None)
    finally:
        handle.stop()
