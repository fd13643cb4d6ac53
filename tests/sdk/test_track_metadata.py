"""A track topic's metadata.json counts every entry of its data.jsonl, though it is rewritten at most
once per interval: after a kill -9 the next writer counts what the last rewrite missed, and a
document another writer (upstream 0.11) updated since is taken as it stands."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ml_dash import Experiment
from ml_dash._names import parse_prefix
from ml_dash._store import ExperimentReader
from ml_dash._store._writer import ExperimentWriter

P = "alice/proj/tracks"
TOPIC = "robot/pos"


def _meta(root) -> dict:
    return json.loads((root / "alice/proj/tracks/tracks/robot_pos/metadata.json").read_text())


def _append(root, rows, interval=0.0) -> None:
    w = ExperimentWriter(root, parse_prefix(P), metadata_interval=interval)
    with w.lock():
        w.append_track(TOPIC, rows, time.time())
        w.close()


def test_entries_the_last_rewrite_missed_are_counted_after_kill_9(tmp_path):
    child = textwrap.dedent(
        f"""
        import os, signal, time
        from ml_dash._names import parse_prefix
        from ml_dash._store._writer import ExperimentWriter
        w = ExperimentWriter({str(tmp_path)!r}, parse_prefix({P!r}), metadata_interval=3600)
        for rows in (
            [{{"x": float(i), "_ts": float(i)}} for i in range(3)],  # the document is written now
            [{{"x": 1.0, "y": 2.0, "_ts": 10.0 + i}} for i in range(4)],  # ... and not again within the hour
            [{{"z": 1, "_ts": 20.0}}],
        ):
            with w.lock():
                w.append_track({TOPIC!r}, rows, time.time())
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _meta(tmp_path)["totalEntries"] == 3  # what the killed writer left: its first batch only
    with open(tmp_path / "alice/proj/tracks/tracks/robot_pos/data.jsonl", "ab") as fh:
        fh.write(b'{"timestamp":25.0,"x"')  # and a torn line, as a crash mid-write leaves one

    _append(tmp_path, [{"w": 1, "_ts": 30.0}])

    meta = _meta(tmp_path)
    entries = ExperimentReader(tmp_path, P).track_entries(TOPIC)
    assert [e["timestamp"] for e in entries] == [0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 13.0, 20.0, 30.0]
    assert meta["totalEntries"] == len(entries) == 9
    assert meta["columns"] == ["w", "x", "y", "z"]
    assert (meta["firstTimestamp"], meta["lastTimestamp"]) == (0.0, 30.0)


def test_a_run_writes_the_document_at_flush_and_close(dash_root):
    with Experiment(prefix=P, dash_root=str(dash_root)).run as exp:
        track = exp.tracks(TOPIC)
        for i in range(5000):
            track.append(x=float(i))
        exp.flush()
        assert _meta(dash_root)["totalEntries"] == 5000
        track.append(y=1.0)
    meta = _meta(dash_root)
    assert meta["totalEntries"] == 5001 == len(ExperimentReader(dash_root, P).track_entries(TOPIC))
    assert meta["columns"] == ["x", "y"]


UPSTREAM = os.environ.get("ML_DASH_UPSTREAM_PYTHON")


@pytest.mark.skipif(not UPSTREAM, reason="set ML_DASH_UPSTREAM_PYTHON to a python with ml-dash 0.11")
def test_a_document_upstream_updated_since_is_not_counted_twice(tmp_path):
    _append(tmp_path, [{"x": float(i), "_ts": float(i)} for i in range(3)])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_") and k != "PYTHONPATH"}
    env["ML_DASH_NO_VERSION_CHECK"] = "1"
    upstream = textwrap.dedent(
        f"""
        from pathlib import Path
        from ml_dash.storage import LocalStorage
        LocalStorage(Path({str(tmp_path)!r})).append_batch_to_track(
            "alice", "proj", {P!r}, {TOPIC!r}, [{{"timestamp": 5.0 + i, "u": i}} for i in range(2)]
        )
        """
    )
    proc = subprocess.run(
        [UPSTREAM, "-c", upstream], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert _meta(tmp_path)["totalEntries"] == 5  # upstream counted its own two

    _append(tmp_path, [{"x": 9.0, "_ts": 9.0}])

    meta = _meta(tmp_path)
    assert meta["totalEntries"] == 6 == len(ExperimentReader(tmp_path, P).track_entries(TOPIC))
    assert meta["columns"] == ["u", "x"] and meta["lastTimestamp"] == 9.0
