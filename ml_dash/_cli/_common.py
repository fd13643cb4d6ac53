"""Arguments shared by the read commands, and their errors as one line on stderr."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from .._text import printable

__all__ = ["add_where", "reporting"]


def add_where(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--root", "--dash-root", dest="root", default=None, help="a local store (default: $ML_DASH_ROOT or .dash)"
    )
    where.add_argument(
        "--dash-url",
        default=None,
        help="a server (default: $ML_DASH_URL when set); its token comes from $ML_DASH_TOKEN or `ml-dash login URL`",
    )


def reporting(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Errors a user can act on become ``error: ...`` and exit code 1 (2 for bad arguments)."""

    def wrapped(args: argparse.Namespace) -> int:
        from .._errors import InvalidPrefix, MlDashError, NotFound

        try:
            return run(args)
        except (InvalidPrefix, ValueError) as exc:
            print(f"error: {printable(exc)}", file=sys.stderr)
            return 2
        except (NotFound, MlDashError) as exc:
            print(f"error: {printable(exc)}", file=sys.stderr)
            return 1
        except BrokenPipeError:  # `ml-dash ls | head`
            return 0

    return wrapped
