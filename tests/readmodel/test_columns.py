"""The column cache follows a growing file by byte offset: never a rescan, torn lines wait,
duplicates keep the first row, a file cut back or replaced is read again, the disk cache survives
a restart and a crash between its writes."""

from __future__ import annotations

import os
from typing import Optional

import orjson
import pytest

from ml_dash._readmodel import LayoutReadModel
from ml_dash._readmodel._columns import CHUNK, MetricColumns

from . import _brute as B

P = "alice/proj/run"


def _line(i: int, **data) -> bytes:
    return orjson.dumps({"index": i, "data": data, "createdAt": "2026-01-01T00:00:00.000000Z"}) + b"\n"


@pytest.fixture(params=["memory", "disk"])
def cache(request, tmp_path):
    return tmp_path / "cache" if request.param == "disk" else None


def _loss(cols: MetricColumns, start: int = 0, stop: Optional[int] = None) -> list:
    return cols.values("loss", start, cols.rows if stop is None else stop).tolist()


def test_growth_is_read_from_the_offset_never_again_from_the_start(tmp_path, cache):
    f = tmp_path / "data.jsonl"
    f.write_bytes(b"".join(_line(i, loss=float(i)) for i in range(1000)))
    cols = MetricColumns(f, cache)
    assert cols.refresh() == 1000 and _loss(cols, 0, 3) == [0.0, 1.0, 2.0]
    # Change a row that was already read, in place (same length): a rescan would see it.
    raw = f.read_bytes()
    changed = raw.replace(b'"loss":1.0}', b'"loss":9.0}', 1)
    assert changed != raw and len(changed) == len(raw)
    f.write_bytes(changed)
    with open(f, "ab") as fh:
        fh.write(b"".join(_line(i, loss=float(i)) for i in range(1000, 1500)))
    assert cols.refresh() == 500
    assert cols.rows == 1500 and _loss(cols, 0, 3) == [0.0, 1.0, 2.0] and _loss(cols, 1497) == [1497.0, 1498.0, 1499.0]
    assert cols.refresh() == 0


def test_a_torn_last_line_waits_until_it_is_complete(tmp_path, cache):
    f = tmp_path / "data.jsonl"
    whole = _line(2, loss=2.5)
    f.write_bytes(_line(0, loss=0.5) + _line(1, loss=1.5) + whole[:17])
    cols = MetricColumns(f, cache)
    assert cols.refresh() == 2 and _loss(cols) == [0.5, 1.5]
    assert cols.refresh() == 0 and cols.rows == 2
    with open(f, "ab") as fh:
        fh.write(whole[17:])
    assert cols.refresh() == 1 and _loss(cols) == [0.5, 1.5, 2.5] and cols.last_index == 2
    # a line torn by a crash, then ended by the next writer's newline: skipped for good
    with open(f, "ab") as fh:
        fh.write(_line(3, loss=3.5)[:10] + b"\n" + _line(3, loss=3.25))
    assert cols.refresh() == 1 and _loss(cols) == [0.5, 1.5, 2.5, 3.25]


def test_duplicates_keep_the_first_row_and_corrupt_lines_are_skipped(tmp_path, cache):
    f = tmp_path / "data.jsonl"
    f.write_bytes(
        _line(0, loss=1.0)
        + _line(1, loss=2.0)
        + _line(1, loss=99.0)
        + b"{not json\n"
        + b'{"index": 2, "data": {"loss": NaN}, "createdAt": null}\n'
        + _line(0, loss=98.0)
        + b'{"index": "3", "data": {"loss": 4.0}}\n'
        + b"\n"
        + _line(4, loss=5.0)
    )
    cols = MetricColumns(f, cache)
    cols.refresh()
    loss = _loss(cols)
    assert cols.index(0, cols.rows).tolist() == [0, 1, 2, 3, 4]
    assert loss[:2] == [1.0, 2.0] and loss[2] != loss[2] and loss[3:] == [4.0, 5.0]


