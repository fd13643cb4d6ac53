"""The JSON documents of an experiment, changed the way the local layout's writer changes its files
(``ml_dash._store.ExperimentWriter``), so that both stores answer the same bodies and an export
writes the files a local run would have written."""

from __future__ import annotations

from typing import Any, Dict, Optional

from ...._names import Prefix
from ...._store._jsonio import iso_utc
from ...._values import encode_nonfinite

__all__ = ["new_experiment", "upsert_experiment", "set_status", "merge_params", "new_metric_doc"]


def new_experiment(prefix: Prefix, ts: float) -> Dict[str, Any]:
    return {
        "name": prefix.name,
        "project": prefix.project,
        "description": None,
        "tags": [],
        "bindrs": [],
        "prefix": str(prefix),
        "metadata": None,
        "created_at": iso_utc(ts),
        "write_protected": False,
    }


def upsert_experiment(doc: Dict[str, Any], fields: Dict[str, Any], ts: float, created: bool) -> None:
    """Merge the non-None ``fields`` (``metadata`` merges by key); ``created``: the doc is new."""
    if not created:
        doc["updated_at"] = iso_utc(ts)
    for key, value in fields.items():
        if value is None:
            continue
        if key == "metadata" and isinstance(doc.get("metadata"), dict):
            doc["metadata"] = {**doc["metadata"], **value}
        else:
            doc[key] = value


def set_status(doc: Dict[str, Any], status: str, reason: Optional[str], ts: float) -> None:
    when = iso_utc(ts)
    doc["status"] = status
    doc["status_updated_at"] = when
    if status == "RUNNING":
        doc["started_at"] = when
        doc.pop("ended_at", None)
        doc.pop("status_reason", None)
    else:
        doc["ended_at"] = when
    if reason:
        doc["status_reason"] = reason


def merge_params(current: Optional[Dict[str, Any]], flat: Dict[str, Any], ts: float) -> Dict[str, Any]:
    now = iso_utc(ts)
    if not isinstance(current, dict) or not isinstance(current.get("data"), dict):
        current = {"version": 0, "data": {}, "createdAt": now}
    current.setdefault("createdAt", now)
    current["data"].update(encode_nonfinite(flat))
    current["version"] = int(current.get("version") or 0) + 1
    current["updatedAt"] = now
    return current


def new_metric_doc(name: Optional[str], ts: float) -> Dict[str, Any]:
    label = "None" if name is None else name
    return {
        "metricId": f"local-metric-{label}",
        "name": name,
        "description": None,
        "tags": [],
        "metadata": None,
        "createdAt": iso_utc(ts),
    }
