"""Adapters for the other trackers (see ``tools.Adapter``). Each logs the same 3 scalars per step.

These run in the peers' interpreter (``--peers-python``), where upstream ``ml_dash`` may be
installed under the same import name as ours. Environment variables that pick each tool's local /
offline mode are set in ``load()``, before the import, because the tools read them at import or
init time (and child processes such as wandb's service inherit them).
"""

from __future__ import annotations

import glob
import os
import struct
from typing import Any, Dict

from .timing import count_lines, find_files
from .tools import PREFIX, Adapter, rows_result

KEYS = ("loss", "acc", "lr")


def _setenv(env: Dict[str, str]) -> None:
    for k, v in env.items():
        os.environ[k] = v


class Upstream(Adapter):
    """Upstream ml-dash (0.11) in local mode, the same call as ours."""

    STMT = "m.log(loss=loss, acc=acc, lr=lr)"

    def load(self, workdir: str) -> None:
        # Upstream asks PyPI for its latest version at import; a benchmark must not wait on the network.
        _setenv({"ML_DASH_NO_VERSION_CHECK": "1"})
        import ml_dash

        if not hasattr(ml_dash, "LocalStorage"):  # our package has no LocalStorage: wrong interpreter
            raise RuntimeError("this interpreter's ml_dash is not upstream ml-dash (use --peers-python)")
        self._mod = ml_dash

    def open(self, workdir: str) -> Dict[str, Any]:
        self._exp = self._mod.Experiment(prefix=PREFIX, dash_root=workdir)
        self._exp.run.start()
        return {"m": self._exp.metrics("train")}

    def close(self) -> Dict[str, Any]:
        self._exp.run.complete()
        return {}

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        files = find_files(workdir, lambda f: f == "data.jsonl")
        rows = sum(count_lines(f) for f in files)
        return rows_result(rows, n, "lines of metrics/train/data.jsonl")


class TensorboardX(Adapter):
    """tensorboardX SummaryWriter: one add_scalar per value (3 per step)."""

    STMT = 'add("loss", loss, i); add("acc", acc, i); add("lr", lr, i)'

    def load(self, workdir: str) -> None:
        from tensorboardX import SummaryWriter

        self._cls = SummaryWriter

    def open(self, workdir: str) -> Dict[str, Any]:
        self._w = self._cls(logdir=workdir)
        return {"add": self._w.add_scalar}

    def close(self) -> Dict[str, Any]:
        self._w.close()
        return {}

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        # Parse the TFRecord framing (u64 length, u32 crc, data, u32 crc) and count scalar values.
        from tensorboardX.proto import event_pb2

        values = 0
        for path in glob.glob(os.path.join(workdir, "events.out.tfevents*")):
            with open(path, "rb") as f:
                data = f.read()
            off = 0
            while off + 12 <= len(data):
                (length,) = struct.unpack_from("<Q", data, off)
                off += 12
                ev = event_pb2.Event()
                ev.ParseFromString(data[off : off + length])
                off += length + 4
                values += sum(1 for v in ev.summary.value if v.tag in KEYS)
        return rows_result(values // 3, n, "scalar values in the event file / 3", values=values)


class Wandb(Adapter):
    """wandb in offline mode (defaults otherwise, so its system-metrics sampler runs as for users)."""

    STMT = 'log({"loss": loss, "acc": acc, "lr": lr})'

    def load(self, workdir: str) -> None:
        _setenv({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_CODE": "true", "WANDB_DIR": workdir})
        import wandb

        self._wandb = wandb

    def open(self, workdir: str) -> Dict[str, Any]:
        self._run = self._wandb.init(project="bench", dir=workdir, mode="offline")
        return {"log": self._run.log}

    def close(self) -> Dict[str, Any]:
        self._run.finish()
        return {}

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        files = glob.glob(os.path.join(workdir, "wandb", "offline-run-*", "run-*.wandb"))
        if not files:
            return rows_result(0, n, "no offline run file")
        rows = sum(_wandb_history_rows(f) for f in files)
        return rows_result(rows, n, "history records with loss/acc/lr in the offline .wandb file")


def _wandb_history_rows(path: str) -> int:
    """Count history records in a .wandb file (LevelDB log framing: 32 KiB blocks of
    [crc u32, length u16, type u8, data]; types 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    with open(path, "rb") as f:
        data = f.read()
    block, off, rows, buf = 32768, 7, 0, b""  # 7 bytes of file header
    while off + 7 <= len(data):
        if block - off % block < 7:  # block trailer padding
            off += block - off % block
            continue
        _crc, length, typ = struct.unpack_from("<IHB", data, off)
        off += 7
        chunk = data[off : off + length]
        off += length
        if typ == 0:
            continue
        if typ in (2, 3):
            buf = chunk if typ == 2 else buf + chunk
            continue
        rec_bytes = chunk if typ == 1 else buf + chunk
        rec = pb.Record()
        rec.ParseFromString(rec_bytes)
        if rec.WhichOneof("record_type") == "history":
            keys = {it.key or "/".join(it.nested_key) for it in rec.history.item}
            rows += set(KEYS) <= keys
    return rows


class Mlflow(Adapter):
    """mlflow with a local file store, synchronous logging (its default)."""

    STMT = 'log_metrics({"loss": loss, "acc": acc, "lr": lr}, step=i)'

    def load(self, workdir: str) -> None:
        # mlflow 3 refuses the file store unless told; the file store is "mlflow local" for most users.
        _setenv({"MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false"})
        import mlflow

        self._mlflow = mlflow

    def open(self, workdir: str) -> Dict[str, Any]:
        self._mlflow.set_tracking_uri("file://" + os.path.join(workdir, "mlruns"))
        self._mlflow.start_run()
        return {"log_metrics": self._mlflow.log_metrics}

    def close(self) -> Dict[str, Any]:
        self._mlflow.end_run()
        return {}

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = "file://" + os.path.join(workdir, "mlruns")
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
        if not runs:
            return rows_result(0, n, "no mlflow run")
        counts = {k: len(client.get_metric_history(runs[0].info.run_id, k)) for k in KEYS}
        return rows_result(min(counts.values()), n, "mlflow metric history length (min of 3 keys)", per_key=counts)


class MlflowAsync(Mlflow):
    """mlflow with ``synchronous=False`` (queued logging); end_run() waits for the queue."""

    STMT = 'log_metrics({"loss": loss, "acc": acc, "lr": lr}, step=i, synchronous=False)'


class Trackio(Adapter):
    """trackio, local SQLite store under TRACKIO_DIR."""

    STMT = 'log({"loss": loss, "acc": acc, "lr": lr})'

    def load(self, workdir: str) -> None:
        _setenv({"TRACKIO_DIR": workdir})
        import trackio

        self._trackio = trackio

    def open(self, workdir: str) -> Dict[str, Any]:
        # The Run's own log: trackio.log() finds the run in a context variable, which other threads
        # do not see (it raises there); it only forwards to this method.
        self._run = self._trackio.init(project="bench")
        return {"log": self._run.log}

    def close(self) -> Dict[str, Any]:
        self._trackio.finish()
        return {}

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        import sqlite3

        rows = 0
        for db in glob.glob(os.path.join(workdir, "*.db")):
            con = sqlite3.connect(db)
            try:
                rows += con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
            finally:
                con.close()
        return rows_result(rows, n, "rows of the metrics table in trackio's SQLite file")


ADAPTERS = {
    "upstream-ml-dash": Upstream,
    "tensorboardX": TensorboardX,
    "wandb": Wandb,
    "mlflow": Mlflow,
    "mlflow-async": MlflowAsync,
    "trackio": Trackio,
}
