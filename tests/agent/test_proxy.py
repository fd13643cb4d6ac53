"""Uploads through the HTTP proxy the environment names (``agent/_proxy.py``), with a real forward
proxy on loopback between a client process and the server."""

from __future__ import annotations

import pytest

from ml_dash.agent._proxy import DIRECT, Route, route_for
from ml_dash.agent._retry import Unrecoverable

from .conftest import client_env, reader, run_agent, run_client, sessions, unexpected_stderr
from .forward_proxy import ForwardProxy

CLIENT = """
import os, tempfile
from ml_dash import Experiment

weights = os.path.join(tempfile.mkdtemp(), "weights.bin")
with open(weights, "wb") as f:
    f.write(bytes(range(256)) * 1024)
with Experiment("alice/p/proxied").run as exp:
    for i in range(2000):
        exp.metrics("train").log(i=i)
    exp.log("through the proxy")
    exp.files("models").save(weights)
print("DONE", flush=True)
"""


#: Every variable that names a proxy: cleared first, so the machine's own settings never leak in.
PROXY_VARIABLES = [f"{kind}_proxy" for kind in ("http", "https", "all", "no")]
PROXY_VARIABLES += [name.upper() for name in PROXY_VARIABLES]


def _proxy_env(spool, server, proxy_url: str, **more: str):
    env = client_env(spool, server.url, server.token)
    for name in PROXY_VARIABLES:
        env.pop(name, None)
    env["HTTP_PROXY"] = proxy_url
    env.update(more)
    return env


def _stored(server, prefix: str = "alice/p/proxied"):
    r = reader(server.url, server.token, prefix)
    return [row["data"]["i"] for row in r.metric_rows("train")], [x["message"] for x in r.logs()], r.files()


def test_uploads_go_through_the_proxy_with_its_credentials(server, spool, tmp_path):
    with ForwardProxy(user="ml dash", password="p@ss:word") as proxy:
        env = _proxy_env(spool, server, f"http://ml%20dash:p%40ss%3Aword@127.0.0.1:{proxy.port}")
        proc = run_client(CLIENT, env)
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr[-3000:]
    assert unexpected_stderr(proc.stderr) == ""
    rows, logs, files = _stored(server)
    assert rows == list(range(2000)) and logs == ["through the proxy"] and files[0]["filename"] == "weights.bin"
    routes = [(s.method, s.target.split("/api/v1", 1)[1].split("/")[1]) for s in proxy.seen]
    assert ("GET", "info") in routes and ("POST", "ingest") in routes and ("PUT", "blobs") in routes, routes
    assert all(s.target.startswith(server.url + "/api/v1/") for s in proxy.seen), proxy.seen
    assert {s.proxy_authorization for s in proxy.seen} == {proxy.expected}
    # The token travels in its own header only: never in what the proxy sees as the URL.
    assert not any(server.token in s.target for s in proxy.seen)
    assert sessions(spool) == []


def test_no_proxy_reaches_the_server_directly(server, spool):
    with ForwardProxy() as proxy:
        env = _proxy_env(spool, server, f"http://127.0.0.1:{proxy.port}", NO_PROXY="localhost,127.0.0.1")
        proc = run_client(CLIENT, env)
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr[-3000:]
    assert _stored(server)[0] == list(range(2000))
    assert proxy.seen == []


def test_a_proxy_that_cannot_be_used_stops_the_upload_and_keeps_the_spool(server, spool):
    env = _proxy_env(spool, server, "socks5://127.0.0.1:1080")
    proc = run_client(CLIENT, env)
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr[-3000:]
    assert "HTTP_PROXY names a proxy ml-dash cannot use (scheme 'socks5')" in proc.stderr, proc.stderr
    assert "ml-dash-agent flush" in proc.stderr
    assert _stored(server)[0] == []
    # With the variable fixed, the flush command delivers everything, once.
    env.pop("HTTP_PROXY")
    flushed = run_agent(["flush", str(spool)], env)
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    rows, logs, files = _stored(server)
    assert rows == list(range(2000)) and logs == ["through the proxy"] and len(files) == 1
    assert sessions(spool) == []


def test_a_proxy_refusing_the_credentials_leaves_the_events_in_the_spool(server, spool):
    with ForwardProxy(user="u", password="right") as proxy:
        env = _proxy_env(spool, server, f"http://u:wrong@127.0.0.1:{proxy.port}", ML_DASH_SHUTDOWN_TIMEOUT="3")
        proc = run_client(CLIENT, env)
    assert proc.returncode == 0 and "DONE" in proc.stdout, proc.stderr[-3000:]
    assert proxy.seen and "the proxy refused ml-dash's credentials" in proc.stderr, proc.stderr
    assert "ml-dash-agent flush" in proc.stderr
    assert _stored(server)[0] == []
    assert len(sessions(spool)) == 1


# -- which route, from the environment (the variables are real input, set per test) --------------


@pytest.fixture
def environ(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_route_follows_the_scheme_and_no_proxy(environ):
    environ.setenv("HTTP_PROXY", "proxy.local:3128")
    environ.setenv("HTTPS_PROXY", "http://secure-proxy:8080")
    environ.setenv("NO_PROXY", "internal.example,10.0.0.5:8000")
    assert route_for("http://dash.example:8000") == Route("http://proxy.local:3128", {}, {})
    assert route_for("https://dash.example") == Route("http://secure-proxy:8080", {}, {})
    assert route_for("https://dash.internal.example") == DIRECT
    assert route_for("http://10.0.0.5:8000") == DIRECT
    assert route_for("http://user:pw@dash.example") == Route("http://proxy.local:3128", {}, {})


def test_route_turns_proxy_credentials_into_a_header_for_the_proxy_only(environ):
    environ.setenv("https_proxy", "http://al%40ice:s3cret@proxy:3128")
    environ.setenv("http_proxy", "http://al%40ice:s3cret@proxy:3128")
    credentials = {"Proxy-Authorization": "Basic YWxAaWNlOnMzY3JldA=="}  # al@ice:s3cret
    # https: the tunnel's CONNECT carries them; the requests inside it go to the server, not to the proxy.
    assert route_for("https://dash.example") == Route("http://proxy:3128", credentials, {})
    # http: the proxy reads each request, so each request carries them.
    assert route_for("http://dash.example") == Route("http://proxy:3128", {}, credentials)


def test_route_without_proxy_variables_is_direct(environ):
    assert route_for("https://dash.example") == DIRECT


def test_route_refuses_a_proxy_it_cannot_use(environ):
    environ.setenv("HTTPS_PROXY", "socks5h://proxy:1080")
    with pytest.raises(Unrecoverable, match=r"HTTPS_PROXY names a proxy ml-dash cannot use \(scheme 'socks5h'\)"):
        route_for("https://dash.example")
