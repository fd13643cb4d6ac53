"""Hostile and malformed input: each is refused with the right 4xx and a JSON error, nothing escapes."""

from __future__ import annotations

import gzip
import random
import socket
import urllib.parse

import orjson
import pytest

from ml_dash.server import create_token, spawn_server

from ._client import auth, batch_body, get, ingest, metric_events, post, request

P = "alice/proj/run-1"


def _code(a):
    return a.json["error"]["code"]


@pytest.mark.parametrize(
    "body,code",
    [
        (b"", "bad_header"),
        (b"not json at all\n", "bad_header"),
        (b'{"seq": 0, "kind": "metric"}\n', "unsupported_version"),  # events without the header line
        (b"[1, 2]\n", "bad_header"),
        (b'{"v": 2, "session": "sessVVVV01", "prefix": "alice/p/e"}\n', "unsupported_version"),
        (b'{"v": 1, "session": "short", "prefix": "alice/p/e"}\n', "bad_session"),
        (b'{"v": 1, "session": "sessXXXX01"}\n', "invalid_prefix"),
        (b'{"v": 1, "session": "sessXXXX01", "prefix": "alice/p/e"}\n{"seq": 0, "kind": \n', "bad_json"),
        (b'{"v": 1, "session": "sessXXXX01", "prefix": "alice/p/e"}\n[1]\n', "bad_event"),
        (b'{"v": 1, "session": "sessXXXX01", "prefix": "alice/p/e"}\n{"kind": "log"}\n', "bad_event"),
        (b'{"v": 1, "session": "sessXXXX01", "prefix": "alice/p/e"}\n{"seq": 0}\n{"seq": 2}\n', "bad_seq"),
        (b'{"v": 1, "session": "sessXXXX01", "prefix": "alice/p/e"}\n{"seq": 0}\n{"seq": 1.0}\n', "bad_seq"),
        (b'{"v": 1, "session": "sessXXXX01", "prefix": "alice/p/e"}\n{"seq": -1}\n', "bad_seq"),
        (b'{"v": 1, "session": "sessXXXX01", "prefix": "alice/p/e"}\n{"seq": "0"}\n', "bad_seq"),
    ],
)
def test_malformed_batches_are_400(server, body, code):
    a = post(server.url, server.token, body)
    assert a.status == 400, a
    assert _code(a) == code and a.json["error"]["message"]


def test_too_deep_nesting_is_refused(server):
    deep = {"seq": 0, "kind": "metric", "ts": 1.0, "name": "m", "data": {"x": [[[]]]}}
    raw = orjson.dumps(deep).replace(b"[[[]]]", b"[" * 300 + b"]" * 300)
    ok = orjson.dumps({"seq": 1, "kind": "metric", "ts": 1.0, "name": "m", "data": {"x": [[[1]]]}})
    a = post(
        server.url,
        server.token,
        orjson.dumps({"v": 1, "session": "sessDEEP01", "prefix": P}) + b"\n" + raw + b"\n" + ok,
    )
    assert a.status == 200 and a.json["rejected"][0]["code"] == "too_deep" and a.json["stored"] == 1
    assert get(server.url, server.token, "metric", prefix=P, name="m").json["rows"][0]["data"]["x"] == [[[1]]]


def test_oversize_body_is_413_with_limit(small_server):
    s = small_server
    body = batch_body("sessBIG001", P, metric_events(0, 50)) + b" " * (70 * 1024)
    a = post(s.url, s.token, body)
    assert a.status == 413 and _code(a) == "body_too_large"
    assert "65,536" in a.json["error"]["message"] and a.json["limit"] == 65536
    # the same without Content-Length (chunked): refused while streaming
    u = urllib.parse.urlsplit(s.url)
    import http.client

    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(
        "POST",
        "/api/v1/ingest",
        body=iter([body[i : i + 8192] for i in range(0, len(body), 8192)]),
        headers={"Authorization": f"Bearer {s.token}", "Content-Type": "application/x-ndjson"},
        encode_chunked=True,
    )
    resp = conn.getresponse()
    assert resp.status == 413
    conn.close()


