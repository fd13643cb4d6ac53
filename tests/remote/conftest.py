"""A real server on loopback for the remote-mode spec tests; the token comes from the environment
as it would for a user, since the spec's blocks pass only ``dash_url``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ml_dash.server import create_token, run_in_thread


@pytest.fixture
def server(tmp_path, monkeypatch):
    root = tmp_path / "server-root"
    token = create_token(root, "alice")
    handle = run_in_thread(root, port=0)
    monkeypatch.setenv("ML_DASH_TOKEN", token)
    try:
        yield SimpleNamespace(url=handle.url, root=root, token=token)
    finally:
        handle.stop()
