"""``ml-dash ls [GLOB]``: the experiments as a table (prefix, status, started, duration, rows, last values)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List

from ._common import add_where, reporting

HELP = "list experiments as a table (a local store or a server)"
_PAGE = 1000
_AUTO_COLUMNS = 3


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "glob",
        nargs="?",
        default=None,
        help="prefix glob, e.g. 'alice/*' ('*' also matches '/'); without a wildcard: prefixes starting with it",
    )
    add_where(p)
    p.add_argument(
        "--status",
        action="append",
        default=[],
        metavar="STATUS",
        help="RUNNING, COMPLETED, FAILED or CANCELLED (repeat for several)",
    )
    p.add_argument(
        "-q", "--search", default=None, help="only experiments whose prefix, description or a tag contains this"
    )
    p.add_argument(
        "-c",
        "--column",
        action="append",
        default=[],
        metavar="KEY",
        help="a last-value column: m:<metric>:<field> (m::<field> for the unnamed metric) or p:<param>; "
        f"default: the first {_AUTO_COLUMNS} metric fields",
    )
    p.add_argument("--sort", default="prefix", help="prefix, status, startedAt, duration, rows, ... or a column key")
    p.add_argument("--desc", action="store_true", help="sort in descending order")
    p.add_argument("-n", "--limit", type=int, default=None, help="show at most this many")


def _glob(g: Any) -> Any:
    if g and not any(ch in g for ch in "*?["):
        return g.rstrip("/") + "*"
    return g


@reporting
def run(args: argparse.Namespace) -> int:
    from .._readmodel import TableQuery
    from . import _format as F
    from ._source import open_source

    source = open_source(args.root, args.dash_url)
    status = tuple(s.upper() for s in args.status)
    base = dict(
        glob=_glob(args.glob), q=args.search, status=status, sort=args.sort, order="desc" if args.desc else "asc"
    )
    columns = tuple(args.column)
    if not columns:
        probe = source.table(TableQuery(**base, limit=1).checked())
        columns = tuple(k for k in probe["available"]["metrics"] if not k.rpartition(":")[2].startswith("_"))[
            :_AUTO_COLUMNS
        ]
    rows: List[Dict[str, Any]] = []
    total = None
    while total is None or len(rows) < total:
        want = _PAGE if args.limit is None else min(_PAGE, args.limit - len(rows))
        if want <= 0:
            break
        page = source.table(TableQuery(**base, offset=len(rows), limit=want, columns=columns).checked())
        total = page["total"]
        rows += page["rows"]
        if not page["rows"]:
            break
    if not rows:
        what = f"no experiments match {args.glob!r}" if (args.glob or status or args.search) else "no experiments"
        print(f"{what} in {F.printable(source.where)}", file=sys.stderr)
        return 1
    header = ["PREFIX", "STATUS", "STARTED", "DURATION", "ROWS"] + [c[2:] if c.startswith("m:") else c for c in columns]
    cells = [
        [
            F.value(r["prefix"]),
            F.status(r),
            F.when(r["startedAt"]),
            F.duration(r["duration"]),
            str(r["counts"]["metric_rows"]),
        ]
        + [F.value(r["values"].get(c)) for c in columns]
        for r in rows
    ]
    for line in F.table(header, cells, right=[3, 4] + list(range(5, 5 + len(columns)))):
        print(line)
    if total is not None and total > len(rows):
        print(f"({len(rows)} of {total} shown)", file=sys.stderr)
    return 0
