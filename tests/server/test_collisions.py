"""Names that collide with the store's own files, or with each other, and rollbacks that cannot
finish: a 4xx with an error code for the event (never a 5xx), the rest stored, and a server that
still starts and keeps everything it acknowledged. Real server processes, restarted for real."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess

import pytest

from ..conftest import wait_for
from ._client import auth, get, ingest, metric_events, request

P = "alice/proj/names"
BLOB = b"the bytes of a file"
CHECKSUM = hashlib.sha256(BLOB).hexdigest()


def _file(seq, file_id, path, filename):
    return {
        "seq": seq,
        "kind": "file",
        "ts": 1.0,
        "id": file_id,
        "path": path,
        "filename": filename,
        "checksum": CHECKSUM,
        "size": len(BLOB),
    }


def _metric(seq, name, v=1):
    return {"seq": seq, "kind": "metric", "ts": 1.0, "name": name, "data": {"v": v}}


def _rejected(answer):
    return [(r["seq"], r["code"]) + ((r["n"],) if "n" in r else ()) for r in answer.json["rejected"]]


def _intents(root):
    db = sqlite3.connect(str(root / ".ml-dash-server" / "index.sqlite3"))
    try:
        return db.execute("SELECT count(*) FROM intents").fetchone()[0]
    finally:
        db.close()


def test_names_colliding_with_the_store_or_each_other_are_rejected_and_the_rest_is_stored(spawned):
    url = spawned.start()
    tok = spawned.token
    assert request(url, "PUT", f"/api/v1/blobs/{CHECKSUM}", BLOB, auth(tok)).status == 201
    batch = [
        _metric(0, "x"),
        _metric(1, "x/data.jsonl"),  # a folder where metric x keeps its rows
        _metric(2, "y/metadata.json"),  # a folder where metric y keeps its metadata
        _metric(3, "y"),
        _metric(4, "None"),  # the unnamed metric's folder
        _file(5, "a", "/", "x"),  # files/a/x
        _file(6, "x", "/a", "y"),  # files/a/x/y: through the file above
        _file(7, "b", "/.files_metadata.json", "z"),  # inside the file listing
        {"seq": 8, "kind": "log", "ts": 1.0, "level": "info", "message": "still here"},
        {"seq": 9, "kind": "metrics", "n": 2, "name": "x/metadata.json", "ts": [1.0, 2.0], "cols": {"v": [1, 2]}},
        _metric(11, None),
    ]
    a = ingest(url, tok, "sessNAMES1", P, batch)
    assert a.status == 200, a
    assert a.json["acked_seq"] == 11 and a.json["stored"] == 5
    assert _rejected(a) == [
        (1, "invalid_name"),
        (2, "invalid_name"),
        (4, "invalid_name"),
        (6, "path_conflict"),
        (7, "invalid_name"),
        (9, "invalid_name", 2),
    ]
    # the next batch collides with what is on disk now
    a = ingest(
        url,
        tok,
        "sessNAMES1",
        P,
        [
            _file(12, "q", "/a/x", "z"),  # files/a/x is a file
            _file(13, "a", "/elsewhere", "x"),  # id a is stored already: consumed, changes nothing
            _file(14, "x2", "/a", "ok"),  # files/a/x2/ok: fine beside files/a/x
            _metric(15, "x/sub"),  # a metric folder inside another one is fine
        ],
    )
    assert a.status == 200 and _rejected(a) == [(12, "path_conflict")] and a.json["stored"] == 3
    # a prefix naming an experiment's own files under another experiment
    for bad in (P + "/experiment.json", P + "/parameters.json/deeper", P + "/logs"):
        a = ingest(url, tok, "sessNAMES2", bad, metric_events(0, 1))
        assert a.status == 400 and a.json["error"]["code"] == "invalid_prefix", (bad, a)

    def check(url):
        names = get(url, tok, "metrics", prefix=P).json["metrics"]
        assert names == [None, "x", "x/sub", "y"]
        files = get(url, tok, "files", prefix=P).json["files"]
        assert sorted((f["id"], f["path"], f["filename"]) for f in files) == [("a", "/", "x"), ("x2", "/a", "ok")]
        for f in files:
            assert request(url, "GET", f"/api/v1/file?prefix={P}&id={f['id']}", headers=auth(tok)).raw == BLOB
        logs = get(url, tok, "logs", prefix=P).json["logs"]
        assert [x["message"] for x in logs] == ["still here"]

    check(url)
    assert spawned.stop() == 0
    check(spawned.start())  # starts again, everything acknowledged is there
    spawned.proc.kill()
    spawned.proc.wait(10)
    assert _intents(spawned.root) == 0
    check(spawned.start())


def _crash_mid_batch(url, tok, batch):
    r = request(
        url,
        "PUT",
        "/api/v1/_test/faults",
        json.dumps([{"match": "ingest", "action": "crash_before_commit"}]).encode(),
        auth(tok),
    )
    assert r.status == 200, r
    with pytest.raises(OSError):
        ingest(url, tok, "sessROLL01", P, batch)


def test_a_rollback_blocked_by_a_folder_never_stops_the_start(spawned):
    """After a crash mid-batch, a folder sits where the batch created a file: the rollback leaves it
    alone, the server starts, and what was acknowledged is all there, once."""
    url = spawned.start()
    tok = spawned.token
    assert ingest(url, tok, "sessROLL01", P, metric_events(0, 10)).json["acked_seq"] == 9
    batch = metric_events(10, 5, base=10) + [{"seq": 15, "kind": "params", "ts": 1.0, "data": {"lr": 0.5}}]
    _crash_mid_batch(url, tok, batch)
    assert spawned.proc.wait(10) == 70
    params = spawned.root / P / "parameters.json"
    assert params.is_file()  # created by the batch that was not committed
    params.unlink()
    (params / "foreign").mkdir(parents=True)  # someone put a folder there

    url = spawned.start()  # the old server exited 1 here ("Is a directory"), at every start
    rows = get(url, tok, "metric", prefix=P, name="train").json["rows"]
    assert [r["data"]["step"] for r in rows] == list(range(10))  # cut back to what was acknowledged
    assert (params / "foreign").is_dir()  # not ours: left alone
    a = ingest(url, tok, "sessROLL01", P, batch)  # the resend: stored once; the params event has no place
    assert a.status == 200 and a.json["acked_seq"] == 15 and _rejected(a) == [(15, "path_conflict")]
    rows = get(url, tok, "metric", prefix=P, name="train").json["rows"]
    assert [r["index"] for r in rows] == list(range(15)) and [r["data"]["step"] for r in rows] == list(range(15))
    assert _intents(spawned.root) == 0


def _chattr(flag, path):
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    r = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot make a file immutable here: {r.stderr.strip()}")


def test_a_rollback_the_disk_refuses_never_stops_the_start_and_loses_nothing(spawned):
    """The disk refuses the rollback (an immutable file, which even root cannot change): the server
    starts anyway, says what it could not undo, serves everything else, refuses writes to that one
    experiment with 503 while the rollback cannot finish, and finishes it once it can."""
    url = spawned.start()
    tok = spawned.token
    assert ingest(url, tok, "sessROLL01", P, metric_events(0, 10)).json["acked_seq"] == 9
    data = spawned.root / P / "metrics" / "train" / "data.jsonl"
    acked_size = data.stat().st_size
    batch = metric_events(10, 5, base=10)
    _crash_mid_batch(url, tok, batch)
    assert spawned.proc.wait(10) == 70
    assert data.stat().st_size > acked_size
    _chattr("+i", data)
    try:
        url = spawned.start()  # the old server exited 1 here ("Operation not permitted"), at every start
        said = wait_for(
            lambda: "could not undo" in spawned.proc.output() and spawned.proc.output(),
            what="the server to say what it could not undo",
        )  # on stderr, drained apart from the URL
        assert "metrics/train/data.jsonl" in said
        assert ingest(url, tok, "sessOTHER1", "alice/proj/other", metric_events(0, 3)).json["acked_seq"] == 2
        a = ingest(url, tok, "sessROLL01", P, batch)
        assert a.status == 503 and a.json["error"]["code"] == "storage_unavailable" and a.headers["retry-after"]
        assert data.stat().st_size > acked_size  # nothing acknowledged was cut, nothing else written
    finally:
        _chattr("-i", data)
    a = ingest(url, tok, "sessROLL01", P, batch)  # the rollback finishes first, then the batch is stored
    assert a.status == 200 and a.json["acked_seq"] == 14 and a.json["stored"] == 5
    rows = get(url, tok, "metric", prefix=P, name="train").json["rows"]
    assert [r["index"] for r in rows] == list(range(15)) and [r["data"]["step"] for r in rows] == list(range(15))
    assert _intents(spawned.root) == 0
    assert spawned.stop() == 0
    url = spawned.start()
    assert len(get(url, tok, "metric", prefix=P, name="train").json["rows"]) == 15
