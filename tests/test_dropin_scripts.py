"""Scripts written against upstream ml-dash 0.11's documented API run unchanged on ours.

Each script below uses only upstream's calls (its README, docs and examples). It runs, as is:

* on ours in local mode, and on ours against our server (real server, port 0);
* on real upstream 0.11 in local mode (its own interpreter: ``ML_DASH_UPSTREAM_PYTHON``).

Every tree written is then read back twice, by our reader and by upstream's ``LocalStorage`` (a
server root is a dash_root), and the two readings of every tree must agree with each other and with
the tree upstream itself wrote: same logs, parameters, metric rows, live files (with their bytes),
and track entries. So upstream reads what we write, we read what upstream writes, and both modes
of ours write the same thing. Without ``ML_DASH_UPSTREAM_PYTHON`` the upstream parts skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

UPSTREAM = os.environ.get("ML_DASH_UPSTREAM_PYTHON")
needs_upstream = pytest.mark.skipif(not UPSTREAM, reason="set ML_DASH_UPSTREAM_PYTHON to a python with ml-dash 0.11")

#: Upstream's API, every call the drop-in issue lists. DEMO_* choose where it writes; nothing else
#: differs between the runs.
SCRIPT = textwrap.dedent("""
    import json, os
    from ml_dash import Experiment, OperationMode

    URL = os.environ.get("DEMO_URL")
    where = dict(dash_url=URL, dash_root=None) if URL else dict(dash_root=os.environ["DEMO_ROOT"])
    tmp = os.path.abspath("work")  # not under the temp folder: upstream deletes uploads from there
    os.makedirs(tmp, exist_ok=True)

    class Args:
        lr = 0.001
        batch_size = 32

    with Experiment(prefix=os.environ["DEMO_PREFIX"], readme="drop-in check", tags=["dropin"],
                    metadata={"gpu": "none"}, **where).run as exp:
        assert exp.mode == (OperationMode.REMOTE if URL else OperationMode.LOCAL)
        # logs
        exp.log("Training started")
        exp.log("Epoch done", level="info", metadata={"epoch": 1, "loss": 0.5})
        exp.logs.info("loading", shard=1)
        exp.logs.debug("shape")
        exp.logs.warn("lr constant")
        exp.logs.error("nan seen", step=7)
        exp.logs.fatal("oom")
        # params
        exp.params.set(Args=Args, model={"layers": 2, "act": "relu"})
        exp.params.log(seed=1)
        # metrics
        for epoch in range(3):
            exp.metrics("train").log(loss=1.0 / (epoch + 1), epoch=epoch)
            exp.metrics.log(epoch=epoch, eval=dict(loss=0.5 / (epoch + 1)), _flush=True)
        sc = exp.metrics("sc")
        for v in (1.0, 2.0, 3.0):
            sc.summary_cache.store(loss=v)
        sc.summary_cache.set(epoch=3)
        sc.summary_cache.summarize()
        for v in (1.0, 2.0, 3.0, 4.0):
            exp.metrics("buf").buffer(loss=v)
        exp.metrics.buffer.log_summary("mean", "max", step=4)
        exp.metrics("train").flush()
        exp.flush()
        page = exp.metrics("train").read(start_index=1, limit=2)
        assert [p["data"]["epoch"] for p in page["data"]] == [1, 2]
        assert exp.metrics("train").stats()["totalDataPoints"] == "3"
        assert "train" in [m["name"] for m in exp.metrics("train").list_all()]
        # files
        src = os.path.join(tmp, "model.pt")
        with open(src, "wb") as f:
            f.write(b"fake-model-weights")
        exp.files("models").upload(src, to="model.pt")
        exp.files.save_text("a,b\\n1,2\\n", to="results/m.csv")
        exp.files.save_json({"lr": 0.1}, to="config.json")
        exp.files.save_blob(b"\\x00\\x01", to="data/blob.bin")
        exp.files("auto").save({"k": "v"}, to="auto.json")
        exp.files("auto").save(b"xyz", to="auto.bin")
        exp.files("models").save_pkl({"coef": [1]}, to="sk.pkl")
        exp.files.save_blob(b"bye", to="tmp/gone.bin")
        exp.flush()
        exp.files.delete("tmp/gone.bin")
        assert exp.files("results/m.csv").exists() and not exp.files("results/none.csv").exists()
        assert exp.files("results/m.csv").read_text() == "a,b\\n1,2\\n"
        assert sorted(f["filename"] for f in exp.files.list("*.json")) == ["auto.json", "config.json"]
        with open(exp.files("config.json").download(to=os.path.join(tmp, "c.json"))) as f:
            assert json.load(f) == {"lr": 0.1}
        assert len(exp.files("auto").download("*", to=os.path.join(tmp, "auto"))) == 2
        # tracks
        for i in range(10):
            exp.tracks("robot/pos").append(x=float(i), q=[i, i + 1], _ts=i * 0.1)
        exp.tracks("robot/pos").append(tag="start", _ts=0.0)
        exp.tracks("robot/pos").flush()
        exp.tracks.flush()
        exp.flush()
        assert exp.tracks("robot/pos").read(format="json")["count"] == 10
        assert exp.tracks("robot/pos").slice(0.0, 1.0).findByTime(0.25)["x"] == 2.0
        assert len(exp.tracks("robot/pos").list_entries()) == 10
    print("script ok")
