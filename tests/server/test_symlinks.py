"""Symlinks planted inside the server's root are never followed, for writes or for reads: a real
server process, real symlinks, files outside the root that must stay untouched and unread."""

from __future__ import annotations

import hashlib
import os

from ._client import auth, get, ingest, metric_events, request

P = "alice/proj/links"


def _put(url, tok, data):
    checksum = hashlib.sha256(data).hexdigest()
    a = request(url, "PUT", f"/api/v1/blobs/{checksum}", data, auth(tok))
    assert a.status in (200, 201), a
    return checksum


def _file_event(seq, file_id, data, filename="f.bin"):
    return {
        "seq": seq,
        "kind": "file",
        "ts": 1.0,
        "id": file_id,
        "path": "/",
        "filename": filename,
        "checksum": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def test_planted_symlinks_never_take_writes_outside_the_root(tmp_path, spawned):
    url = spawned.start()
    tok = spawned.token
    root = spawned.root
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.jsonl"
    victim.write_bytes(b"precious\n")
    assert ingest(url, tok, "sessLINK01", P, metric_events(0, 2)).json["acked_seq"] == 1
    # a metric's data file replaced by a symlink to a file outside the root
    data = root / P / "metrics" / "train" / "data.jsonl"
    data.unlink()
    data.symlink_to(victim)
    # an experiment folder that is a symlink to a folder outside the root
    (root / "alice" / "proj" / "elsewhere").symlink_to(outside, target_is_directory=True)
    # a metric folder that is a symlink
    (root / P / "metrics" / "dir").symlink_to(outside, target_is_directory=True)
    a = ingest(
        url,
        tok,
        "sessLINK01",
        P,
        metric_events(2, 3, base=2)
        + [
            {"seq": 5, "kind": "metric", "ts": 1.0, "name": "dir", "data": {"v": 1}},
            {"seq": 6, "kind": "metric", "ts": 1.0, "name": "fine", "data": {"v": 2}},
        ],
    )
    assert a.status == 200, a
    assert [(r["seq"], r["code"]) for r in a.json["rejected"]] == [
        (2, "path_conflict"),
        (3, "path_conflict"),
        (4, "path_conflict"),
        (5, "path_conflict"),
    ]
    a = ingest(url, tok, "sessLINK02", "alice/proj/elsewhere", metric_events(0, 2))
    assert a.status == 400 and a.json["error"]["code"] == "path_conflict", a
    assert victim.read_bytes() == b"precious\n"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.jsonl"]  # nothing written outside
    assert get(url, tok, "metric", prefix=P, name="fine").json["rows"][0]["data"]["v"] == 2


def test_planted_symlinks_are_never_followed_on_reads(tmp_path, spawned):
    url = spawned.start()
    tok = spawned.token
    root = spawned.root
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b'{"data": {"password": "hunter2"}, "files": []}')
    data = b"the real file"
    _put(url, tok, data)
    events = metric_events(0, 3) + [
        _file_event(3, "f1", data),
        {"seq": 4, "kind": "params", "ts": 1.0, "data": {"lr": 0.1}},
        {"seq": 5, "kind": "log", "ts": 1.0, "level": "info", "message": "hi"},
    ]
    assert ingest(url, tok, "sessLINK03", P, events).json["acked_seq"] == 5
    assert get(url, tok, "series", prefix=P, name="train", field="step").status == 200
    assert [m["name"] for m in get(url, tok, "summary", prefix=P).json["metrics"]] == ["train"]
    exp = root / P
    stored = exp / "files" / "f1" / "f.bin"
    for path in (
        stored,
        exp / "parameters.json",
        exp / "logs" / "logs.jsonl",
        exp / "metrics" / "train" / "data.jsonl",
    ):
        path.unlink()
        path.symlink_to(secret)
    a = request(url, "GET", f"/api/v1/file?prefix={P}&id=f1", headers=auth(tok))
    assert a.status == 404 and b"hunter2" not in a.raw  # used to serve the symlink's target
    for route, query, status in (
        ("params", {}, 200),
        ("logs", {}, 200),
        ("metric", {"name": "train"}, 200),
        ("summary", {}, 200),
        ("series", {"name": "train", "field": "step"}, 404),
    ):
        a = get(url, tok, route, prefix=P, **query)
        assert a.status == status and b"hunter2" not in a.raw, (route, a)
    assert get(url, tok, "params", prefix=P).json["data"] == {}
    assert get(url, tok, "logs", prefix=P).json["logs"] == []
    assert get(url, tok, "metric", prefix=P, name="train").json["rows"] == []
    assert get(url, tok, "metrics", prefix=P).json["metrics"] == []
    assert get(url, tok, "summary", prefix=P).json["metrics"] == []
    # a blob replaced by a symlink is not a blob: not served, not linked into a new file
    blob = root / ".ml-dash-server" / "blobs" / hashlib.sha256(data).hexdigest()[:2] / hashlib.sha256(data).hexdigest()
    os.chmod(blob, 0o644)
    blob.unlink()
    blob.symlink_to(secret)
    assert request(url, "HEAD", f"/api/v1/blobs/{hashlib.sha256(data).hexdigest()}", headers=auth(tok)).status == 404
    a = ingest(url, tok, "sessLINK04", "alice/proj/other", [_file_event(0, "f2", data)])
    assert a.status == 409 and a.json["error"]["code"] == "blob_missing"
    assert _put(url, tok, data)  # the upload replaces the symlink with the real bytes
    assert not blob.is_symlink()
    assert ingest(url, tok, "sessLINK04", "alice/proj/other", [_file_event(0, "f2", data)]).status == 200
    assert request(url, "GET", "/api/v1/file?prefix=alice/proj/other&id=f2", headers=auth(tok)).raw == data
    assert secret.read_bytes().startswith(b'{"data"')
