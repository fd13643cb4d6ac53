"""``python -m benchmarks``: run the suite, print markdown tables, write a JSON file of results.

See benchmarks/README.md for what each workload measures and how to read the ratios.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import report, targets
from .harness import REPO_ROOT, Child
from .meta import collect_meta
from .settings import PEERS, Settings
from .workloads import local, remote, sweep
from .workloads.common import progress

WORKLOADS = ["steps", "threads", "mixed", "remote", "wire", "outage", "ingest", "files", "import", "sweep", "rss10m"]


def parse_args(argv: Optional[List[str]] = None) -> Settings:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke-test scale (< 1 minute); the numbers mean nothing")
    p.add_argument("--repeat", type=int, help="repetitions of our and baseline runs (default 5)")
    p.add_argument("--peer-repeat", type=int, help="repetitions of each peer's runs (default 3)")
    p.add_argument("-n", "--steps", type=int, help="steps of the step-cost workload (default 100000)")
    p.add_argument(
        "--peers-python",
        help="interpreter with the peers installed (see README); "
        "needed for upstream ml-dash, which has the same import name as ours",
    )
    p.add_argument("--peers", help=f"comma-separated peers to run (default: {','.join(PEERS)}; 'none' for none)")
    p.add_argument("--only", help=f"comma-separated workloads to run (of {','.join(WORKLOADS)})")
    p.add_argument("--long", action="store_true", help="also the 10M-point RSS run")
    p.add_argument("--outage-seconds", type=float, help="length of the outage (default 30; the target names 600)")
    p.add_argument("--full-outage", action="store_true", help="the outage of the target: 600 s")
    p.add_argument("--out", help="JSON results path (default benchmarks/results/<date>.json)")
    p.add_argument("--workdir", help="where runs write their data (default: the system temp folder)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a run of ours or of a baseline failed or "
        "its data did not read back (for CI; speed is never judged)",
    )
    a = p.parse_args(argv)
    s = Settings()
    if a.quick:
        s.quick_scale()
    for attr, val in (
        ("repeat", a.repeat),
        ("peer_repeat", a.peer_repeat),
        ("n", a.steps),
        ("outage_s", a.outage_seconds),
        ("workdir", a.workdir),
    ):
        if val is not None:
            setattr(s, attr, val)
    if a.full_outage:
        s.outage_s = 600.0
    s.long = a.long
    s.peers_python = a.peers_python
    if a.peers is not None:
        s.peers = [] if a.peers.strip() == "none" else [x.strip() for x in a.peers.split(",") if x.strip()]
        unknown = set(s.peers) - set(PEERS)
        if unknown:
            p.error(f"unknown peers {sorted(unknown)}; known: {PEERS}")
    if a.only:
        s.workloads = [x.strip() for x in a.only.split(",") if x.strip()]
        unknown = set(s.workloads) - set(WORKLOADS)
        if unknown:
            p.error(f"unknown workloads {sorted(unknown)}; known: {WORKLOADS}")
    s.out = a.out  # type: ignore[attr-defined]
    s.strict = a.strict  # type: ignore[attr-defined]
    return s


def run_suite(s: Settings) -> Dict[str, Any]:
    ours = Child(python=s.python, ours=True)
    scratch = s.scratch()
    results: Dict[str, Any] = {"meta": collect_meta(s), "workloads": {}}
    w = results["workloads"]
    t0 = time.perf_counter()
    try:
        if s.wants("steps") or s.wants("threads"):
            tools = local.tools_for(s, ours)
            if not s.wants("steps"):
                tools = [t for t in tools if not t.peer] if not s.peers else tools
            local.check_tools(s, tools, scratch)
            w["steps"] = local.run_steps(s, tools, scratch)
        if s.wants("mixed"):
            w["mixed"] = local.run_mixed(s, ours, scratch)
        if s.wants("import"):
            w["import"] = local.run_import(s, ours, scratch)
        if any(s.wants(x) for x in ("remote", "wire", "outage", "ingest", "files")):
            w.update(remote.run_all(s, ours, scratch))
        if s.wants("sweep"):
            w["sweep"] = sweep.run_sweep(s, ours, scratch)
        if s.long and s.wants("rss10m"):
            w["rss10m"] = local.run_big(s, ours, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["meta"]["suite_seconds"] = time.perf_counter() - t0
    results["targets"] = targets.evaluate(results)
    return results


def render(results: Dict[str, Any]) -> str:
    m = results["meta"]
    head = [
        f"## ml-dash benchmarks — {m['date']}",
        "",
        (
            f"Machine: {m['nproc']} cores ({m['cpu']}), {m['os']}; Python {m['python']}; ml_dash {m['ml_dash']} "
            f"at {m['commit']}; {m['scale']}."
        ),
        "",
    ]
    if m.get("peers_python"):
        head.append(
            f"Peers ({m['peers_python']}): {', '.join(f'{k} {v}' for k, v in m.get('peer_versions', {}).items())}."
        )
        head.append("")
    w = results["workloads"]
    sections = [targets.targets_table(results)]
    if "steps" in w:
        sections.append(report.steps_tables(w["steps"]))
    if "mixed" in w:
        sections.append(report.mixed_table(w["mixed"]))
    sections += remote.tables(w)
    if "sweep" in w:
        sections.append(sweep.sweep_table(w["sweep"]))
    if "import" in w:
        sections.append(report.import_table(w["import"]))
    if "rss10m" in w:
        sections.append(report.big_table(w["rss10m"]))
    return "\n".join(head) + "\n" + "\n\n".join(sections) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    s = parse_args(argv)
    progress(
        f"ml-dash benchmarks: {'quick' if s.quick else 'full'} run, n={s.n:,}, repeat={s.repeat}, "
        f"peer repeat={s.peer_repeat}, peers python={s.peers_python or '(none)'}"
    )
    results = run_suite(s)
    text = render(results)
    out = Path(getattr(s, "out", None) or REPO_ROOT / "benchmarks" / "results" / time.strftime("%Y%m%d-%H%M%S.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    results["markdown"] = text
    out.write_text(json.dumps(results, indent=1, default=str))
    print(text)
    progress(f"results written to {out} ({results['meta']['suite_seconds']:.0f} s)")
    broken = broken_runs(results)
    for b in broken:
        progress(f"BROKEN: {b}")
    return 1 if broken and getattr(s, "strict", False) else 0


def broken_runs(results: Dict[str, Any]) -> List[str]:
    """Runs of ours or of a baseline that failed or did not read back (peers are not our bug)."""
    out = []
    w = results["workloads"]
    for name, e in w.get("steps", {}).get("tools", {}).items():
        if e.get("peer"):
            continue
        if e["status"] != "ok":
            out.append(f"steps/{name}: {e['status']}: {e.get('reason')}")
        for key, runs in e.get("runs", {}).items():
            out += [f"steps/{name}/{key}: {r.get('error') or r.get('verify')}" for r in runs if not r.get("valid")]
    for name, runs in w.get("mixed", {}).get("runs", {}).items():
        out += [f"mixed/{name}: {r.get('error') or r.get('verify')}" for r in runs if not r.get("valid")]
    for key in ("remote", "outage", "ingest", "files"):
        runs = w.get(key, {}).get("runs", [])
        runs = [r for rr in runs.values() for r in rr] if isinstance(runs, dict) else runs
        out += [f"{key}: {r.get('error') or r.get('verify')}" for r in runs if not r.get("valid")]
    for count, by_tool in w.get("sweep", {}).get("runs", {}).items():
        for tool, runs in by_tool.items():
            out += [f"sweep/{count}/{tool}: {r.get('error') or r.get('verify')}" for r in runs if not r.get("valid")]
    if "wire" in w and not w["wire"].get("ok"):
        out.append(f"wire: {w['wire'].get('error')}")
    return out


if __name__ == "__main__":
    sys.exit(main())
