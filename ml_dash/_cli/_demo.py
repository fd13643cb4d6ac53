"""``ml-dash demo``: a small synthetic training loop that logs to the local store."""

from __future__ import annotations

import argparse

HELP = "run a small training loop that logs to the local store"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--root", "--dash-root", dest="root", default=None, help="local store (default: $ML_DASH_ROOT or .dash)"
    )
    p.add_argument("--steps", type=int, default=2000)


def run(args: argparse.Namespace) -> int:
    from .._demo import run_demo

    return run_demo(args.root, args.steps)
