"""Text for a terminal: aligned tables, values, times and durations. Everything read from the store
goes through ``printable`` (a folder name or a string field may hold escape sequences)."""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, List, Optional, Sequence

from .._text import printable

__all__ = ["table", "value", "when", "epoch", "duration", "status", "printable"]


def value(v: Any) -> str:
    """A cell: numbers to 6 significant digits, "-" for nothing, text made printable."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.6g}"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, dict)):
        import orjson

        from .._values import encode_nonfinite

        return printable(orjson.dumps(encode_nonfinite(v)).decode())
    return printable(v)


def epoch(v: Any) -> str:
    """Epoch seconds (the SDK's ``_ts``) as local time with milliseconds."""
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
        return value(v)
    try:
        return _dt.datetime.fromtimestamp(v).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    except (OverflowError, OSError, ValueError):
        return value(v)


def when(iso: Optional[str]) -> str:
    """An ISO UTC time as local ``YYYY-mm-dd HH:MM:SS``; "-" for none."""
    if not iso:
        return "-"
    try:
        t = _dt.datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return printable(iso)
    return t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def status(answer: Any) -> str:
    """The status of a table row or a run summary; a RUNNING run that went quiet says for how long
    (the server decides: ``stale``, see PROTOCOL.md)."""
    st = answer.get("status")
    at = answer.get("lastActivity")
    if st == "RUNNING" and answer.get("stale") and isinstance(at, (int, float)):
        import time

        return f"RUNNING (no activity for {duration(max(0.0, time.time() - at))})"
    return value(st)


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> List[str]:
    """Lines of an aligned table; columns in ``right`` are right-aligned (numbers)."""
    widths = [len(h) for h in header]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]

    def line(cells: Sequence[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(out).rstrip()

    return [line(header)] + [line(r) for r in rows]
