"""Fixtures: a real server on loopback (port 0) with tokens, and one serving a local dash_root
without auth (what ``ml-dash dashboard`` does)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ml_dash.server import create_token, run_in_thread


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "server-root"
    token = create_token(root, "alice")
    handle = run_in_thread(root, port=0)
    try:
        yield SimpleNamespace(url=handle.url, root=root, token=token)
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
