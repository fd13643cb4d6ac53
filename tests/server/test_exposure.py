"""Exposing a server beyond loopback: built-in TLS, the owner-scoped read mode, owner-only
permissions on the root and the index. Real server processes and a real remote run."""

from __future__ import annotations

import hashlib
import os
import shutil
import ssl
import stat
import subprocess
import sys
import urllib.request

import orjson
import pytest

from ml_dash.server import create_token, run_in_thread

from ..agent.forward_proxy import ForwardProxy
from ..conftest import run_script, wait_for
from ._client import auth, get, ingest, metric_events, request


@pytest.fixture
def cert(tmp_path):
    """A self-signed certificate for 127.0.0.1 and localhost (the openssl command line makes it)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    crt, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    r = subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(crt),
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate here: {r.stderr.strip()[-300:]}")
    return crt, key


def _https_get(url, token, ctx):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return orjson.loads(resp.read())


def test_tls_serves_https_and_a_remote_run_goes_through_it(spawned, cert, tmp_path):
    crt, key = cert
    url = spawned.start("--tls-cert", str(crt), "--tls-key", str(key), fault_injection=False)
    assert url.startswith("https://127.0.0.1:")
    tok = spawned.token
    run = run_script(
        f"""
        from ml_dash import Experiment
        with Experiment(prefix="alice/proj/tls", dash_url={url!r}).run as exp:
            exp.log("over TLS")
            for i in range(5):
                exp.metrics("train").log(step=i)
            exp.flush(timeout=30)
        """,
        tmp_path,
        env={"ML_DASH_TOKEN": tok, "SSL_CERT_FILE": str(crt), "ML_DASH_SPOOL_DIR": str(tmp_path / "spool")},
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    ctx = ssl.create_default_context(cafile=str(crt))
    rows = _https_get(url + "/api/v1/metric?prefix=alice/proj/tls&name=train", tok, ctx)["rows"]
    assert [r["data"]["step"] for r in rows] == list(range(5))
    # the certificate is what it says: a client that does not trust it gets nothing
    with pytest.raises(urllib.error.URLError):
        _https_get(url + "/api/v1/experiments", tok, ssl.create_default_context())
    # plain http on the TLS port is not answered as HTTP
    with pytest.raises(OSError):
        request(url.replace("https://", "http://"), "GET", "/api/v1/info", timeout=5)
    bad = subprocess.run(
        [sys.executable, "-m", "ml_dash.server", "--root", str(tmp_path / "r"), "--port", "0", "--tls-cert", str(crt)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--tls-key" in bad.stderr


def test_an_https_run_goes_through_the_proxy_in_a_tunnel(spawned, cert, tmp_path):
    """HTTPS_PROXY: the uploads to an https:// server go through a CONNECT tunnel that carries the
    proxy's credentials; inside it the proxy sees nothing, the token included."""
    crt, key = cert
    url = spawned.start("--tls-cert", str(crt), "--tls-key", str(key), fault_injection=False)
    with ForwardProxy(user="u", password="pw") as proxy:
        run = run_script(
            f"""
            from ml_dash import Experiment
            with Experiment(prefix="alice/proj/tunnel", dash_url={url!r}).run as exp:
                for i in range(300):
                    exp.metrics("train").log(step=i)
            """,
            tmp_path,
            env={
                "ML_DASH_TOKEN": spawned.token,
                "SSL_CERT_FILE": str(crt),
                "ML_DASH_SPOOL_DIR": str(tmp_path / "spool"),
                "HTTPS_PROXY": f"http://u:pw@127.0.0.1:{proxy.port}",
                "NO_PROXY": "",
                "no_proxy": "",
            },
            timeout=120,
        )
    assert run.returncode == 0, run.stderr
    host_port = url.split("://", 1)[1]
    assert proxy.seen and {(s.method, s.target, s.proxy_authorization) for s in proxy.seen} == {
        ("CONNECT", host_port, proxy.expected)
    }
    assert not any(spawned.token in s.head for s in proxy.seen)
    ctx = ssl.create_default_context(cafile=str(crt))
    rows = _https_get(url + "/api/v1/metric?prefix=alice/proj/tunnel&name=train", spawned.token, ctx)["rows"]
    assert [r["data"]["step"] for r in rows] == list(range(300))


