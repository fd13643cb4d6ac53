"""Blob upload (checksum verified, idempotent, streamed) and file events; download streams."""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.parse

import pytest

from ml_dash._remote_read import RemoteReader

from ._client import auth, get, ingest, request

P = "alice/proj/run-1"


def put_blob(url, token, data: bytes, checksum=None):
    checksum = checksum or hashlib.sha256(data).hexdigest()
    return request(
        url, "PUT", f"/api/v1/blobs/{checksum}", data, {**auth(token), "Content-Type": "application/octet-stream"}
    )


def file_event(seq, data, file_id="7218065541365719", path="/models", filename="model.pth"):
    return {
        "seq": seq,
        "kind": "file",
        "ts": 1700000000.0,
        "id": file_id,
        "path": path,
        "filename": filename,
        "checksum": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content_type": "application/octet-stream",
        "description": "weights",
        "tags": ["best"],
        "metadata": {"epoch": 3},
    }


def test_blob_checksum_idempotent_and_file_roundtrip(server, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    digest = hashlib.sha256(data).hexdigest()
    head = request(server.url, "HEAD", f"/api/v1/blobs/{digest}", headers=auth(server.token))
    assert head.status == 404
    bad = put_blob(server.url, server.token, data, checksum="0" * 64)
    assert bad.status == 400 and bad.json["error"]["code"] == "checksum_mismatch"
    if server.kind == "embedded":
        assert not any((server.root / ".ml-dash-server" / "tmp").iterdir())  # nothing half-kept
    first = put_blob(server.url, server.token, data)
    assert first.status == 201 and first.json == {"checksum": digest, "size": len(data), "created": True}
    again = put_blob(server.url, server.token, data)
    assert again.status == 200 and again.json["created"] is False
    head = request(server.url, "HEAD", f"/api/v1/blobs/{digest}", headers=auth(server.token))
    assert head.status == 200 and head.headers["x-blob-size"] == str(len(data))
    assert put_blob(server.url, server.token, data, checksum="not-hex").status == 400

    a = ingest(server.url, server.token, "sessFILE01", P, [file_event(0, data)])
    assert a.status == 200 and a.json["rejected"] == []
    r = RemoteReader(server.url, server.token, P)
    (entry,) = r.files()
    assert entry["path"] == "/models" and entry["filename"] == "model.pth" and entry["sizeBytes"] == len(data)
    assert entry["checksum"] == digest and entry["tags"] == ["best"] and entry["metadata"] == {"epoch": 3}
    assert r.files("models") == [entry] and r.files("other") == []
    dest = r.download(entry, tmp_path / "out" / "model.pth")
    assert dest.read_bytes() == data
    # a range of it, as a browser asks for the middle of a large file
    ranged = request(
        server.url,
        "GET",
        "/api/v1/file?prefix=" + urllib.parse.quote(P, safe="") + f"&id={entry['id']}",
        headers={**auth(server.token), "Range": "bytes=100-199"},
    )
    assert ranged.status == 206 and ranged.raw == data[100:200]
    if server.kind == "embedded":  # stored in the local layout, so the server root is a dash_root
        on_disk = server.root / P / "files" / "models" / "7218065541365719" / "model.pth"
        assert on_disk.read_bytes() == data


def test_streamed_upload_without_length(server):
    chunks = [os.urandom(1 << 16) for _ in range(20)]
    data = b"".join(chunks)
    u = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request(
        "PUT",
        f"/api/v1/blobs/{hashlib.sha256(data).hexdigest()}",
        body=iter(chunks),
        headers=auth(server.token),
        encode_chunked=True,
    )
    assert conn.getresponse().status == 201
    conn.close()


def test_blob_missing_is_409_after_storing_what_came_before(server):
    data = b"hello bytes"
    events = [
        {"seq": 0, "kind": "metric", "ts": 1.0, "name": "m", "data": {"a": 1}},
        file_event(1, data, filename="h.txt"),
    ]
    a = ingest(server.url, server.token, "sessMISS01", P, events)
    assert a.status == 409 and a.json["error"]["code"] == "blob_missing"
    assert a.json["checksum"] == hashlib.sha256(data).hexdigest() and a.json["acked_seq"] == 0
    assert put_blob(server.url, server.token, data).status == 201
    a = ingest(server.url, server.token, "sessMISS01", P, events)
    assert a.status == 200 and a.json["duplicates"] == 1 and a.json["stored"] == 1
    assert [e["filename"] for e in RemoteReader(server.url, server.token, P).files()] == ["h.txt"]
    assert len(RemoteReader(server.url, server.token, P).metric_rows("m")) == 1


@pytest.mark.parametrize(
    "change,code",
    [
        ({"filename": "../../../etc/passwd"}, "invalid_name"),
        ({"filename": "a/b"}, "invalid_name"),
        ({"filename": "x\x00y"}, "invalid_name"),
        ({"path": "../../outside"}, "invalid_name"),
        ({"path": "/models/../../.."}, "invalid_name"),
        ({"path": "a\\..\\.."}, "invalid_name"),
        ({"id": "../1"}, "bad_file_id"),
        ({"id": ".files_metadata.json"}, "bad_file_id"),
        ({"size": 999}, "size_mismatch"),
        ({"checksum": "ABC"}, "bad_checksum"),
    ],
)
def test_file_events_cannot_escape(server, change, code):
    data = b"payload"
    assert put_blob(server.url, server.token, data).status in (200, 201)
    ev = {**file_event(0, data), **change}
    a = ingest(server.url, server.token, "sessFESC01", P, [ev])
    assert a.status == 200 and [(r["seq"], r["code"]) for r in a.json["rejected"]] == [(0, code)]
    assert RemoteReader(server.url, server.token, P).files() == []


def test_same_file_id_is_stored_once(server):
    data = b"v1"
    put_blob(server.url, server.token, data)
    put_blob(server.url, server.token, b"v2")
    ev0 = file_event(0, data, file_id="42", filename="a.txt")
    ev1 = {**file_event(1, b"v2", file_id="42", filename="a.txt")}
    ingest(server.url, server.token, "sessSAME01", P, [ev0])
    ingest(server.url, server.token, "sessSAME02", P, [{**ev1, "seq": 0}])
    (entry,) = RemoteReader(server.url, server.token, P).files()
    r = request(server.url, "GET", f"/api/v1/file?prefix={P}&id=42", headers=auth(server.token))
    assert r.status == 200 and r.raw == b"v1" and entry["checksum"] == hashlib.sha256(b"v1").hexdigest()
    assert get(server.url, server.token, "file", prefix=P, id="nope").status == 404


def test_blob_limit(small_server):
    s = small_server
    a = put_blob(s.url, s.token, b"x" * 2048)
    assert a.status == 413 and a.json["limit"] == 1024
    a = request(s.url, "PUT", "/api/v1/blobs/" + "a" * 64, b"x", {**auth(s.token), "Content-Encoding": "gzip"})
    assert a.status == 415
