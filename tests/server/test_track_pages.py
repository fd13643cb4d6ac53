"""``GET /api/v1/track`` pages a track file from remembered offsets (ml_dash/server/track_pages.py)
and answers exactly what reading the whole file answers: same-timestamp lines merged, torn lines
skipped, growth between asks seen, and a file out of timestamp order read whole and sorted."""

from __future__ import annotations

import math

import pytest

from ml_dash import Experiment
from ml_dash._store import ExperimentReader
from ml_dash._values import encode_nonfinite
from ml_dash.server import run_in_thread
from ml_dash.server.track_pages import TrackPager

from ._client import get

P = "alice/robot/pages"
N = 2600  # more than two marks (one per 1,024 entries)


@pytest.fixture
def served(tmp_path):
    root = tmp_path / ".dash"
    handle = run_in_thread(root, auth=False, read_only=True)
    try:
        yield root, handle.url
    finally:
        handle.stop()


def _write(root, entries):
    """Appends in one run; ``None`` in ``entries`` stores what came before (the lines after it are
    written apart, so two lines of the file can hold one timestamp)."""
    with Experiment(prefix=P, dash_root=str(root)).run as exp:
        track = exp.tracks("arm")
        for fields in entries:
            if fields is None:
                exp.flush()
            else:
                track.append(**fields)


def _page(url, start, limit):
    a = get(url, None, "track", prefix=P, topic="arm", start=start, limit=limit)
    assert a.status == 200, a.raw
    return a.json


def _whole(root):
    return [encode_nonfinite(e) for e in ExperimentReader(root, P).track_entries("arm")]


def test_pages_from_offsets_equal_the_whole_read_and_follow_growth(served):
    root, url = served
    # every third entry is two appends with one timestamp (merged: the later x wins, y joins);
    # around the marks (entries 1024, 2048) and at entry 3 the two are lines of their own
    split = (3, 1023, 1024, 2047, 2048)
    rows = []
    for i in range(N):
        rows.append({"x": float(i), "_ts": i / 30})
        if i % 3 == 0 or i in split:
            if i in split:
                rows.append(None)
            rows.append({"x": -1.0, "y": "NaN" if i == 3 else i, "_ts": i / 30})
    rows.append({"z": math.nan, "_ts": N / 30})
    _write(root, rows)
    data = root / P / "tracks" / "arm" / "data.jsonl"
    assert len(data.read_bytes().splitlines()) == N + 1 + len(split)  # those entries on two lines
    whole = _whole(root)
    assert len(whole) == N + 1 and whole[3] == {"timestamp": 0.1, "x": -1.0, "y": "NaN"}
    assert whole[-1] == {"timestamp": N / 30, "z": "NaN"}
    assert TrackPager().page(data, 1024, 2) == (whole[1024:1026], N + 1)  # paged, not read whole
    for start, limit in [
        (0, 10),
        (3, 1),
        (1020, 10),
        (1023, 2),
        (1024, 1),
        (1025, 1),
        (2047, 3),
        (N - 2, 50),
        (N, 5),
        (N + 7, 5),
    ]:
        got = _page(url, start, limit)
        assert got["entries"] == whole[start : start + limit], (start, limit)
        assert got["total"] == N + 1
        assert got["next"] == (start + limit if start + limit < N + 1 else None)

    # the file grows (another run of the same topic appends later timestamps): the tail sees it
    _write(root, [{"x": 1e6, "_ts": (N + 1) / 30}, {"w": 2, "_ts": (N + 1) / 30}, {"x": 2e6, "_ts": 1000.0}])
    got = _page(url, N, 100)
    assert got["total"] == N + 3
    assert got["entries"] == [
        {"timestamp": N / 30, "z": "NaN"},
        {"timestamp": (N + 1) / 30, "x": 1e6, "w": 2},
        {"timestamp": 1000.0, "x": 2e6},
    ]
    assert got["entries"] == _whole(root)[N:]


