"""The ml-dash reference server (protocol v1, see PROTOCOL.md next to this file).

Programmatic use::

    from ml_dash.server import create_token, run_in_thread, spawn_server

    token = create_token(root, "alice")
    handle = run_in_thread(root, port=0)        # handle.url, handle.stop()
    url, proc = spawn_server(root, port=0)      # a real process, for kill -9 tests

Nothing here is imported by ``import ml_dash``; the names below load their modules on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_token", "run_in_thread", "spawn_server", "ServerHandle", "make_app", "Limits"]

_WHERE = {
    "create_token": ".auth",
    "run_in_thread": ".launch",
    "spawn_server": ".launch",
    "ServerHandle": ".launch",
    "make_app": ".app",
    "Limits": ".limits",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