def test_limits_on_events_fields_names(small_server):
    s = small_server
    a = ingest(s.url, s.token, "sessLIM001", P, metric_events(0, 101))
    assert a.status == 413 and _code(a) == "too_many_events"
    events = [
        {"seq": 0, "kind": "metric", "ts": 1.0, "name": "m", "data": {f"f{i}": i for i in range(11)}},
        {"seq": 1, "kind": "log", "ts": 1.0, "level": "info", "message": "x" * 5000},
        {"seq": 2, "kind": "metric", "ts": 1.0, "name": "n" * 41, "data": {"a": 1}},
        {"seq": 3, "kind": "metric", "ts": 1.0, "name": "m", "data": {"a": 1}},
    ]
    a = ingest(s.url, s.token, "sessLIM002", P, events)
    assert a.status == 200 and a.json["acked_seq"] == 3 and a.json["stored"] == 1
    assert [(r["seq"], r["code"]) for r in a.json["rejected"]] == [
        (0, "too_many_fields"),
        (1, "event_too_large"),
        (2, "name_too_long"),
    ]


def _peak_rss_kb(url, token=None):
    return get(url, token, "_test/stats").json["maxrss_kb"]


@pytest.mark.parametrize("encoding", ["gzip", "zstd"])
def test_compression_bombs_are_refused_in_small_memory(tmp_path, encoding):
    """1 GiB of zeros compressed to ~1 MB: refused with 413 at the 64 MiB decoded limit."""
    root = tmp_path / "root"
    token = create_token(root, "alice")
    url, proc = spawn_server(root, fault_injection=True)
    try:
        before = _peak_rss_kb(url, token)
        head = orjson.dumps({"v": 1, "session": "sessBOMB01", "prefix": P}) + b"\n"
        zeros = bytes(1 << 24)
        # 64 members/frames of 16 MiB of zeros each (both formats allow several): 1 GiB decoded
        if encoding == "gzip":
            member = gzip.compress(zeros, 9)
        else:
            import zstandard

            member = zstandard.ZstdCompressor(level=3).compress(zeros)
        compress = gzip.compress if encoding == "gzip" else zstandard.ZstdCompressor().compress
        parts = [compress(head)] + [member] * 64
        bomb = b"".join(parts)
        assert len(bomb) < 8 << 20  # under the body limit: the decoded limit must catch it
        a = post(url, token, bomb, headers={"Content-Encoding": encoding})
        assert a.status == 413 and _code(a) == "decoded_too_large"
        assert "67,108,864" in a.json["error"]["message"]
        grew_mb = (_peak_rss_kb(url, token) - before) / 1024
        assert grew_mb < 300, f"peak memory grew by {grew_mb:.0f} MB for a 1 GiB bomb"
        # the server is fine afterwards
        assert ingest(url, token, "sessBOMB02", P, metric_events(0, 3), encoding=encoding).status == 200
    finally:
        proc.terminate()
        proc.wait(30)


def test_bad_encodings(server):
    body = batch_body("sessENC001", P, metric_events(0, 1))
    a = post(server.url, server.token, body, headers={"Content-Encoding": "br"})
    assert a.status == 415 and _code(a) == "unsupported_encoding" and "zstd" in a.json["accepted"]
    a = post(server.url, server.token, body, headers={"Content-Encoding": "gzip, gzip"})
    assert a.status == 415
    a = post(server.url, server.token, body, headers={"Content-Encoding": "gzip"})  # not actually gzip
    assert a.status == 400 and _code(a) == "bad_encoding"
    a = post(server.url, server.token, gzip.compress(body)[:-10], headers={"Content-Encoding": "gzip"})
    assert a.status == 400 and _code(a) == "bad_encoding"
    a = post(server.url, server.token, body, headers={"Content-Encoding": "zstd"})
    assert a.status == 400 and _code(a) == "bad_encoding"
    a = post(server.url, server.token, body, headers={"Content-Type": "text/plain"})
    assert a.status == 415


