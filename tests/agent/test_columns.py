"""Columnar ``metrics`` records on the agent side: encoding, spooling, reading back, corruption."""

from __future__ import annotations

import math

import orjson
import pytest

from ml_dash._events import LogEvent
from ml_dash.agent import _columns
from ml_dash.agent._columns import MAX_ROWS, encode_metric_rows, slice_record
from ml_dash.agent._framing import check_line, count_of, frame, seq_of
from ml_dash.agent._reader import SessionReader
from ml_dash.agent._session import SessionDir
from ml_dash.agent._spool import SpoolWriter

from .test_spool import _read_all


def _rows(n, start=0):
    return [{"loss": 1.0 / (i + 1), "step": i, "_ts": 1700000000.0 + i} for i in range(start, start + n)]


def _expand(payloads):
    """(seq, name, row) for every row of the records, rows as the user's fields plus _ts."""
    out = []
    for p in payloads:
        rec = orjson.loads(p)
        assert rec["kind"] == "metrics" and list(rec)[:3] == ["seq", "kind", "n"]
        assert count_of(p) == rec["n"] and seq_of(p) == rec["seq"]
        for i in range(rec["n"]):
            row = {k: v[i] for k, v in rec["cols"].items()}
            if rec["ts"] is not None:
                row["_ts"] = rec["ts"][i]
            out.append((rec["seq"] + i, rec["name"], row))
    return out


def test_one_key_set_makes_full_records_with_a_seq_per_row():
    rows = _rows(2500)
    payloads, counts, bad = encode_metric_rows(7, "train", rows)
    assert counts == [MAX_ROWS, MAX_ROWS, 2500 - 2 * MAX_ROWS] and not bad
    got = _expand(payloads)
    assert [s for s, _, _ in got] == list(range(7, 2507))
    assert [r for _, _, r in got] == rows and {n for _, n, _ in got} == {"train"}
    assert rows[0] == {"loss": 1.0, "step": 0, "_ts": 1700000000.0}  # the caller's rows are untouched


def test_key_set_changes_start_a_new_record_and_none_stays_distinct_from_missing():
    rows = [
        {"a": 1, "_ts": 1.0},
        {"_ts": 2.0, "a": 2},
        {"a": None, "_ts": 3.0},
        {"a": 4, "b": 5, "_ts": 4.0},
        {"b": 6, "_ts": 5.0},
        {"a": 7, "_ts": 6.0},
    ]
    payloads, counts, bad = encode_metric_rows(0, None, rows)
    assert counts == [3, 1, 1, 1] and not bad
    assert [r for _, _, r in _expand(payloads)] == rows
    assert [n for _, n, _ in _expand(payloads)] == [None] * 6


def test_nonfinite_nested_and_none_values():
    rows = [
        {"x": math.nan, "v": [1, {"y": math.inf}], "s": None, "_ts": 1.0},
        {"x": -math.inf, "v": [], "s": "NaN", "_ts": 2.0},
    ]
    payloads, _counts, _ = encode_metric_rows(0, None, rows)
    rec = orjson.loads(payloads[0])
    assert rec["cols"] == {"x": ["NaN", "-Infinity"], "v": [[1, {"y": "Infinity"}], []], "s": [None, "NaN"]}
    assert rec["ts"] == [1.0, 2.0] and rec["name"] is None


def test_rows_without_ts_send_null_and_empty_rows_are_rows():
    payloads, counts, _ = encode_metric_rows(0, "m", [{}, {}, {"a": 1}])
    assert counts == [2, 1]
    first = orjson.loads(payloads[0])
    assert first["ts"] is None and first["cols"] == {} and first["n"] == 2


