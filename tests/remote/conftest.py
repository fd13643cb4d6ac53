"""A real server on loopback for the remote-mode spec tests; the token comes from the environment
as it would for a user, since the spec's blocks pass only ``dash_url``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ml_dash.server import create_token, run_in_thread

from ..conftest import layout_of


@pytest.fixture
def server(tmp_path, monkeypatch, store_settings):
    """On each store in turn (``kind``: "embedded" or "postgres")."""
    root = tmp_path / "server-root"
    token = create_token(root, "alice", settings=store_settings)
    handle = run_in_thread(root, port=0, settings=store_settings)
    monkeypatch.setenv("ML_DASH_TOKEN", token)
    try:
        yield SimpleNamespace(
            url=handle.url,
            root=root,
            token=token,
            kind="embedded" if store_settings is None else "postgres",
            layout=lambda: layout_of(root, store_settings, tmp_path / "exported"),
        )
    finally:
        handle.stop()
