"""Seeded stores for the dashboard tests: real SDK runs in local mode."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path
from typing import List

from ..pipes import read_line


def png(width: int, height: int, rgb=(220, 40, 40)) -> bytes:
    """A solid-colour PNG, made by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


SWEEP = [f"alice/vision/sweep/run{i}" for i in range(3)]


def seed(root: Path, extra_runs: int = 0) -> List[str]:
    """Three sweep runs with 3,000 rows of ``train`` (loss with a spike at row 1,500), an ``eval``
    metric, logs, params and two files; plus ``extra_runs`` tiny runs under ``bob/``. The prefixes."""
    from ml_dash import Experiment

    for i, prefix in enumerate(SWEEP):
        lr = [0.1, 0.01, 0.001][i]
        with Experiment(
            prefix=prefix, dash_root=str(root), description=f"lr {lr}", tags=["sweep", "resnet" if i < 2 else "vit"]
        ).run as exp:
            exp.params.set(lr=lr, model={"arch": "resnet" if i < 2 else "vit", "layers": 12})
            exp.log("training started")
            exp.log("loss is high", level="warn")
            for s in range(3000):
                loss = 2 * math.exp(-s * lr / 10) + 0.05 * math.sin(s) + (5.0 if s == 1500 else 0.0)
                exp.metrics("train").log(loss=loss, step=s * 2)
                if s % 100 == 0:
                    exp.metrics("eval").log(acc=1 - loss / 10, step=s * 2)
            exp.files("cfg").save(b"lr: 0.1\nlayers: 12\n", name="config.yaml")
            exp.files("html").save(b"<script>parent.pwned=1</script>", name="evil.html")
            exp.files("plots").save(png(24, 16), name="curve.png")
    extra = [f"bob/nlp/tiny{i:02d}" for i in range(extra_runs)]
    for prefix in extra:
        with Experiment(prefix=prefix, dash_root=str(root)).run as exp:
            exp.metrics.log(ppl=10.0)
    return SWEEP + extra


def killed_runs(root: Path, prefixes: List[str], rows: int = 20) -> None:
    """Runs that a real SDK process started, wrote ``rows`` metric rows to, and died in with
    ``kill -9``: they stay RUNNING on disk."""
    import os
    import signal
    import subprocess
    import sys

    code = f"""
import time
from ml_dash import Experiment
runs = [Experiment(prefix=p, dash_root={str(root)!r}).run.start() for p in {prefixes!r}]
for exp in runs:
    for i in range({rows}):
        exp.metrics("train").log(loss=1.0 / (i + 1), step=i)
    exp.flush()
print("ready", flush=True)
time.sleep(600)
"""
    writer = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")},
    )
    try:
        assert writer.stdout is not None and read_line(writer.stdout, 120, "ready").strip() == "ready"
        writer.send_signal(signal.SIGKILL)  # no chance to end its runs
        writer.wait(30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()


def quiet_since(folder: Path, seconds_ago: float) -> int:
    """Make every file and folder under ``folder`` look last written ``seconds_ago`` (mtimes set,
    rather than a wait); the time set, epoch nanoseconds."""
    import os
    import time

    when = time.time_ns() - int(seconds_ago * 1e9)
    for dirpath, _dirs, files in os.walk(folder, topdown=False):
        for f in files:
            os.utime(os.path.join(dirpath, f), ns=(when, when))
        os.utime(dirpath, ns=(when, when))
    return when
