"""The columnar JSONL encoder writes byte for byte what the per-row encoder writes."""

from __future__ import annotations

import json
import math

import pytest

from ml_dash._store._encode import ColumnRows, count_rows, encode_lines, encode_metric_parts, encode_metric_rows


def _both(parts, first=0):
    rows = []
    for p in parts:
        rows.extend(p.rows() if isinstance(p, ColumnRows) else [p])
    fast = b"".join(encode_metric_parts(parts, first, "2026-11-26T00:00:00.000000Z"))
    slow = b"".join(encode_metric_rows(rows, first, "2026-11-26T00:00:00.000000Z"))
    return fast, slow


@pytest.mark.parametrize(
    "columns",
    [
        {"loss": [0.5, 0.25, 1e-300], "step": [1, 2, 3], "ok": [True, False, True]},
        {"s": ["a,b", "c", "},{"]},  # commas inside strings: the split is not exact
        {"v": [None, 1.0, 2.0]},  # null: could hide a NaN, so the row path decides
        {"v": [math.nan, math.inf, -math.inf]},  # non-finite floats become strings
        {"n": [[1, 2], {"a": 1}, []]},  # nested values
        {"big": [2**70, 1, 2]},  # beyond 64 bits: orjson refuses, the row path copes
        {},  # only _ts
        {'ключ "q"': [1, 2, 3]},  # keys that need escaping
    ],
)
def test_blocks_encode_like_rows(columns):
    block = ColumnRows(list(columns), list(columns.values()), [1.5, 2.5, 3.5])
    fast, slow = _both([{"x": 1, "_ts": 0.5}, block, {"y": 2, "_ts": 4.5}], first=10)
    assert fast == slow
    lines = [json.loads(row) for row in fast.splitlines()]
    assert [row["index"] for row in lines] == [10, 11, 12, 13, 14]
    assert [row["data"]["_ts"] for row in lines] == [0.5, 1.5, 2.5, 3.5, 4.5]


def test_large_block_is_chunked_and_counted():
    n = 10_000
    block = ColumnRows(["loss"], [[i / 7 for i in range(n)]], [float(i) for i in range(n)])
    fast, slow = _both([block])
    assert fast == slow and fast.count(b"\n") == n
    assert count_rows([block, {"a": 1, "_ts": 1.0}, block.sliced(5, 10)]) == n + 1 + 5


@pytest.mark.parametrize("n", [1, 3, 4096, 4097])  # one row, a few, exactly a chunk, a chunk and one
def test_rows_encode_as_one_record_per_line(n):
    # With 3 and 4,097 rows the last row's string holds the split mark: its chunk takes the row
    # path, the 4,096 rows before it (in the second case) the fast one.
    tricky = n in (3, 4097)
    rows = [
        {"loss": 1 / (i + 1), "step": i, "s": "},{" if tricky and i == n - 1 else "a", "_ts": i + 0.5} for i in range(n)
    ]
    rows[0] = {}  # an empty row still gets its own line
    created = "2026-11-26T00:00:00.000000Z"
    blob = b"".join(encode_metric_rows(rows, 7, created))
    expected = b"".join(
        json.dumps({"index": i, "data": r, "createdAt": created}, separators=(",", ":"), ensure_ascii=False).encode()
        + b"\n"
        for i, r in enumerate(rows, 7)
    )
    assert blob == expected


def test_records_encode_one_per_line_whatever_they_hold():
    records = [
        {"level": "info", "message": "plain"},
        {},
        {"message": "holds },{ and }\n{"},  # the separator inside a string: not split there
        {"metadata": {"nested": {"deep": 1}}, "message": "ok"},
        {"objects": [{"a": 1}, {"b": 2}]},  # adjacent objects in a list: not split there either
        {"v": math.nan, "w": [math.inf]},  # non-finite: named, the record kept
        {"big": 2**70},  # beyond 64 bits: orjson refuses it, the record is still written
        {"ключ": "значение"},
    ]
    expected_values = [*records[:5], {"v": "NaN", "w": ["Infinity"]}, {"big": str(2**70)}, records[7]]
    for sample in (records, records[:2], records[-1:], [r for r in records if "v" not in r and "big" not in r]):
        blob = b"".join(encode_lines(sample))
        lines = blob.split(b"\n")
        assert lines[-1] == b"" and len(lines) == len(sample) + 1
        want = [expected_values[records.index(r)] for r in sample]
        assert [json.loads(line) for line in lines[:-1]] == want
    many = [{"i": i, "s": "x" * (i % 7)} for i in range(2500)]  # more than one chunk
    assert [json.loads(line) for line in b"".join(encode_lines(many)).splitlines()] == many
