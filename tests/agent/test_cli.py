"""``ml-dash-agent`` odds and ends, the credentials file, and what importing the agent costs."""

from __future__ import annotations

import json
import subprocess
import sys

from ml_dash.agent._credentials import token_for

from .conftest import client_env, log_messages, run_agent, run_client, unexpected_stderr


def test_status_and_flush_of_an_empty_or_missing_spool(spool):
    env = client_env(spool, None, None)
    assert run_agent(["flush", str(spool)], env).returncode == 0
    spool.mkdir()
    status = run_agent(["status", str(spool)], env)
    assert status.returncode == 0 and "nothing pending" in status.stdout
    bad = run_agent(["frobnicate"], env)
    assert bad.returncode == 2


def test_token_from_the_credentials_file(tmp_path, server, spool):
    cfg = tmp_path / "xdg"
    (cfg / "ml-dash").mkdir(parents=True)
    path = cfg / "ml-dash" / "credentials.json"
    path.write_text(json.dumps({server.url + "/": server.token, "default": "other"}))
    path.chmod(0o600)
    env = {"XDG_CONFIG_HOME": str(cfg)}
    assert token_for(server.url, env) == server.token
    assert token_for("http://elsewhere:1", env) == "other"
    assert token_for(server.url, {**env, "ML_DASH_TOKEN": "from-env"}) == "from-env"
    # a run that found its token in the file, end to end
    run_env = client_env(spool, server.url, None)
    run_env["XDG_CONFIG_HOME"] = str(cfg)
    proc = run_client(
        """
        from ml_dash import Experiment
        with Experiment("alice/p/creds").run as exp:
            exp.log("hi")
    """,
        run_env,
    )
    assert proc.returncode == 0 and unexpected_stderr(proc.stderr) == "", proc.stderr
    assert log_messages(server.url, server.token, "alice/p/creds") == ["hi"]


def test_importing_the_agent_or_spooling_offline_loads_no_network_stack(tmp_path):
    code = """
import sys
import ml_dash, ml_dash.agent
from ml_dash import Experiment
with Experiment("alice/p/light", dash_url="http://127.0.0.1:9", offline=True).run as exp:
    exp.log("x")
print(sorted(m for m in sys.modules if m.split(".")[0] in ("aiohttp", "tenacity")))
"""
    env = client_env(tmp_path / "spool", None, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