def test_a_file_cut_back_or_replaced_is_read_again(tmp_path, cache):
    f = tmp_path / "data.jsonl"
    f.write_bytes(b"".join(_line(i, loss=float(i)) for i in range(600)))
    cols = MetricColumns(f, cache)
    cols.refresh()
    size_590 = len(b"".join(_line(i, loss=float(i)) for i in range(590)))
    # the server rolls back an unacknowledged batch, then stores another one in its place
    os.truncate(f, size_590)
    with open(f, "ab") as fh:
        fh.write(b"".join(_line(i, loss=-float(i)) for i in range(590, 700)))
    cols.refresh()
    assert cols.rows == 700 and _loss(cols, 589, 592) == [589.0, -590.0, -591.0]
    # cut back below what was read, nothing appended yet
    os.truncate(f, size_590)
    cols.refresh()
    assert cols.rows == 590 and cols.last_index == 589
    # replaced by another file (a new inode)
    tmp = tmp_path / "new.jsonl"
    tmp.write_bytes(_line(0, loss=42.0))
    os.replace(tmp, f)
    cols.refresh()
    assert cols.rows == 1 and _loss(cols) == [42.0]
    f.unlink()
    cols.refresh()
    assert cols.rows == 0


def test_disk_cache_survives_a_restart_without_reading_the_file_again(tmp_path):
    root = tmp_path / "root"
    B.write_metric(root, P, "train", [{"loss": float(i), "step": i} for i in range(5 * CHUNK + 9)])
    model = LayoutReadModel(root, cache_dir=tmp_path / "cache")
    before = model.series(P, "train", "loss", buckets=3)
    f = root / P / "metrics" / "train" / "data.jsonl"
    raw = f.read_bytes()
    changed = raw.replace(b'"loss":1.0,', b'"loss":7.0,', 1)  # what a rescan would see
    assert changed != raw and len(changed) == len(raw)
    f.write_bytes(changed)
    again = LayoutReadModel(root, cache_dir=tmp_path / "cache")  # a restarted server
    assert again.series(P, "train", "loss", buckets=3) == before
    assert again.series(P, "train", "loss", end=2, buckets=10)["points"]["y"] == [0, 1, 2]


def test_disk_cache_cut_back_after_a_crash_between_its_writes(tmp_path):
    root = tmp_path / "root"
    B.write_metric(root, P, "train", [{"loss": float(i)} for i in range(3 * CHUNK + 5)])
    model = LayoutReadModel(root, cache_dir=tmp_path / "cache")
    want = model.series(P, "train", "loss", buckets=2)
    folder = next(p for p in (tmp_path / "cache").iterdir() if p.is_dir())
    # columns appended, then the process died before the meta said so
    for name in os.listdir(folder):
        if name.endswith(".bin"):
            with open(folder / name, "ab") as fh:
                fh.write(b"\x00" * (5 * 8 * 7))
    assert LayoutReadModel(root, cache_dir=tmp_path / "cache").series(P, "train", "loss", buckets=2) == want
    # a meta that cannot be read: the cache is rebuilt from the file
    (folder / "meta.json").write_text("{")
    assert LayoutReadModel(root, cache_dir=tmp_path / "cache").series(P, "train", "loss", buckets=2) == want


def test_a_field_that_appears_late_has_no_value_before(tmp_path, cache):
    f = tmp_path / "data.jsonl"
    f.write_bytes(b"".join(_line(i, loss=float(i)) for i in range(CHUNK + 3)))
    cols = MetricColumns(f, cache)
    cols.refresh()
    with open(f, "ab") as fh:
        fh.write(b"".join(_line(i, loss=float(i), acc=0.5) for i in range(CHUNK + 3, 3 * CHUNK)))
    cols.refresh()
    acc = cols.field("acc")
    assert acc.count == 2 * CHUNK - 3 and acc.numeric == 2 * CHUNK - 3
    assert cols.summaries("acc").tolist()[0][:2] == [0, 0] and cols.summaries("acc").tolist()[2][:2] == [CHUNK, CHUNK]
