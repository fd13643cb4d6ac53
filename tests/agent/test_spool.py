"""The spool on its own: framing, segments, permissions, cap, resume, corruption detection."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from ml_dash._events import LogEvent
from ml_dash.agent._framing import check_line, frame, kind_of, seq_of
from ml_dash.agent._reader import SessionReader
from ml_dash.agent._session import SessionDir, list_sessions, public_url
from ml_dash.agent._spool import SpoolWriter


def _writer(root, prefix="alice/p/e", url="http://127.0.0.1:1", **kw):
    sdir = SessionDir.create(root, url, prefix)
    opts = dict(fsync_interval=0.05, warn_bytes=1 << 40, max_bytes=1 << 40)
    opts.update(kw)
    return sdir, SpoolWriter(sdir, **opts)


def _logs(n, start=0):
    return [LogEvent(1.0 + i, "info", f"m{i}") for i in range(start, start + n)]


def _read_all(sdir, start=0, finished=True, max_events=1000):
    reader = SessionReader(sdir, start)
    entries, lost = [], []
    while True:
        chunk = reader.read(max_events, 1 << 20, finished)
        entries += chunk.entries
        lost += chunk.lost
        if chunk.at_end:
            return entries, lost


def test_frame_roundtrip_and_detection():
    payload = b'{"seq":12,"kind":"metric","ts":1.0,"name":"a","data":{"x":1}}'
    line = frame(payload)
    assert line.endswith(b"\n")
    got = check_line(line[:-1])
    assert got == payload and seq_of(got) == 12 and kind_of(got) == b"metric"
    for i in range(len(line) - 1):  # every single flipped bit is caught
        bad = bytearray(line[:-1])
        bad[i] ^= 0x04
        assert check_line(bytes(bad)) is None, i
    assert check_line(b"") is None and check_line(line[:20]) is None


def test_manifest_permissions_and_no_secrets(tmp_path):
    root = tmp_path / "spool"
    # "~" is in no session id (base64url) or number, so a match can only be a leak ("abc" once
    # matched a session id's hex timestamp).
    sdir, w = _writer(root, url="http://user:s3cr~t@127.0.0.1:9/base?token=tok~en")
    w.append(_logs(3))
    w.close()
    manifest = json.loads((sdir.path / "manifest.json").read_text())
    assert manifest["url"] == "http://127.0.0.1:9/base" and manifest["prefix"] == "alice/p/e"
    assert manifest["pid"] == os.getpid() and manifest["session"] == sdir.id
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE(sdir.path.stat().st_mode) == 0o700
    for p in sdir.path.rglob("*"):
        if p.is_file():
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
            assert b"s3cr~t" not in p.read_bytes() and b"tok~en" not in p.read_bytes()
    assert public_url("http://[::1]:80/x/") == "http://[::1]:80/x"


def test_seqs_segments_resume_and_trim(tmp_path):
    sdir, w = _writer(tmp_path / "spool", segment_bytes=1500)
    for k in range(10):
        assert w.append(_logs(10, 10 * k)) == 10
    segs = sdir.segments()
    assert len(segs) > 3 and segs[0] == 0
    entries, lost = _read_all(sdir, max_events=7)
    assert [e.seq for e in entries] == list(range(100)) and not lost
    assert [json.loads(e.payload)["message"] for e in entries] == [f"m{i}" for i in range(100)]
    # resume after an acknowledgement, from the middle of a segment
    entries, _ = _read_all(sdir, start=57)
    assert [e.seq for e in entries] == list(range(57, 100))
    # trim frees only segments entirely at or below the ack, never the last one
    reader = SessionReader(sdir, 0)
    freed = reader.trim(60)
    left = sdir.segments()
    assert freed > 0 and left[0] <= 61 and all(b > 60 for b in left[1:])
    assert [e.seq for e in _read_all(sdir, start=61)[0]] == list(range(61, 100))
    w.close()
    assert (sdir.path / "closed").exists()


def test_bad_item_does_not_consume_a_seq_and_is_counted(tmp_path):
    sdir, w = _writer(tmp_path / "spool")
    events = (
        _logs(2)
        + [LogEvent(1.0, "info", "bad", {"v": object()})]
        + _logs(2, 2)
        + [LogEvent(2.0, "info", "nan", {"v": float("nan")})]
    )
    assert w.append(events) == 5
    assert w.drops == {"encode_error": 1}
    entries, _ = _read_all(sdir)
    assert [e.seq for e in entries] == list(range(5))
    assert [json.loads(e.payload)["message"] for e in entries] == ["m0", "m1", "m2", "m3", "nan"]
    assert json.loads(entries[-1].payload)["metadata"] == {"v": "NaN"}
    # a metric row that cannot be encoded is dropped alone too, and takes no seq
    assert w.append_metric_rows("x", [{"v": 1, "_ts": 1.0}, {"v": object(), "_ts": 2.0}, {"v": 3, "_ts": 3.0}]) == 2
    assert w.drops == {"encode_error": 2}


def test_size_cap_drops_and_counts(tmp_path, caplog):
    sdir, w = _writer(tmp_path / "spool", max_bytes=2000, warn_bytes=1000)
    stored = sum(w.append(_logs(5, 5 * k)) for k in range(10))
    assert 0 < stored < 50
    assert w.drops["spool_full"] == 50 - stored
    err = caplog.text
    assert "spool_full" in err and "ML_DASH_SPOOL_MAX_BYTES" in err
    # what was stored is contiguous: a dropped batch never leaves a hole in the seqs
    assert [e.seq for e in _read_all(sdir)[0]] == list(range(stored))


def test_group_commit_fsyncs_within_the_window(tmp_path):
    _sdir, w = _writer(tmp_path / "spool", fsync_interval=0.2)
    w.append(_logs(3))
    assert w._dirty_since is not None
    start = time.monotonic()
    while w._dirty_since is not None:  # the fsync thread clears it once the data is on disk
        assert time.monotonic() - start < 2.0, "fsync did not happen within the window"
        time.sleep(0.01)
    w.close()


def test_torn_tail_at_every_byte(tmp_path):
    sdir, w = _writer(tmp_path / "spool")
    w.append(_logs(6))
    w.close()
    seg = sdir.segment_path(0)
    data = seg.read_bytes()
    ends = [i + 1 for i, b in enumerate(data) if b == 0x0A]
    for cut in range(ends[3], len(data) + 1):  # every byte of the last two records
        seg.write_bytes(data[:cut])
        entries, lost = _read_all(sdir)
        complete = sum(1 for e in ends if e <= cut)
        assert [e.seq for e in entries] == list(range(complete)), cut
        assert [r for r, _ in lost] == ([] if cut in ends else ["torn_tail"]), cut
    # a live writer's incomplete tail is not final: nothing is reported lost yet
    seg.write_bytes(data[: ends[4] + 5])
    entries, lost = _read_all(sdir, finished=False)
    assert len(entries) == 5 and lost == []


@pytest.mark.parametrize("where", ["payload", "crc", "newline"])
def test_flipped_byte_becomes_a_gap(tmp_path, where):
    sdir, w = _writer(tmp_path / "spool")
    w.append(_logs(10))
    w.close()
    seg = sdir.segment_path(0)
    data = bytearray(seg.read_bytes())
    starts = [0] + [i + 1 for i, b in enumerate(data) if b == 0x0A][:-1]
    pos = {"payload": starts[4] + 30, "crc": starts[4] + 2, "newline": starts[5] - 1}[where]
    data[pos] ^= 0x01 if where != "newline" else 0x2A  # newline -> a printable byte: two records merge
    seg.write_bytes(bytes(data))
    entries, lost = _read_all(sdir)
    gaps = [e.seq for e in entries if e.kind == b"gap"]
    assert [e.seq for e in entries] == list(range(10)) and not lost
    assert gaps == ([4, 5] if where == "newline" else [4])
    assert all(e.reason == "corrupt_record" for e in entries if e.kind == b"gap")
    assert entries[gaps[0]].raw  # the unreadable bytes ride on the first gap, for the quarantine


def test_list_sessions_skips_foreign_folders(tmp_path):
    root = tmp_path / "spool"
    sdir, w = _writer(root)
    (root / "quarantine").mkdir()
    (root / "junk").mkdir()
    assert [s.id for s in list_sessions(root)] == [sdir.id]
    w.close()
