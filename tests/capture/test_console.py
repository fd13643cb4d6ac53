"""Console capture: every line printed reaches the run's logs, the terminal sees exactly what it
would without us, progress bars are stored once, nothing recurses, a SIGKILL loses no stored line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

from ml_dash import Experiment, load_config
from ml_dash._capture._console import LineSplitter
from ml_dash._store import ExperimentReader

from ..conftest import run_script, wait_for


def _console_exp(dash_root, prefix="a/b/console", **overrides) -> Experiment:
    cfg = load_config({}).with_overrides(capture_console=True, **overrides)
    return Experiment(prefix=prefix, dash_root=str(dash_root), config=cfg)


def _messages(exp_or_reader, stream=None):
    logs = exp_or_reader.logs.read() if isinstance(exp_or_reader, Experiment) else exp_or_reader.logs()
    return [r["message"] for r in logs if stream is None or (r.get("metadata") or {}).get("stream") == stream]


def test_splitter_lines_redraws_and_long_lines():
    s = LineSplitter(max_chars=10)
    assert s.feed("ab") == [] and s.feed("c\nde") == ["abc"]
    assert s.feed("\n\n") == ["de", ""]  # an empty line is a line
    # A bar redrawn with \r: only what the terminal shows last is kept, also while unfinished.
    for pct in range(0, 101, 10):
        assert s.feed(f"\r{pct:3d}%") == []
    assert s.feed("\n") == ["100%"]
    assert s.feed("dos line\r\n") == ["dos line"]  # \r\n ends a line; it does not wipe it
    assert s.feed("x" * 25) == ["x" * 10, "x" * 10, "x" * 5]  # a line that never ends, in pieces
    assert s.feed("tail") == [] and s.rest() == "tail" and s.rest() is None
    s.feed("\r   \r")
    assert s.rest() is None  # a bar that wiped itself (tqdm leave=False) leaves nothing


def test_prints_logging_and_tqdm_reach_the_logs(dash_root):
    import logging

    from tqdm import tqdm

    handler = logging.StreamHandler(sys.stderr)  # made before the run: holds the stream object itself
    logger = logging.getLogger("test-console-capture")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with _console_exp(dash_root).run:
            print("first line")
            print("a", "b", sep="-")
            sys.stderr.write("to stderr\n")
            logger.warning("via a handler made earlier")
            for _ in tqdm(range(200), file=sys.stderr, mininterval=0):
                pass
            print("after the bar")
            sys.stdout.write("no newline at the end")
    finally:
        logger.removeHandler(handler)
    messages = _messages(Experiment(prefix="a/b/console", dash_root=str(dash_root)))
    bar = [m for m in messages if "200/200" in m or "it/s" in m or "%|" in m]
    assert len(bar) == 1 and bar[0].startswith("100%|") and "200/200" in bar[0], bar
    assert [m for m in messages if m not in bar] == [
        "first line",
        "a-b",
        "to stderr",
        "via a handler made earlier",
        "after the bar",
        "no newline at the end",
    ]
    reader = Experiment(prefix="a/b/console", dash_root=str(dash_root))
    assert _messages(reader, "stderr") == ["to stderr", "via a handler made earlier", bar[0]]


def test_capture_ends_with_the_run_and_restores_the_streams(dash_root):
    exp = _console_exp(dash_root)
    with exp.run:
        assert "write" in vars(sys.stdout) or not hasattr(sys.stdout, "__dict__")
        print("inside")
    print("outside")
    assert "write" not in getattr(sys.stdout, "__dict__", {})
    assert "write" not in getattr(sys.stderr, "__dict__", {})
    assert _messages(Experiment(prefix="a/b/console", dash_root=str(dash_root))) == ["inside"]
    assert not [t for t in threading.enumerate() if t.name.startswith("ml-dash-console")]


def test_two_runs_capturing_at_once_stop_in_either_order(dash_root):
    a = _console_exp(dash_root, prefix="a/b/first")
    b = _console_exp(dash_root, prefix="a/b/second")
    a.run.start()
    b.run.start()
    print("x")
    a.run.complete()  # the first to start stops first: the second must keep capturing
    print("y")
    b.run.complete()
    print("z")
    assert _messages(Experiment(prefix="a/b/first", dash_root=str(dash_root))) == ["x"]
    assert _messages(Experiment(prefix="a/b/second", dash_root=str(dash_root))) == ["x", "y"]
    c = _console_exp(dash_root, prefix="a/b/third")
    d = _console_exp(dash_root, prefix="a/b/fourth")
    c.run.start()
    d.run.start()
    d.run.complete()  # the last to start stops first
    print("w")
    c.run.complete()
    print("v")
    assert _messages(Experiment(prefix="a/b/third", dash_root=str(dash_root))) == ["w"]
    assert _messages(Experiment(prefix="a/b/fourth", dash_root=str(dash_root))) == []
    assert "write" not in getattr(sys.stdout, "__dict__", {})


def test_our_own_threads_are_shown_not_captured(dash_root, capsys):
    """Text from ml-dash's threads (worker, sender, the forwarder itself) never comes back into
    the run: a message about the run cannot feed itself through the run's logs."""
    with _console_exp(dash_root).run:
        t = threading.Thread(target=lambda: print("from our thread"), name="ml-dash-worker:test")
        t.start()
        t.join()
        u = threading.Thread(target=lambda: print("from a user thread"), name="loader")
        u.start()
        u.join()
    assert "from our thread" in capsys.readouterr().out  # shown as usual
    assert _messages(Experiment(prefix="a/b/console", dash_root=str(dash_root))) == ["from a user thread"]


