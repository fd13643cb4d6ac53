"""Where the agent finds a token: never in the spool, only in the environment or the user's config.

Order: ``ML_DASH_TOKEN``; else the file ``$XDG_CONFIG_HOME/ml-dash/credentials.json`` (default
``~/.config/ml-dash/credentials.json``, keep it mode 0600)::

    {"http://dash.example.org:8000": "<token>", "default": "<token>"}

keyed by server URL (as ``ml-dash-agent status`` prints it), with ``"default"`` for any other.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Mapping, Optional

from ._session import public_url

__all__ = ["token_for", "credentials_path"]


def credentials_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "ml-dash" / "credentials.json"


def token_for(url: str, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The token to use for ``url``, or None."""
    env = os.environ if environ is None else environ
    token = env.get("ML_DASH_TOKEN")
    if token:
        return token
    path = credentials_path(env)
    try:
        mode = path.stat().st_mode
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"ml-dash: warning: {path} is readable by others; run: chmod 600 {path}", file=sys.stderr)
    if not isinstance(table, dict):
        return None
    wanted = public_url(url)
    by_url = {public_url(k): v for k, v in table.items() if k != "default" and isinstance(k, str)}
    value = by_url.get(wanted) or table.get("default")
    return value if isinstance(value, str) and value else None
