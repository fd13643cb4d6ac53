"""The captures go through the same paths in remote mode: a real server on loopback gets them."""

from __future__ import annotations

import pytest

from ml_dash import Experiment, load_config
from ml_dash.server import create_token, run_in_thread


@pytest.fixture
def server(tmp_path, monkeypatch):
    root = tmp_path / "server-root"
    token = create_token(root, "alice")
    handle = run_in_thread(root, port=0)
    monkeypatch.setenv("ML_DASH_TOKEN", token)
    try:
        yield handle
    finally:
        handle.stop()


def test_console_and_environment_reach_the_server(server):
    cfg = load_config().with_overrides(capture_console=True, capture_env=True)
    with Experiment(prefix="alice/p/remote-capture", dash_url=server.url, metadata={"seed": 1}, config=cfg).run:
        print("to the server")
    again = Experiment(prefix="alice/p/remote-capture", dash_url=server.url)
    assert [r["message"] for r in again.logs.read()] == ["to the server"]
    md = again.info()["metadata"]
    assert md["seed"] == 1 and md["environment"]["python"] and md["environment"]["pid"] > 0
