"""Storage errors: permanent ones are the event's (4xx, the rest of the batch stored, nothing stalls
behind it); only transient ones answer 503, and the batch is stored once they pass. Every name the
store derives (temporary names, link names) fits the filesystem for every name the protocol takes.
Real server processes, a real filesystem."""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
from pathlib import Path

import pytest

from ._client import auth, get, ingest, metric_events, request

NAME_MAX = 255


def _put(url, tok, data):
    checksum = hashlib.sha256(data).hexdigest()
    assert request(url, "PUT", f"/api/v1/blobs/{checksum}", data, auth(tok)).status in (200, 201)
    return checksum


def _file(seq, file_id, path, filename, data):
    return {
        "seq": seq,
        "kind": "file",
        "ts": 1.0,
        "id": file_id,
        "path": path,
        "filename": filename,
        "checksum": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


def test_names_of_255_bytes_are_stored(spawned):
    """A 255-byte file name used to fail on its temporary link name and be answered 503 forever."""
    url = spawned.start()
    tok = spawned.token
    data = b"weights"
    _put(url, tok, data)
    ascii_name = "f" * 251 + ".pth"
    wide_name = "é" * 127 + "x"  # 255 bytes in UTF-8
    assert len(ascii_name.encode()) == NAME_MAX and len(wide_name.encode()) == NAME_MAX
    long_seg = "s" * NAME_MAX
    prefix = f"alice/proj/{long_seg}"
    events = [
        _file(0, "one", "/", ascii_name, data),
        _file(1, "two", "/" + long_seg, wide_name, data),
        {"seq": 2, "kind": "metric", "ts": 1.0, "name": long_seg, "data": {"v": 1}},
        {"seq": 3, "kind": "params", "ts": 1.0, "data": {"lr": 0.1}},
    ]
    a = ingest(url, tok, "sessLONG01", prefix, events)
    assert a.status == 200 and a.json["rejected"] == [] and a.json["acked_seq"] == 3, a
    files = get(url, tok, "files", prefix=prefix).json["files"]
    assert sorted(f["filename"] for f in files) == sorted([ascii_name, wide_name])
    for f in files:
        got = request(url, "GET", f"/api/v1/file?prefix={prefix}&id={f['id']}", headers=auth(tok))
        assert got.status == 200 and got.raw == data
    assert get(url, tok, "metric", prefix=prefix, name=long_seg).json["rows"][0]["data"]["v"] == 1


def _file_size_limit(limit):
    def set_limit():  # in the server's process, before it starts (Python ignores SIGXFSZ: writes get EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return set_limit


def test_permanent_storage_errors_are_4xx_for_that_event_and_the_rest_is_stored(spawned):
    """A file the disk will not let grow (EFBIG: here a file size limit on the server process, as a
    filesystem's largest file would do). Nothing in the names foretells it, so the write fails half
    way: that metric's events are rejected with a code, everything else in the batch is stored, the
    half-written rows are cut, and the next batches go through (they used to stall on 503)."""
    url = spawned.start(preexec_fn=_file_size_limit(1 << 20))
    tok = spawned.token
    prefix = "alice/proj/big"
    big = [
        {"seq": i, "kind": "metric", "ts": 1.0, "name": "big", "data": {"i": i, "pad": "p" * 800}} for i in range(1000)
    ]
    a = ingest(url, tok, "sessFBIG01", prefix, big)  # ~0.9 MB of rows: fits
    assert a.status == 200 and a.json["acked_seq"] == 999 and a.json["rejected"] == [], a
    batch = (
        [{"kind": "metric", "ts": 1.0, "name": "small", "data": {"v": 0}}]
        + [{"kind": "metric", "ts": 1.0, "name": "big", "data": {"i": 1000 + i, "pad": "p" * 800}} for i in range(300)]
        + [{"kind": "log", "ts": 1.0, "level": "info", "message": "kept"}]
    )
    for seq, e in enumerate(batch, 1000):
        e["seq"] = seq
    a = ingest(url, tok, "sessFBIG01", prefix, batch)
    assert a.status == 200, a
    assert a.json["acked_seq"] == 1301 and a.json["stored"] == 2
    assert {r["code"] for r in a.json["rejected"]} == {"storage_rejected"}
    assert [r["seq"] for r in a.json["rejected"]] == list(range(1001, 1301))
    rows = get(url, tok, "metric", prefix=prefix, name="big", limit=5000).json["rows"]
    assert [r["data"]["i"] for r in rows] == list(range(1000))  # the half-written rows were cut
    assert [r["data"]["v"] for r in get(url, tok, "metric", prefix=prefix, name="small").json["rows"]] == [0]
    assert [x["message"] for x in get(url, tok, "logs", prefix=prefix).json["logs"]] == ["kept"]
    a = ingest(
        url, tok, "sessFBIG01", prefix, [{"seq": 1302, "kind": "metric", "ts": 1.0, "name": "small", "data": {"v": 1}}]
    )
    assert a.status == 200 and a.json["acked_seq"] == 1302 and a.json["rejected"] == []
    # a blob the disk refuses for good is the upload's problem, not a 5xx
    blob = os.urandom(2 << 20)
    a = request(url, "PUT", f"/api/v1/blobs/{hashlib.sha256(blob).hexdigest()}", blob, auth(tok))
    assert a.status == 413 and a.json["error"]["code"] == "blob_too_large", a
    assert not list((spawned.root / ".ml-dash-server" / "tmp").iterdir())


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (skipped where mounting is not allowed)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_is_503_and_the_batch_is_stored_once_there_is_room(small_disk):
    from ml_dash.server import create_token, spawn_server

    root = small_disk / "root"
    tok = create_token(root, "alice")
    url, proc = spawn_server(root, fault_injection=True)
    try:
        prefix = "alice/proj/full"
        assert ingest(url, tok, "sessFULL01", prefix, metric_events(0, 10)).json["acked_seq"] == 9
        filler = _fill(small_disk)
        batch = metric_events(10, 2000, base=10) + [
            {"seq": 2010, "kind": "log", "ts": 1.0, "level": "info", "message": "x" * 100_000}
        ]
        for _ in range(2):
            a = ingest(url, tok, "sessFULL01", prefix, batch)
            assert a.status == 503 and a.json["error"]["code"] == "storage_unavailable" and a.headers["retry-after"], a
        rows = get(url, tok, "metric", prefix=prefix, name="train").json["rows"]
        assert len(rows) == 10  # nothing of the refused batch shows
        os.unlink(filler)
        a = ingest(url, tok, "sessFULL01", prefix, batch)
        assert a.status == 200 and a.json["acked_seq"] == 2010, a
        rows = get(url, tok, "metric", prefix=prefix, name="train", limit=5000).json["rows"]
        assert [r["data"]["step"] for r in rows] == list(range(2010))
    finally:
        proc.kill()
        proc.wait(30)
