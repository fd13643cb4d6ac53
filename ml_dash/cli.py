"""The ``ml-dash`` command: ``demo``, ``ls``, ``server`` (the reference server), ``dashboard``."""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "server":
        from .server.cli import main as server_main

        return server_main(argv[1:])
    if argv and argv[0] == "dashboard":
        from .server.dashboard.cli import main as dashboard_main

        return dashboard_main(argv[1:])
    parser = argparse.ArgumentParser(prog="ml-dash", description="ml-dash experiment tracker")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a small training loop that logs to the local store")
    demo.add_argument("--dash-root", default=None, help="local store (default: $ML_DASH_ROOT or .dash)")
    demo.add_argument("--steps", type=int, default=2000)
    ls = sub.add_parser("ls", help="list experiments in a local store")
    ls.add_argument("--dash-root", default=None)
    ls.add_argument("glob", nargs="?", default=None, help="prefix glob, e.g. 'alice/*/*'")
    sub.add_parser("server", help="run the reference server (see `ml-dash server --help`)")
    sub.add_parser("dashboard", help="look at a local store in the browser (see `ml-dash dashboard --help`)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(args.dash_root, args.steps)
    if args.command == "ls":
        from ._config import load_config
        from ._store import list_experiments

        root = args.dash_root or load_config().dash_root
        from ._text import printable

        for prefix in list_experiments(root, args.glob):
            print(printable(prefix))  # folder names on disk may hold anything, escape sequences included
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
