"""Charts from the PostgreSQL store: every bucket checked against a brute-force pass over the rows
read back (spikes, NaN, infinities, nulls, text, rows without the field, zooms, ends cut mid-chunk)."""

from __future__ import annotations

import math
import random

from ml_dash.server import create_token, run_in_thread
from ml_dash.server.limits import Limits
from ml_dash.server.stores.postgres import PgBackend
from ml_dash.server.stores.postgres._series import series_by_index

from ..server._client import get, ingest

P = "alice/proj/chart"


def _number(v):
    if type(v) in (int, float, bool):
        return float(v)
    if v in ("NaN", "Infinity", "-Infinity"):
        return float(v.replace("Infinity", "inf"))
    return None


def _events(n_rows: int, seed: int = 7):
    """Columnar records and per-row events mixed, with odd values and a spike."""
    rnd = random.Random(seed)
    events, seq, i = [], 0, 0
    while i < n_rows:
        if rnd.random() < 0.7:
            k = min(rnd.choice([1, 50, 1024, 3000]), n_rows - i)
            loss = [1.0 / (i + j + 1) for j in range(k)]
            if rnd.random() < 0.3:
                loss[rnd.randrange(k)] = rnd.choice(["NaN", "Infinity", None, "text", 1e9])
            events.append(
                {
                    "seq": seq,
                    "kind": "metrics",
                    "n": k,
                    "name": "train",
                    "ts": [1.0 * (i + j) for j in range(k)],
                    "cols": {"loss": loss, "step": list(range(i, i + k))},
                }
            )
            seq += k
            i += k
        else:
            data = {"step": i} if rnd.random() < 0.2 else {"loss": rnd.choice([0.5, "-Infinity", 3, True]), "step": i}
            events.append({"seq": seq, "kind": "metric", "ts": float(i), "name": "train", "data": data})
            seq += 1
            i += 1
    return events


def _brute(rows, lo, hi):
    """[n, m, min, max, last] over rows lo..hi (inclusive) of field loss."""
    nums = [_number(r["data"].get("loss")) for r in rows[lo : hi + 1]]
    nums = [x for x in nums if x is not None]
    real = [x for x in nums if not math.isnan(x)]
    return len(nums), (min(real) if real else None), (max(real) if real else None), (nums[-1] if nums else None)


def _same(a, b):
    if isinstance(a, str):
        a = float(a.replace("Infinity", "inf"))
    if isinstance(b, str):
        b = float(b.replace("Infinity", "inf"))
    if a is None or b is None:
        return (
            (a is None and b is None)
            or (isinstance(a, float) and math.isnan(a))
            or (isinstance(b, float) and math.isnan(b))
        )
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_series_buckets_match_a_brute_force_pass(tmp_path, pg_settings):
    root = tmp_path / "r"
    token = create_token(root, "alice", settings=pg_settings)
    events = _events(60_000)
    with run_in_thread(root, settings=pg_settings) as h:
        for a in range(0, len(events), 200):
            assert ingest(h.url, token, "sessCHART01", P, events[a : a + 200]).status == 200
        rows = []
        start = 0
        while True:
            page = get(h.url, token, "metric", prefix=P, name="train", start=start).json
            rows += page["rows"]
            if page["next"] is None:
                break
            start = page["next"]
    assert [r["index"] for r in rows] == list(range(60_000))
    backend = PgBackend.open(pg_settings, None, Limits())
    try:
        with backend.pool.connection() as conn:
            for start, end, b in (
                (None, None, 1000),
                (None, None, 7),
                (123, 45_678, 10),
                (5_000, 5_020, 1000),
                (9_999, 30_001, 500),
                (59_990, None, 1000),
                (0, 0, 3),
            ):
                got = series_by_index(conn, P, "train", "loss", start, end, b)
                lo = 0 if start is None else start
                hi = 59_999 if end is None else end
                assert got["count"] == hi - lo + 1 and got["total"] == 60_000 and got["last_index"] == 59_999
                pts = got["points"]
                if got["mode"] == "raw":
                    assert pts["x"] == list(range(lo, hi + 1))
                    for x, y in zip(pts["x"], pts["y"]):
                        assert _same(y, _number(rows[x]["data"].get("loss"))), (x, y)
                    continue
                assert len(pts["x"]) <= b and pts["x"][-1] <= hi
                prev = lo - 1
                for x, last, mn, mx, n in zip(pts["x"], pts["last"], pts["min"], pts["max"], pts["n"]):
                    bn, bmin, bmax, blast = _brute(rows, prev + 1, x)
                    assert n == bn and _same(mn, bmin) and _same(mx, bmax) and _same(last, blast), (start, end, b, x)
                    prev = x
                assert _brute(rows, prev + 1, hi)[0] == 0  # nothing with a number after the last bucket
            assert series_by_index(conn, P, "nothing", "loss", None, None, 10) is None
    finally:
        backend.close()
