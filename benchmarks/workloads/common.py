"""Helpers shared by the workloads: running one measured child plus its read-back check."""

from __future__ import annotations

import shutil
import sys
import tempfile
from typing import Any, Dict, Optional

from ..harness import Child, ChildResult, spawn


def progress(msg: str) -> None:
    """One line of progress on stderr (stdout carries only the final table)."""
    print(f"  {msg}", file=sys.stderr, flush=True)


def record(run: ChildResult, check: Optional[ChildResult]) -> Dict[str, Any]:
    """One repetition as stored in the JSON: valid only when it ran and its data was read back."""
    rec = run.to_json()
    if check is not None:
        rec["verify"] = check.result if check.ok else {"ok": False, "error": check.error}
    verified = bool(rec.get("verify", {}).get("ok"))
    rec["valid"] = run.ok and verified
    return rec


def measured_with_check(
    probe: str,
    verify_probe: str,
    args: Dict[str, Any],
    child: Child,
    scratch: str,
    timeout: float,
    verify_args: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Run a probe in a fresh folder, then (in another process) read its data back; clean up."""
    workdir = tempfile.mkdtemp(prefix=f"{args.get('tool', probe)}-", dir=scratch)
    try:
        run = spawn(probe, {**args, "workdir": workdir}, child, timeout)
        check = None
        if run.ok:
            vargs = {**args, **(verify_args or {}), "workdir": workdir}
            check = spawn(verify_probe, vargs, child, timeout)
        return record(run, check)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def classify_failure(error: Optional[str]) -> str:
    """'unavailable' when the tool is simply not installed, else 'failed'."""
    if error and ("ModuleNotFoundError" in error or "No module named" in error):
        return "unavailable"
    return "failed"


def short(error: Optional[str], limit: int = 160) -> str:
    """The last line of an error, shortened for a table cell."""
    if not error:
        return ""
    line = error.strip().splitlines()[-1] if error.strip() else error
    return line if len(line) <= limit else line[: limit - 1] + "…"