""")

#: Reads a tree with one package (ours or upstream) and prints a normalized summary as JSON.
READ_OURS = """
import hashlib, json, sys
from ml_dash._store import ExperimentReader
r = ExperimentReader(sys.argv[1], sys.argv[2])
strip = lambda d: {k: v for k, v in d.items() if k != "_ts"}
print(json.dumps({
    "logs": [[l["level"], l["message"], l.get("metadata")] for l in r.logs()],
    "params": r.params(),
    "metrics": {str(n): [strip(x["data"]) for x in r.metric_rows(n)] for n in r.metric_names()},
    "files": sorted([e["path"], e["filename"], hashlib.sha256(r.file_path(e).read_bytes()).hexdigest()] for e in r.files()),
    "track": r.track_entries("robot/pos"),
}, sort_keys=True))
"""
READ_UPSTREAM = """
import hashlib, json, os, sys, tempfile
from pathlib import Path
from ml_dash.storage import LocalStorage
s = LocalStorage(Path(sys.argv[1]))
prefix = sys.argv[2]
a = (prefix.split("/")[0], prefix.split("/")[1], prefix)
strip = lambda d: {k: v for k, v in d.items() if k != "_ts"}
tmp = tempfile.mkdtemp()
def content(f):
    dest = os.path.join(tmp, f["id"])
    s.read_file(*a, f["id"], dest)  # checks the checksum too
    return hashlib.sha256(open(dest, "rb").read()).hexdigest()