def test_auth(server):
    body = batch_body("sessAUTH01", P, metric_events(0, 1))
    assert post(server.url, None, body).status == 401
    a = post(server.url, "mld_not-a-real-token", body)
    assert a.status == 401 and _code(a) == "unauthorized" and a.headers.get("www-authenticate") == "Bearer"
    assert post(server.url, None, body, headers={"Authorization": "Basic YWxpY2U6eA=="}).status == 401
    a = post(server.url, server.bob, body)  # bob may not write alice's prefixes
    assert a.status == 403 and _code(a) == "forbidden"
    assert not (server.root / "alice").exists()
    assert get(server.url, None, "params", prefix=P).status == 401
    assert get(server.url, "wrong", "experiments").status == 401
    assert request(server.url, "HEAD", "/api/v1/blobs/" + "0" * 64).status == 401
    # bob can read alice's experiments (team server), and write his own
    assert post(server.url, server.alice, body).status == 200
    assert get(server.url, server.bob, "metric", prefix=P, name="train").json["rows"][0]["data"]["step"] == 0
    assert ingest(server.url, server.bob, "sessAUTH02", "bob/proj/x", metric_events(0, 1)).status == 200
    assert get(server.url, None, "info").status == 200  # discovery needs no token


TRAVERSAL_PREFIXES = [
    "alice/../../etc",
    "alice/proj/..",
    "/alice/proj/x",
    "alice/proj/x/../../../../tmp",
    "alice\\proj\\x",
    "alice/proj/a\\..\\..\\b",
    "alice/proj/x\x00y",
    "alice/proj/.ml-dash-server",
    "alice/.hidden/x",
    "alice/proj/x/metrics/y",
    "alice/proj/x/files",
    "alice//x",
    "alice/proj",
]


@pytest.mark.parametrize("prefix", TRAVERSAL_PREFIXES)
def test_traversal_prefixes_refused(server, prefix):
    a = ingest(server.url, server.token, "sessTRAV01", prefix, metric_events(0, 1))
    assert a.status in (400, 403), a
    if a.status == 400:
        assert _code(a) == "invalid_prefix"
    r = get(server.url, server.token, "params", prefix=prefix)
    assert r.status == 400 and _code(r) == "invalid_prefix"


def test_percent_encoding_and_json_escapes_cannot_traverse(server):
    # %2e%2e in a query string decodes to "..": refused
    a = request(server.url, "GET", "/api/v1/params?prefix=alice/proj/%2e%2e/%2e%2e/x", headers=auth(server.token))
    assert a.status == 400 and _code(a) == "invalid_prefix"
    a = request(
        server.url, "GET", "/api/v1/metric?prefix=alice/proj/x&name=%2e%2e%2f%2e%2e%2fy", headers=auth(server.token)
    )
    assert a.status == 400
    a = request(server.url, "GET", "/api/v1/params?prefix=alice%2fproj%2f..%2f..", headers=auth(server.token))
    assert a.status == 400
    # JSON escapes decode to "..", "\\" and NUL: refused
    for raw in (b'"alice/proj/\\u002e\\u002e"', b'"alice/proj/x\\\\..\\\\y"', b'"alice/proj/x\\u0000"'):
        body = b'{"v":1,"session":"sessESC001","prefix":' + raw + b"}\n" + orjson.dumps(metric_events(0, 1)[0])
        a = post(server.url, server.token, body)
        assert a.status == 400 and _code(a) == "invalid_prefix", raw
    # a literal "%2e%2e" segment is just a name: stored inside the root
    a = ingest(server.url, server.token, "sessESC002", "alice/proj/%2e%2e", metric_events(0, 1))
    assert a.status == 200
    assert (
        get(server.url, server.token, "experiments", owner="alice").json["experiments"][0]["prefix"]
        == "alice/proj/%2e%2e"
    )
    if server.kind == "embedded":
        assert (server.root / "alice" / "proj" / "%2e%2e" / "experiment.json").is_file()
    # routes in the path cannot be reached through encoded slashes
    assert request(server.url, "GET", "/api/v1/..%2f..%2fetc%2fpasswd", headers=auth(server.token)).status == 404
    assert request(server.url, "GET", "/api/v1/../../etc/passwd", headers=auth(server.token)).status == 404


