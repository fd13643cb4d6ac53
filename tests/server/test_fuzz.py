"""A seeded fuzz of the ingest route against a real server process: over a thousand batches built
from names that collide with the store's own files and with each other, names at and past the
255-byte limit, odd values, mutated bytes and broken encodings. No answer may be a 5xx, the server
must never stop, and what it acknowledged must survive a kill -9 and a restart."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import random
import re
import shutil
import tempfile
import time
import urllib.parse
from pathlib import Path

import orjson
import pytest

from ._client import auth, get, request
from .conftest import Spawned

SEED = 20261127
BATCHES = 1000

WIDE = "é" * 127 + "x"  # 255 bytes
NAMES = [
    "train",
    "x",
    "y",
    "x/data.jsonl",
    "y/metadata.json",
    "None",
    "data.jsonl",
    "metadata.json",
    "x/sub",
    "a/b/c",
    "n" * 255,
    "n" * 256,
    WIDE,
    WIDE + "y",
    ".hidden",
    "..",
    "a/../b",
    "",
    "/abs/x",
    "a//b",
    "a\x00b",
    "a\\b",
    "metrics",
    "logs",
    "files",
    "experiment.json",
    None,
]
PATHS = [
    "/",
    "/models",
    "/.files_metadata.json",
    "/a",
    "/a/x",
    "/a/x/y",
    "/x",
    "/" + "p" * 255,
    "/" + "p" * 256,
    "/..",
    "/a/../b",
    "",
    None,
    "/" + WIDE,
]
IDS = ["a", "x", "y", "1", "id-1", "q" * 64, "q" * 65, "bad id", "", "a/b", None, 7]
FILENAMES = [
    "x",
    "y",
    "z",
    "model.pth",
    "f" * 255,
    "f" * 256,
    WIDE,
    ".files_metadata.json",
    "data.jsonl",
    "a/b",
    "",
    ".",
    "..",
    None,
]
TOPICS = ["pos", "robot/pos", "robot_pos", "t" * 255, "", "a/../b", None]
BASE = "alice/proj/fuzz"
PREFIXES = [BASE, BASE + "/sub", "alice/proj/" + "s" * 255, "alice/" + WIDE + "/e"]
#: Prefixes the server refuses (400, or 403 for bob's): one batch in six.
BAD_PREFIXES = [
    BASE + "/experiment.json",
    BASE + "/parameters.json/x",
    BASE + "/logs",
    BASE + "/metrics",
    "alice/proj/" + "s" * 256,
    "alice/proj/x/../y",
    "alice/proj/.hidden",
    "bob/proj/fuzz",
]
ODD = [
    None,
    True,
    -1,
    0,
    1e308,
    "NaN",
    "x" * 300,
    [],
    {},
    [[[[]]]],
    {"a": {"b": {"c": 1}}},
    "\x00",
    "é",
    [1, "two", None],
]


class Fuzzer:
    def __init__(self, rnd: random.Random, blobs):
        self.rnd = rnd
        self.blobs = blobs  # [(checksum, size)]
        self.sessions = {}  # prefix -> [session, next seq]

    def pick(self, seq):
        return self.rnd.choice(seq)

    def value(self):
        r = self.rnd.random()
        if r < 0.6:
            return self.rnd.choice([self.rnd.random(), self.rnd.randint(-5, 5), "ok"])
        return self.pick(ODD)

    def data(self):
        return {self.pick(["a", "b", "_ts", "x" * 70, "c.d"]): self.value() for _ in range(self.rnd.randint(0, 4))}

    def event(self, seq):
        kind = self.pick(
            [
                "metric",
                "metric",
                "metrics",
                "log",
                "params",
                "file",
                "file",
                "experiment",
                "status",
                "gap",
                "track",
                "file_update",
                "file_delete",
                "nope",
                None,
            ]
        )
        ev = {"seq": seq, "kind": kind, "ts": self.pick([1700000000.0, None, -1, "x", 1e20, 1])}
        n = 1
        if kind == "metric":
            ev.update(name=self.pick(NAMES), data=self.data() if self.rnd.random() < 0.9 else self.value())
        elif kind == "metrics":
            n = self.rnd.randint(1, 4)
            cols = {
                self.pick(["v", "w", "_ts"]): [self.value() for _ in range(n)] for _ in range(self.rnd.randint(0, 2))
            }
            ev.update(n=n, name=self.pick(NAMES), ts=[1700000000.0 + i for i in range(n)], cols=cols)
        elif kind == "log":
            ev.update(
                level=self.pick(["info", "warn", "bogus", None, 3]),
                message=self.pick(["m", "", None, "x" * 500]),
                metadata=self.pick([None, {"k": 1}, [], "s"]),
            )
        elif kind == "params":
            ev.update(data=self.data() if self.rnd.random() < 0.9 else self.value())
        elif kind == "file":
            checksum, size = self.pick(self.blobs + [("0" * 64, 1), ("zz", 1)])
            ev.update(
                id=self.pick(IDS),
                path=self.pick(PATHS),
                filename=self.pick(FILENAMES),
                checksum=checksum,
                size=self.pick([size, size, size + 1, -1, "1"]),
                tags=self.pick([None, ["t"], [1], "t"]),
            )
        elif kind == "experiment":
            ev.update(
                description=self.pick([None, "d", 1]),
                tags=self.pick([None, ["a"], [None]]),
                metadata=self.pick([None, {"m": 1}, 2]),
            )
        elif kind == "status":
            ev.update(
                status=self.pick(["RUNNING", "COMPLETED", "FAILED", "nope", None]), reason=self.pick([None, "r", 5])
            )
        elif kind == "track":
            ev.update(topic=self.pick(TOPICS), timestamp=self.pick([1.0, 2.0, "x", None]), data=self.data())
        elif kind in ("file_update", "file_delete"):
            ev.update(id=self.pick(IDS), description=self.pick([None, "new"]))
        return ev, n

    def batch(self):
        prefix = self.pick(BAD_PREFIXES if self.rnd.random() < 1 / 6 else PREFIXES)
        if prefix not in self.sessions:
            self.sessions[prefix] = [f"fz{len(self.sessions):02d}{self.rnd.getrandbits(32):08x}", 0]
        session, seq = self.sessions[prefix]
        r = self.rnd.random()
        if r < 0.05:
            seq = max(0, seq - self.rnd.randint(1, 5))  # a resend of what may be stored
        elif r < 0.08:
            seq += self.rnd.randint(1, 3)  # a gap
        lines = [orjson.dumps({"v": 1, "session": session, "prefix": prefix})]
        for _ in range(self.rnd.randint(0, 12)):
            ev, n = self.event(seq)
            lines.append(orjson.dumps(ev))
            seq += n
        return prefix, session, b"\n".join(lines) + b"\n"

    def mutate(self, body: bytes) -> bytes:
        op = self.rnd.randrange(4)
        body = bytearray(body)
        if op == 0:
            for _ in range(self.rnd.randint(1, 4)):
                body[self.rnd.randrange(len(body))] = self.rnd.randrange(256)
        elif op == 1:
            body = body[: self.rnd.randrange(len(body))]
        elif op == 2:
            spans = [m.span() for m in re.finditer(rb'[0-9.]+|"[^"]*"', bytes(body))]
            a, b = self.pick(spans)
            body[a:b] = self.pick(
                [
                    b"null",
                    b"true",
                    b"[]",
                    b"{}",
                    b'"\\u0000"',
                    b"1e400",
                    b"18446744073709551616",
                    b'"' + b"n" * 300 + b'"',
                    b"[" * 300 + b"]" * 300,
                    b'"x/data.jsonl"',
                    b'"experiment.json"',
                ]
            )
        else:
            body += self.pick([b"\n\n", b"\r\n", b"\n{}", b"\n[1]", b"\n" + b"{" * 2000])
        return bytes(body)


class Client:
    """One keep-alive connection to the server (a new one after the server closes it)."""

    def __init__(self, url, token):
        self.url = urllib.parse.urlsplit(url)
        self.token = token
        self.conn = None

    def post(self, body, encoding=None):
        headers = {"Content-Type": "application/x-ndjson", "Authorization": f"Bearer {self.token}"}
        if encoding:
            headers["Content-Encoding"] = encoding
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.url.hostname, self.url.port, timeout=60)
            try:
                self.conn.request("POST", "/api/v1/ingest", body=body, headers=headers)
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")


@pytest.fixture
def fuzz_server(tmp_path):
    """A server whose root is in memory (tmpfs) when the machine has one: fsync costs nothing there,
    and this test is about answers, not about the disk (test_durability is)."""
    shm = Path("/dev/shm")
    base = (
        Path(tempfile.mkdtemp(prefix="ml-dash-fuzz-", dir=shm))
        if shm.is_dir() and os.access(shm, os.W_OK)
        else tmp_path
    )
    s = Spawned(base / "root")
    try:
        yield s
    finally:
        for p in s.procs:
            if p.poll() is None:
                p.kill()
            p.wait(30)
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def test_fuzzed_batches_never_get_a_5xx_and_never_stop_the_server(fuzz_server):
    spawned = fuzz_server
    rnd = random.Random(SEED)
    url = spawned.start(fault_injection=False)
    tok = spawned.token
    blobs = []
    for data in (b"a", b"some file bytes"):
        checksum = hashlib.sha256(data).hexdigest()
        assert request(url, "PUT", f"/api/v1/blobs/{checksum}", data, auth(tok)).status == 201
        blobs.append((checksum, len(data)))
    fuzz = Fuzzer(rnd, blobs)
    client = Client(url, tok)
    acked = {}  # session -> highest acked_seq answered
    statuses = {}
    t0 = time.monotonic()
    for i in range(BATCHES):
        prefix, session, body = fuzz.batch()
        encoding = None
        if rnd.random() < 0.3:
            body = fuzz.mutate(body)
        r = rnd.random()
        if r < 0.1:
            body, encoding = gzip.compress(body, 1), "gzip"
        elif r < 0.12:
            body, encoding = gzip.compress(body)[: -rnd.randint(1, 8)], "gzip"  # truncated
        elif r < 0.13:
            encoding = "zstd"  # says zstd, is not
        status, raw = client.post(body, encoding)
        statuses[status] = statuses.get(status, 0) + 1
        assert status < 500, (i, status, raw[:500], body[:500])
        answer = orjson.loads(raw) if raw.startswith(b"{") else {}
        if status in (200, 409) and "acked_seq" in answer and session in {s for s, _ in fuzz.sessions.values()}:
            acked[session] = max(acked.get(session, -1), answer["acked_seq"])
            fuzz.sessions[prefix][1] = acked[session] + 1
        if i == BATCHES // 2:  # a real crash in the middle: what was acknowledged must stay
            spawned.proc.kill()
            spawned.proc.wait(10)
            url = spawned.start(fault_injection=False)
            client = Client(url, tok)
        assert spawned.proc.poll() is None, f"the server stopped after batch {i}"
    elapsed = time.monotonic() - t0
    assert statuses.get(200, 0) > BATCHES // 4 and statuses.get(400, 0) > 50, statuses

    def check(url):
        for prefix, (session, _) in fuzz.sessions.items():
            if session not in acked:
                continue
            head = orjson.dumps({"v": 1, "session": session, "prefix": prefix}) + b"\n"
            a = request(url, "POST", "/api/v1/ingest", head, {**auth(tok), "Content-Type": "application/x-ndjson"})
            assert a.status == 200 and a.json["acked_seq"] == acked[session], (prefix, a)
            for route, query in (
                ("experiment", {}),
                ("params", {}),
                ("logs", {}),
                ("metrics", {}),
                ("files", {}),
                ("tracks", {}),
                ("summary", {}),
            ):
                assert get(url, tok, route, prefix=prefix, **query).status < 500, (route, prefix)
            names = get(url, tok, "metrics", prefix=prefix).json.get("metrics", [])
            for name in names:
                assert get(url, tok, "metric", prefix=prefix, name=name).status == 200
            for f in get(url, tok, "files", prefix=prefix).json.get("files", []):
                got = request(
                    url,
                    "GET",
                    "/api/v1/file?" + urllib.parse.urlencode({"prefix": prefix, "id": f["id"]}),
                    headers=auth(tok),
                )
                assert got.status == 200 and hashlib.sha256(got.raw).hexdigest() == f["checksum"]
        assert get(url, tok, "table").status < 500

    check(url)
    assert spawned.stop() == 0
    check(spawned.start(fault_injection=False))
    print(
        f"fuzz: {BATCHES} batches in {elapsed:.1f} s, statuses {dict(sorted(statuses.items()))}, "
        f"{sum(acked.values()) + len(acked)} seqs acknowledged"
    )