def test_owner_read_scope_keeps_each_token_to_its_owners_experiments(tmp_path):
    root = tmp_path / "root"
    alice, bob = create_token(root, "alice"), create_token(root, "bob")
    data = b"alice's weights"
    checksum = hashlib.sha256(data).hexdigest()
    with run_in_thread(root, read_scope="owner") as h:
        assert request(h.url, "PUT", f"/api/v1/blobs/{checksum}", data, auth(alice)).status == 201
        a = ingest(
            h.url,
            alice,
            "sessSCOPE1",
            "alice/p/x",
            metric_events(0, 3)
            + [
                {
                    "seq": 3,
                    "kind": "file",
                    "ts": 1.0,
                    "id": "w",
                    "path": "/",
                    "filename": "w.bin",
                    "checksum": checksum,
                    "size": len(data),
                }
            ],
        )
        assert a.json["acked_seq"] == 3
        assert ingest(h.url, bob, "sessSCOPE2", "bob/p/y", metric_events(0, 2)).json["acked_seq"] == 1
        assert get(h.url, None, "info").status == 200
        for prefix in ("alice/p/x", "alice/p/not-there"):  # existing or not: the same answer
            for route, query in (
                ("experiment", {}),
                ("params", {}),
                ("logs", {}),
                ("metrics", {}),
                ("metric", {"name": "train"}),
                ("files", {}),
                ("file", {"id": "w"}),
                ("summary", {}),
                ("series", {"name": "train", "field": "step"}),
            ):
                a = get(h.url, bob, route, prefix=prefix, **query)
                assert a.status == 403 and a.json["error"]["code"] == "forbidden", (route, prefix, a)
        page = request(h.url, "GET", "/e/alice/p/x", headers=auth(bob))
        assert page.status == 403 and b"alice/p/x" not in page.raw.replace(b"/e/alice/p/x", b"")
        assert [e["prefix"] for e in get(h.url, bob, "experiments").json["experiments"]] == ["bob/p/y"]
        assert get(h.url, bob, "experiments", owner="alice").json["experiments"] == []
        assert [r["prefix"] for r in get(h.url, bob, "table").json["rows"]] == ["bob/p/y"]
        # each reads its own
        assert [
            r["data"]["step"] for r in get(h.url, alice, "metric", prefix="alice/p/x", name="train").json["rows"]
        ] == [0, 1, 2]
        assert request(h.url, "GET", "/api/v1/file?prefix=alice/p/x&id=w", headers=auth(alice)).raw == data
        assert sorted(r["prefix"] for r in wait_for(lambda: get(h.url, alice, "table").json["rows"])) == ["alice/p/x"]
        assert get(h.url, bob, "metric", prefix="bob/p/y", name="train").status == 200
    with run_in_thread(root) as h:  # the default: a team server, any valid token reads everything
        assert get(h.url, bob, "metric", prefix="alice/p/x", name="train").status == 200


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_root_and_its_index_are_owner_only(tmp_path):
    old = os.umask(0o022)  # the usual umask: what the server creates must not depend on it
    try:
        root = tmp_path / "fresh"
        created = subprocess.run(
            [sys.executable, "-m", "ml_dash.cli", "server", "token", "create", "--root", str(root), "--owner", "alice"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert created.returncode == 0, created.stderr
        assert _mode(root) == 0o700 and _mode(root / ".ml-dash-server") == 0o700
        assert _mode(root / ".ml-dash-server" / "index.sqlite3") == 0o600
        with run_in_thread(tmp_path / "other") as h:
            assert ingest(h.url, None, "sessPERM01", "alice/p/x", metric_events(0, 2)).status in (200, 401)
        other = tmp_path / "other" / ".ml-dash-server"
        assert _mode(tmp_path / "other") == 0o700 and _mode(other) == 0o700
        for name in ("index.sqlite3", "index.sqlite3-wal", "index.sqlite3-shm"):
            if (other / name).exists():
                assert _mode(other / name) == 0o600, name
        # an existing root keeps its mode, and the server says it is open
        shared = tmp_path / "shared"
        shared.mkdir(mode=0o755)
        os.chmod(shared, 0o755)
        token = create_token(shared, "alice")
        from ml_dash.server import spawn_server

        url, proc = spawn_server(shared)
        try:
            assert get(url, token, "experiments").status == 200
            said = wait_for(lambda: "open to other users" in proc.output() and proc.output(), what="the warning")
            assert "chmod 700" in said
            assert _mode(shared) == 0o755 and _mode(shared / ".ml-dash-server") == 0o700
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        os.umask(old)
