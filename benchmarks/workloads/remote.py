"""Remote workloads: SDK to server on loopback, bytes on the wire, outage, server ingest, server file I/O.

They need parts built elsewhere in the project (the reference server; the agent's remote sink for
the SDK's remote mode). Whatever is missing makes its workload report "not available: <why>",
and the rest of the suite runs on. Each repetition gets a fresh server on an empty root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Any, Dict, List

from ..harness import Child, spawn
from ..report import cell, net, rows_cell, table, vals
from ..server_ctl import Agent, Proxy, Server, remote_sdk_missing, server_missing
from ..settings import Settings
from .common import progress, record, short


def run_all(s: Settings, ours: Child, scratch: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    if s.wants("wire"):
        out["wire"] = run_wire(s, ours)
    no_server = server_missing(ours)
    no_sdk = no_server or remote_sdk_missing(ours)
    if no_server:
        progress(f"[remote] server not available: {no_server}")
    elif no_sdk:
        progress(f"[remote] SDK remote mode not available: {no_sdk}")
    if s.wants("ingest"):
        out["ingest"] = {"reason": f"server not available: {no_server}"} if no_server else run_ingest(s, ours, scratch)
    if s.wants("files"):
        out["files"] = {"reason": f"server not available: {no_server}"} if no_server else run_files(s, ours, scratch)
    if s.wants("remote"):
        out["remote"] = {"reason": f"remote mode not available: {no_sdk}"} if no_sdk else run_remote(s, ours, scratch)
    if s.wants("outage"):
        out["outage"] = (
            {"reason": f"remote mode not available: {no_sdk}", "seconds": s.outage_s}
            if no_sdk
            else run_outage(s, ours, scratch)
        )
    return out


def run_wire(s: Settings, ours: Child) -> Dict[str, Any]:
    r = spawn("wire", {"n": s.n, "batch": s.wire_batch}, ours, s.timeout)
    progress(f"[wire] {'ok' if r.ok else 'failed: ' + short(r.error)}")
    return {"ok": r.ok, "error": r.error, "result": r.result}


def _fresh_root(scratch: str, tag: str) -> str:
    return tempfile.mkdtemp(prefix=f"server-{tag}-", dir=scratch)


def run_ingest(s: Settings, ours: Child, scratch: str) -> Dict[str, Any]:
    """Points/s from ``ingest_clients`` concurrent sessions; zstd (what the agent sends) and identity."""
    runs: List[Dict[str, Any]] = []
    extra: List[Dict[str, Any]] = []
    for rep in range(min(s.repeat, 3)):
        for encoding in ("zstd", "identity"):
            root = _fresh_root(scratch, "ingest")
            try:
                with Server(ours, root) as srv:
                    args = {
                        "url": srv.url,
                        "token": srv.token,
                        "clients": s.ingest_clients,
                        "steps": s.ingest_steps,
                        "batch": s.ingest_batch,
                        "encoding": encoding,
                    }
                    r = spawn("ingest", args, ours, s.timeout)
                rec = r.to_json()
                rec["server"] = srv.stats
                rec["verify"] = r.result.get("verify", {"ok": False})
                rec["valid"] = r.ok and bool(rec["verify"].get("ok"))
            except Exception as exc:  # a server that fails to start is a result, not a crash
                rec = {"ok": False, "valid": False, "error": f"{type(exc).__name__}: {exc}", "result": {}}
            finally:
                shutil.rmtree(root, ignore_errors=True)
            (runs if encoding == "zstd" else extra).append(rec)
            pps = rec.get("result", {}).get("points_per_s")
            progress(
                f"[ingest] {encoding} rep {rep + 1}: "
                f"{'%.2fM points/s' % (pps / 1e6) if pps else 'failed: ' + short(rec.get('error'))}"
            )
    return {
        "clients": s.ingest_clients,
        "steps": s.ingest_steps,
        "batch": s.ingest_batch,
        "runs": runs,
        "identity_runs": extra,
    }


def run_files(s: Settings, ours: Child, scratch: str) -> Dict[str, Any]:
    """Blob upload and file download MB/s from ``files_clients`` concurrent clients, each run on a fresh server."""
    runs: List[Dict[str, Any]] = []
    for rep in range(min(s.repeat, 3)):
        root = _fresh_root(scratch, "files")
        try:
            with Server(ours, root) as srv:
                args = {
                    "url": srv.url,
                    "token": srv.token,
                    "clients": s.files_clients,
                    "mib": s.files_mib,
                    "reads": s.files_reads,
                }
                r = spawn("files", args, ours, s.timeout)
            rec = r.to_json()
            rec["server"] = srv.stats
            rec["verify"] = r.result.get("verify", {"ok": False})
            rec["valid"] = r.ok and bool(rec["verify"].get("ok"))
        except Exception as exc:
            rec = {"ok": False, "valid": False, "error": f"{type(exc).__name__}: {exc}", "result": {}}
        finally:
            shutil.rmtree(root, ignore_errors=True)
        runs.append(rec)
        res = rec.get("result", {})
        progress(
            f"[files] rep {rep + 1}: upload {res.get('upload_mb_s', float('nan')):.0f} MB/s, download "
            f"{res.get('download_mb_s', float('nan')):.0f} MB/s {'ok' if rec['valid'] else 'INVALID ' + short(rec.get('error'))}"
        )
    return {"clients": s.files_clients, "mib": s.files_mib, "reads": s.files_reads, "runs": runs}


def run_remote(s: Settings, ours: Child, scratch: str) -> Dict[str, Any]:
    """The step loop in remote mode, timed and plain, each against a fresh server."""
    # "agent": the plain loop again, its upload handed to an ml-dash-agent already serving the
    # spool (started before the clock, as a server is), whose CPU is reported beside it.
    runs: Dict[str, List[Dict[str, Any]]] = {"timed": [], "plain": [], "agent": []}
    for rep in range(s.repeat):
        for mode in runs:
            root = _fresh_root(scratch, "remote")
            workdir = tempfile.mkdtemp(prefix="remote-", dir=scratch)
            try:
                with contextlib.ExitStack() as stack:
                    srv = stack.enter_context(Server(ours, root))
                    agent = (
                        stack.enter_context(Agent(ours, os.path.join(workdir, "spool"))) if mode == "agent" else None
                    )
                    args = {
                        "url": srv.url,
                        "token": srv.token,
                        "prefix": f"bench/remote/r{rep}-{mode}",
                        "n": s.n,
                        "timed": mode == "timed",
                        "workdir": workdir,
                        "uploader": "agent" if mode == "agent" else "process",
                    }
                    r = spawn("remote", args, ours, s.timeout)
                    check = spawn("remote-verify", {**args, "read_url": srv.url}, ours, s.timeout) if r.ok else None
                rec = record(r, check)
                rec["server"] = srv.stats
                if agent is not None:
                    rec["agent"] = agent.stats
            except Exception as exc:
                rec = {"ok": False, "valid": False, "error": f"{type(exc).__name__}: {exc}", "result": {}}
            finally:
                shutil.rmtree(root, ignore_errors=True)
                shutil.rmtree(workdir, ignore_errors=True)
            runs[mode].append(rec)
            progress(
                f"[remote] {mode} rep {rep + 1}: wall {rec.get('wall_s', 0):.2f}s "
                f"{'ok' if rec['valid'] else 'INVALID ' + short(rec.get('error') or str(rec.get('verify')))}"
            )
    return {"n": s.n, "runs": runs}


def run_outage(s: Settings, ours: Child, scratch: str) -> Dict[str, Any]:
    """Server blackholed for ``outage_s`` behind a loopback proxy while the loop logs at ``outage_rate``."""
    runs = []
    reps = 1 if s.outage_s >= 120 else min(s.repeat, 2)
    for rep in range(reps):
        root = _fresh_root(scratch, "outage")
        workdir = tempfile.mkdtemp(prefix="outage-", dir=scratch)
        try:
            with Server(ours, root) as srv, Proxy(ours, srv.url) as px:
                args = {
                    "url": px.url,
                    "token": srv.token,
                    "prefix": f"bench/outage/r{rep}",
                    "proxy_pid": px.pid,
                    "warm_s": 2.0,
                    "outage_s": s.outage_s,
                    "rate": s.outage_rate,
                    "workdir": workdir,
                    "catchup_timeout": 600,
                }
                r = spawn("outage", args, ours, s.outage_s + 900)
                check = None
                if r.ok:
                    check = spawn(
                        "remote-verify", {**args, "n": r.result["steps"], "read_url": srv.url}, ours, s.timeout
                    )
            rec = record(r, check)
            rec["proxy"] = px.stats
        except Exception as exc:
            rec = {"ok": False, "valid": False, "error": f"{type(exc).__name__}: {exc}", "result": {}}
        finally:
            shutil.rmtree(root, ignore_errors=True)
            shutil.rmtree(workdir, ignore_errors=True)
        runs.append(rec)
        res = rec.get("result", {})
        progress(
            f"[outage] rep {rep + 1}: catch-up {res.get('catchup_s', float('nan')):.1f}s, RSS growth "
            f"{res.get('rss_growth_mib', float('nan')):.1f} MiB {'ok' if rec['valid'] else 'INVALID ' + short(rec.get('error'))}"
        )
    return {"seconds": s.outage_s, "rate": s.outage_rate, "runs": runs}


# -- tables ---------------------------------------------------------------------------------------------


def tables(w: Dict[str, Any]) -> List[str]:
    out = []
    if "remote" in w:
        out.append(_remote_table(w["remote"], w.get("steps", {}).get("tools", {}).get("ours", {}).get("runs", {})))
    if "wire" in w:
        out.append(_wire_table(w["wire"]))
    if "outage" in w:
        out.append(_outage_table(w["outage"]))
    if "ingest" in w:
        out.append(_ingest_table(w["ingest"]))
    if "files" in w:
        out.append(_files_table(w["files"]))
    return out


def _na(title: str, reason: str) -> str:
    return f"### {title}\n\n{reason}"


def _remote_table(rem: Dict[str, Any], local: Dict[str, Any]) -> str:
    title = "Remote: the step loop to our server on loopback, until acknowledged"
    if "reason" in rem:
        return _na(title, rem["reason"])
    timed, plain, agent = rem["runs"]["timed"], rem["runs"]["plain"], rem["runs"].get("agent", [])
    lp = local.get("plain", [])
    from ..report import paired

    head = [
        "mode",
        "call median / p99 µs",
        "loop s",
        "flush until acked s",
        "loop+flush+close s",
        "process wall s",
        "×local wall",
        "peak RSS MiB",
        "spool MB after",
        "rows read back",
    ]
    rows = [
        [
            "remote",
            cell(net(timed, "median_us")) + " / " + cell(net(timed, "p99_us")),
            cell(vals(plain, "result.loop_s"), "{:.3f}"),
            cell(vals(plain, "result.flush_s"), "{:.3f}"),
            cell(vals(plain, "result.until_acked_s"), "{:.3f}"),
            cell(vals(plain, "wall_s"), "{:.3f}"),
            cell(paired(vals(plain, "wall_s"), vals(lp, "wall_s")), "{:.2f}×"),
            cell(vals(plain, "maxrss_mib"), "{:.0f}"),
            cell(vals(plain, "verify.spool_bytes"), "{:.1f}", 1e-6),
            rows_cell(timed + plain),
        ],
        [
            "remote, agent serving (its CPU s)",
            "",
            cell(vals(agent, "result.loop_s"), "{:.3f}"),
            cell(vals(agent, "result.flush_s"), "{:.3f}"),
            cell(vals(agent, "result.until_acked_s"), "{:.3f}"),
            cell(vals(agent, "wall_s"), "{:.3f}") + " (" + cell(vals(agent, "agent.cpu_s"), "{:.2f}") + ")",
            cell(paired(vals(agent, "wall_s"), vals(lp, "wall_s")), "{:.2f}×"),
            cell(vals(agent, "maxrss_mib"), "{:.0f}"),
            cell(vals(agent, "verify.spool_bytes"), "{:.1f}", 1e-6),
            rows_cell(agent),
        ],
        [
            "local (same run)",
            "",
            cell(vals(lp, "result.loop_s"), "{:.3f}"),
            "—",
            cell(vals(lp, "result.loop_close_s"), "{:.3f}"),
            cell(vals(lp, "wall_s"), "{:.3f}"),
            "1.00×",
            cell(vals(lp, "maxrss_mib"), "{:.0f}"),
            "—",
            rows_cell(lp),
        ],
    ]
    return "\n".join([f"### {title} ({rem['n']:,} steps)", "", table(head, rows)])


def _wire_table(wire: Dict[str, Any]) -> str:
    title = "Bytes on the wire per float point"
    if not wire.get("ok"):
        return _na(title, wire.get("error") or "failed")
    r = wire["result"]
    head = ["encoding", "bytes per point", "bytes per row (3 points)", "total MB", "compress s"]
    rows = [
        [
            name,
            f"{c['bytes_per_point']:.2f}",
            f"{c['bytes_per_row']:.1f}",
            f"{c['bytes'] / 1e6:.2f}",
            f"{c['compress_s']:.3f}",
        ]
        for name, c in r["codecs"].items()
    ]
    return "\n".join(
        [
            f"### {title} ({r['n']:,} metric rows as {r['events']:,} events in {r['bodies']} bodies)",
            "",
            table(head, rows),
            "",
            (
                f"Encoded with {r['encoder']}, {r['framing']}; gzip level {r['levels']['gzip']} and zstd level "
                f"{r['levels']['zstd']} as the agent sends them (zstd-3: level 3, for comparison). "
                "HTTP headers (a few hundred bytes per request) are not counted."
            ),
        ]
    )


def _outage_table(out: Dict[str, Any]) -> str:
    title = f"Outage: server blackholed for {out.get('seconds', '?'):g} s (the target names 600 s)"
    if "reason" in out:
        return _na(title, out["reason"])
    rr = out["runs"]
    head = [
        "steps logged during outage",
        "RSS before MiB",
        "peak RSS during MiB",
        "growth MiB",
        "peak spool MB",
        "catch-up s",
        "caught up",
        "rows read back",
    ]
    rows = [
        [
            cell(vals(rr, "result.steps_during_outage"), "{:,.0f}"),
            cell(vals(rr, "result.rss_base_mib"), "{:.0f}"),
            cell(vals(rr, "result.rss_peak_mib"), "{:.0f}"),
            cell(vals(rr, "result.rss_growth_mib"), "{:.1f}"),
            cell(vals(rr, "result.spool_peak_bytes"), "{:.1f}", 1e-6),
            cell(vals(rr, "result.catchup_s"), "{:.1f}"),
            ", ".join(str(r.get("result", {}).get("caught_up")) for r in rr),
            rows_cell(rr),
        ]
    ]
    return "\n".join(
        [
            f"### {title}",
            "",
            table(head, rows),
            "",
            (
                f"The loop logs {out['rate']:,} steps/s (3 scalars each) throughout; catch-up is the time "
                "from the route's return to exp.flush() returning (everything acknowledged)."
            ),
        ]
    )


def _ingest_table(ing: Dict[str, Any]) -> str:
    title = "Server ingest"
    if "reason" in ing:
        return _na(title, ing["reason"])
    head = [
        "encoding",
        "points/s (M)",
        "rows/s (k)",
        "elapsed s",
        "server peak RSS MiB",
        "server CPU s",
        "rows read back",
    ]
    rows = []
    for name, rr in (("zstd (as the agent sends)", ing["runs"]), ("identity", ing.get("identity_runs", []))):
        rows.append(
            [
                name,
                cell(vals(rr, "result.points_per_s"), "{:.2f}", 1e-6),
                cell(vals(rr, "result.rows_per_s"), "{:.0f}", 1e-3),
                cell(vals(rr, "result.elapsed_s"), "{:.2f}"),
                cell(vals(rr, "server.maxrss_mib"), "{:.0f}"),
                cell(vals(rr, "server.cpu_s"), "{:.1f}"),
                rows_cell(rr),
            ]
        )
    framing = next((r["result"].get("framing") for r in ing["runs"] if r.get("result", {}).get("framing")), "?")
    return "\n".join(
        [
            f"### {title}: {ing['clients']} concurrent clients × {ing['steps']:,} rows",
            "",
            f"Encoded as {framing}.",
            "",
            table(head, rows),
            "",
            (
                "A point is one scalar value (3 per row). Bodies are built before the clock starts; the "
                "load generator and the server share this machine's cores."
            ),
        ]
    )


def _files_table(f: Dict[str, Any]) -> str:
    title = "Server file I/O: blob uploads and file downloads"
    if "reason" in f:
        return _na(title, f["reason"])
    rr = f["runs"]
    head = ["upload MB/s", "download MB/s", "server peak RSS MiB", "server CPU s", "downloads verified"]
    rows = [
        [
            cell(vals(rr, "result.upload_mb_s"), "{:.0f}"),
            cell(vals(rr, "result.download_mb_s"), "{:.0f}"),
            cell(vals(rr, "server.maxrss_mib"), "{:.0f}"),
            cell(vals(rr, "server.cpu_s"), "{:.1f}"),
            rows_cell(rr),
        ]
    ]
    return "\n".join(
        [
            f"### {title}: {f['clients']} concurrent clients × {f['mib']} MiB, {f['reads']} downloads each",
            "",
            table(head, rows),
            "",
            (
                "Each client uploads its blob (hashed and written by the server), links it with a file "
                "event, then downloads it; every download is checked against its sha256."
            ),
        ]
    )
