"""A reference server in its own process (so its CPU never competes for the client's GIL).

Writes ``{"url", "token"}`` to ``args["ready_file"]`` once listening, serves until SIGTERM, then
returns its own peak RSS and CPU time.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import threading
from typing import Any, Dict


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    from ml_dash.server import create_token, run_in_thread

    root = args["root"]
    os.makedirs(root, exist_ok=True)
    token = create_token(root, args.get("owner", "bench"))
    handle = run_in_thread(root, host="127.0.0.1", port=0, auth=True, fault_injection=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    tmp = args["ready_file"] + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"url": handle.url, "token": token, "pid": os.getpid()}, f)
    os.replace(tmp, args["ready_file"])
    while not stop.wait(0.2):
        pass
    handle.stop()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"url": handle.url, "maxrss_mib": ru.ru_maxrss / 1024.0, "cpu_s": ru.ru_utime + ru.ru_stime}
