"""The data path's declared contract (ml_dash/_events.py, ml_dash/_sink.py): every event kind is
handled by both sinks, both sinks and readers implement their whole protocol, and the server
checks the SDK's own vocabularies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ml_dash import Config, _events
from ml_dash._events import (
    SINK_EVENTS,
    ExperimentEvent,
    FileDeleteEvent,
    FileEvent,
    FileUpdateEvent,
    FlushMarker,
    LogEvent,
    ParamsEvent,
    SinkWriteError,
    StatusEvent,
)
from ml_dash._local_sink import LocalReader, LocalSink
from ml_dash._names import parse_prefix
from ml_dash._sink import Reader, Sink

from ..conftest import run_script


def _one_of_each(tmp_path: Path) -> list:
    entry = {
        "id": "123",
        "experimentId": "a/b/c",
        "path": "/models",
        "filename": "w.bin",
        "description": None,
        "tags": [],
        "bindrs": [],
        "contentType": "application/octet-stream",
        "sizeBytes": 1,
        "checksum": "0" * 64,
        "metadata": None,
        "uploadedAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-01T00:00:00Z",
        "deletedAt": None,
    }
    return [
        ExperimentEvent(1.0, {"description": "d", "tags": ["t"], "bindrs": None, "metadata": None}),
        StatusEvent(1.0, "RUNNING"),
        ParamsEvent(2.0, {"lr": 0.1}),
        LogEvent(3.0, "warn", "hello", {"k": 1}),
        FileEvent(4.0, entry),
        FileEvent(4.1, {**entry, "id": "124", "filename": "old.bin"}),
        FileDeleteEvent(4.2, "124"),
        FileUpdateEvent(4.3, "123", {"description": "best"}),
        StatusEvent(5.0, "COMPLETED", "done"),
    ]


def test_the_test_covers_every_declared_kind(tmp_path):
    assert {type(e) for e in _one_of_each(tmp_path)} == set(SINK_EVENTS)


def test_events_are_slotted_tuples_read_by_name():
    e = LogEvent(1.0, "info", "m")
    assert isinstance(e, tuple) and e.metadata is None and e.__slots__ == ()
    with pytest.raises(AttributeError):
        e.extra = 1  # slotted: no per-event dict
    assert StatusEvent(1.0, "FAILED").reason is None
    assert FlushMarker(None) is not None and FlushMarker not in SINK_EVENTS


def test_local_sink_stores_every_event_kind(tmp_path):
    root = tmp_path / ".dash"
    sink = LocalSink(root, parse_prefix("a/b/c"))
    sink.prepare()
    sink.write(_one_of_each(tmp_path))
    sink.write_metrics("train", [{"loss": 0.5, "_ts": 6.0}])
    sink.close(0)
    r = sink.reader()
    exp = r.experiment()
    assert (exp["description"], exp["tags"], exp["status"], exp["status_reason"]) == ("d", ["t"], "COMPLETED", "done")
    assert r.params() == {"lr": 0.1}
    assert [(x["level"], x["message"], x.get("metadata")) for x in r.logs()] == [("warn", "hello", {"k": 1})]
    assert [f["filename"] for f in r.files("/models")] == ["w.bin"]  # old.bin is deleted (softly)
    assert [f["filename"] for f in r.files("/models", include_deleted=True)] == ["w.bin", "old.bin"]
    assert r.files("/models")[0]["description"] == "best"
    assert [row["data"]["loss"] for row in r.metric_rows("train")] == [0.5]
    sink.write_tracks("robot/pos", [{"x": 1, "_ts": 2.0}, {"y": 2, "_ts": 2.0}, {"x": 0, "_ts": 1.0}])
    assert r.track_entries("robot/pos") == [{"timestamp": 1.0, "x": 0}, {"timestamp": 2.0, "x": 1, "y": 2}]


def test_local_sink_stores_the_rest_of_a_batch_around_an_unknown_kind(tmp_path):
    class Stray(tuple):
        pass

    sink = LocalSink(tmp_path / ".dash", parse_prefix("a/b/c"))
    sink.prepare()
    with pytest.raises(SinkWriteError) as info:
        sink.write([LogEvent(1.0, "info", "before"), Stray(), LogEvent(2.0, "info", "after")])
    assert info.value.failed == 1 and "Stray" in str(info.value)
    assert [x["message"] for x in sink.reader().logs()] == ["before", "after"]


def test_remote_encoding_knows_every_event_kind(tmp_path):
    from ml_dash.agent._wire import BUILDERS, encode_items

    assert set(BUILDERS) == set(SINK_EVENTS)
    payloads, bad = encode_items(10, _one_of_each(tmp_path))
    assert bad == []
    wire = [json.loads(p) for p in payloads]
    assert [(w["seq"], w["kind"]) for w in wire] == [
        (10, "experiment"),
        (11, "status"),
        (12, "params"),
        (13, "log"),
        (14, "file"),
        (15, "file"),
        (16, "file_delete"),
        (17, "file_update"),
        (18, "status"),
    ]
    assert wire[3]["level"] == "warn" and wire[3]["metadata"] == {"k": 1} and wire[8]["reason"] == "done"
    assert wire[6]["id"] == "124" and wire[7] == {
        "seq": 17,
        "kind": "file_update",
        "ts": 4.3,
        "id": "123",
        "description": "best",
    }


def test_both_sinks_and_readers_implement_the_whole_protocol(tmp_path):
    from ml_dash._remote_read import RemoteReader
    from ml_dash.agent._sink import RemoteSink

    local = LocalSink(tmp_path / ".dash", parse_prefix("a/b/c"))
    remote = RemoteSink(Config(dash_url="http://127.0.0.1:9", spool_dir=str(tmp_path / "spool")), "a/b/c")
    from ml_dash._hybrid import HybridSink

    for sink in (local, remote, HybridSink(local, remote)):
        assert isinstance(sink, Sink), type(sink).__name__
    assert isinstance(LocalReader(tmp_path / ".dash", "a/b/c"), Reader)
    assert isinstance(RemoteReader("http://127.0.0.1:9", None, "a/b/c"), Reader)
    assert isinstance(remote.reader(), Reader) and isinstance(local.reader(), Reader)


def test_the_server_checks_the_sdks_vocabularies():
    from ml_dash.server import ingest

    assert ingest.LEVELS is _events.LEVELS and ingest.STATUSES is _events.STATUSES


def test_the_contract_costs_no_typing_at_import(tmp_path):
    proc = run_script(
        """
        import sys
        # Python 3.9's importlib.util imports typing, and site imports that for an editable
        # install: forget it, so that only an import by ml_dash brings it back.
        sys.modules.pop("typing", None)
        import ml_dash
        print(sorted(m for m in ("typing", "ml_dash._sink", "ml_dash._events") if m in sys.modules))
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["['ml_dash._events']"]
