"""Step-loop adapters: how each tool opens a run, logs 3 scalars per step, closes, and is verified.

An adapter has four parts, kept apart on purpose:

* ``load()``  imports the tool (timed separately from the loop);
* ``open(workdir)`` starts a run and returns the names its logging statement ``STMT`` needs;
* ``close()`` returns once the tool says its data is stored (the "until durable" point);
* ``verify(workdir, n)`` runs in a *separate* process after the run's process exited, reads the
  data back from disk and counts the rows, so a figure counts only if the data is really there,
  and reading back never inflates the measured process wall time.

This module holds the baselines and ours; ``peer_tools`` holds the other trackers.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from .timing import count_lines

PREFIX = "bench/steps/run"


class Adapter:
    """Base class; see the module docstring."""

    #: The per-step logging statement (sees ``i``, ``loss``, ``acc``, ``lr`` and ``open()``'s names).
    STMT = "pass"

    def load(self, workdir: str) -> None:
        """Import the tool (environment that selects its mode is set here, before the import)."""

    def open(self, workdir: str) -> Dict[str, Any]:
        return {}

    def close(self) -> Dict[str, Any]:
        """Close the run; may return extra facts (e.g. dropped events)."""
        return {}

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        """``{"rows": counted, "expected": n, "ok": bool, "how": text}``."""
        raise NotImplementedError


def rows_result(rows: int, n: int, how: str, **extra: Any) -> Dict[str, Any]:
    return {"rows": rows, "expected": n, "ok": rows == n, "how": how, **extra}


class Empty(Adapter):
    """The loop with nothing in it: what the loop itself and the value computation cost."""

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        return rows_result(n, n, "nothing to store")


class OrjsonFloor(Adapter):
    """The floor: one orjson line per step written to a file opened once (buffered, no fsync)."""

    STMT = 'write(dumps({"i": i, "loss": loss, "acc": acc, "lr": lr, "_ts": now()}, option=NL))'

    def load(self, workdir: str) -> None:
        import orjson

        self._orjson = orjson

    def open(self, workdir: str) -> Dict[str, Any]:
        import time

        self._f = open(os.path.join(workdir, "floor.jsonl"), "ab")
        return {
            "write": self._f.write,
            "dumps": self._orjson.dumps,
            "NL": self._orjson.OPT_APPEND_NEWLINE,
            "now": time.time,
        }

    def close(self) -> Dict[str, Any]:
        self._f.close()
        return {}

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        return rows_result(count_lines(os.path.join(workdir, "floor.jsonl")), n, "lines of floor.jsonl")


class Ours(Adapter):
    """This checkout's ml_dash, local mode, exactly the call of the issue."""

    STMT = "m.log(loss=loss, acc=acc, lr=lr)"

    def load(self, workdir: str) -> None:
        from ml_dash import Experiment

        self._Experiment = Experiment

    def open(self, workdir: str) -> Dict[str, Any]:
        self._exp = self._Experiment(PREFIX, dash_root=workdir)
        self._exp.run.start()
        return {"m": self._exp.metrics("train"), "exp": self._exp}

    def close(self) -> Dict[str, Any]:
        self._exp.run.complete()
        pipe = getattr(self._exp, "_pipe", None)
        drops = {k: v for k, v in dict(getattr(pipe, "drops", {}) or {}).items() if v}
        return {"drops": drops} if drops else {}

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        return verify_ours(workdir, PREFIX, {"train": n})


class OursTrack(Ours):
    """This checkout's ml_dash, local mode: the same three values appended to a track (upstream's
    ``exp.tracks(topic).append``), each with an automatic timestamp, to compare with ``ours``."""

    STMT = "t.append(loss=loss, acc=acc, lr=lr)"

    def open(self, workdir: str) -> Dict[str, Any]:
        self._exp = self._Experiment(PREFIX, dash_root=workdir)
        self._exp.run.start()
        return {"t": self._exp.tracks("train"), "exp": self._exp}

    def verify(self, workdir: str, n: int) -> Dict[str, Any]:
        from ml_dash._store import ExperimentReader

        entries = ExperimentReader(workdir, PREFIX).track_entries("train")
        out = rows_result(len(entries), n, "track entries read back with the SDK reader")
        stamps = [e["timestamp"] for e in entries]
        if stamps != sorted(set(stamps)):
            out["ok"] = False
            out["problems"] = ["automatic timestamps not unique and increasing"]
        return out


def verify_ours(
    root: str,
    prefix: str,
    expected: Dict[Optional[str], int],
    dash_url: Optional[str] = None,
    token: Optional[str] = None,
) -> Dict[str, Any]:
    """Read metrics back through the SDK's reader (local or remote) and check count and indices."""
    from ml_dash import Experiment

    if dash_url:
        exp = Experiment(prefix, dash_url=dash_url, token=token)
    else:
        exp = Experiment(prefix, dash_root=root)
    total, want, problems = 0, 0, []
    for name, n in expected.items():
        rows = exp.metrics(name).read()
        total += len(rows)
        want += n
        idx = [r.get("index") for r in rows]
        if idx != list(range(len(rows))):
            problems.append(f"{name}: indices not 0..{len(rows) - 1}")
        if len(rows) != n:
            problems.append(f"{name}: {len(rows)} rows, expected {n}")
    out = rows_result(total, want, "rows read back with the SDK reader")
    if problems:
        out["ok"] = False
        out["problems"] = problems
    return out


def get(name: str) -> Adapter:
    """The adapter for a tool name (peer adapters are imported only when asked for)."""
    local = {"empty": Empty, "floor": OrjsonFloor, "ours": Ours, "ours-track": OursTrack}
    if name in local:
        return local[name]()
    from . import peer_tools

    return peer_tools.ADAPTERS[name]()
