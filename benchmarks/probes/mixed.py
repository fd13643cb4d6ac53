"""Mixed: what a training loop really does. Metrics every step, plus logs, params, eval metrics
and checkpoint files at the cadences below; ours against the floor doing the same writes by hand.

Every call is timed (per kind), so the table can show what a metric call costs while logs and
file saves go through the same queue, and what a file save costs the caller.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from typing import Any, Dict

from .timing import dir_bytes, latency_stats, maxrss_mib, new_timings, timer_overhead_ns

PREFIX = "bench/mixed/run"
LOG_EVERY = 100  # 1,000 log lines per 100k steps
EVAL_EVERY = 1_000  # 100 rows of a second metric
PARAMS_EVERY = 25_000  # params updated 4 times (plus the initial set)
SAVE_EVERY = 10_000  # 10 checkpoint files
CKPT_BYTES = 1 << 20  # 1 MiB each: big enough to cost a copy, small enough not to dominate

PARAMS = {
    "model": {"name": "resnet18", "layers": 18, "width": 64, "dropout": 0.1},
    "optim": {"name": "adamw", "lr": 1e-3, "betas": [0.9, 0.999], "weight_decay": 0.05},
    "data": {"name": "cifar10", "batch_size": 128, "augment": True},
    "seed": 0,
}


def expected(n: int) -> Dict[str, int]:
    """How many records of each kind a run of n steps must store."""
    return {
        "train": n,
        "eval": len(range(0, n, EVAL_EVERY)),
        "logs": len(range(0, n, LOG_EVERY)),
        "files": len(range(0, n, SAVE_EVERY)),
    }


class _Ours:
    def __init__(self, workdir: str):
        from ml_dash import Experiment

        self.exp = Experiment(PREFIX, dash_root=os.path.join(workdir, "dash"))
        self.exp.run.start()
        self.train = self.exp.metrics("train")
        self.eval = self.exp.metrics("eval")

    def params(self, **kw: Any) -> None:
        self.exp.params.set(**kw)

    def metric(self, loss: float, acc: float, lr: float) -> None:
        self.train.log(loss=loss, acc=acc, lr=lr)

    def evaluate(self, i: int, val_loss: float) -> None:
        self.eval.log(step=i, val_loss=val_loss)

    def log(self, i: int, loss: float) -> None:
        self.exp.log(f"step {i}: loss {loss:.5f}", level="info", step=i)

    def save(self, path: str) -> None:
        self.exp.files("checkpoints").save(path)

    def close(self) -> None:
        self.exp.run.complete()


class _Floor:
    """The same records written by hand with orjson to files opened once; files copied."""

    def __init__(self, workdir: str):
        import orjson

        self.dir = os.path.join(workdir, "floor")
        os.makedirs(os.path.join(self.dir, "files"), exist_ok=True)
        self.dumps, self.nl = orjson.dumps, orjson.OPT_APPEND_NEWLINE
        self.f_train = open(os.path.join(self.dir, "train.jsonl"), "ab")
        self.f_eval = open(os.path.join(self.dir, "eval.jsonl"), "ab")
        self.f_logs = open(os.path.join(self.dir, "logs.jsonl"), "ab")
        self._params: Dict[str, Any] = {}
        self._saved = 0

    def params(self, **kw: Any) -> None:
        self._params.update(kw)
        with open(os.path.join(self.dir, "params.json"), "wb") as f:
            f.write(self.dumps(self._params))

    def metric(self, loss: float, acc: float, lr: float) -> None:
        self.f_train.write(self.dumps({"loss": loss, "acc": acc, "lr": lr, "_ts": time.time()}, option=self.nl))

    def evaluate(self, i: int, val_loss: float) -> None:
        self.f_eval.write(self.dumps({"step": i, "val_loss": val_loss, "_ts": time.time()}, option=self.nl))

    def log(self, i: int, loss: float) -> None:
        self.f_logs.write(
            self.dumps(
                {"ts": time.time(), "level": "info", "message": f"step {i}: loss {loss:.5f}", "metadata": {"step": i}},
                option=self.nl,
            )
        )

    def save(self, path: str) -> None:
        shutil.copyfile(path, os.path.join(self.dir, "files", f"{self._saved}-{os.path.basename(path)}"))
        self._saved += 1

    def close(self) -> None:
        for f in (self.f_train, self.f_eval, self.f_logs):
            f.close()


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    """args: tool ("ours" | "floor"), n, workdir."""
    n, workdir = int(args["n"]), args["workdir"]
    os.makedirs(workdir, exist_ok=True)
    w = _Ours(workdir) if args["tool"] == "ours" else _Floor(workdir)
    timer = timer_overhead_ns(50_000)
    ckpt = os.path.join(workdir, "model.pt")
    blob = bytearray(os.urandom(CKPT_BYTES))
    pc = time.perf_counter_ns
    t_metric = new_timings(n)
    t_other: Dict[str, list] = {"log": [], "eval": [], "params": [], "save": []}
    t0 = time.perf_counter()
    w.params(**PARAMS)
    for i in range(n):
        loss, acc, lr = 1.0 / (i + 1), i / n, 0.001
        a = pc()
        w.metric(loss, acc, lr)
        t_metric[i] = pc() - a
        if i % LOG_EVERY == 0:
            a = pc()
            w.log(i, loss)
            t_other["log"].append(pc() - a)
        if i % EVAL_EVERY == 0:
            a = pc()
            w.evaluate(i, loss * 1.1)
            t_other["eval"].append(pc() - a)
        if i % PARAMS_EVERY == 0 and i:
            a = pc()
            w.params(epoch=i // PARAMS_EVERY)
            t_other["params"].append(pc() - a)
        if i % SAVE_EVERY == 0:
            blob[:8] = i.to_bytes(8, "little")  # the user's checkpoint: new content each time
            with open(ckpt, "wb") as f:
                f.write(blob)
            a = pc()
            w.save(ckpt)
            t_other["save"].append(pc() - a)
    t1 = time.perf_counter()
    w.close()
    t2 = time.perf_counter()
    os.remove(ckpt)  # keep only what the tool stored for the disk figure
    return {
        "tool": args["tool"],
        "n": n,
        "loop_s": t1 - t0,
        "close_s": t2 - t1,
        "loop_close_s": t2 - t0,
        "latency": {"metric": latency_stats(t_metric), **{k: latency_stats(v) for k, v in t_other.items()}},
        "timer": timer,
        "maxrss_mib": maxrss_mib(),
        "python": sys.version.split()[0],
    }


def verify(args: Dict[str, Any]) -> Dict[str, Any]:
    """Count what was stored, per kind; ok only when every count matches."""
    n, workdir = int(args["n"]), args["workdir"]
    want = expected(n)
    if args["tool"] == "ours":
        from ml_dash import Experiment
        from ml_dash._store import ExperimentReader

        exp = Experiment(PREFIX, dash_root=os.path.join(workdir, "dash"))
        got = {
            "train": len(exp.metrics("train").read()),
            "eval": len(exp.metrics("eval").read()),
            "logs": len(exp.logs.read()),
            # each save of the same path is stored; a listing shows the newest (upstream's rule)
            "files": len(
                ExperimentReader(os.path.join(workdir, "dash"), PREFIX).files("checkpoints", include_deleted=True)
            ),
        }
        params = exp.params.get()
        epoch = (n - 1) // PARAMS_EVERY or None  # set only when the loop passed a 25k boundary
        got["params_ok"] = params.get("model.layers") == 18 and params.get("epoch") == epoch
    else:
        from .timing import count_lines

        d = os.path.join(workdir, "floor")
        got = {
            "train": count_lines(os.path.join(d, "train.jsonl")),
            "eval": count_lines(os.path.join(d, "eval.jsonl")),
            "logs": count_lines(os.path.join(d, "logs.jsonl")),
            "files": len(os.listdir(os.path.join(d, "files"))),
        }
        got["params_ok"] = os.path.exists(os.path.join(d, "params.json"))
    ok = all(got[k] == v for k, v in want.items()) and got["params_ok"]
    # The ours run logs "started/completed" status etc. but only user records are counted here.
    return {
        "ok": ok,
        "rows": got["train"],
        "expected": n,
        "counts": got,
        "want": want,
        "disk_bytes": dir_bytes(workdir),
    }
