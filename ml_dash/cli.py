"""The ``ml-dash`` command.

Subcommands live one per module: the read side in ``ml_dash/_cli/`` (each module has ``HELP``,
``configure(parser)`` and ``run(args) -> exit code``, and imports what it needs inside ``run``);
commands with a command line of their own (``server``, ``dashboard``) get the rest of argv.
To add a command, add a line to one of the two tables below.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import List, Optional

__all__ = ["main"]

#: name -> module with HELP, configure(parser), run(args)
COMMANDS = {
    "ls": "ml_dash._cli._ls",
    "show": "ml_dash._cli._show",
    "export": "ml_dash._cli._export",
    "login": "ml_dash._cli._login",
    "demo": "ml_dash._cli._demo",
}

#: name -> (module whose main(argv) takes the rest of the command line, help)
PASSTHROUGH = {
    "server": ("ml_dash.server.cli", "run the reference server (see `ml-dash server --help`)"),
    "dashboard": (
        "ml_dash.server.dashboard.cli",
        "look at a local store in the browser (see `ml-dash dashboard --help`)",
    ),
}


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="ml-dash", description="ml-dash: an experiment tracker for machine learning")
    parser.add_argument("--version", action="version", version=f"ml-dash {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=mod.HELP, description=(mod.__doc__ or mod.HELP).strip().splitlines()[0])
        mod.configure(p)
        p.set_defaults(_run=mod.run)
    for name, (_, help_text) in PASSTHROUGH.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASSTHROUGH:
        rc: int = importlib.import_module(PASSTHROUGH[argv[0]][0]).main(argv[1:])
        return rc
    parser = _parser()
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    code: int = args._run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
