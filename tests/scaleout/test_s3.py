"""File bytes in a real S3-compatible server (SeaweedFS): streamed multipart uploads checked by
sha256, downloads with ranges, and an S3 outage that holds back blob uploads but no metric."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import urllib.parse

from ml_dash._remote_read import RemoteReader
from ml_dash.server.stores.s3 import S3Blobs

from ..agent.conftest import client_env
from ..pipes import read_line
from ..server._client import auth, get, ingest, metric_events, request
from .conftest import wait_for

P = "alice/proj/s3"


def put_blob(url, token, data, checksum=None):
    return request(
        url,
        "PUT",
        f"/api/v1/blobs/{checksum or hashlib.sha256(data).hexdigest()}",
        data,
        {**auth(token), "Content-Type": "application/octet-stream"},
        timeout=120,
    )


def file_event(seq, data, file_id="f1", filename="model.bin"):
    return {
        "seq": seq,
        "kind": "file",
        "ts": 1.0,
        "id": file_id,
        "path": "/models",
        "filename": filename,
        "checksum": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content_type": "application/octet-stream",
    }


def _bucket(settings) -> S3Blobs:
    return S3Blobs(
        settings.blobs,
        settings.s3_endpoint,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    )


def test_multipart_upload_checked_and_streamed_back_with_ranges(pg_s3_servers, tmp_path):
    url, _ = pg_s3_servers.start()
    token = pg_s3_servers.token
    big = os.urandom(19 * 1024 * 1024 + 5)  # three parts of 8 MiB at most
    digest = hashlib.sha256(big).hexdigest()
    bucket = _bucket(pg_s3_servers.settings)
    try:
        wrong = put_blob(url, token, big, checksum="e" * 64)
        assert wrong.status == 400 and wrong.json["error"]["code"] == "checksum_mismatch"
        assert bucket.size("e" * 64) is None  # the multipart upload was aborted, never completed
        first = put_blob(url, token, big)
        assert first.status == 201 and first.json == {"checksum": digest, "size": len(big), "created": True}
        assert bucket.size(digest) == len(big)  # content-addressed: the object is named by its sha256
        assert put_blob(url, token, big).json["created"] is False
        head = request(url, "HEAD", f"/api/v1/blobs/{digest}", headers=auth(token))
        assert head.status == 200 and head.headers["x-blob-size"] == str(len(big))
        a = ingest(url, token, "sessS3FILE1", P, [file_event(0, big)])
        assert a.status == 200 and a.json["rejected"] == []
        r = RemoteReader(url, token, P)
        (entry,) = r.files()
        assert r.download(entry, tmp_path / "out.bin").read_bytes() == big
        q = "/api/v1/file?prefix=" + urllib.parse.quote(P, safe="") + "&id=f1"
        for rng, want in (
            ("bytes=0-9", big[:10]),
            ("bytes=8388600-8388620", big[8388600:8388621]),
            ("bytes=-7", big[-7:]),
        ):
            part = request(url, "GET", q, headers={**auth(token), "Range": rng})
            assert part.status == 206 and part.raw == want, rng
        assert request(url, "GET", q, headers={**auth(token), "Range": f"bytes={len(big)}-"}).status == 416
    finally:
        bucket.close()


METRICS_ONLY = """
from ml_dash import Experiment
exp = Experiment("alice/proj/s3-metrics").run.start()
for i in range(1000):
    exp.metrics("train").log(i=i)
assert exp.flush(60), "not everything was acknowledged"
print("DONE", flush=True)
"""

CLIENT = """
import sys
from ml_dash import Experiment
exp = Experiment("alice/proj/s3-outage").run.start()
for i in range(100):
    exp.metrics("train").log(i=i)
exp.files("models").save(bytes(range(256)) * 4096, name="weights.bin")
for i in range(100, 200):
    exp.metrics("train").log(i=i)
print("LOGGED", flush=True)
sys.stdin.readline()
assert exp.flush(120), "not everything was acknowledged"
print("DONE", flush=True)
"""


def test_s3_outage_blob_uploads_are_retried_metric_ingest_goes_on(pg_s3_servers, s3_server, tmp_path):
    url, _ = pg_s3_servers.start()
    token = pg_s3_servers.token
    data = bytes(range(256)) * 4096
    s3_server.stop()
    proc = None
    try:
        # the blob store is away: uploads are told to come back later, metric batches are stored
        down = put_blob(url, token, b"later")
        assert down.status == 503 and down.json["error"]["code"] == "blob_store_unavailable"
        assert int(down.headers["retry-after"]) > 0
        assert ingest(url, token, "sessS3DOWN1", P, metric_events(0, 500)).json["acked_seq"] == 499
        assert len(RemoteReader(url, token, P).metric_rows("train")) == 500
        # a run that saves a file meanwhile keeps its file event (and what follows it in its
        # session) in its spool, retrying; a run without files is stored all the same
        env = client_env(tmp_path / "spool", url, token, retry_max_wait=0.5, flush_interval=0.1)
        proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(CLIENT)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert read_line(proc.stdout, 120, "LOGGED").strip() == "LOGGED"
        other = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(METRICS_ONLY)],
            capture_output=True,
            text=True,
            env=client_env(tmp_path / "spool2", url, token),
            timeout=120,
        )
        assert other.returncode == 0 and "DONE" in other.stdout, other.stderr[-3000:]
        assert len(RemoteReader(url, token, "alice/proj/s3-metrics").metric_rows("train")) == 1000
        reader = RemoteReader(url, token, "alice/proj/s3-outage")
        wait_for(
            lambda: get(url, token, "_test/stats").json["statuses"]["blobs"].count(503) >= 2,
            what="the run's blob upload to be refused while S3 is away",
        )
        assert reader.files() == []
        s3_server.start()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0 and "DONE" in out, err[-3000:]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        if s3_server.proc is None or s3_server.proc.poll() is not None:
            s3_server.start()
    rows = reader.metric_rows("train")
    assert [r["data"]["i"] for r in rows] == list(range(200)) and [r["index"] for r in rows] == list(range(200))
    (entry,) = reader.files()
    assert entry["filename"] == "weights.bin" and reader.download(entry, tmp_path / "w.bin").read_bytes() == data
    stats = get(url, token, "_test/stats").json["statuses"]["blobs"]
    assert stats.count(503) >= 2 and stats[-1] in (200, 201)  # refused while S3 was away, retried, stored
