"""System metrics: the sampler's rows exist, carry the documented fields, and stop at close."""

from __future__ import annotations

import threading
import time

import pytest

from ml_dash import Experiment, load_config

from ..conftest import run_script, wait_for

psutil = pytest.importorskip("psutil", reason="psutil is not installed (pip install 'ml-dash[system]')")

PROCESS_FIELDS = {"cpu_percent", "rss_mib", "threads", "_ts"}
HOST_FIELDS = {"cpu_percent", "memory_used_mib", "memory_available_mib", "memory_percent", "_ts"}


def _system_exp(dash_root, interval=0.05) -> Experiment:
    cfg = load_config({}).with_overrides(capture_system=True, system_interval=interval)
    return Experiment(prefix="a/b/system", dash_root=str(dash_root), config=cfg)


def test_rows_exist_and_stop_at_close(dash_root):
    exp = _system_exp(dash_root)
    exp.run.start()
    wait_for(lambda: len(exp.metrics("system/process").read()) >= 3, what="three system samples")
    exp.run.complete()
    closed_at = time.time()
    assert not [t for t in threading.enumerate() if t.name.startswith("ml-dash-system")]

    again = Experiment(prefix="a/b/system", dash_root=str(dash_root))
    process = [r["data"] for r in again.metrics("system/process").read()]
    host = [r["data"] for r in again.metrics("system/host").read()]
    assert len(process) >= 3 and len(host) == len(process)
    assert all(set(row) == PROCESS_FIELDS for row in process)
    assert all(set(row) >= HOST_FIELDS for row in host)
    assert all(row["_ts"] <= closed_at for row in process + host)
    me = psutil.Process()
    assert all(0 < row["rss_mib"] * 1024 * 1024 <= me.memory_info().rss * 4 for row in process)
    assert all(row["threads"] >= 2 for row in process)  # ours and the worker at least
    assert all(0 <= row["memory_percent"] <= 100 and row["memory_available_mib"] > 0 for row in host)
    names = again.metrics.names()
    assert {"system/process", "system/host"} <= set(names)


def test_a_run_shorter_than_the_interval_still_gets_one_row(dash_root):
    with _system_exp(dash_root, interval=3600).run as exp:
        exp.log("quick")
    rows = Experiment(prefix="a/b/system", dash_root=str(dash_root)).metrics("system/process").read()
    assert len(rows) == 1


def test_switched_on_by_the_environment(tmp_path):
    proc = run_script(
        """
        from ml_dash import Experiment
        with Experiment(prefix="a/b/env", dash_root=".dash").run as exp:
            assert exp.config.capture_system and exp.config.system_interval == 0.2
        print(sorted(n for n in Experiment(prefix="a/b/env", dash_root=".dash").metrics.names()))
    """,
        cwd=tmp_path,
        env={"ML_DASH_CAPTURE_SYSTEM": "1", "ML_DASH_SYSTEM_INTERVAL": "0.2"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['system/host', 'system/process']"


def test_without_psutil_the_run_goes_on_and_says_why(tmp_path):
    proc = run_script(
        """
        import sys
        sys.modules["psutil"] = None  # as if it were not installed
        from ml_dash import Experiment
        with Experiment(prefix="a/b/nopsutil", dash_root=".dash").run as exp:
            exp.metrics("train").log(loss=1.0)
        print(Experiment(prefix="a/b/nopsutil", dash_root=".dash").metrics.names())
    """,
        cwd=tmp_path,
        env={"ML_DASH_CAPTURE_SYSTEM": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['train']"
    assert "psutil is not installed" in proc.stderr


def test_gpu_rows_when_nvml_answers(dash_root):
    from ml_dash._capture._system import gpu_handles

    _nvml, handles = gpu_handles()
    if not handles:
        pytest.skip("no NVIDIA GPU answering through NVML (nvidia-ml-py and a driver) on this machine")
    with _system_exp(dash_root, interval=3600).run:
        pass
    again = Experiment(prefix="a/b/system", dash_root=str(dash_root))
    for i in range(len(handles)):
        rows = [r["data"] for r in again.metrics(f"system/gpu/{i}").read()]
        assert len(rows) == 1
        assert 0 <= rows[0]["utilization_percent"] <= 100
        assert rows[0]["memory_total_mib"] > 0 and 0 <= rows[0]["memory_used_mib"] <= rows[0]["memory_total_mib"]
