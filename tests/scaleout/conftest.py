"""Fixtures of the scale-out tests: server processes over a real PostgreSQL (and S3) store, their
settings passed the way an operator passes secrets (the environment, never the command line)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

from ml_dash.server import create_token, spawn_server

from ..conftest import wait_for  # noqa: F401  (re-exported)

REPO = Path(__file__).resolve().parents[2]


def settings_env(settings) -> Dict[str, str]:
    """The environment that carries ``settings`` to a server process (the store URL with its
    password, the S3 keys), on top of this process's environment without ML_DASH_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env["ML_DASH_SERVER_STORE"] = settings.store
    env["ML_DASH_SERVER_BLOBS"] = settings.blobs
    if settings.s3_endpoint:
        env["ML_DASH_SERVER_S3_ENDPOINT"] = settings.s3_endpoint
    if settings.s3_access_key_id:
        env["AWS_ACCESS_KEY_ID"] = settings.s3_access_key_id
        env["AWS_SECRET_ACCESS_KEY"] = settings.s3_secret_access_key
    return env


class PgServers:
    """Server processes on one PostgreSQL store, started on demand, killed at the end of the test."""

    def __init__(self, root: Path, settings):
        self.root = root
        self.settings = settings
        self.env = settings_env(settings)
        self.token = create_token(root, "alice", settings=settings)
        self.procs: List[subprocess.Popen] = []

    def start(self, *args: str, port: int = 0, fault_injection: bool = True):
        url, proc = spawn_server(
            self.root, port=port, fault_injection=fault_injection, extra_args=args, env=self.env, timeout=90
        )
        self.procs.append(proc)
        return url, proc

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)


@pytest.fixture
def pg_servers(tmp_path, pg_settings):
    s = PgServers(tmp_path / "unused-root", pg_settings)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def pg_s3_servers(tmp_path, pg_s3_settings):
    s = PgServers(tmp_path / "unused-root", pg_s3_settings)
    try:
        yield s
    finally:
        s.close()
