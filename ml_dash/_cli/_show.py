"""``ml-dash show PREFIX``: one experiment: metadata, params, every metric's fields, logs, files."""

from __future__ import annotations

import argparse

from ._common import add_where, reporting

HELP = "show one experiment: metadata, params, metrics (count, last, min, max), files"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("prefix", help="owner/project/.../name")
    add_where(p)


def _size(n: object) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return "-"


@reporting
def run(args: argparse.Namespace) -> int:
    from . import _format as F
    from ._source import open_source

    source = open_source(args.root, args.dash_url)
    exp = source.experiment(args.prefix)
    summary = source.summary(args.prefix)
    params = source.params(args.prefix)
    files = source.files(args.prefix)
    started, ended = exp.get("started_at"), exp.get("ended_at")
    span = None
    if started:
        import datetime as dt

        def t(x: str) -> float:
            return dt.datetime.fromisoformat(x.replace("Z", "+00:00")).timestamp()

        try:
            end = (
                t(ended)
                if ended and exp.get("status") != "RUNNING"
                else (dt.datetime.now().timestamp() if exp.get("status") == "RUNNING" else None)
            )
            span = None if end is None else end - t(started)
        except ValueError:
            span = None
    raw_tags = exp.get("tags")
    tags = raw_tags if isinstance(raw_tags, list) else []
    meta = [
        ("prefix", args.prefix),
        ("status", F.status({**summary, "status": exp.get("status")})),
        ("description", exp.get("description")),
        ("tags", ", ".join(F.value(t) for t in tags) or None),
        ("created", F.when(exp.get("created_at"))),
        ("started", F.when(started)),
        ("ended", F.when(ended) if exp.get("status") != "RUNNING" else None),
        ("duration", F.duration(span) if span is not None else None),
        ("last active", F.epoch(summary["lastActivity"]) if summary.get("lastActivity") is not None else None),
    ]
    if exp.get("status_reason"):
        meta.append(("reason", exp.get("status_reason")))
    if exp.get("metadata"):
        meta.append(("metadata", exp.get("metadata")))
    for key, val in meta:
        print(f"{key:<12} {F.value(val)}")
    print(f"\nparams ({len(params)})")
    for k in sorted(params):
        print(f"  {F.value(k)} = {F.value(params[k])}")
    metrics = summary.get("metrics") or []
    print(f"\nmetrics ({len(metrics)})")
    cells = []
    for m in metrics:
        name = "(unnamed)" if m["name"] is None else m["name"]
        for i, (field, f) in enumerate(m["fields"].items()):
            fmt = F.epoch if field == "_ts" else F.value
            cells.append(
                [
                    F.value(name) if i == 0 else "",
                    str(m["count"]) if i == 0 else "",
                    F.value(field),
                    fmt(f.get("last")),
                    fmt(f.get("min")),
                    fmt(f.get("max")),
                ]
            )
        if not m["fields"]:
            cells.append([F.value(name), str(m["count"]), "-", "-", "-", "-"])
    if cells:
        for line in F.table(
            ["  METRIC", "ROWS", "FIELD", "LAST", "MIN", "MAX"],
            [["  " + c[0]] + c[1:] for c in cells],
            right=[1, 3, 4, 5],
        ):
            print(line)
    print(f"\nlogs         {summary.get('logs', 0)} lines")
    print(f"\nfiles ({len(files)})")
    for e in files:
        path = str(e.get("path") or "/").rstrip("/") + "/" + str(e.get("filename"))
        print(f"  {F.value(path)}  {_size(e.get('sizeBytes'))}  id {F.value(e.get('id'))}")
    return 0
