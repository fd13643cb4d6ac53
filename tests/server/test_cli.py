"""The command line: token management, starting, refusing auth-less non-loopback binds."""

from __future__ import annotations

import subprocess
import sys

from ml_dash.server import spawn_server
from ml_dash.server.auth import hash_token
from ml_dash.server.index import Index

from ..pipes import read_line
from ._client import get, ingest, metric_events


def run(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "ml_dash.cli", *args], capture_output=True, text=True, timeout=timeout)


def test_token_create_list_revoke_and_use(tmp_path):
    root = tmp_path / "root"
    out = run("server", "token", "create", "--root", str(root), "--owner", "alice", "--label", "laptop")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert token.startswith("mld_") and len(token) > 40
    # only the hash is stored
    index = Index(root)
    assert index.token_owner(hash_token(token)) == "alice"
    index.close()
    assert token not in (root / ".ml-dash-server" / "index.sqlite3").read_bytes().decode("latin-1")
    listed = run("server", "token", "list", "--root", str(root)).stdout
    assert "alice" in listed and "laptop" in listed and token not in listed

    url, proc = spawn_server(root)
    try:
        assert ingest(url, token, "sessCLI001", "alice/p/x", metric_events(0, 2)).status == 200
        revoked = run("server", "token", "revoke", "--root", str(root), hash_token(token)[:12])
        assert revoked.returncode == 0 and f"revoked {hash_token(token)[:12]}  alice" in revoked.stdout
        assert get(url, token, "experiments").status == 401
    finally:
        proc.terminate()
        assert proc.wait(15) == 0
    bad = run("server", "token", "create", "--root", str(root), "--owner", "../x")
    assert bad.returncode == 2 and "owner" in bad.stderr


def test_no_auth_only_on_loopback(tmp_path):
    out = run("server", "--root", str(tmp_path / "r"), "--host", "0.0.0.0", "--port", "0", "--insecure-no-auth")
    assert out.returncode == 2 and "loopback" in out.stderr


def test_start_prints_url_first_and_warns_without_auth(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_dash.server", "--root", str(tmp_path / "r"), "--port", "0", "--insecure-no-auth"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = read_line(proc.stdout, 60, "the server's first line")
        assert first.startswith("ml-dash server listening on http://127.0.0.1:")
        url = first.split()[-1]
        assert get(url, None, "info").json["protocol"] == 1
        banner = [read_line(proc.stdout, 30, "the banner") for _ in range(2)]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "AUTH IS OFF" in banner[1] and "AUTH IS OFF" in err


def test_import_ml_dash_does_not_load_the_server():
    code = "import sys, ml_dash; print([m for m in sys.modules if m.startswith('ml_dash.server')])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_revoke_takes_a_literal_hash_prefix_of_8_or_more_and_lists_what_it_revoked(tmp_path):
    """``________`` used to revoke every token: the prefix was a SQL LIKE pattern."""
    root = tmp_path / "root"
    tokens = {}
    for owner in ("alice", "bob", "carol"):
        out = run("server", "token", "create", "--root", str(root), "--owner", owner, "--label", f"{owner}-laptop")
        tokens[owner] = out.stdout.strip()
    url, proc = spawn_server(root)
    try:
        for pattern in ("________", "%%%%%%%%", "_%______", "0000000_"):
            r = run("server", "token", "revoke", "--root", str(root), pattern)
            assert r.returncode == 1 and "nothing revoked" in r.stderr and r.stdout == "", (pattern, r)
        short = run("server", "token", "revoke", "--root", str(root), hash_token(tokens["bob"])[:7])
        assert short.returncode == 2 and "at least 8" in short.stderr
        for owner, token in tokens.items():
            assert get(url, token, "experiments").status == 200, owner  # all still valid
        r = run("server", "token", "revoke", "--root", str(root), hash_token(tokens["bob"])[:8].upper())
        assert r.returncode == 0
        assert r.stdout.splitlines() == [line for line in r.stdout.splitlines() if line.startswith("revoked ")]
        assert len(r.stdout.splitlines()) == 1
        assert f"revoked {hash_token(tokens['bob'])[:12]}  bob" in r.stdout and "bob-laptop" in r.stdout
        assert get(url, tokens["bob"], "experiments").status == 401
        assert get(url, tokens["alice"], "experiments").status == 200
        assert get(url, tokens["carol"], "experiments").status == 200
        listed = run("server", "token", "list", "--root", str(root)).stdout
        assert "alice" in listed and "carol" in listed and "bob" not in listed
    finally:
        proc.terminate()
        proc.wait(30)
