"""Entry point of every benchmark subprocess: ``python benchmarks/child.py PROBE ARGS_JSON RESULT_PATH``.

Run as a script, never as ``-m benchmarks...``: then ``sys.path[0]`` is this folder, not the
checkout, so an interpreter with upstream ``ml_dash`` installed (``--peers-python``) imports
upstream's package and not ours. For our own tools the parent puts the checkout on PYTHONPATH.

The probe's result (a JSON object) goes to RESULT_PATH; stdout and stderr are left to the tool
(the parent keeps their tails for error reports). Exit status 0 = result written; 1 = the probe
raised (the error and traceback are in the result file).
"""

import importlib
import json
import os
import sys
import traceback

#: probe name -> "module:function" under probes/ (imported lazily, so each child loads only its own).
PROBES = {
    "steps": "steps:run",
    "verify": "steps:verify",
    "mixed": "mixed:run",
    "mixed-verify": "mixed:verify",
    "remote": "remote:run",
    "remote-verify": "remote:verify",
    "wire": "wire:run",
    "outage": "outage:run",
    "ingest": "ingest:run",
    "files": "files:run",
    "import-check": "steps:import_check",
    "serve": "serve:run",
    "proxy": "proxy:run",
    "agent": "agent:run",
    "sweep": "sweep:run",
    "sweep-verify": "sweep:verify",
    "frameworks": "frameworks:run",
    "framework-calls": "frameworks:calls",
}


def main(argv):
    probe, args_json, result_path = argv[1], argv[2], argv[3]
    try:
        mod_name, fn_name = PROBES[probe].split(":")
        fn = getattr(importlib.import_module("probes." + mod_name), fn_name)
        result = fn(json.loads(args_json))
        code = 0
    except BaseException as exc:  # report everything, including SystemExit from a tool
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
        code = 1
    tmp = result_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, default=str)
    os.replace(tmp, result_path)
    sys.stdout.flush()
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
