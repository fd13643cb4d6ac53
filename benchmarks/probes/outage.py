"""Outage: a training loop keeps logging while the server is unreachable, then the route returns.

Phases: warm-up (connected, then flushed), outage (the proxy blackholes; the loop logs at a
steady rate), recovery (the loop stops; the clock runs until ``exp.flush()`` says everything is
acknowledged). A sampler thread records RSS and spool size every 0.25 s throughout.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Dict, List

from .remote import open_remote
from .timing import dir_bytes, maxrss_mib, rss_mib


class _Sampler(threading.Thread):
    def __init__(self, spool: str, every: float = 0.25):
        super().__init__(daemon=True, name="bench-sampler")
        self.spool, self.every = spool, every
        self.samples: List[tuple] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.every):
            self.samples.append((time.monotonic(), rss_mib(), dir_bytes(self.spool)))


def _paced(m, seconds: float, rate: int, start: int) -> int:
    """Log ``rate`` steps per second for ``seconds``, in 10 ms ticks; returns the next step index."""
    per_tick = max(1, rate // 100)
    i, t_end, tick = start, time.monotonic() + seconds, time.monotonic()
    while time.monotonic() < t_end:
        for _ in range(per_tick):
            m.log(loss=1.0 / (i + 1), acc=(i % 1000) / 1000, lr=0.001)
            i += 1
        tick += 0.01
        delay = tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return i


def run(args: Dict[str, Any]) -> Dict[str, Any]:
    """args: url (the proxy), token, prefix, proxy_pid, warm_s, outage_s, rate, catchup_timeout, workdir."""
    os.makedirs(args["workdir"], exist_ok=True)
    spool = os.path.join(args["workdir"], "spool")
    exp = open_remote(args)
    m = exp.metrics("train")
    sampler = _Sampler(spool)
    sampler.start()
    rate = int(args["rate"])
    i = _paced(m, float(args.get("warm_s", 2.0)), rate, 0)
    warm_acked = exp.flush(timeout=60)
    rss_base, spool_base = rss_mib(), dir_bytes(spool)
    t_down = time.monotonic()
    os.kill(int(args["proxy_pid"]), signal.SIGUSR1)
    i_down = i
    i = _paced(m, float(args["outage_s"]), rate, i)
    os.kill(int(args["proxy_pid"]), signal.SIGUSR2)
    t_up = time.monotonic()
    caught_up = exp.flush(timeout=float(args.get("catchup_timeout", 600)))
    t_done = time.monotonic()
    exp.run.complete()
    sampler.stop.set()
    sampler.join()
    during = [s for s in sampler.samples if t_down <= s[0] <= t_done]
    peak_rss = max([s[1] for s in during] + [rss_base])
    return {
        "steps": i,
        "steps_during_outage": i - i_down,
        "rate": rate,
        "outage_s": t_up - t_down,
        "warm_acked": warm_acked,
        "caught_up": caught_up,
        "catchup_s": t_done - t_up,
        "rss_base_mib": rss_base,
        "rss_peak_mib": peak_rss,
        "rss_growth_mib": peak_rss - rss_base,
        "spool_base_bytes": spool_base,
        "spool_peak_bytes": max([s[2] for s in during] + [spool_base]),
        "maxrss_mib": maxrss_mib(),
        "samples": len(sampler.samples),
    }