def test_metric_and_file_names_cannot_escape(server):
    bad_names = ["../x", "a/../../x", "/abs/x", "a\\b", "a\x00b", "..", ".", "a//b", ""]
    events = [{"seq": i, "kind": "metric", "ts": 1.0, "name": n, "data": {"v": 1}} for i, n in enumerate(bad_names)]
    a = ingest(server.url, server.token, "sessNAME01", P, events)
    assert a.status == 200
    rejected = {r["seq"] for r in a.json["rejected"]}
    # "/abs/x" is trimmed to the relative name "abs/x" (as local mode does); every other one is refused
    assert rejected == set(range(len(bad_names))) - {2}
    assert get(server.url, server.token, "metrics", prefix=P).json["metrics"] == ["abs/x"]
    for path in server.root.rglob("*"):
        assert server.root in path.resolve().parents or path.resolve() == server.root


def test_unknown_routes_and_methods_are_json(server):
    a = request(server.url, "GET", "/api/v1/nope", headers=auth(server.token))
    assert a.status == 404 and _code(a) == "not_found"
    a = request(server.url, "DELETE", "/api/v1/ingest", headers=auth(server.token))
    assert a.status == 405 and _code(a) == "method_not_allowed"
    assert get(server.url, server.token, "logs", prefix=P, start="x").status == 400
    assert get(server.url, server.token, "logs", prefix=P, limit=-5).status == 400
    assert get(server.url, server.token, "params").status == 400


def test_garbage_on_the_socket_does_not_hurt(server):
    u = urllib.parse.urlsplit(server.url)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        s.recv(1024)
    with socket.create_connection((u.hostname, u.port), timeout=5) as s:
        s.sendall(b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort")
    # still serving
    assert ingest(server.url, server.token, "sessSOCK01", P, metric_events(0, 2)).json["acked_seq"] == 1


def test_mutated_batches_never_500(server):
    """A small deterministic fuzz: byte flips, cuts and type swaps of a valid batch are all 2xx/4xx."""
    rnd = random.Random(1234)
    valid = batch_body(
        "sessFUZZ01",
        P,
        [
            {"seq": 0, "kind": "experiment", "ts": 1.0, "description": "d", "tags": ["t"], "metadata": {"a": 1}},
            {"seq": 1, "kind": "metric", "ts": 1.0, "name": "m/x", "data": {"a": 1.5, "b": [1, {"c": None}]}},
            {"seq": 2, "kind": "log", "ts": 1.0, "level": "info", "message": "hello", "metadata": {"k": "v"}},
            {"seq": 3, "kind": "params", "ts": 1.0, "data": {"lr": 0.1}},
            {"seq": 4, "kind": "status", "ts": 1.0, "status": "RUNNING", "reason": None},
            {
                "seq": 5,
                "kind": "file",
                "ts": 1.0,
                "id": "1",
                "path": "/p",
                "filename": "f",
                "checksum": "0" * 64,
                "size": 1,
            },
        ],
    )
    swaps = [b"null", b"true", b"-1", b"1e308", b"[]", b"{}", b'"x"', b"18446744073709551616", b'"\\u0000"']
    statuses = set()
    for i in range(300):
        body = bytearray(valid)
        op = i % 3
        if op == 0:
            for _ in range(rnd.randint(1, 4)):
                body[rnd.randrange(len(body))] = rnd.randrange(256)
        elif op == 1:
            body = body[: rnd.randrange(len(body))]
        else:
            tokens = [m.span() for m in __import__("re").finditer(rb'[0-9.]+|"[^"]*"', bytes(body))]
            a, b = rnd.choice(tokens)
            body = body[:a] + rnd.choice(swaps) + body[b:]
        session = f"sessFUZZ{i:04d}".encode()
        a = post(server.url, server.token, bytes(body).replace(b"sessFUZZ01", session, 1))
        assert a.status < 500, (bytes(body), a)
        statuses.add(a.status)
    assert 200 in statuses and 400 in statuses
