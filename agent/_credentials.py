"""Where the agent finds a token: never in the spool, only in the environment or the user's config.

Order: ``ML_DASH_TOKEN``; else the file ``$XDG_CONFIG_HOME/ml-dash/credentials.json`` (default
``~/.config/ml-dash/credentials.json``, keep it mode 0600)::

    {"http://dash.example.org:8000": "<token>", "default": "<token>"}

keyed by server URL (as ``ml-dash-agent status`` prints it), with ``"default"`` for any other
server the user configured. A token goes only to a server the user configured now: see
:func:`flush_token` for what ``ml-dash-agent flush`` sends where.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Dict, Mapping, Optional

from ._session import public_url

__all__ = ["token_for", "flush_token", "credentials_entry", "credentials_path"]


def credentials_path(environ: Optional[Mapping[str, str]] = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "ml-dash" / "credentials.json"


def _table(env: Mapping[str, str]) -> Dict[str, str]:
    """The credentials file as {public url or "default": token} ({} when absent or unreadable)."""
    path = credentials_path(env)
    try:
        mode = path.stat().st_mode
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        from ._report import say

        say(f"warning: {path} is readable by others; run: chmod 600 {path}")
    if not isinstance(table, dict):
        return {}
    out = {}
    for key, value in table.items():
        if isinstance(key, str) and isinstance(value, str) and value:
            key = key if key == "default" else _server(key)
            if key:
                out[key] = value
    return out


def _server(url: str) -> Optional[str]:
    """``url`` as the credentials file is keyed (None for "default" or what is not a URL)."""
    try:
        key = public_url(url)
    except ValueError:
        return None
    return key if "://" in key else None


def credentials_entry(url: str, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The token the credentials file keeps for exactly this server (never its ``"default"``)."""
    key = _server(url)
    return _table(os.environ if environ is None else environ).get(key) if key else None


def token_for(url: str, environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The token for ``url``, a server the user configured now (``dash_url``, ``ML_DASH_URL``,
    ``--dash-url``): ``ML_DASH_TOKEN``, else its entry in the credentials file, else ``"default"``."""
    env = os.environ if environ is None else environ
    token = env.get("ML_DASH_TOKEN")
    if token:
        return token
    table = _table(env)
    return table.get(_server(url) or "") or table.get("default")


def flush_token(url: str, override: Optional[str], environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The token ``ml-dash-agent flush`` may send to ``url``, or None.

    Only to a server the user configured now: ``--dash-url`` (``override``), ``ML_DASH_URL``, or
    an entry for exactly that URL in the credentials file. A URL that a session's manifest names
    is not enough: a manifest is a file on disk, and the token must never follow a file to a host.
    """
    env = os.environ if environ is None else environ
    from ml_dash._config import load_config

    wanted = _server(url)
    configured = [_server(u) for u in (override, load_config(env).dash_url) if u]
    if wanted and wanted in configured:
        return token_for(url, env)
    return credentials_entry(url, env)
