"""ml-dash's run-time messages go through ``logging`` (logger ``ml_dash`` and children): shown once
on stderr when the application configured no logging, under the application's configuration
otherwise, silenced like any library's. Real processes: each case needs its own logging state."""

from __future__ import annotations

from ..conftest import run_script

# An offline remote run leaves its events in the spool: the SDK must say so, with the command that
# uploads them. A full queue with the drop policy drops and says so too (a local run).
OFFLINE = """
    {setup}
    from ml_dash import Experiment
    with Experiment("alice/p/msgs", dash_url="http://127.0.0.1:9", offline=True).run as exp:
        exp.log("hello")
"""
FLUSH_LINE = "to upload them: ml-dash-agent flush"


def _run(tmp_path, setup: str = ""):
    env = {"ML_DASH_SPOOL_DIR": str(tmp_path / "spool"), "ML_DASH_PRINT_URL": "0"}
    proc = run_script(OFFLINE.format(setup=setup), tmp_path, env)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.splitlines()


def test_with_no_logging_configured_each_message_reaches_stderr_once(tmp_path):
    lines = _run(tmp_path)
    flush = [x for x in lines if FLUSH_LINE in x]
    assert len(flush) == 1 and flush[0].startswith("ml-dash: "), lines
    left = [x for x in lines if "not uploaded (offline mode)" in x]
    assert len(left) == 1 and left[0].startswith(
        "ml-dash: alice/p/msgs: 4 events"
    )  # experiment, RUNNING, the log, COMPLETED, lines
    assert len(lines) == len(set(lines)) == 2  # nothing else, nothing twice


def test_the_applications_logging_configuration_takes_the_messages(tmp_path):
    setup = 'import logging; logging.basicConfig(format="APP|%(name)s|%(levelname)s|%(message)s")'
    lines = _run(tmp_path, setup)
    assert len(lines) == 2 and all(x.startswith("APP|ml_dash.agent|WARNING|") for x in lines), lines
    assert sum(FLUSH_LINE in x for x in lines) == 1
    assert not any(x.startswith("ml-dash: ") for x in lines)  # the handler of last resort stays silent


def test_silenced_like_any_library(tmp_path):
    assert _run(tmp_path, 'import logging; logging.getLogger("ml_dash").setLevel(logging.CRITICAL)') == []
    assert _run(tmp_path, 'import logging; logging.getLogger("ml_dash.agent").disabled = True') == []


NOTICE = """
    {setup}
    from ml_dash._report import notice
    notice("where to watch the run")
"""


def test_notices_are_shown_by_default_and_follow_a_configuration(tmp_path):
    def stderr(setup=""):
        proc = run_script(NOTICE.format(setup=setup), tmp_path)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr.splitlines()

    assert stderr() == ["ml-dash: where to watch the run"]
    # INFO: hidden under the application's usual WARNING, shown when it asks for ml_dash's INFO.
    configured = 'import logging; logging.basicConfig(format="APP %(levelname)s %(message)s")'
    assert stderr(configured) == []
    assert stderr(configured + '; logging.getLogger("ml_dash").setLevel(logging.INFO)') == [
        "APP INFO where to watch the run"
    ]
    assert stderr('import logging; logging.getLogger("ml_dash").setLevel(logging.WARNING)') == []


def test_importing_ml_dash_does_not_import_logging(tmp_path):
    proc = run_script("import sys, ml_dash; print('logging' in sys.modules)", tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr
