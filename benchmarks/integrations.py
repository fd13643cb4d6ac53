"""``python -m benchmarks.integrations --python PY``: what each framework hook costs a training step.

For each framework (PyTorch Lightning, transformers' Trainer, Keras 3 on torch), the same tiny
model trains for the same number of steps three ways, in the same run: with no logger, with the
framework's own file logger (Lightning's ``CSVLogger``, the Trainer's TensorBoard writer, Keras'
``CSVLogger``), and with our hook writing to a local store. Every step is logged (Lightning
``log_every_n_steps=1``, the Trainer ``logging_steps=1``, ours ``batch_every=1``), the most a
hook is ever asked to do; the frameworks' defaults log every 50 (Lightning) or 500 (Trainer) steps.

Each run is a fresh process (interpreter ``PY``, which has the frameworks: ``.ci/integrations.sh``
builds ``.venv-integrations``; the Trainer's TensorBoard writer also needs ``tensorboardX``),
repetitions round-robin. A step is the gap between two ends of training steps (see
``probes/frameworks.py``), measured on the wall clock and in CPU time of the training thread; per
run we take the median over its steps, and over runs the median [min–max]. The overhead of a
logger is its figure minus the no-logger figure of the same repetition. After each run the data
is read back (rows counted) by this process.

Prints markdown; writes JSON to ``benchmarks/results/integrations-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .harness import REPO_ROOT, Child, spawn, summary

FRAMEWORKS = {
    "lightning": ("none", "csv", "ml-dash"),
    "transformers": ("none", "tensorboard", "ml-dash"),
    "keras": ("none", "csv", "ml-dash"),
}
STEPS = {"lightning": 2000, "transformers": 1000, "keras": 2000}
LABELS = {
    "none": "no logger",
    "csv": "CSVLogger (the framework's)",
    "tensorboard": "TensorBoard (report_to)",
    "ml-dash": "ml-dash hook",
    "base": "the framework's do-nothing hook",
}
CALL_VARIANTS = {
    "lightning": ("base", "csv", "ml-dash"),
    "transformers": ("base", "tensorboard", "ml-dash"),
    "keras": ("base", "csv", "ml-dash"),
}
CALLS = 20_000
#: The call timed per framework, as the framework makes it once per logged step.
CALL_NAMES = {"lightning": "log_metrics + save", "transformers": "on_log", "keras": "on_train_batch_end"}


def _pct(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def _check(framework: str, variant: str, workdir: Path, steps: int, calls: bool = False) -> str:
    """What the run left on disk, counted by this process: 'N rows ✓' or why not."""
    if variant in ("none", "base"):
        return "—"
    if calls and variant != "ml-dash":
        return "—"  # the framework's own writers are not re-read after the call loop
    if variant == "ml-dash":
        from ml_dash._store import ExperimentReader

        reader = ExperimentReader(workdir / ".dash", f"bench/{framework}/run")
        metric = {"lightning": "train", "transformers": "train", "keras": "batch"}[framework]
        rows = [r for r in reader.metric_rows(metric) if "loss" in r["data"]]
        status = reader.experiment().get("status")
        ok = len(rows) == steps and status == "COMPLETED"
        return f"{len(rows):,} rows, {status} {'✓' if ok else '✗ INVALID'}"
    if variant == "csv":
        path = workdir / ("csv/tiny/version_0/metrics.csv" if framework == "lightning" else "keras.csv")
        lines = len(path.read_text().splitlines()) - 1 if path.exists() else 0
        want = steps if framework == "lightning" else 1  # Keras' CSVLogger writes epochs only
        return f"{lines:,} rows {'✓' if lines == want else '✗ INVALID'}"
    events = list((workdir / "hf-out").rglob("events.out.tfevents.*"))
    return f"{len(events)} event file(s) {'✓' if events else '✗ INVALID'}"


def run(python: str, repeat: int, scale: float, frameworks: List[str]) -> Dict[str, Any]:
    child = Child(
        python=python,
        ours=True,
        env={
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "KERAS_BACKEND": "torch",
            "TOKENIZERS_PARALLELISM": "false",
        },
    )
    results: Dict[str, Dict[str, List[Dict[str, Any]]]] = {f: {v: [] for v in FRAMEWORKS[f]} for f in frameworks}
    with tempfile.TemporaryDirectory(prefix="mldash-bench-frameworks-") as tmp:
        for rep in range(repeat):
            for framework in frameworks:
                steps = max(20, int(STEPS[framework] * scale))
                for variant in FRAMEWORKS[framework]:
                    workdir = Path(tmp) / f"{framework}-{variant}-{rep}"
                    print(f"  {framework} / {variant} / repetition {rep + 1}", file=sys.stderr, flush=True)
                    res = spawn(
                        "frameworks",
                        {
                            "framework": framework,
                            "variant": variant,
                            "steps": steps,
                            "workdir": str(workdir),
                            "prefix": f"bench/{framework}/run",
                        },
                        child,
                        timeout=900,
                    )
                    entry: Dict[str, Any] = {
                        "ok": res.ok,
                        "error": res.error,
                        "process_wall_s": res.wall_s,
                        "peak_rss_mib": res.maxrss_mib,
                        "steps": steps,
                    }
                    if res.ok:
                        wall, cpu = res.result.pop("step_s"), res.result.pop("step_cpu_s")
                        entry.update(
                            res.result,
                            step_median_us=statistics.median(wall) * 1e6,
                            step_p99_us=_pct(wall, 0.99) * 1e6,
                            cpu_median_us=statistics.median(cpu) * 1e6,
                            cpu_mean_us=statistics.fmean(cpu) * 1e6,
                            process_cpu_s=res.cpu_s,
                            check=_check(framework, variant, workdir, steps),
                        )
                    results[framework][variant].append(entry)
        calls: Dict[str, Dict[str, List[Dict[str, Any]]]] = {f: {v: [] for v in CALL_VARIANTS[f]} for f in frameworks}
        n = max(1000, int(CALLS * scale))
        for rep in range(repeat):
            for framework in frameworks:
                for variant in CALL_VARIANTS[framework]:
                    workdir = Path(tmp) / f"calls-{framework}-{variant}-{rep}"
                    print(f"  calls: {framework} / {variant} / repetition {rep + 1}", file=sys.stderr, flush=True)
                    res = spawn(
                        "framework-calls",
                        {
                            "framework": framework,
                            "variant": variant,
                            "n": n,
                            "workdir": str(workdir),
                            "prefix": f"bench/{framework}/run",
                        },
                        child,
                        timeout=600,
                    )
                    entry = {"ok": res.ok, "error": res.error, "n": n, **res.result}
                    if res.ok:
                        entry["check"] = _check(framework, variant, workdir, n, calls=True)
                    calls[framework][variant].append(entry)
    return {"steps": results, "calls": calls}


def _fmt(s: Optional[Dict[str, float]], digits: int = 1, unit: str = "") -> str:
    if not s:
        return "—"
    if s["n"] == 1:
        return f"{s['median']:.{digits}f}{unit}"
    return f"{s['median']:.{digits}f}{unit} [{s['min']:.{digits}f}–{s['max']:.{digits}f}]"


def report(both: Dict[str, Any], meta: Dict[str, Any]) -> str:
    results, calls = both["steps"], both["calls"]
    out = [
        (
            f"Run of {meta['date']}: {meta['cpu']}, {meta['nproc']} cores; Python {meta['python']} ({meta['python_executable']}); "
            f"{meta['versions']}; ml_dash at {meta['commit']}; {meta['repeat']} repetition(s)."
        ),
        "",
    ]
    out += [
        (
            "| framework | logger | step CPU median µs (training thread) | overhead/step CPU µs | overhead % | "
            "step CPU mean µs | overhead/step mean µs | step wall median µs | overhead/step wall µs | "
            "fit s | process CPU s | peak RSS MiB | data read back |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for framework, variants in results.items():
        base = variants["none"]
        for variant, runs in variants.items():
            ok = [r for r in runs if r["ok"]]
            if not ok:
                errs = "; ".join(sorted({str(r["error"])[:160] for r in runs}))
                out.append(f"| {framework} | {LABELS[variant]} | failed: {errs} |" + " |" * 10)
                continue
            pairs = [(r, b) for r, b in zip(runs, base) if r["ok"] and b["ok"]]

            def over(key: str, variant: str = variant, pairs: List[Any] = pairs) -> str:
                if variant == "none":
                    return "—"
                return _fmt(summary(r[key] - b[key] for r, b in pairs))

            pct = (
                "—"
                if variant == "none"
                else _fmt(summary(100 * (r["cpu_median_us"] / b["cpu_median_us"] - 1) for r, b in pairs), 1, " %")
            )
            checks = sorted({r["check"] for r in ok})
            row = [
                framework,
                LABELS[variant],
                _fmt(summary(r["cpu_median_us"] for r in ok)),
                over("cpu_median_us"),
                pct,
                _fmt(summary(r["cpu_mean_us"] for r in ok)),
                over("cpu_mean_us"),
                _fmt(summary(r["step_median_us"] for r in ok)),
                over("step_median_us"),
                _fmt(summary(r["fit_s"] for r in ok), 2),
                _fmt(summary(r["process_cpu_s"] for r in ok), 1),
                _fmt(summary(r["peak_rss_mib"] for r in ok), 0),
                ", ".join(checks),
            ]
            out.append("| " + " | ".join(row) + " |")
    steps = ", ".join(f"{f} {next(r['steps'] for v in results[f].values() for r in v)} steps" for f in results)
    out += [
        "",
        (
            f"Steps per run: {steps}; every step logged. A step runs from the end of one training step to "
            "the end of the next, the loggers' work in the training thread included. Step CPU = CPU time of the "
            "training thread over the step (what a logger costs the loop, whatever else the machine does); step "
            "wall = the same on the wall clock (moves with the machine's load). Overhead = the logger's figure − "
            "the no-logger figure of the same repetition; its mean includes the rare slow steps (a flush to "
            "disk). Fit = the whole fit()/train() call (setup, the logger's start and close included). Process "
            "CPU = all threads of the process (a logger's background threads included), from wait4."
        ),
    ]
    out += [
        "",
        (
            "The hook's own call, driven directly with the framework's real objects, "
            f"{next(r['n'] for v in calls.values() for rs in v.values() for r in rs)} calls per run:"
        ),
        "",
        (
            "| framework | call | logger | median µs | p99 µs | mean µs | training-thread CPU per call µs | "
            "close s | data read back |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for framework, variants in calls.items():
        for variant, runs in variants.items():
            ok = [r for r in runs if r["ok"]]
            if not ok:
                errs = "; ".join(sorted({str(r["error"])[:160] for r in runs}))
                out.append(f"| {framework} | {CALL_NAMES[framework]} | {LABELS[variant]} | failed: {errs} |" + " |" * 5)
                continue
            row = [
                framework,
                CALL_NAMES[framework],
                LABELS[variant],
                _fmt(summary(r["median_us"] for r in ok), 2),
                _fmt(summary(r["p99_us"] for r in ok), 2),
                _fmt(summary(r["mean_us"] for r in ok), 2),
                _fmt(summary(r["thread_cpu_per_call_us"] for r in ok), 2),
                _fmt(summary(r["close_s"] for r in ok), 3),
                ", ".join(sorted({r["check"] for r in ok})),
            ]
            out.append("| " + " | ".join(row) + " |")
    out += [
        "",
        (
            "Net of the timer's own cost (measured in the same process). Close = finalize / on_train_end: "
            "for ours, draining the queue and marking the run COMPLETED."
        ),
    ]
    return "\n".join(out)


def _meta(python: str, repeat: int) -> Dict[str, Any]:
    import platform
    import subprocess

    from .meta import _commit, _cpu

    code = (
        "import json; from importlib.metadata import version as v\n"
        "print(json.dumps({d: v(d) for d in ('torch', 'lightning', 'transformers', 'keras')}))"
    )
    try:
        versions = json.loads(
            subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
            .stdout.strip()
            .splitlines()[-1]
        )
        versions = ", ".join(f"{k} {v}" for k, v in versions.items())
    except (OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
        versions = f"versions unknown ({type(exc).__name__})"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": _cpu(),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "python_executable": python,
        "versions": versions,
        "commit": _commit(),
        "repeat": repeat,
    }


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.integrations", description=__doc__.splitlines()[0])
    p.add_argument(
        "--python",
        default=os.environ.get("ML_DASH_INTEGRATIONS_PYTHON", str(REPO_ROOT / ".venv-integrations" / "bin" / "python")),
        help="interpreter with torch, lightning, transformers, keras (default: the venv that "
        ".ci/integrations.sh builds)",
    )
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="1 repetition, a tenth of the steps: a smoke test")
    p.add_argument("--only", help="comma-separated frameworks (lightning, transformers, keras)")
    p.add_argument("--out", help="JSON path (default benchmarks/results/integrations-<date>.json)")
    a = p.parse_args(argv)
    frameworks = [f.strip() for f in a.only.split(",")] if a.only else list(FRAMEWORKS)
    unknown = set(frameworks) - set(FRAMEWORKS)
    if unknown:
        p.error(f"unknown frameworks {sorted(unknown)}")
    repeat, scale = (1, 0.1) if a.quick else (a.repeat, 1.0)
    if not os.path.exists(a.python):
        p.error(f"no interpreter at {a.python}: build one with .ci/integrations.sh or pass --python")
    meta = _meta(a.python, repeat)
    results = run(a.python, repeat, scale, frameworks)
    text = report(results, meta)
    print(text)
    out = (
        Path(a.out)
        if a.out
        else REPO_ROOT / "benchmarks" / "results" / f"integrations-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=str))
    print(f"\nJSON: {out}", file=sys.stderr)
    failed = any(
        not r["ok"] or "INVALID" in r.get("check", "")
        for part in results.values()
        for v in part.values()
        for rs in v.values()
        for r in rs
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
