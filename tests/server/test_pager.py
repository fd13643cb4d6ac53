"""The JSONL pager behind the server's metric and log pages (ml_dash/server/reads.py on
ml_dash/server/pager.py): pages equal reading the file whole, growth between asks is seen, a
line still being written waits until it is whole, and a file out of key order, or replaced, is
handled as such."""

from __future__ import annotations

import os

import orjson

from ml_dash.server.reads import JsonlPager

N = 2600  # more than two marks (one per 1,024 records)


def _line(i: int, **extra: object) -> bytes:
    return orjson.dumps({"index": i, "data": {"x": i * 0.5, **extra}, "createdAt": "2026-12-03T00:00:00Z"}) + b"\n"


def _all(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_pages_equal_the_whole_file_and_follow_its_growth(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join(_line(i) for i in range(N)) + b"\n")  # a blank line is skipped
    pager = JsonlPager()
    whole = _all(path)
    for start, limit in [(0, 10), (1023, 2), (1024, 1), (2047, 3), (N - 5, 100), (N, 5), (N + 9, 5)]:
        rows, nxt = pager.page(path, "index", start, limit)
        assert rows == whole[start : start + limit], (start, limit)
        assert nxt == (start + limit if start + limit < N else None)

    with open(path, "ab") as fh:  # a line being written: not read until it is whole
        fh.write(_line(N) + _line(N + 1)[:10])
    assert pager.page(path, "index", N - 1, 10) == (whole[N - 1 :] + [orjson.loads(_line(N))], None)
    with open(path, "ab") as fh:
        fh.write(_line(N + 1)[10:] + b'{"index": \n' + _line(N + 2))  # then a corrupt line: skipped
    rows, _ = pager.page(path, "index", N, 10)
    assert [r["index"] for r in rows] == [N, N + 1, N + 2]


def test_a_key_out_of_order_makes_the_pager_decline(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join(_line(i) for i in range(3000)))
    pager = JsonlPager()
    assert [r["index"] for r in pager.page(path, "index", 2999, 5)[0]] == [2999]
    with open(path, "ab") as fh:  # an upstream tree may repeat an index: the caller reads it whole
        fh.write(_line(2999, dup=True))
    assert pager.page(path, "index", 0, 1) is None
    assert pager.page(path, "index", 0, 1) is None  # and it stays declined


def test_a_replaced_or_shortened_file_is_scanned_again(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join(_line(i) for i in range(2000)))
    pager = JsonlPager()
    assert pager.page(path, "index", 1999, 5)[0][0]["index"] == 1999
    fresh = tmp_path / "fresh.jsonl"  # another file takes its name (a rollback rewrote it)
    fresh.write_bytes(b"".join(_line(i, v=2) for i in range(0, 4000, 2)))
    os.replace(fresh, path)
    rows, nxt = pager.page(path, "index", 1999, 2)
    assert [(r["index"], r["data"]["v"]) for r in rows] == [(2000, 2), (2002, 2)] and nxt == 2003
    with open(path, "r+b") as fh:  # cut shorter in place (same inode)
        fh.truncate(len(b"".join(_line(i, v=2) for i in range(0, 100, 2))))
    assert [r["index"] for r in pager.page(path, "index", 90, 10)[0]] == [90, 92, 94, 96, 98]
    with open(path, "ab") as fh:  # grown again, still shorter than before: no offset of the old file holds
        fh.write(b"".join(_line(i, v=3) for i in range(2100, 2110)))
    assert [r["index"] for r in pager.page(path, "index", 2100, 3)[0]] == [2100, 2101, 2102]
    assert pager.page(tmp_path / "missing.jsonl", "index", 0, 10) == ([], None)
