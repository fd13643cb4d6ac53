"""``ml-dash export PREFIX``: metric rows as flat CSV or JSONL, one column per field (for pandas or a
spreadsheet). Columns: ``metric`` (when several metrics are exported), ``index``, then every field
in order of first appearance (``_ts``, the SDK's wall time, included). A field named like one of
the first columns is written as ``data.<name>``. CSV cells: numbers as Python writes them (``nan``,
``inf``), true/false, lists and objects as JSON, empty for no value. JSONL: one object per row,
non-finite floats as "NaN", "Infinity", "-Infinity" (strict JSON, as the store keeps them)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, List, Optional

from ._common import add_where, reporting

HELP = "export metric rows as CSV or JSONL, one column per field"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix", help="owner/project/.../name")
    add_where(p)
    p.add_argument(
        "--metric",
        default=None,
        metavar="NAME",
        help="one metric ('' for the unnamed one); default: every metric, with a 'metric' column",
    )
    p.add_argument("--format", choices=("csv", "jsonl"), required=True)
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="write here (default: stdout)")


def _cell(v: Any) -> str:
    import math

    import orjson

    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, (int, str)):
        return str(v)
    from .._values import encode_nonfinite

    return orjson.dumps(encode_nonfinite(v)).decode()


@reporting
def run(args: argparse.Namespace) -> int:
    from ._source import open_source

    source = open_source(args.root, args.dash_url)
    source.experiment(args.prefix)  # NotFound first
    if args.metric is None:
        names: List[Optional[str]] = source.metric_names(args.prefix)
    else:
        names = [args.metric or None]
    several = args.metric is None and len(names) > 1
    fixed = (["metric"] if several else []) + ["index"]
    rows: List[Dict[str, Any]] = []
    fields: Dict[str, None] = {}
    for name in names:
        got = False
        for r in source.metric_rows(args.prefix, name):
            got = True
            data = {("data." + k if k in fixed else k): v for k, v in (r.get("data") or {}).items()}
            fields.update(dict.fromkeys(data))
            row = {"index": r["index"], **data}
            if several:
                row["metric"] = name if name is not None else ""
            rows.append(row)
        if not got and args.metric is not None:
            from .._errors import NotFound

            raise NotFound(f"no metric {args.metric!r} with rows in {args.prefix!r}")
    columns = fixed + list(fields)
    if args.output:
        import io
        from pathlib import Path

        from .._atomic import replacing

        with replacing(Path(args.output)) as fh:  # a failed export never leaves half a file
            text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
            _write(text, args.format, columns, rows)
            text.flush()
            text.detach()
    else:
        _write(sys.stdout, args.format, columns, rows)
    if args.output:
        print(f"{len(rows)} rows, {len(columns)} columns -> {args.output}", file=sys.stderr)
    return 0


def _write(out: Any, fmt: str, columns: List[str], rows: List[Dict[str, Any]]) -> None:
    if fmt == "csv":
        import csv

        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow([_cell(row.get(c)) for c in columns])
        return
    import orjson

    from .._values import encode_nonfinite

    for row in rows:
        out.write(orjson.dumps(encode_nonfinite({c: row[c] for c in columns if c in row})).decode() + "\n")
