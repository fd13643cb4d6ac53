"""Brute-force answers over the raw rows (read with the SDK's tolerant reader), to check the read
model against: every figure is computed here from scratch, row by row."""

from __future__ import annotations

import bisect
import math
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ml_dash._names import parse_prefix
from ml_dash._store import ExperimentReader, ExperimentWriter


def number(v: Any) -> Optional[float]:
    """The read model's rule for what counts as a number (after the reader decoded "NaN" & co)."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and (v.isdigit() or (v[:1] == "-" and v[1:].isdigit())):
        return float(v)
    return None


def rows(root: Path, prefix: str, name: Optional[str]) -> List[Tuple[int, Dict[str, Any]]]:
    return [(r["index"], r["data"]) for r in ExperimentReader(root, prefix).metric_rows(name)]


def same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def stats(values: Sequence[float]) -> Dict[str, Any]:
    finite = [v for v in values if not math.isnan(v)]
    return {
        "n": len(values),
        "last": values[-1] if values else None,
        "min": min(finite) if finite else math.nan,
        "max": max(finite) if finite else math.nan,
    }


def check_buckets(answer: Dict[str, Any], in_range: List[Tuple[int, Dict[str, Any]]], field: str, x: str) -> None:
    """Each row with a number falls in the first bucket whose x is >= its x (buckets are contiguous
    and a bucket's x is its last row's); recompute every bucket from those rows and compare."""
    pts = answer["points"]
    xs = pts["x"]
    assert xs == sorted(xs) and len(set(xs)) == len(xs), "bucket x must increase"
    groups: Dict[int, List[float]] = {}
    for idx, data in in_range:
        y = number(data.get(field))
        if y is None:
            continue
        xv = idx if x == "index" else data[x]
        b = bisect.bisect_left(xs, xv)
        assert b < len(xs), f"row {idx} lies after the last bucket"
        groups.setdefault(b, []).append(y)
    assert sorted(groups) == list(range(len(xs))), "every bucket holds rows with a number"
    for b in range(len(xs)):
        want = stats(groups[b])
        got = {k: pts[k][b] for k in ("n", "last", "min", "max")}
        assert all(same(float(got[k]), float(want[k])) for k in got), (b, got, want)


def check_raw(answer: Dict[str, Any], in_range: List[Tuple[int, Dict[str, Any]]], field: str, x: str) -> None:
    pts = answer["points"]
    want_x, want_y = [], []
    for idx, data in in_range:
        xv = idx if x == "index" else number(data.get(x))
        if xv is None or (isinstance(xv, float) and math.isnan(xv)):
            continue
        want_x.append(xv)
        want_y.append(number(data.get(field)))
    assert pts["x"] == want_x
    assert len(pts["y"]) == len(want_y) and all(
        (a is None and b is None) or (a is not None and b is not None and same(float(a), b))
        for a, b in zip(pts["y"], want_y)
    )


def write_metric(root: Path, prefix: str, name: Optional[str], data: List[Dict[str, Any]], batch: int = 997) -> None:
    """Append rows with the SDK's own writer, in batches (as a running process would)."""
    w = ExperimentWriter(root, parse_prefix(prefix))
    try:
        with w.lock():
            if not w.paths.experiment_json.exists():
                w.upsert_experiment({}, 1700000000.0)
        for i in range(0, len(data), batch):
            with w.lock():
                w.append_metric(name, [dict(r) for r in data[i : i + batch]], 1700000000.0)
    finally:
        w.close()


def mixed_rows(n: int, seed: int = 1, first_step: int = 0) -> List[Dict[str, Any]]:
    """Rows with every kind of value: floats, ints, NaN, infinities, nulls, strings, lists, absent
    fields, bools, spikes; ``step`` and ``_ts`` strictly increase."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        k = first_step + i
        r: Dict[str, Any] = {"step": 2 * k + 1, "_ts": 1700000000.0 + k * 0.25}
        u = rnd.random()
        if u < 0.02:
            r["loss"] = math.nan
        elif u < 0.03:
            r["loss"] = math.inf if rnd.random() < 0.5 else -math.inf
        elif u < 0.05:
            r["loss"] = None
        elif u < 0.06:
            r["loss"] = "diverged"
        elif u < 0.07:
            pass  # no loss in this row
        elif u < 0.075:
            r["loss"] = [1, 2]
        elif u < 0.08:
            r["loss"] = rnd.randint(-5, 5)
        elif u < 0.082:
            r["loss"] = 1e9  # a spike
        else:
            r["loss"] = rnd.gauss(1.0 / (k + 1), 0.01)
        if rnd.random() < 0.3:
            r["acc"] = rnd.random()
        if rnd.random() < 0.01:
            r["flag"] = rnd.random() < 0.5
        out.append(r)
    return out