def test_big_records_are_cut_and_unencodable_rows_take_no_seq(monkeypatch):
    monkeypatch.setattr(_columns, "MAX_RECORD_BYTES", 2000)
    rows = _rows(100)
    rows[40] = {"loss": 1.0, "step": {1: "non-str key"}, "_ts": 1.0}  # same key set, orjson refuses it
    payloads, _counts, bad = encode_metric_rows(0, "t", rows)
    assert all(len(p) <= 2000 for p in payloads) and len(bad) == 1
    got = _expand(payloads)
    assert [s for s, _, _ in got] == list(range(99))  # contiguous: the bad row took no seq
    assert [r for _, _, r in got] == rows[:40] + rows[41:]


def test_slice_record():
    payloads, _, _ = encode_metric_rows(10, "t", _rows(5))
    part = slice_record(payloads[0], 12, 13)
    rec = orjson.loads(part)
    assert (rec["seq"], rec["n"], rec["cols"]["step"], rec["ts"]) == (12, 2, [2, 3], [1700000002.0, 1700000003.0])
    assert slice_record(payloads[0], 9, 11) is None and slice_record(b"{", 10, 10) is None


def _writer(tmp_path):
    sdir = SessionDir.create(tmp_path / "spool", "http://127.0.0.1:1", "alice/p/e")
    return sdir, SpoolWriter(sdir, fsync_interval=0.05, warn_bytes=1 << 40, max_bytes=1 << 40)


def test_spooled_records_cover_their_seqs_mixed_with_single_events(tmp_path):
    sdir, w = _writer(tmp_path)
    assert w.append([LogEvent(1.0, "info", "a")]) == 1
    assert w.append_metric_rows("train", _rows(3000)) == 3000
    assert w.append([LogEvent(2.0, "info", "b")]) == 1
    w.close()
    assert w.next_seq == 3002
    entries, lost = _read_all(sdir)
    assert not lost
    assert [(e.seq, e.n) for e in entries] == [(0, 1), (1, 1024), (1025, 1024), (2049, 952), (3001, 1)]
    # a cursor inside a record returns that whole record; the server stores only its tail
    entries, _ = _read_all(sdir, start=1500)
    assert [(e.seq, e.n) for e in entries] == [(1025, 1024), (2049, 952), (3001, 1)]
    # batches are counted in seqs: a record is never split, at least one is always taken
    reader = SessionReader(sdir, 0)
    assert [(e.seq, e.n) for e in reader.read(500, 1 << 20, True).entries] == [(0, 1), (1, 1024)]


def test_a_corrupt_record_becomes_gaps_for_its_seqs_and_only_it_is_lost(tmp_path):
    sdir, w = _writer(tmp_path)
    for k in range(3):
        w.append_metric_rows("train", _rows(10, 10 * k))
    w.close()
    seg = sdir.segment_path(sdir.segments()[0])
    data = bytearray(seg.read_bytes())
    second = data.index(b"\n") + 1
    data[second + 40] ^= 0x01  # a flipped bit inside the second record
    seg.write_bytes(bytes(data))
    entries, lost = _read_all(sdir)
    assert not lost
    assert [(e.seq, e.n, e.kind) for e in entries if e.kind != b"gap"] == [(0, 10, b""), (20, 10, b"")]
    gaps = [e for e in entries if e.kind == b"gap"]
    assert [g.seq for g in gaps] == list(range(10, 20)) and gaps[0].raw and not any(g.raw for g in gaps[1:])
    assert check_line(bytes(gaps[0].raw)) is None  # the quarantined bytes are that record's, once


def test_frame_and_count_of():
    payload = b'{"seq":5,"kind":"metrics","n":3,"name":"a","ts":null,"cols":{"x":[1,2,3]}}'
    assert count_of(check_line(frame(payload)[:-1])) == 3
    assert count_of(b'{"seq":5,"kind":"metric","ts":1,"name":"a","data":{"kind":"metrics","n":9}}') == 1


@pytest.mark.parametrize("n", [1, 2, 1023, 1024, 1025])
def test_record_boundaries(n):
    payloads, counts, _ = encode_metric_rows(0, "t", _rows(n))
    assert sum(counts) == n and max(counts) <= MAX_ROWS
    assert [r for _, _, r in _expand(payloads)] == _rows(n)
