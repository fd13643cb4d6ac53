"""``ml-dash demo``: a small synthetic training loop that logs to the local store."""

from __future__ import annotations

import math
import random
import shlex
import statistics
import time
from pathlib import Path
from typing import Optional

from ._config import load_config
from ._experiment import Experiment
from ._run_info import RUN

__all__ = ["run_demo"]


def run_demo(dash_root: Optional[str], steps: int) -> int:
    root = dash_root or load_config().dash_root
    prefix = f"{RUN.user}/demo/synthetic-{RUN.now:%Y%m%d-%H%M%S}"
    rng = random.Random(0)
    lr = 3e-3
    exp = Experiment(
        prefix=prefix,
        dash_root=root,
        description="ml-dash demo: a synthetic training loop",
        tags=["demo"],
        metadata={"steps": steps},
    )
    with exp.run:
        exp.params.set(lr=lr, batch_size=64, model={"layers": 2, "hidden": 128}, optimizer="adam")
        exp.log("Training started", steps=steps)
        call_seconds = []
        for step in range(steps):
            loss = 2.0 * math.exp(-step / (steps / 4)) + 0.05 * rng.random()
            acc = 1.0 - loss / 2.2
            t = time.perf_counter()
            exp.metrics("train").log(step=step, loss=loss, acc=acc, lr=lr)
            call_seconds.append(time.perf_counter() - t)
            if step % max(1, steps // 10) == 0:
                exp.metrics("val").log(step=step, loss=loss * 1.1, acc=acc * 0.98)
                exp.log(f"step {step}: loss {loss:.4f}", level="info", step=step)
        checkpoint = exp.files("checkpoints").save(rng.randbytes(64 * 1024), name="model.bin")
        exp.log("Training finished")
        exp.flush()
        train_rows = len(exp.metrics("train").read())
        val_rows = len(exp.metrics("val").read())
        final = exp.metrics("train").read(start=steps - 1)[0]["data"]["loss"]
    where = Path(root).resolve().joinpath(*prefix.split("/"))
    print(f"experiment   {prefix}  ({exp.status})")
    print(f"stored in    {where}")
    print(f"metrics      train: {train_rows} rows, val: {val_rows} rows; final train loss {final:.4f}")
    print(
        f"files        checkpoints/{checkpoint.filename} ({checkpoint.size:,} bytes, sha256 {checkpoint.checksum[:12]}...)"
    )
    if call_seconds:  # the median is the typical call; the mean carries the first call's setup and the hand-overs
        median, mean = statistics.median(call_seconds), statistics.fmean(call_seconds)
        print(
            f"caller cost  {1e6 * median:.2f} us per metrics(...).log() call (median; mean {1e6 * mean:.2f} us), {len(call_seconds)} calls"
        )
    root_arg = "" if dash_root is None else f" --root {shlex.quote(dash_root)}"  # else both read the same default
    print(f"look at it   ml-dash dashboard{root_arg}    (or: ml-dash show {prefix}{root_arg})")
    return 0 if train_rows == steps else 1
