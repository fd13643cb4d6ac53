"""The read side of the ``ml-dash`` command, run as real processes against a local store and a real
server: ls, show, export (read back and compared), login, --version, help."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from ml_dash import Experiment
from ml_dash._store import ExperimentReader
from ml_dash.server import create_token, run_in_thread

from ..readmodel.test_table import seed

P = "alice/proj/exported"


def cli(
    *args: str,
    env: Optional[Dict[str, str]] = None,
    stdin: str = "",
    cwd: Optional[Path] = None,
    module: str = "ml_dash",
) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=full,
        cwd=cwd,
        timeout=120,
    )


def _table(out: str) -> List[List[str]]:
    lines = out.strip().splitlines()
    return [line.split() for line in lines[1:]]


@pytest.fixture
def store(tmp_path):
    root = tmp_path / ".dash"
    with Experiment(P, dash_root=str(root), description="export me", tags=["t1"]).run as exp:
        exp.params.set(lr=0.001, model={"layers": 2})
        for i in range(50):
            exp.metrics("train").log(loss=math.nan if i == 3 else 1.0 / (i + 1), step=i, note="a,b" if i == 1 else None)
        exp.metrics("eval").log(acc=0.5, tags=[1, 2])
        exp.metrics.log(index=7)  # a field named like the export's own column
        exp.log("hello")
        exp.files("models").save(b"x" * 2048, name="w.bin")
    return root


def test_help_version_and_python_m(tmp_path):
    bare = cli()
    assert bare.returncode == 0 and "usage: ml-dash" in bare.stdout
    for name in ("ls", "show", "export", "login", "server", "dashboard"):
        assert f"    {name}" in bare.stdout
    from ml_dash import __version__

    assert cli("--version").stdout.strip() == f"ml-dash {__version__}"
    assert cli("--version", module="ml_dash.cli").stdout.strip() == f"ml-dash {__version__}"
    assert cli("ls", "--help").returncode == 0


def test_ls_local_table_glob_and_nothing(tmp_path):
    root = tmp_path / "root"
    specs = seed(root, 12)
    out = cli("ls", "--root", str(root), "-c", "m:train:loss", "-c", "p:lr")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["PREFIX", "STATUS", "STARTED", "DURATION", "ROWS", "train:loss", "p:lr"]
    rows = {r[0]: r for r in _table(out.stdout)}
    assert sorted(rows) == sorted(s["prefix"] for s in specs)
    for s in specs:
        r = rows[s["prefix"]]
        assert r[1] == (s["status"] or "-") and r[-3] == str(s["rows"])
        assert r[-1] == ("-" if s["lr"] is None else f"{s['lr']:.6g}")
    alice = _table(cli("ls", "alice/*", "--root", str(root)).stdout)
    assert sorted(r[0] for r in alice) == sorted(s["prefix"] for s in specs if s["prefix"].startswith("alice/"))
    plain = _table(cli("ls", "bob", "--root", str(root)).stdout)  # no wildcard: prefixes starting with it
    assert sorted(r[0] for r in plain) == sorted(s["prefix"] for s in specs if s["prefix"].startswith("bob"))
    failed = _table(cli("ls", "--root", str(root), "--status", "failed", "--sort", "rows", "--desc").stdout)
    want = sorted((s for s in specs if s["status"] == "FAILED"), key=lambda s: (-s["rows"], s["prefix"]))
    assert [r[0] for r in failed] == [s["prefix"] for s in want]
    none = cli("ls", "carol/*", "--root", str(root))
    assert none.returncode == 1 and none.stdout == "" and "no experiments match 'carol/*'" in none.stderr
    empty = cli("ls", "--root", str(tmp_path / "nothing"))
    assert empty.returncode == 1 and "no experiments in" in empty.stderr


def test_show_local(store):
    out = cli("show", P, "--root", str(store))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "status       COMPLETED" in text and "export me" in text and "t1" in text
    assert "lr = 0.001" in text and "model.layers = 2" in text
    train = next(line.split() for line in text.splitlines() if line.split()[:1] == ["train"])
    assert train[:2] == ["train", "50"]
    loss = next(line.split() for line in text.splitlines() if line.split()[:1] == ["loss"])
    assert loss == ["loss", f"{1 / 50:.6g}", f"{1 / 50:.6g}", "1"]
    assert "logs         1 lines" in text and "/models/w.bin  2.0 KB" in text
    missing = cli("show", "alice/proj/none", "--root", str(store))
    assert missing.returncode == 1 and "no experiment 'alice/proj/none'" in missing.stderr
    bad = cli("show", "alice/../x", "--root", str(store))
    assert bad.returncode == 2 and "error:" in bad.stderr


def _expected(root: Path, name: Optional[str]) -> List[dict]:
    return ExperimentReader(root, P).metric_rows(name)


def test_export_csv_and_jsonl_read_back(store, tmp_path):
    out = cli("export", P, "--root", str(store), "--metric", "train", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    want = _expected(store, "train")
    assert list(rows[0]) == ["index", "loss", "step", "note", "_ts"]
    assert len(rows) == len(want) == 50
    for got, w in zip(rows, want):
        assert int(got["index"]) == w["index"] and int(got["step"]) == w["data"]["step"]
        assert float(got["_ts"]) == w["data"]["_ts"]
        wl = w["data"]["loss"]
        assert (math.isnan(float(got["loss"])) and math.isnan(wl)) or float(got["loss"]) == wl
        assert got["note"] == (w["data"]["note"] or "")
    try:
        import pandas  # optional: the format is meant for it
    except ImportError:
        pandas = None
    if pandas is not None:
        frame = pandas.read_csv(io.StringIO(out.stdout))
        assert len(frame) == 50 and math.isnan(frame["loss"][3]) and frame["step"].tolist() == list(range(50))
    dest = tmp_path / "out" / "all.jsonl"
    dest.parent.mkdir()
    every = cli("export", P, "--root", str(store), "--format", "jsonl", "-o", str(dest))
    assert every.returncode == 0 and dest.is_file() and "rows" in every.stderr
    lines = [json.loads(line) for line in dest.read_text().splitlines()]
    assert [r["metric"] for r in lines].count("train") == 50 and {r["metric"] for r in lines} == {"", "eval", "train"}
    eval_row = next(r for r in lines if r["metric"] == "eval")
    assert eval_row["acc"] == 0.5 and eval_row["tags"] == [1, 2] and eval_row["index"] == 0
    unnamed = next(r for r in lines if r["metric"] == "")
    assert unnamed["data.index"] == 7 and unnamed["index"] == 0
    assert next(r for r in lines if r["metric"] == "train" and r["index"] == 3)["loss"] == "NaN"
    missing = cli("export", P, "--root", str(store), "--metric", "nope", "--format", "csv")
    assert missing.returncode == 1 and "nope" in missing.stderr
    assert cli("export", P, "--root", str(store)).returncode == 2  # --format is required


def test_login_then_remote_ls_show_export(tmp_path):
    root = tmp_path / "server"
    token = create_token(root, "alice")
    handle = run_in_thread(root, port=0)
    config = tmp_path / "config"
    env = {"XDG_CONFIG_HOME": str(config)}
    try:
        with Experiment(P, dash_url=handle.url, token=token).run as exp:
            exp.params.set(lr=0.5)
            for i in range(30):
                exp.metrics("train").log(loss=float(i), step=i)
        # the token is never an argument
        assert cli("login", handle.url, token, env=env).returncode == 2
        wrong = cli("login", handle.url, env=env, stdin="mld_wrong\n")
        assert wrong.returncode == 1 and "refused" in wrong.stderr and not (config / "ml-dash").exists()
        ok = cli("login", handle.url + "/", env=env, stdin=token + "\n")
        assert ok.returncode == 0, ok.stderr
        assert token not in ok.stdout + ok.stderr
        cred = config / "ml-dash" / "credentials.json"
        assert stat.S_IMODE(cred.stat().st_mode) == 0o600
        assert json.loads(cred.read_text()) == {handle.url: token}
        listed = cli("ls", "--dash-url", handle.url, env=env)
        assert listed.returncode == 0, listed.stderr
        assert [r[0] for r in _table(listed.stdout)] == [P]
        shown = cli("show", P, "--dash-url", handle.url, env=env)
        assert shown.returncode == 0 and "lr = 0.5" in shown.stdout
        exported = cli("export", P, "--dash-url", handle.url, "--metric", "train", "--format", "csv", env=env)
        rows = list(csv.DictReader(io.StringIO(exported.stdout)))
        assert [float(r["loss"]) for r in rows] == [float(i) for i in range(30)]
        # ML_DASH_URL picks the server when neither --root nor --dash-url is given
        assert [r[0] for r in _table(cli("ls", env={**env, "ML_DASH_URL": handle.url}).stdout)] == [P]
        denied = cli("ls", "--dash-url", handle.url, env={"XDG_CONFIG_HOME": str(tmp_path / "other")})
        assert denied.returncode == 1 and "401" in denied.stderr
    finally:
        handle.stop()


def test_ls_and_show_say_when_a_running_run_went_quiet(tmp_path):
    from ..dashboard._seed import killed_runs, quiet_since

    root = tmp_path / ".dash"
    killed_runs(root, ["alice/crash/killed", "alice/crash/alive"])
    quiet = quiet_since(root / "alice/crash/killed", 750) / 1e9
    rows = {line.split()[0]: line for line in cli("ls", "--root", str(root)).stdout.splitlines()[1:]}
    assert "RUNNING (no activity for 12m" in rows["alice/crash/killed"]
    assert rows["alice/crash/alive"].split()[1] == "RUNNING" and "activity" not in rows["alice/crash/alive"]
    out = cli("show", "alice/crash/killed", "--root", str(root))
    assert out.returncode == 0, out.stderr
    assert "status       RUNNING (no activity for 12m" in out.stdout
    import datetime as dt

    shown = dt.datetime.fromtimestamp(quiet).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    assert f"last active  {shown}" in out.stdout
    alive = cli("show", "alice/crash/alive", "--root", str(root)).stdout
    assert "status       RUNNING\n" in alive and "last active  " in alive
