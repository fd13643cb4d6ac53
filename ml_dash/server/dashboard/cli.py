"""``ml-dash dashboard``: look at a local dash_root in the browser (loopback, no token, read-only)."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import List, Optional

__all__ = ["main"]

DEFAULT_PORT = 8766


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ml-dash dashboard",
        description="Serve a local store's experiments as a web dashboard on this machine (read-only, "
        "no token: loopback only). Runs that are writing into the folder show live.",
    )
    p.add_argument("--root", default=None, help="local store (default: $ML_DASH_ROOT or .dash)")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default: 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"port (default: {DEFAULT_PORT}, or a free one when it is taken; 0: a free one)",
    )
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    from ..._config import load_config
    from ..launch import is_loopback, serve_forever

    if not is_loopback(args.host):
        print(
            f"error: the dashboard serves without a token, so only on a loopback address, not {args.host!r}; "
            "for a shared dashboard run `ml-dash server` (it has logins)",
            file=sys.stderr,
        )
        return 2
    root = Path(args.root or load_config().dash_root)
    if not root.is_dir():
        print(
            f"error: no local store at {str(root)!r} (run something with ml-dash first, or pass --root)",
            file=sys.stderr,
        )
        return 2

    def on_ready(url: str) -> None:
        print(f"ml-dash dashboard: {url}/  (data: {root}; Ctrl-C to stop)", flush=True)

    port = args.port
    while True:
        try:
            serve_forever(
                root, args.host, port, auth=False, fault_injection=False, limits=None, on_ready=on_ready, read_only=True
            )
            return 0
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and port == DEFAULT_PORT:
                port = 0  # the default port is taken (another dashboard?): any free one will do
                continue
            print(f"error: cannot listen on {args.host}:{port}: {exc}", file=sys.stderr)
            return 1
