"""Store settings and secrets: from the environment or an owner-only file, never from the command
line, never printed; the schema is applied by `ml-dash server migrate` and checked at start."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from ml_dash.server.settings import ServerSettings, SettingsError, load_settings, redact

from .conftest import settings_env


def test_redact_and_repr_never_show_a_password():
    url = "postgresql://ml:s3cret@db:5432/dash?sslmode=require"
    assert redact(url) == "postgresql://ml:***@db:5432/dash?sslmode=require"
    assert redact("postgresql://ml@db/dash?password=s3cret") == "postgresql://ml@db/dash?password=%2A%2A%2A"
    assert redact("postgresql://ml@db/dash") == "postgresql://ml@db/dash"
    s = ServerSettings(store=url, s3_secret_access_key="KEY")
    assert "s3cret" not in repr(s) and "KEY" not in repr(s) and "s3cret" not in str(s)


def test_sources_and_refusals(tmp_path):
    with pytest.raises(SettingsError, match="process listing"):
        load_settings({"store": "postgresql://ml:s3cret@db/dash"}, env={})
    env = {
        "ML_DASH_SERVER_STORE": "postgresql://ml:s3cret@db/dash",
        "ML_DASH_SERVER_BLOBS": "s3://b/p",
        "AWS_ACCESS_KEY_ID": "id",
        "AWS_SECRET_ACCESS_KEY": "secret",
    }
    s = load_settings({}, env=env)
    assert s.store.endswith("@db/dash") and s.blobs == "s3://b/p" and s.s3_secret_access_key == "secret"
    assert load_settings({"blobs": "s3://other/x"}, env=env).blobs == "s3://other/x"  # the command line wins
    f = tmp_path / "settings.json"
    f.write_text(json.dumps({"store": "postgresql://ml:pw@db/dash", "blobs": "/shared/blobs", "pool_size": 3}))
    os.chmod(f, 0o644)
    with pytest.raises(SettingsError, match="chmod 600"):
        load_settings({}, env={"ML_DASH_SERVER_SETTINGS": str(f)})
    os.chmod(f, 0o600)
    s = load_settings({}, env={"ML_DASH_SERVER_SETTINGS": str(f)})
    assert s.pool_size == 3 and s.blobs == "/shared/blobs"
    f.write_text(json.dumps({"stor": "x"}))
    with pytest.raises(SettingsError, match="unknown keys"):
        load_settings({}, env={"ML_DASH_SERVER_SETTINGS": str(f)})
    with pytest.raises(SettingsError, match="postgresql://"):
        load_settings({"store": "mysql://db/x"}, env={})
    with pytest.raises(SettingsError, match="--blobs needs --store"):
        load_settings({"blobs": "s3://b/p"}, env={})


def _server(args, env):
    return subprocess.run(
        [sys.executable, "-m", "ml_dash.server", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_server_refuses_a_password_on_the_command_line_and_a_database_without_schema(pg_cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    out = _server(["--store", pg_cluster.admin_url("postgres"), "--blobs", str(tmp_path), "--port", "0"], env)
    assert (
        out.returncode == 2 and "process listing" in out.stderr and pg_cluster.password not in out.stdout + out.stderr
    )
    name = pg_cluster.new_database()  # empty: no schema yet
    try:
        env["ML_DASH_SERVER_STORE"] = pg_cluster.admin_url(name)
        out = _server(["--blobs", str(tmp_path), "--port", "0"], env)
        assert out.returncode == 1 and "ml-dash server migrate" in out.stderr
        assert pg_cluster.password not in out.stdout + out.stderr
        code = "import sys; from ml_dash.server.cli import main; sys.exit(main(sys.argv[1:]))"
        mig = subprocess.run(
            [sys.executable, "-c", code, "migrate"], env=env, capture_output=True, text=True, timeout=60
        )
        assert mig.returncode == 0 and "0001_initial" in mig.stdout, mig.stderr
        mig = subprocess.run(
            [sys.executable, "-c", code, "migrate"], env=env, capture_output=True, text=True, timeout=60
        )
        assert mig.returncode == 0 and "up to date" in mig.stdout
    finally:
        pg_cluster.drop_database(name)


def test_a_running_server_shows_no_secret(pg_servers):
    _url, proc = pg_servers.start()
    cmdline = " ".join(psutil.Process(proc.pid).cmdline())
    password = pg_servers.settings.store.split(":")[2].split("@")[0]
    assert password not in cmdline  # nothing secret in the process listing
    from ..conftest import wait_for

    # the "data:" line comes just after the listening line the start waited for
    wait_for(lambda: "***" in proc.output(), timeout=10, what="the server's data line")
    assert password not in proc.output()  # nor in what it printed
    env = settings_env(pg_servers.settings)
    assert env["ML_DASH_SERVER_STORE"] == pg_servers.settings.store  # it came from the environment


def test_token_commands_on_the_postgresql_store(pg_servers):
    """create, list and revoke with the store's settings from the environment; a revoked token
    stops working on a running server within the owners' cache time (2 s)."""
    from ml_dash.server.auth import hash_token

    from ..conftest import wait_for
    from ..server._client import get

    env = settings_env(pg_servers.settings)
    code = "import sys; from ml_dash.server.cli import main; sys.exit(main(sys.argv[1:]))"

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-c", code, "token", *args], env=env, capture_output=True, text=True, timeout=60
        )

    made = cli("create", "--owner", "carol", "--label", "ci")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[0]
    listed = cli("list").stdout
    assert "carol" in listed and hash_token(token)[:12] in listed and token not in listed
    url, _ = pg_servers.start()
    assert get(url, token, "experiments").status == 200
    gone = cli("revoke", hash_token(token)[:12])
    assert gone.returncode == 0 and "carol" in gone.stdout, gone.stdout + gone.stderr
    wait_for(lambda: get(url, token, "experiments").status == 401, timeout=10, what="the revoke to reach the server")
