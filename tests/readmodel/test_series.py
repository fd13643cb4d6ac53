"""Series answers against a brute-force computation over the raw rows, in memory and on disk."""

from __future__ import annotations

import math

import pytest

from ml_dash._readmodel import LayoutReadModel
from ml_dash._readmodel._columns import CHUNK
from ml_dash._readmodel._series import QueryError

from . import _brute as B

P = "alice/proj/run"


@pytest.fixture(params=["memory", "disk"])
def model(request, tmp_path):
    root = tmp_path / "root"
    cache = tmp_path / "cache" if request.param == "disk" else None
    return LayoutReadModel(root, cache_dir=cache)


def _in_range(rows, x, start, end):
    def xv(idx, data):
        return idx if x == "index" else data.get(x)

    return [(i, d) for i, d in rows if (start is None or xv(i, d) >= start) and (end is None or xv(i, d) <= end)]


N = 50 * CHUNK + 123  # sealed chunks, and an open one


@pytest.mark.parametrize("x", ["index", "step", "_ts"])
@pytest.mark.parametrize(
    "buckets,span",
    [
        (7, None),  # whole metric, chunk path (rows / buckets >> CHUNK)
        (40, None),  # chunk path with uneven groups
        (1000, None),  # rows / buckets < CHUNK: equal buckets over the rows
        (10, (0.13, 0.71)),  # a zoom: chunk path with partial chunks at both ends
        (300, (0.42, 0.58)),  # a zoom read row by row
        (5000, (0.5, 0.55)),  # fewer rows than buckets: raw rows
        (10, (0.9, 1.2)),  # a range running past the end
    ],
)
def test_series_matches_brute_force(model, x, buckets, span):
    data = B.mixed_rows(N, seed=hash((x, buckets)) & 0xFFFF)
    B.write_metric(model.root, P, "train", data)
    rows = B.rows(model.root, P, "train")
    assert len(rows) == N
    xs = [i if x == "index" else d[x] for i, d in rows]
    start = end = None
    if span is not None:
        lo, hi = xs[0], xs[-1]
        start, end = lo + span[0] * (hi - lo), lo + span[1] * (hi - lo)
    answer = model.series(P, "train", "loss", x=x, start=start, end=end, buckets=buckets)
    in_range = _in_range(rows, x, start, end)
    assert answer["total"] == N and answer["last_index"] == N - 1
    assert answer["count"] == len(in_range)
    if answer["mode"] == "raw":
        assert len(in_range) <= buckets
        B.check_raw(answer, in_range, "loss", x)
    else:
        assert len(answer["points"]["x"]) <= buckets
        assert len(answer["points"]["x"]) >= min(buckets, len(in_range)) // 3
        B.check_buckets(answer, in_range, "loss", x)
        # nothing is lost: every row with a number is counted once
        assert sum(answer["points"]["n"]) == sum(B.number(d.get("loss")) is not None for _, d in in_range)


def test_a_single_spike_shows_in_every_bucket_size(model):
    data = [{"loss": 0.5 + 0.001 * (i % 7), "step": i} for i in range(20 * CHUNK + 5)]
    data[3 * CHUNK + 77]["loss"] = 1234.5
    data[17 * CHUNK + 1]["loss"] = -99.0
    B.write_metric(model.root, P, "train", data)
    for buckets in (1, 3, 10, 100, 1000, 5000):
        a = model.series(P, "train", "loss", buckets=buckets)
        assert a["mode"] == "buckets"
        pts = a["points"]
        assert max(pts["max"]) == 1234.5 and min(pts["min"]) == -99.0, buckets
        hit = pts["max"].index(1234.5)
        assert (pts["x"][hit - 1] if hit else -1) < 3 * CHUNK + 77 <= pts["x"][hit]


def test_nan_only_bucket_and_nonfinite_values(model):
    data = [{"loss": math.nan} for _ in range(3 * CHUNK)] + [{"loss": math.inf}, {"loss": 1.0}, {"loss": -math.inf}]
    B.write_metric(model.root, P, "m", data)
    a = model.series(P, "m", "loss", buckets=2)
    assert a["mode"] == "buckets"
    first = {k: a["points"][k][0] for k in ("n", "min", "max", "last")}
    assert first["n"] > 0 and math.isnan(first["min"]) and math.isnan(first["max"]) and math.isnan(first["last"])
    assert a["points"]["max"][-1] == math.inf and a["points"]["min"][-1] == -math.inf
    assert a["points"]["last"][-1] == -math.inf
    strict = model.series(P, "m", "loss", buckets=2, strict=True)
    assert strict["points"]["min"][0] == "NaN" and strict["points"]["max"][-1] == "Infinity"
    raw = model.series(P, "m", "loss", start=3 * CHUNK, buckets=10, strict=True)
    assert raw["mode"] == "raw" and raw["points"]["y"] == ["Infinity", 1, "-Infinity"]


