"""Test-only fault injection and request statistics (off unless the server runs with fault injection).

A fault plan is a list of rules, consumed in order: a request takes the first rule whose ``match``
fits its route, applies its ``action`` and decrements its ``times``; a rule at zero is removed.
Routes are classified as ``"ingest"``, ``"blobs"`` or anything else; ``"any"`` matches every route
except the ``/_test/`` ones. See PROTOCOL.md, "Test-only routes".
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Dict, List, Optional

from .errors import ApiError

__all__ = ["FaultPlan", "Stats", "ACTIONS", "route_class"]

ACTIONS = frozenset(("status", "drop_after_commit", "hang", "close_before", "crash_before_commit"))
_MATCHES = frozenset(("ingest", "blobs", "any"))


def route_class(path: str) -> str:
    """The class of a request path: 'ingest', 'blobs', 'test', or the last path segment."""
    if path.startswith("/api/v1/_test/"):
        return "test"
    if path == "/api/v1/ingest":
        return "ingest"
    if path.startswith("/api/v1/blobs/"):
        return "blobs"
    return path.rsplit("/", 1)[-1] or "root"


class FaultPlan:
    """The current list of rules; replaced as a whole by ``PUT /api/v1/_test/faults``."""

    def __init__(self) -> None:
        self.rules: List[Dict[str, Any]] = []

    def set(self, rules: Any) -> None:
        if not isinstance(rules, list):
            raise ApiError(400, "bad_faults", "the fault plan is a JSON list of rules")
        checked = []
        for i, r in enumerate(rules):
            if (
                not isinstance(r, dict)
                or type(r.get("match", "any")) is not str
                or r.get("match", "any") not in _MATCHES
                or type(r.get("action")) is not str
                or r.get("action") not in ACTIONS
            ):
                raise ApiError(
                    400, "bad_faults", f"bad rule #{i}: match in {sorted(_MATCHES)}, action in {sorted(ACTIONS)}"
                )
            times = r.get("times", 1)
            if type(times) is not int or times < 1:
                raise ApiError(400, "bad_faults", "'times' must be an integer >= 1")
            if r["action"] == "status" and not (type(r.get("status")) is int and 100 <= r["status"] <= 599):
                raise ApiError(400, "bad_faults", "a 'status' rule needs an integer 'status'")
            ra = r.get("retry_after")
            if ra is not None and (type(ra) not in (int, float) or ra < 0):
                raise ApiError(400, "bad_faults", "'retry_after' must be a number of seconds >= 0")
            checked.append(
                {
                    "match": r.get("match", "any"),
                    "action": r["action"],
                    "times": times,
                    "status": r.get("status"),
                    "retry_after": ra,
                }
            )
        self.rules = checked

    def take(self, cls: str) -> Optional[Dict[str, Any]]:
        """The rule that applies to a request of class ``cls`` (consumed), or None."""
        if cls == "test":
            return None
        for i, r in enumerate(self.rules):
            if r["match"] == "any" or r["match"] == cls:
                r["times"] -= 1
                if r["times"] <= 0:
                    del self.rules[i]
                return r
        return None


class Stats:
    """Counts of requests per route class and their arrival times (epoch seconds)."""

    def __init__(self) -> None:
        self.counts: Dict[str, int] = defaultdict(int)
        self.arrivals: Dict[str, List[float]] = defaultdict(list)
        self.statuses: Dict[str, List[int]] = defaultdict(list)

    def arrive(self, cls: str) -> None:
        self.counts[cls] += 1
        self.arrivals[cls].append(time.time())

    def answered(self, cls: str, status: int) -> None:
        self.statuses[cls].append(status)

    def as_dict(self) -> Dict[str, Any]:
        try:
            import resource

            maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        except ImportError:  # pragma: no cover - not on Linux
            maxrss_kb = None
        return {
            "counts": dict(self.counts),
            "arrivals": dict(self.arrivals),
            "statuses": dict(self.statuses),
            "maxrss_kb": maxrss_kb,
        }
