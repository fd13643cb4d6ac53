"""Deep JSON, the test-only fault routes, and headers that must never be repeated back: real
servers (threads and processes), raw requests."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.parse

import orjson
import pytest

from ml_dash.server import run_in_thread

from ..conftest import wait_for
from ._client import auth, get, ingest, post, request

P = "alice/proj/hostile"


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def test_json_nested_1000_deep_is_4xx_and_the_rest_is_stored(server):
    head = orjson.dumps({"v": 1, "session": "sessDEEP10", "prefix": P})
    lines = [
        b'{"seq":0,"kind":"metric","ts":1.0,"name":"m","data":{"x":' + _deep(1000) + b"}}",
        b'{"seq":1,"kind":' + _deep(1000) + b',"ts":1.0}',  # a deep value where a word belongs
        b'{"seq":2,"kind":"metrics","n":2,"name":"m","ts":[1.0,2.0],"cols":{"x":[' + _deep(1000) + b",[1]]}}",
        b'{"seq":4,"kind":"metric","ts":1.0,"name":"m","data":{"x":[2]}}',
    ]
    a = post(server.url, server.token, b"\n".join([head] + lines))
    assert a.status == 200, a  # used to be 500 (a RecursionError measuring the depth)
    assert [(r["seq"], r["code"]) for r in a.json["rejected"]] == [(0, "too_deep"), (1, "too_deep"), (2, "too_deep")]
    rows = get(server.url, server.token, "metric", prefix=P, name="m").json["rows"]
    assert [r["data"]["x"] for r in rows] == [[1], [2]]
    # deeper than the parser reads at all: the batch is malformed
    a = post(server.url, server.token, head + b'\n{"seq":5,"kind":"metric","data":' + _deep(2000) + b"}")
    assert a.status == 400 and a.json["error"]["code"] == "bad_json"
    # deep values in the header and in a fault plan
    a = post(
        server.url, server.token, b'{"v":' + _deep(1000) + b',"session":"sessDEEP11","prefix":"' + P.encode() + b'"}'
    )
    assert a.status == 400 and a.json["error"]["code"] == "unsupported_version"
    for plan in (
        _deep(1000),
        b'[{"match":' + _deep(1000) + b',"action":"hang"}]',
        b'[{"match":"any","action":' + _deep(1000) + b"}]",
    ):
        a = request(server.url, "PUT", "/api/v1/_test/faults", plan, auth(server.token))
        assert a.status == 400, a


def test_fault_routes_need_a_token(server):
    rules = json.dumps([{"match": "ingest", "action": "status", "status": 503}]).encode()
    for token in (None, "mld_not-a-real-token"):
        assert request(server.url, "PUT", "/api/v1/_test/faults", rules, auth(token)).status == 401
        assert request(server.url, "GET", "/api/v1/_test/faults", headers=auth(token)).status == 401
        assert request(server.url, "GET", "/api/v1/_test/stats", headers=auth(token)).status == 401
    assert (
        ingest(
            server.url,
            server.token,
            "sessFLTA01",
            P,
            [{"seq": 0, "kind": "log", "level": "info", "message": "no fault was planted"}],
        ).status
        == 200
    )
    assert request(server.url, "PUT", "/api/v1/_test/faults", rules, auth(server.bob)).status == 200
    assert (
        request(server.url, "GET", "/api/v1/_test/faults", headers=auth(server.token)).json["rules"][0]["status"] == 503
    )


def test_fault_injection_is_refused_off_loopback(tmp_path):
    with pytest.raises(ValueError, match="loopback"):
        run_in_thread(tmp_path / "r1", host="0.0.0.0", fault_injection=True)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml_dash.server",
            "--root",
            str(tmp_path / "r2"),
            "--host",
            "0.0.0.0",
            "--port",
            "0",
            "--fault-injection",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--fault-injection" in r.stderr and "loopback" in r.stderr
    assert "listening" not in r.stdout


def _raw(url: str, request_bytes: bytes) -> bytes:
    u = urllib.parse.urlsplit(url)
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(request_bytes)
        out = b""
        while True:
            try:
                data = s.recv(65536)
            except OSError:
                break
            if not data:
                break
            out += data
    return out


def test_an_overlong_authorization_header_is_never_echoed_or_logged(spawned):
    url = spawned.start()
    secret = "SECRETTOKENPART"
    for size in (20_000, 300, 9000):  # over aiohttp's 8190-byte header limit, over ours (256), over both
        value = ("Bearer " + secret * (size // len(secret) + 1))[:size]
        answer = _raw(
            url,
            f"GET /api/v1/experiments HTTP/1.1\r\nHost: t\r\nAuthorization: {value}\r\n"
            f"Connection: close\r\n\r\n".encode(),
        )
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 401, 431), answer[:300]
        assert secret.encode() not in answer
        assert answer.split(b"\r\n\r\n", 1)[1].startswith(b'{"error":')
    # the same on the write route, and with the header line itself too long
    answer = _raw(
        url,
        b"POST /api/v1/ingest HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
        + secret.encode() * 2000
        + b"\r\nContent-Length: 2\r\n\r\n{}",
    )
    assert secret.encode() not in answer and b" 431 " in answer.split(b"\r\n", 1)[0] + b" "
    assert get(url, spawned.token, "experiments").status == 200  # still serving
    assert spawned.stop() == 0
    wait_for(lambda: "ml-dash server stopped" in spawned.proc.output(), what="the server's last words")
    assert secret not in spawned.proc.output()
