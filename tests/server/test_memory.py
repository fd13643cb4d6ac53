"""Memory per request is bounded, whatever the JSON holds: measured on a real server process by its
own peak RSS (``VmHWM`` in /proc), reset before each request."""

from __future__ import annotations

import gzip
import threading
from pathlib import Path

import orjson
import pytest

from ml_dash.server import Limits
from ml_dash.server.batch import estimate

from ._client import get, ingest, metric_events, post

P = "alice/proj/memory"
MiB = 1 << 20
DECODED_CAP = Limits().max_decoded_bytes


def _status(pid: int, key: str) -> int:
    """A /proc/<pid>/status figure in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no {key} for process {pid}")


def _reset_peak(pid: int) -> None:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # the kernel's "reset the peak RSS"
    except OSError as exc:
        pytest.skip(f"cannot reset a process's peak RSS here: {exc}")


def _head(session: str) -> bytes:
    return orjson.dumps({"v": 1, "session": session, "prefix": P}) + b"\n"


def _event_line(seq: int, inner: bytes) -> bytes:
    return b'{"seq":%d,"kind":"metric","ts":1.0,"name":"m","data":{"x":%s}}' % (seq, inner)


def _nested_lists(session: str, extra: bytes = b"") -> bytes:
    """As many lists of lists as the server accepts in one batch: its estimate just under the limit."""
    inner = b"[" + b"[[[[]]]]," * 28000 + b"[]]"
    one = estimate(_event_line(0, inner) + b"\n")
    events = int(0.95 * Limits().max_parsed_bytes) // one - 1
    return _head(session) + b"\n".join(_event_line(i, inner) for i in range(events)) + b"\n" + extra


CASES = {
    # 61 KB of gzip, 60 MiB of "{}," once inflated: ~2 GB of dicts if parsed
    "empty objects": (
        lambda: _head("sessMEM001") + _event_line(0, b"[" + b"{}," * (20 * MiB) + b"{}]") + b"\n",
        413,
        "too_complex",
    ),
    # one string of 60 MiB with one wide character: 240 MiB as a Python string
    "a wide string": (
        lambda: (
            _head("sessMEM002")
            + b'{"seq":0,"kind":"log","level":"info","message":"'
            + b"a" * (60 * MiB)
            + "\U0001f600".encode()
            + b'"}\n'
        ),
        413,
        "too_complex",
    ),
    # 5,000 lines nested 1,000 deep
    "deep lines": (
        lambda: (
            _head("sessMEM003") + b"\n".join(_event_line(i, b"[" * 1000 + b"]" * 1000) for i in range(5000)) + b"\n"
        ),
        413,
        "too_complex",
    ),
    # just under the estimate: accepted and stored
    "nested lists": (lambda: _nested_lists("sessMEM004"), 200, None),
    # an ordinary big batch of per-row events
    "100k rows": (
        lambda: b"\n".join([_head("sessMEM005")] + [orjson.dumps(e) for e in metric_events(0, 100_000)]) + b"\n",
        200,
        None,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_peak_memory_of_one_request_stays_within_4x_the_decoded_cap(spawned, case):
    make, status, code = CASES[case]
    body = gzip.compress(make(), 6)
    assert len(body) < Limits().max_body_bytes
    url = spawned.start(fault_injection=False)
    pid = spawned.proc.pid
    assert ingest(url, spawned.token, "sessWARM01", P, metric_events(0, 1000)).status == 200
    _reset_peak(pid)
    before = _status(pid, "VmRSS")
    a = post(url, spawned.token, body, headers={"Content-Encoding": "gzip"}, timeout=120)
    grew = _status(pid, "VmHWM") - before
    assert a.status == status, a
    if code:
        assert a.json["error"]["code"] == code and a.json["limit"] == Limits().max_parsed_bytes
    assert grew <= 4 * DECODED_CAP // MiB, f"{case}: peak RSS grew by {grew} MiB"
    # still serving, and the failed request left nothing behind
    assert ingest(url, spawned.token, "sessAFTER1", P, metric_events(0, 3)).json["acked_seq"] == 2
    if status == 200:
        assert a.json["stored"] > 0


def test_a_server_under_default_limits_and_concurrency_stays_under_1_gb(spawned):
    """max_concurrent_writes (16) requests at once, each as heavy as the server accepts, and the
    same number of bombs: the whole server stays under 1 GB at its peak."""
    url = spawned.start(fault_injection=False)
    pid = spawned.proc.pid
    n = Limits().max_concurrent_writes
    heavy = [
        gzip.compress(_nested_lists(f"sessHEAVY{i:03d}", extra=_event_line(999, b"1") + b"\n"), 6) for i in range(n)
    ]  # a seq gap at the end: parsed in full, then refused (400), nothing to store
    bomb = gzip.compress(CASES["empty objects"][0](), 6)
    statuses = []

    def send(body):
        statuses.append(post(url, spawned.token, body, headers={"Content-Encoding": "gzip"}, timeout=300).status)

    threads = [threading.Thread(target=send, args=(b,)) for b in heavy]
    for t in threads:
        t.start()
    for _ in range(n):  # shed (503) or refused (413): either way the server keeps its memory
        code = post(url, spawned.token, bomb, headers={"Content-Encoding": "gzip"}).status
        assert code in (413, 503)
    for t in threads:
        t.join(300)
    assert sorted(set(statuses)) in ([400], [400, 503]) and statuses.count(400) >= 4, statuses
    peak = _status(pid, "VmHWM")
    assert peak < 1024, f"the server's peak RSS was {peak} MiB"
    assert get(url, spawned.token, "experiments").status == 200