def test_increments_follow_a_cursor(model):
    data = B.mixed_rows(3 * CHUNK + 10, seed=7)
    B.write_metric(model.root, P, "train", data)
    rows = B.rows(model.root, P, "train")
    got, cursor, calls = [], -1, 0
    while True:
        a = model.increments(P, "train", "loss", x="step", after=cursor, limit=100)
        calls += 1
        got += list(zip(a["points"]["x"], a["points"]["y"]))
        assert a["cursor"] >= cursor and a["last_index"] == len(rows) - 1
        cursor = a["cursor"]
        if not a["more"]:
            break
    assert calls == math.ceil(len(rows) / 100)
    want = [(d["step"], B.number(d.get("loss"))) for _, d in rows]
    assert len(got) == len(want) and all(
        gx == wx and ((gy is None and wy is None) or B.same(float(gy), wy)) for (gx, gy), (wx, wy) in zip(got, want)
    )
    again = model.increments(P, "train", "loss", after=cursor)
    assert again["count"] == 0 and again["points"] == {"x": [], "y": []} and again["cursor"] == cursor


def test_rows_without_the_x_field_and_an_x_that_decreases(model):
    data = [
        {"loss": float(i), "epoch": (i // 10) if i % 3 else None, "noise": (i * 7919) % 101} for i in range(2 * CHUNK)
    ]
    B.write_metric(model.root, P, "m", data)
    raw = model.series(P, "m", "loss", x="epoch", start=2, end=3, buckets=1000)
    want = [(d["epoch"], d["loss"]) for d in data if d["epoch"] is not None and 2 <= d["epoch"] <= 3]
    assert list(zip(raw["points"]["x"], raw["points"]["y"])) == want and raw["x_sorted"] is True
    # "noise" goes up and down: a range on it looks at every row, and says so
    a = model.series(P, "m", "loss", x="noise", start=10, end=20, buckets=5)
    assert a["x_sorted"] is False
    picked = [d for d in data if 10 <= d["noise"] <= 20]
    assert a["count"] == len(picked) and sum(a["points"]["n"]) == len(picked)


def test_errors_are_clear(model):
    B.write_metric(model.root, P, "train", [{"loss": 1.0}])
    for call, status in [
        (lambda: model.series("alice/proj/nope", "train", "loss"), 404),
        (lambda: model.series(P, "eval", "loss"), 404),
        (lambda: model.series(P, "train", "acc"), 404),
        (lambda: model.series(P, "train", "loss", x="epoch"), 404),
        (lambda: model.series(P, "train", "loss", buckets=0), 400),
        (lambda: model.series(P, "train", "loss", buckets=10_001), 400),
        (lambda: model.series(P, "train", "loss", start="soon"), 400),
        (lambda: model.series(P, "train", "", buckets=10), 400),
        (lambda: model.series("alice/../etc", "train", "loss"), 400),
        (lambda: model.series(P, "../x", "loss"), 400),
    ]:
        with pytest.raises(QueryError) as info:
            call()
        assert info.value.status == status


def test_summary_against_brute_force(model):
    data = B.mixed_rows(2 * CHUNK + 3, seed=3)
    B.write_metric(model.root, P, "train", data)
    B.write_metric(model.root, P, None, [{"x": 1}, {"x": 5}, {"x": 2, "note": "hello"}])
    s = model.summary(P)
    assert s["prefix"] == P and [m["name"] for m in s["metrics"]] == [None, "train"]
    unnamed, train = s["metrics"]
    assert unnamed["count"] == 3 and unnamed["fields"]["x"] == {
        "last": 2,
        "min": 1,
        "max": 5,
        "numeric": True,
        "count": 3,
        "sorted": False,
    }
    assert unnamed["fields"]["note"]["numeric"] is False and unnamed["fields"]["note"]["last"] == "hello"
    rows = B.rows(model.root, P, "train")
    assert train["count"] == len(rows) and train["last_index"] == len(rows) - 1
    for field in ("loss", "acc", "step", "flag"):
        present = [d[field] for _, d in rows if d.get(field) is not None]
        nums = [B.number(v) for v in present if B.number(v) is not None]
        finite = [v for v in nums if not math.isnan(v)]
        f = train["fields"][field]
        assert f["count"] == len(present) and f["numeric"] == bool(nums)
        assert f["min"] == min(finite) and f["max"] == max(finite)
        assert B.same(f["last"], present[-1] if not isinstance(present[-1], list) else None)
    assert s["logs"] == 0 and s["files"] == 0
