"""Last activity: a RUNNING experiment that stopped writing without ending (``kill -9``, a machine
that died) is shown as stale, its stored status unchanged, and is healthy again once it writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ml_dash._readmodel._entry import STALE_AFTER
from ml_dash.server import create_token, run_in_thread

from ..conftest import wait_for
from ..server._client import get, ingest

A = "alice/proj/quiet"  # stops writing
B = "alice/proj/busy"

IDLE = 12 * 60  # seconds A has been quiet for


def _start(prefix: str, session: str, url: str, token: str) -> None:
    events = [
        {"seq": 0, "kind": "experiment", "ts": time.time(), "description": prefix},
        {"seq": 1, "kind": "status", "ts": time.time(), "status": "RUNNING"},
        {"seq": 2, "kind": "metric", "ts": time.time(), "name": "train", "data": {"loss": 1.0}},
        {"seq": 3, "kind": "log", "ts": time.time(), "level": "info", "message": "hello"},
    ]
    assert ingest(url, token, session, prefix, events).json["rejected"] == []


def _age(root: Path, settings, prefix: str, when_ns: int) -> None:
    """Make ``prefix`` look as if its last write was at ``when_ns``: its files' and folders' mtimes
    (the embedded store), the time its last batch was stored (PostgreSQL)."""
    if settings is None:
        base = root.joinpath(*prefix.split("/"))
        for dirpath, _dirs, files in os.walk(base, topdown=False):
            for f in files:
                os.utime(os.path.join(dirpath, f), ns=(when_ns, when_ns), follow_symlinks=False)
            os.utime(dirpath, ns=(when_ns, when_ns))
        return
    import psycopg

    with psycopg.connect(settings.store) as conn:
        assert (
            conn.execute("UPDATE experiments SET updated_at = %s WHERE prefix = %s", (when_ns / 1e9, prefix)).rowcount
            == 1
        )


def _rows(url: str, token: str) -> dict:
    return {r["prefix"]: r for r in get(url, token, "table", sort="prefix").json["rows"]}


def test_a_quiet_running_run_is_stale_until_it_writes_again(tmp_path, store_settings):
    root = tmp_path / "root"
    token = create_token(root, "alice", settings=store_settings)
    with run_in_thread(root, settings=store_settings) as h:
        before = time.time()
        _start(A, "sessQUIETA01", h.url, token)
        _start(B, "sessBUSYB001", h.url, token)
        after = time.time()
        quiet_ns = time.time_ns() - IDLE * 1_000_000_000
        _age(root, store_settings, A, quiet_ns)
        quiet = quiet_ns / 1e9

        # the table (the catalogue sees the new mtimes on its next refresh: polled, not slept for)
        wait_for(
            lambda: abs((_rows(h.url, token)[A]["lastActivity"] or 0) - quiet) < 1e-3,
            what="the table's last activity of the quiet run",
        )
        rows = _rows(h.url, token)
        assert rows[A]["status"] == "RUNNING" and rows[A]["stale"] is True
        assert before - 2 <= rows[B]["lastActivity"] <= after + 2
        assert rows[B]["status"] == "RUNNING" and rows[B]["stale"] is False
        assert IDLE > STALE_AFTER
        # sorted by it: the quiet one first
        order = [r["prefix"] for r in get(h.url, token, "table", sort="lastActivity").json["rows"]]
        assert order == [A, B]

        # the summary says the same
        s = get(h.url, token, "summary", prefix=A).json
        assert abs(s["lastActivity"] - quiet) < 1e-3 and s["stale"] is True and s["status"] == "RUNNING"
        s = get(h.url, token, "summary", prefix=B).json
        assert before - 2 <= s["lastActivity"] <= after + 2 and s["stale"] is False

        # a write makes the run healthy again
        resumed = time.time()
        assert (
            ingest(
                h.url,
                token,
                "sessQUIETA01",
                A,
                [{"seq": 4, "kind": "metric", "ts": resumed, "name": "train", "data": {"loss": 0.5}}],
            ).json["rejected"]
            == []
        )
        wait_for(lambda: _rows(h.url, token)[A]["stale"] is False, what="the resumed run healthy again")
        assert _rows(h.url, token)[A]["lastActivity"] >= resumed - 2
        assert get(h.url, token, "summary", prefix=A).json["stale"] is False
