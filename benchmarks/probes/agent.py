"""The user's ``ml-dash-agent serve`` on a spool, in its own process, for remote runs with
``ML_DASH_UPLOADER=agent``.

Writes ``{"socket", "pid"}`` to ``args["ready_file"]`` once the agent listens, serves until
SIGTERM, then returns its own peak RSS and CPU time (what the uploading cost, off the runs' clock).
"""

from __future__ import annotations

import json
import os
import resource
import threading
import time
from pathlib import Path
from typing import Any, Dict


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    from ml_dash._config import load_config
    from ml_dash.agent._service import serve
    from ml_dash.agent._session import AGENT_SOCKET

    spool = Path(args["spool"])
    sock = spool / AGENT_SOCKET

    def announce() -> None:
        while not sock.exists():
            time.sleep(0.01)
        tmp = args["ready_file"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"socket": str(sock), "pid": os.getpid()}, f)
        os.replace(tmp, args["ready_file"])

    threading.Thread(target=announce, daemon=True).start()
    rc = serve(spool, 0.0, load_config())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"rc": rc, "maxrss_mib": ru.ru_maxrss / 1024.0, "cpu_s": ru.ru_utime + ru.ru_stime}
