"""The capture switches live in the one Config, read from ML_DASH_* variables; all are off by default."""

from __future__ import annotations

import json

import pytest

from ml_dash import load_config

from ..conftest import run_script


def test_switches_are_off_by_default_and_read_from_the_environment():
    default = load_config({})
    assert (default.capture_console, default.capture_system, default.capture_env, default.capture_packages) == (
        False,
        False,
        False,
        False,
    )
    assert default.system_interval == 10.0 and default.git_diff_max_bytes == 1024 * 1024 and default.prefix is None
    cfg = load_config(
        {
            "ML_DASH_CAPTURE_CONSOLE": "1",
            "ML_DASH_CAPTURE_SYSTEM": "true",
            "ML_DASH_CAPTURE_ENV": "yes",
            "ML_DASH_CAPTURE_PACKAGES": "on",
            "ML_DASH_SYSTEM_INTERVAL": "2.5",
            "ML_DASH_GIT_DIFF_MAX_BYTES": "4096",
            "ML_DASH_PREFIX": "alice/proj/run-1",
        }
    )
    assert (cfg.capture_console, cfg.capture_system, cfg.capture_env, cfg.capture_packages) == (True, True, True, True)
    assert (cfg.system_interval, cfg.git_diff_max_bytes, cfg.prefix) == (2.5, 4096, "alice/proj/run-1")
    assert load_config({"ML_DASH_CAPTURE_CONSOLE": "0"}).capture_console is False


@pytest.mark.parametrize(
    "name, value",
    [("ML_DASH_SYSTEM_INTERVAL", "0"), ("ML_DASH_SYSTEM_INTERVAL", "soon"), ("ML_DASH_GIT_DIFF_MAX_BYTES", "-1")],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        load_config({name: value})


HEAVY = (
    "torch",
    "lightning",
    "pytorch_lightning",
    "transformers",
    "keras",
    "tensorflow",
    "jax",
    "psutil",
    "pynvml",
    "tqdm",
    "ml_dash._capture._console",
    "ml_dash._capture._system",
    "ml_dash._capture._environment",
)


def test_import_ml_dash_loads_no_framework_and_no_capture(tmp_path):
    """In a fresh interpreter: neither ``import ml_dash``, nor ``import ml_dash.integrations``, nor a
    run with every capture off imports a framework, psutil or a capture module."""
    proc = run_script(
        f"""
        import json, sys
        heavy = {HEAVY!r}
        import ml_dash
        after_import = [m for m in heavy if m in sys.modules]
        import ml_dash.integrations
        after_package = [m for m in heavy if m in sys.modules]
        with ml_dash.Experiment(prefix="a/b/c", dash_root=".dash").run as exp:
            exp.metrics("m").log(x=1.0)
        after_run = [m for m in heavy if m in sys.modules]
        print(json.dumps([after_import, after_package, after_run]))
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[], [], []]
