"""The dashboard over HTTP, without a browser: pages, login cookie, read-only mode, file headers."""

from __future__ import annotations

import re
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from ml_dash.server import create_token, run_in_thread
from ml_dash.server.dashboard.session import COOKIE_NAME

from ..pipes import read_line
from ..server._client import auth, batch_body, request
from ._seed import SWEEP, seed


@pytest.fixture(scope="module")
def local_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash") / ".dash"
    seed(root)
    return root


@pytest.fixture
def local(local_root):
    handle = run_in_thread(local_root, auth=False, read_only=True)
    yield handle
    handle.stop()


@pytest.fixture
def secured(tmp_path, local_root):
    """A server with auth on, holding one run written by a remote SDK."""
    root = tmp_path / "server"
    token = create_token(root, "alice")
    handle = run_in_thread(root)
    from ml_dash import Experiment

    with Experiment(prefix="alice/p/remote-run", dash_url=handle.url, token=token).run as exp:
        exp.metrics("train").log(loss=1.0)
    yield handle, token
    handle.stop()


def _login(url: str, token: str, next_url: str = "/", origin: str | None = None):
    body = urllib.parse.urlencode({"token": token, "next": next_url}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if origin:
        headers["Origin"] = origin
    return request(url, "POST", "/login", body, headers)


def _cookie(answer) -> str:
    m = re.search(COOKIE_NAME + r"=([^;]+)", answer.headers.get("set-cookie", ""))
    assert m, answer.headers
    return m.group(1)


def test_pages_and_static_files_are_served(local):
    page = request(local.url, "GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "immutable" in request(local.url, "GET", "/static/common.js?v=1").headers["cache-control"]
    for path in (
        "/static/common.js",
        "/static/charts.js",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/vendor/uplot/LICENSE",
        "/static/dash.css",
    ):
        assert request(local.url, "GET", path).status == 200, path
    exp = request(local.url, "GET", "/e/" + SWEEP[0])
    assert exp.status == 200 and b"lr 0.1" in exp.raw and b"model.arch" in exp.raw
    missing = request(local.url, "GET", "/e/alice/vision/nope")
    assert missing.status == 404 and b"No such experiment" in missing.raw
    bad = request(local.url, "GET", "/e/a/..%2F../b")
    assert bad.status in (400, 404)
    assert request(local.url, "GET", "/compare?p=" + SWEEP[0]).status == 200


def test_table_route_filters_sorts_and_pages(local):
    rows = request(local.url, "GET", "/api/v1/table?sort=prefix&order=asc&columns=m:train:loss,p:lr").json
    assert [r["prefix"] for r in rows["rows"]] == sorted(SWEEP)
    assert rows["rows"][0]["values"]["p:lr"] == 0.1
    assert rows["rows"][0]["counts"]["metric_rows"] == 3030 and rows["rows"][0]["counts"]["files"] == 3
    page = request(local.url, "GET", "/api/v1/table?sort=prefix&order=desc&offset=1&limit=1").json
    assert page["total"] == 3 and [r["prefix"] for r in page["rows"]] == [SWEEP[1]]
    assert request(local.url, "GET", "/api/v1/table?q=vit").json["total"] == 1


def test_read_only_dashboard_refuses_writes(local):
    body = batch_body("sessionaaaa", "alice/vision/x", [{"seq": 0, "kind": "log", "message": "hi"}])
    answer = request(local.url, "POST", "/api/v1/ingest", body, {"Content-Type": "application/x-ndjson"})
    assert answer.status == 405 and answer.json["error"]["code"] == "read_only"
    assert not (Path(local.root) / "alice/vision/x").exists()


def test_user_files_cannot_run_as_the_dashboard(local):
    files = request(local.url, "GET", "/api/v1/files?prefix=" + SWEEP[0]).json["files"]
    evil = next(f for f in files if f["filename"] == "evil.html")
    got = request(local.url, "GET", f"/api/v1/file?prefix={SWEEP[0]}&id={evil['id']}")
    assert got.status == 200 and b"<script>" in got.raw
    assert "sandbox" in got.headers["content-security-policy"]
    assert got.headers["x-content-type-options"] == "nosniff"
    dl = request(local.url, "GET", f"/api/v1/file?prefix={SWEEP[0]}&id={evil['id']}&download=1")
    assert dl.headers["content-disposition"].startswith('attachment; filename="evil.html"')


def test_login_sets_a_read_only_cookie(secured):
    handle, token = secured
    # no token: pages send you to the login form, the API says 401
    page = request(handle.url, "GET", "/e/alice/p/remote-run")
    assert page.status == 303
    assert urllib.parse.unquote(page.headers["location"]) == "/login?next=/e/alice/p/remote-run"
    assert request(handle.url, "GET", "/api/v1/table").status == 401
    wrong = _login(handle.url, "mld_not-a-token")
    assert wrong.status == 401 and b"not valid on this server" in wrong.raw and "set-cookie" not in wrong.headers
    ok = _login(handle.url, token, "/e/alice/p/remote-run")
    assert ok.status == 303 and ok.headers["location"] == "/e/alice/p/remote-run"
    set_cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Secure" not in set_cookie
    cookie = _cookie(ok)
    assert token not in set_cookie
    jar = {"Cookie": f"{COOKIE_NAME}={cookie}"}
    rows = request(handle.url, "GET", "/api/v1/table", headers=jar).json["rows"]
    assert [r["prefix"] for r in rows] == ["alice/p/remote-run"]
    assert request(handle.url, "GET", "/e/alice/p/remote-run", headers=jar).status == 200
    # the cookie never authorizes a write (CSRF): only the Authorization header does
    body = batch_body("sessionbbbb", "alice/p/csrf", [{"seq": 0, "kind": "log", "message": "x"}])
    refused = request(handle.url, "POST", "/api/v1/ingest", body, {"Content-Type": "application/x-ndjson", **jar})
    assert refused.status == 401
    assert (
        request(
            handle.url, "POST", "/api/v1/ingest", body, {"Content-Type": "application/x-ndjson", **auth(token)}
        ).status
        == 200
    )


def test_logout_clears_the_cookie(secured):
    handle, token = secured
    cookie = _cookie(_login(handle.url, token))
    out = request(handle.url, "POST", "/logout", b"", {"Cookie": f"{COOKIE_NAME}={cookie}"})
    assert out.status == 303 and out.headers["location"] == "/login"
    assert re.search(COOKIE_NAME + r'=("")?;.*Max-Age=0', out.headers["set-cookie"]), out.headers["set-cookie"]


def test_forged_tampered_and_revoked_cookies_are_refused(secured):
    handle, token = secured
    cookie = _cookie(_login(handle.url, token))
    token_hash, expires, mac = cookie.split(".")
    for bad in (f"{token_hash}.{int(expires) + 1}.{mac}", f"{'0' * 64}.{expires}.{mac}", "garbage", token):
        assert request(handle.url, "GET", "/api/v1/table", headers={"Cookie": f"{COOKIE_NAME}={bad}"}).status == 401, (
            bad
        )
    from ml_dash.server.index import Index

    index = Index(handle.root)
    try:
        assert len(index.revoke_tokens(token_hash[:12])) == 1
    finally:
        index.close()
    assert request(handle.url, "GET", "/api/v1/table", headers={"Cookie": f"{COOKIE_NAME}={cookie}"}).status == 401


def test_login_refuses_cross_site_posts_and_open_redirects(secured):
    handle, token = secured
    assert _login(handle.url, token, origin="http://evil.example").status == 403
    for target in ("//evil.example/x", "http://evil.example/", "/\\evil.example"):
        assert _login(handle.url, token, target).headers["location"] == "/"
    u = urllib.parse.urlsplit(handle.url)
    assert _login(handle.url, token, "/compare?p=a", origin=f"http://{u.netloc}").headers["location"] == "/compare?p=a"


def test_login_cookie_is_secure_behind_https(secured):
    handle, token = secured
    body = urllib.parse.urlencode({"token": token}).encode()
    ok = request(
        handle.url,
        "POST",
        "/login",
        body,
        {"Content-Type": "application/x-www-form-urlencoded", "X-Forwarded-Proto": "https"},
    )
    assert "Secure" in ok.headers["set-cookie"]


_CLI = [sys.executable, "-c", "import sys; from ml_dash.cli import main; sys.exit(main())"]


def test_dashboard_command_serves_a_local_store(local_root, tmp_path):
    proc = subprocess.Popen(
        [*_CLI, "dashboard", "--root", str(local_root), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line(proc.stdout, 60, "the dashboard's URL")
        m = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        assert m, line + proc.stderr.read()
        rows = request(m.group(1), "GET", "/api/v1/table").json["rows"]
        assert sorted(r["prefix"] for r in rows) == sorted(SWEEP)
    finally:
        proc.terminate()
        proc.wait(10)
    refused = subprocess.run(
        [*_CLI, "dashboard", "--root", str(local_root), "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "loopback" in refused.stderr
    missing = subprocess.run(
        [*_CLI, "dashboard", "--root", str(tmp_path / "none")], capture_output=True, text=True, timeout=60
    )
    assert missing.returncode == 2 and "no local store" in missing.stderr


def test_remote_run_prints_its_dashboard_url(secured, tmp_path):
    from ..conftest import run_script

    handle, token = secured
    code = f"""
        from ml_dash import Experiment
        with Experiment(prefix="alice/p/url run", dash_url={handle.url!r}).run as exp:
            exp.log("hi")
    """
    env = {"ML_DASH_TOKEN": token, "ML_DASH_SPOOL_DIR": str(tmp_path / "spool")}
    out = run_script(code, tmp_path, env)
    assert out.returncode == 0, out.stderr
    assert f"{handle.url}/e/alice/p/url%20run" in out.stderr
    quiet = run_script(code, tmp_path, {**env, "ML_DASH_PRINT_URL": "0"})
    assert quiet.returncode == 0 and "/e/alice" not in quiet.stderr
