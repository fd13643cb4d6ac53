"""Two writers of one experiment (two processes of a run, as DDP ranks are): the one that closes
last, with a metadata.json still pending from before the other's last append, counts what the
other appended instead of writing its own count back (upstream numbers a metric's next point from
``nextIndex``: a stale one would give indices a second time)."""

from __future__ import annotations

import json
import time

from ml_dash._names import parse_prefix
from ml_dash._store import ExperimentReader
from ml_dash._store._writer import ExperimentWriter

P = "alice/proj/ranks"


def _writers(root):
    # Each holds its own descriptors and lock, as two processes would; the document is rewritten
    # at most once an hour, so what a writer appends after its first batch stays pending.
    return [ExperimentWriter(root, parse_prefix(P), metadata_interval=3600) for _ in range(2)]


def _metric(w, rows):
    with w.lock():
        w.append_metric("loss", [{"v": v, "_ts": time.time()} for v in rows], time.time())


def _track(w, stamps):
    with w.lock():
        w.append_track("pose", [{"x": 1.0, "_ts": float(s)} for s in stamps], time.time())


def _close(w):
    with w.lock():
        w.close()


def test_a_metric_document_pending_at_close_counts_the_other_writers_rows(tmp_path):
    a, b = _writers(tmp_path)
    _metric(a, [0, 1, 2])  # document written: nextIndex 3
    _metric(a, [3, 4])  # pending: nextIndex 5
    _metric(b, [5, 6, 7, 8])  # b's first document: nextIndex 9
    _close(b)
    _close(a)  # last, with its pending document

    meta = json.loads((tmp_path / P / "metrics/loss/metadata.json").read_text())
    assert (meta["nextIndex"], meta["totalDataPoints"]) == (9, 9)
    rows = ExperimentReader(tmp_path, P).metric_rows("loss")
    assert [(r["index"], r["data"]["v"]) for r in rows] == [(i, i) for i in range(9)]

    _metric(a, [9])  # and the next append numbers on from there
    _close(a)
    assert [r["index"] for r in ExperimentReader(tmp_path, P).metric_rows("loss")] == list(range(10))


def test_a_track_document_pending_at_close_counts_the_other_writers_entries(tmp_path):
    a, b = _writers(tmp_path)
    _track(a, [1, 2, 3])
    _track(a, [4, 5])  # pending: 5 entries
    _track(b, [6, 7, 8, 9])  # b counts all 9
    _close(b)
    _close(a)

    meta = json.loads((tmp_path / P / "tracks/pose/metadata.json").read_text())
    assert (meta["totalEntries"], meta["firstTimestamp"], meta["lastTimestamp"]) == (9, 1.0, 9.0)
    assert [e["timestamp"] for e in ExperimentReader(tmp_path, P).track_entries("pose")] == [
        float(s) for s in range(1, 10)
    ]