TERMINAL_SCRIPT = """
import logging, sys, os
from tqdm import tqdm
from ml_dash import Experiment
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
with Experiment(prefix="a/b/term", dash_root=".dash").run as exp:
    print("hello ✓")
    logging.info("a record")
    for _ in tqdm(range(30), mininterval=0, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}"):  # no timings
        pass
    sys.stdout.write("carriage\\rreturn\\n")
    print("end", flush=True)
"""


def test_the_terminal_sees_the_same_bytes_with_and_without_capture(tmp_path):
    plain = run_script(TERMINAL_SCRIPT, cwd=tmp_path)
    captured = run_script(TERMINAL_SCRIPT, cwd=tmp_path, env={"ML_DASH_CAPTURE_CONSOLE": "1"})
    assert plain.returncode == 0 and captured.returncode == 0, captured.stderr
    assert captured.stdout == plain.stdout
    assert captured.stderr == plain.stderr and "30/30" in plain.stderr
    messages = _messages(ExperimentReader(tmp_path / ".dash", "a/b/term"))
    assert messages[:2] == ["hello ✓", "INFO a record"] and messages[-2:] == ["return", "end"]
    assert len(messages) == 5 and messages[2] == "100%|██████████| 30/30"


KILLED_SCRIPT = """
import sys, time
from tqdm import tqdm
from ml_dash import Experiment
exp = Experiment(prefix="a/b/killed", dash_root=".dash")
exp.run.start()
for i in range(200):
    print(f"line {i}")
for _ in tqdm(range(100), mininterval=0, file=sys.stdout):
    pass
print("READY", flush=True)
i = 0
while True:  # goes on printing until it is killed
    print(f"after {i}", flush=True)
    i += 1
    time.sleep(0.002)
"""


def test_sigkill_loses_no_line_that_reached_the_store(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    env.update(ML_DASH_CAPTURE_CONSOLE="1", ML_DASH_FLUSH_INTERVAL="0.1")
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILLED_SCRIPT)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        log_file = tmp_path / ".dash/a/b/killed/logs/logs.jsonl"
        # Everything up to READY must be stored while the child runs: the store is polled, not the child.
        wait_for(
            lambda: log_file.exists() and '"after 0"' in log_file.read_text(),
            timeout=30,
            what="the console lines in the store",
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    messages = _messages(ExperimentReader(tmp_path / ".dash", "a/b/killed"))
    before = [f"line {i}" for i in range(200)]
    assert messages[:200] == before
    assert messages[200].startswith("100%|") and "100/100" in messages[200]
    assert messages[201] == "READY"
    after = messages[202:]
    # The lines printed after READY that made it are a gap-free run from the first: nothing torn,
    # reordered or repeated by the kill.
    assert after and after == [f"after {i}" for i in range(len(after))]


def test_a_stream_that_refuses_attributes_is_stood_in_for_and_put_back(dash_root, monkeypatch):
    class SlotStream:
        __slots__ = ("parts",)

        def __init__(self):
            self.parts = []

        def write(self, text):
            self.parts.append(text)
            return len(text)

        def flush(self):
            pass

    mine = SlotStream()
    monkeypatch.setattr(sys, "stdout", mine)
    with _console_exp(dash_root).run:
        assert sys.stdout is not mine  # a proxy in its place
        print("through the proxy")
        sys.stdout.writelines(["two ", "parts\n"])
    assert sys.stdout is mine
    print("after")
    assert "".join(mine.parts) == "through the proxy\ntwo parts\nafter\n"
    assert _messages(Experiment(prefix="a/b/console", dash_root=str(dash_root))) == ["through the proxy", "two parts"]