def test_torn_lines_are_skipped_and_an_unordered_file_is_read_whole(served):
    root, url = served
    _write(root, [{"x": float(i), "_ts": float(i)} for i in range(5)])
    data = root / P / "tracks" / "arm" / "data.jsonl"
    assert _page(url, 0, 100)["total"] == 5
    with open(data, "ab") as fh:  # a torn line (a crash mid-write), then a line without a timestamp
        fh.write(b'{"timestamp":5.0,"x":\n{"x":7}\n')
    _write(root, [{"x": 6.0, "_ts": 6.0}])
    got = _page(url, 0, 100)
    assert got["entries"] == _whole(root) and [e["x"] for e in got["entries"]] == [0, 1, 2, 3, 4, 6]
    assert got["total"] == 6

    _write(root, [{"x": 2.5, "_ts": 2.5}, {"y": 1, "_ts": 3.0}])  # back in time: sorted and merged on read
    got = _page(url, 0, 100)
    assert [e["timestamp"] for e in got["entries"]] == [0, 1, 2, 2.5, 3, 4, 6]
    assert got["entries"][4] == {"timestamp": 3.0, "x": 3.0, "y": 1}
    assert got["entries"] == _whole(root) and got["total"] == 7
    assert TrackPager().page(data, 0, 1) is None  # the pager declines; the server read it whole
    assert _page(url, 5, 1) == {"entries": [{"timestamp": 4.0, "x": 4.0}], "next": 6, "total": 7}


def _track_events(first_seq, stamps, tag):
    return [
        {
            "seq": first_seq + i,
            "kind": "track",
            "topic": "robot/pose",
            "timestamp": t,
            "data": {tag: i, "pose": {"q": t}},
        }
        for i, t in enumerate(stamps)
    ]


def test_pages_read_the_same_on_each_store(server):
    """The same batches through the protocol, paged on the embedded store (offsets) and on
    PostgreSQL (the page picked in SQL): both answer the merged entries in timestamp order."""
    from ._client import ingest

    batches = [
        _track_events(0, [i / 10 for i in range(2500)], "a"),
        _track_events(2500, [i / 10 for i in range(2400, 2600)], "b"),  # 100 merge into the last ones
        _track_events(2700, [300.0], "c") + [{**_track_events(2701, [300.0], "d")[0], "data": {"v": "NaN"}}],
    ]
    expected = {}
    for batch in batches:
        for ev in batch:
            flat = {k: v for k, v in ev["data"].items() if k != "pose"}
            if "pose" in ev["data"]:
                flat["pose.q"] = ev["data"]["pose"]["q"]
            expected.setdefault(ev["timestamp"], {"timestamp": ev["timestamp"]}).update(flat)
    for batch in batches:
        a = ingest(server.url, server.token, "session-tracks", "alice/robot/same", batch)
        assert a.status == 200 and not a.json.get("rejected"), a.json
    want = [expected[t] for t in sorted(expected)]
    assert len(want) == 2601 and want[2450] == {"timestamp": 245.0, "a": 2450, "b": 50, "pose.q": 245.0}
    assert want[-1] == {"timestamp": 300.0, "c": 0, "pose.q": 300.0, "v": "NaN"}

    def page(start, limit):
        q = {"prefix": "alice/robot/same", "topic": "robot/pose", "start": start, "limit": limit}
        return get(server.url, server.token, "track", **q).json

    for start, limit in [(0, 3), (1023, 3), (2399, 5), (2595, 100), (2600, 1), (2601, 1), (5000, 2)]:
        got = page(start, limit)
        assert got["entries"] == want[start : start + limit], (server.kind, start, limit)
        assert got["total"] == 2601 and got["next"] == (start + limit if start + limit < 2601 else None)

    # an entry back in time lands in its place on both stores
    a = ingest(server.url, server.token, "session-tracks", "alice/robot/same", _track_events(2702, [0.05], "e"))
    assert a.status == 200
    got = page(0, 3)
    assert [e["timestamp"] for e in got["entries"]] == [0.0, 0.05, 0.1] and got["total"] == 2602
    assert page(2601, 5)["entries"] == [want[-1]]
    none = get(server.url, server.token, "track", prefix="alice/robot/same", topic="no/such").json
    assert none == {"entries": [], "next": None, "total": 0}
