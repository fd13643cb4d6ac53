"""The garbage collector and the hot path: the full collection a process owes is paid at run
start, not inside a ``log`` call (``ml_dash._pipeline.collect_once``)."""

from __future__ import annotations

import json

import pytest

from ..conftest import run_script

#: A process that owes a full collection: 60,000 container objects made after the last one
#: moved into the oldest generation by a middle collection, over a quarter of it (as a fresh
#: process's imports leave it). Until the run has started no full collection may run on its own
#: (some Pythons' imports at start would pay the debt early); after it, small thresholds make the
#: rows of a short loop bring on enough middle collections for the owed full one to fall due.
OWES_A_FULL_COLLECTION = """
import gc, json
from ml_dash import Experiment

gc.collect()
kept = [[i] for i in range(60_000)]
gc.collect(1)
gc.set_threshold(700, 10, 10**9)  # whatever starting a run allocates, no full collection yet
exp = Experiment("a/b/gc", dash_root=".dash")
exp.run.start()
full = []
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and full.append(1))
gc.set_threshold(100, 2, 2)
m = exp.metrics("train")
for i in range(20_000):
    m.log(i=i, loss=1.0 / (i + 1))
middle = gc.get_stats()[1]["collections"]
gc.callbacks.clear()
exp.run.complete()
print(json.dumps({"full": len(full), "middle": middle, "enabled": gc.isenabled()}))
"""


@pytest.mark.parametrize("at_start", ["1", "0"])
def test_the_owed_full_collection_is_paid_at_run_start(tmp_path, at_start):
    proc = run_script(OWES_A_FULL_COLLECTION, tmp_path, env={"ML_DASH_GC_AT_START": at_start})
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["middle"] >= 10, seen  # the loop did bring on middle collections
    if at_start == "1":
        assert seen["full"] == 0, seen  # queued rows never make a full collection fall due
    else:
        assert seen["full"] >= 1, seen  # the control: without it, the owed one lands in the loop


def test_a_program_that_disabled_the_collector_gets_no_collection_from_us(tmp_path):
    code = """
import gc, json
from ml_dash import Experiment

gc.disable()
ran = []
gc.callbacks.append(lambda phase, info: phase == "start" and ran.append(info["generation"]))
exp = Experiment("a/b/off", dash_root=".dash")
exp.run.start()
exp.metrics("m").log(x=1)
exp.run.complete()
print(json.dumps({"collections": ran, "enabled": gc.isenabled()}))
"""
    proc = run_script(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"collections": [], "enabled": False}
