"""One experiment as the experiments table shows it (both stores build these)."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Dict, Optional

__all__ = ["Entry", "short_value", "STALE_AFTER", "is_stale"]

#: Longer strings are cut to this many characters in table cells.
MAX_TEXT = 200

#: A RUNNING experiment with no activity for longer than this many seconds is shown as stale (a
#: process killed with ``kill -9``, a machine that died). Only the display changes: the stored
#: status stays RUNNING, and the run looks healthy again as soon as it writes again.
STALE_AFTER = 300.0


def is_stale(status: Any, last_activity: Optional[float], now: float) -> bool:
    """A RUNNING experiment whose last activity is more than :data:`STALE_AFTER` seconds before
    ``now`` (False when its last activity is unknown)."""
    return status == "RUNNING" and last_activity is not None and now - last_activity > STALE_AFTER


def _epoch(iso: Any) -> Optional[float]:
    if not isinstance(iso, str) or not iso:
        return None
    try:
        return _dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def short_value(v: Any) -> Any:
    """A value fit for a table cell: long strings cut, lists and dicts left out."""
    if type(v) is str and len(v) > MAX_TEXT:
        return v[:MAX_TEXT]
    if type(v) in (list, dict):
        return None
    return v


class Entry:
    """One experiment as the table shows it. Never changed once published: a refresh that sees a
    change makes a new Entry."""

    __slots__ = (
        "prefix",
        "owner",
        "project",
        "name",
        "status",
        "tags",
        "description",
        "created_at",
        "started_at",
        "ended_at",
        "started",
        "ended",
        "params",
        "metrics",
        "metric_rows",
        "logs",
        "files",
        "text",
        "metric_keys",
        "param_keys",
        "last_activity",
    )

    def __init__(
        self,
        prefix: str,
        exp: Dict[str, Any],
        params: Dict[str, Any],
        metrics: Dict[str, Dict[str, Any]],
        logs: int,
        files: int,
        last_activity: Optional[float] = None,
    ):
        parts = prefix.split("/")
        self.prefix = prefix
        self.owner, self.project, self.name = parts[0], parts[1] if len(parts) > 1 else "", parts[-1]
        status = exp.get("status")
        self.status = status if isinstance(status, str) else None
        tags = exp.get("tags")
        self.tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
        desc = exp.get("description")
        self.description = desc if isinstance(desc, str) else None
        self.created_at = exp.get("created_at") if isinstance(exp.get("created_at"), str) else None
        self.started_at = exp.get("started_at") if isinstance(exp.get("started_at"), str) else None
        self.ended_at = exp.get("ended_at") if isinstance(exp.get("ended_at"), str) else None
        if self.status == "RUNNING":
            self.ended_at = None
        self.started = _epoch(self.started_at) or _epoch(self.created_at)
        self.ended = _epoch(self.ended_at)
        self.params = params
        self.metrics = metrics  # "" is the unnamed metric: {"rows", "last_index", "last": {field: value}}
        self.metric_rows = sum(m["rows"] for m in metrics.values())
        self.logs = logs
        self.files = files
        self.text = " ".join([prefix, self.description or "", *self.tags]).lower()
        self.metric_keys = tuple(f"m:{n}:{f}" for n, m in metrics.items() for f in m["last"])
        self.param_keys = tuple(f"p:{k}" for k in params)
        # epoch seconds of the newest write the store saw (each store says what it looks at)
        self.last_activity = last_activity

    def stale(self, now: float) -> bool:
        return is_stale(self.status, self.last_activity, now)

    def duration(self, now: float) -> Optional[float]:
        if self.started is None:
            return None
        if self.ended is not None:
            return max(0.0, self.ended - self.started)
        return max(0.0, now - self.started) if self.status == "RUNNING" else None

    def value(self, key: str) -> Any:
        """The value of a column key (``m:<metric>:<field>`` or ``p:<param>``), or None."""
        if key.startswith("p:"):
            return self.params.get(key[2:])
        if key.startswith("m:"):
            name, sep, field = key[2:].rpartition(":")
            if sep:
                m = self.metrics.get(name)
                if m is not None:
                    return m["last"].get(field)
        return None
