"""The dashboard URL of a run, and the one line a remote run prints with it at start."""

from __future__ import annotations

import sys
from urllib.parse import quote

__all__ = ["dashboard_url", "announce_run"]


def dashboard_url(dash_url: str, prefix: str) -> str:
    """``{dash_url}/e/<owner>/<project>/.../<name>``, each segment percent-encoded."""
    return dash_url.rstrip("/") + "/e/" + "/".join(quote(seg, safe="") for seg in prefix.split("/"))


def announce_run(config, prefix: str) -> None:
    """Print where to watch a remote run (stderr; ``ML_DASH_PRINT_URL=0`` silences it)."""
    if config.dash_url and config.print_url:
        print(f"ml-dash: {prefix} → {dashboard_url(config.dash_url, prefix)}", file=sys.stderr, flush=True)