logs = [json.loads(l) for l in open(os.path.join(sys.argv[1], prefix, "logs", "logs.jsonl"))]
print(json.dumps({
    "logs": [[l["level"], l["message"], l.get("metadata")] for l in logs],
    "params": s.read_parameters(*a),
    "metrics": {str(m["name"]): [strip(p["data"]) for p in s.read_metric_data(*a, m["name"] or "None", 0, 10000)["data"]]
                for m in s.list_metrics(*a)},
    "files": sorted([f["path"] if f["path"] == "/" else "/" + f["path"].strip("/"), f["filename"], content(f)] for f in s.list_files(*a)),
    "track": s.read_track_data(*a, "robot/pos")["entries"],
}, sort_keys=True))
"""


def _env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_") and k != "PYTHONPATH"}
    env["ML_DASH_NO_VERSION_CHECK"] = "1"
    env.update(extra)
    return env


def _run(python: str, code: str, cwd: Path, env: dict, *args: str) -> str:
    tmpdir = cwd.parent / "tmpdir"  # the scripts' own files (in cwd) are outside it
    tmpdir.mkdir(exist_ok=True)
    proc = subprocess.run(
        [python, "-c", code, *args],
        cwd=cwd,
        env=_env({"TMPDIR": str(tmpdir), **env}),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"{python}: {proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _summary(python: str, reader: str, root: Path, prefix: str, cwd: Path) -> dict:
    got = json.loads(_run(python, reader, cwd, {}, str(root), prefix).strip().splitlines()[-1])
    got["metrics"] = {k: v for k, v in got["metrics"].items() if v}  # upstream lists empty metric folders
    return got


def _check(summary: dict) -> None:
    """What the script wrote, whoever wrote and whoever reads."""
    assert summary["logs"] == [
        ["info", "Training started", None],
        ["info", "Epoch done", {"epoch": 1, "loss": 0.5}],
        ["info", "loading", {"shard": 1}],
        ["debug", "shape", None],
        ["warn", "lr constant", None],
        ["error", "nan seen", {"step": 7}],
        ["fatal", "oom", None],
    ]
    assert summary["params"] == {
        "Args.lr": 0.001,
        "Args.batch_size": 32,
        "model.layers": 2,
        "model.act": "relu",
        "seed": 1,
    }
    m = summary["metrics"]
    assert m["train"] == [{"loss": 1.0 / (e + 1), "epoch": e} for e in range(3)]
    assert m["eval"] == [{"epoch": e, "loss": 0.5 / (e + 1)} for e in range(3)]
    assert m["None"] == [{"epoch": e} for e in range(3)]
    assert m["sc"] == [
        {"epoch": 3, "loss.mean": 2.0, "loss.min": 1.0, "loss.max": 3.0, "loss.count": 3, "loss.std": 1.0}
    ]
    assert m["buf"] == [{"step": 4, "loss.mean": 2.5, "loss.max": 4.0}]
    sha = lambda b: hashlib.sha256(b).hexdigest()
    files = {(p, n): h for p, n, h in summary["files"]}
    assert set(files) == {
        ("/models", "model.pt"),
        ("/results", "m.csv"),
        ("/", "config.json"),
        ("/data", "blob.bin"),
        ("/auto", "auto.json"),
        ("/auto", "auto.bin"),
        ("/models", "sk.pkl"),
    }
    assert files[("/models", "model.pt")] == sha(b"fake-model-weights") and files[("/data", "blob.bin")] == sha(
        b"\x00\x01"
    )
    assert files[("/results", "m.csv")] == sha(b"a,b\n1,2\n")
    track = summary["track"]
    assert len(track) in (10, 11)  # upstream merges same-timestamp entries only within one flush window
    by_ts = {}
    for e in track:
        by_ts.setdefault(e["timestamp"], {}).update(e)
    assert by_ts[0.0] == {"timestamp": 0.0, "x": 0.0, "q": [0, 1], "tag": "start"}
    assert [by_ts[t]["x"] for t in sorted(by_ts)] == [float(i) for i in range(10)]


@pytest.fixture
def script_dir(tmp_path) -> Path:
    (tmp_path / "run").mkdir()
    return tmp_path / "run"


def _readings(root: Path, prefix: str, cwd: Path) -> list:
    out = [_summary(sys.executable, READ_OURS, root, prefix, cwd)]
    if UPSTREAM:
        out.append(_summary(UPSTREAM, READ_UPSTREAM, root, prefix, cwd))
    return out


def test_script_runs_on_ours_locally_and_both_packages_read_it(tmp_path, script_dir):
    root = tmp_path / ".dash"
    out = _run(sys.executable, SCRIPT, script_dir, {"DEMO_ROOT": str(root), "DEMO_PREFIX": "alice/proj/ours-local"})
    assert "script ok" in out and "[ERROR] nan seen [step=7]" not in out  # error lines echo on stderr
    readings = _readings(root, "alice/proj/ours-local", script_dir)
    for summary in readings:
        _check(summary)
    assert all(r == readings[0] for r in readings)


def test_script_runs_on_ours_against_our_server_and_both_packages_read_it(tmp_path, script_dir):
    from ml_dash.server import create_token, run_in_thread

    root = tmp_path / "server-root"
    token = create_token(root, "alice")
    handle = run_in_thread(root, port=0)
    try:
        out = _run(
            sys.executable,
            SCRIPT,
            script_dir,
            {
                "DEMO_URL": handle.url,
                "ML_DASH_TOKEN": token,
                "ML_DASH_SPOOL_DIR": str(tmp_path / "spool"),
                "DEMO_PREFIX": "alice/proj/ours-remote",
            },
        )
    finally:
        handle.stop()
    assert "script ok" in out
    readings = _readings(root, "alice/proj/ours-remote", script_dir)
    for summary in readings:
        _check(summary)
    assert all(r == readings[0] for r in readings)


@needs_upstream
def test_script_runs_on_upstream_and_both_packages_read_it(tmp_path, script_dir):
    root = tmp_path / ".dash"
    out = _run(UPSTREAM, SCRIPT, script_dir, {"DEMO_ROOT": str(root), "DEMO_PREFIX": "alice/proj/upstream-local"})
    assert "script ok" in out
    readings = _readings(root, "alice/proj/upstream-local", script_dir)
    for summary in readings:
        _check(summary)
    assert readings[0] == readings[1]
    # and the tree upstream wrote reads the same as the one ours wrote
    ours_root = tmp_path / "ours"
    _run(sys.executable, SCRIPT, script_dir, {"DEMO_ROOT": str(ours_root), "DEMO_PREFIX": "alice/proj/upstream-local"})
    ours = _readings(ours_root, "alice/proj/upstream-local", script_dir)[0]
    norm = lambda s: {**s, "track": sorted(json.dumps(e, sort_keys=True) for e in s["track"])}
    assert {**norm(ours), "track": None} == {**norm(readings[0]), "track": None}
