"""`import ml_dash` stays light: no network stack until remote work starts."""

from __future__ import annotations

import json

from ..conftest import run_script


def test_import_and_local_run_do_not_load_aiohttp(tmp_path):
    proc = run_script(
        """
        import json, sys
        import ml_dash
        after_import = sorted(m for m in ("aiohttp", "asyncio", "aiofiles", "tenacity", "ml_dash.agent",
                                          "ml_dash.server", "numpy") if m in sys.modules)
        with ml_dash.Experiment(prefix="a/b/c", dash_root=".dash").run as exp:
            exp.metrics("m").log(x=1.0)
            exp.files.save(b"x", name="f.bin")
        after_run = sorted(m for m in ("aiohttp", "ml_dash.agent", "ml_dash.server") if m in sys.modules)
        print(json.dumps([after_import, after_run]))
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[], []]


def test_import_loads_no_typing(tmp_path):
    """Annotations are strings and typing is imported for type checkers only (CONTRIBUTING.md)."""
    proc = run_script(
        """
        import json, sys
        before = set(sys.modules)  # what the interpreter's start loaded (a .pth file may load typing)
        import ml_dash
        print(json.dumps(sorted(m for m in ("typing", "typing_extensions") if m in set(sys.modules) - before)))
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_import_defers_what_only_an_experiment_needs(tmp_path):
    """`import ml_dash` leaves dataclasses (Config), enum (OperationMode), datetime (RUN.now), re and
    inspect to their first use; the names still import from ml_dash and behave as before."""
    heavy = ("dataclasses", "enum", "datetime", "re", "inspect", "fnmatch", "functools")
    proc = run_script(
        f"""
        import json, sys
        before = set(sys.modules)  # what the interpreter's start loaded (a .pth file may load some)
        import ml_dash
        at_import = sorted(m for m in {heavy!r} if m in set(sys.modules) - before)
        from ml_dash import Config, OperationMode, load_config, RUN
        now = RUN.now
        RUN(now=now.replace(year=2001))
        with ml_dash.Experiment(prefix="a/b/c", dash_root=".dash").run as exp:
            mode = exp.mode
        print(json.dumps([at_import, Config(dash_root="x").dash_root, load_config({{}}).dash_root,
                          mode is OperationMode.LOCAL, str(mode), RUN.now.year, now.year >= 2024,
                          "Config" in dir(ml_dash), hasattr(ml_dash, "NoSuchName")]))
    """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [[], "x", ".dash", True, "local", 2001, True, True, False]
