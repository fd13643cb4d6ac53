"""``ml-dash-agent``: upload what runs left in the spool, and show what is pending.

    ml-dash-agent flush [SPOOL_DIR] [--dash-url URL]
    ml-dash-agent status [SPOOL_DIR]
    ml-dash-agent serve [SPOOL_DIR] [--idle SECONDS]

SPOOL_DIR defaults to ``$ML_DASH_SPOOL_DIR`` or ``~/.cache/ml-dash/spool``. The token comes from
``ML_DASH_TOKEN`` or ``~/.config/ml-dash/credentials.json`` (see ``_credentials``), never from the
spool, and goes only to a server configured now (see ``_credentials.flush_token``). Both commands
refuse a spool that is not the user's own (exit 2, with how to fix it) and leave alone session
folders that are not. ``flush`` exits with 0 when nothing is left, 1 when something is, 2 on bad
usage or a refused spool.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import List, Optional

from ml_dash._text import printable

__all__ = ["main"]


def _spool_dir(arg: Optional[str]) -> Path:
    if arg:
        return Path(arg).expanduser()
    from ml_dash._config import load_config

    return Path(load_config().spool_dir)


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _untrusted_spool(root: Path) -> bool:
    """Say why, and True, when ``root`` is not the user's own spool (nothing in it is read then);
    say which session folders in it are left alone."""
    from ._session import spool_problem, untrusted_sessions

    problem = spool_problem(root)
    if problem is not None:
        print(f"ml-dash-agent: refused: {problem}", file=sys.stderr)
        return True
    for name, why in untrusted_sessions(root):
        print(f"ml-dash-agent: left {printable(name)} alone: {why}", file=sys.stderr)
    return False


def _status(root: Path) -> int:
    from ._flush import session_status
    from ._report import human_bytes
    from ._service import serving_pid
    from ._session import list_sessions

    if _untrusted_spool(root):
        return 2
    pid = serving_pid(root)
    if pid is not None:
        print(f"ml-dash-agent serve is uploading what runs write here (pid {pid})")
    rows = [session_status(s) for s in list_sessions(root)]
    if not rows:
        print(f"nothing pending in {printable(root)}")
        return 0
    print(f"{'SESSION':<28} {'EXPERIMENT':<36} {'EVENTS':>9} {'BYTES':>9} {'AGE':>6}  STATE / SERVER / LAST ERROR")
    for r in rows:
        # Every field read from the spool is escaped before it is formatted: a manifest may hold anything.
        sid, prefix, state, url = (printable(v) for v in (r.sdir.id, r.prefix, r.state, r.url))
        error = f", last error: {printable(r.last_error)}" if r.last_error else ""
        print(
            f"{sid:<28} {prefix:<36} {r.events:>9,} {human_bytes(r.bytes):>9} {_age(r.age):>6}  {state}, {url}{error}"
        )
    print(f"{len(rows)} session(s), {sum(r.events for r in rows):,} events pending in {printable(root)}")
    return 0


def _flush(root: Path, dash_url: Optional[str]) -> int:
    from ml_dash._config import load_config

    from ._credentials import flush_token
    from ._flush import flush_sessions, session_status
    from ._report import human_bytes
    from ._retry import RetryPolicy
    from ._session import list_sessions

    if not root.is_dir():
        print(f"ml-dash-agent: no spool at {printable(root)}: nothing to upload")
        return 0
    if _untrusted_spool(root):
        return 2
    total = sum(session_status(s).events for s in list_sessions(root))
    config = load_config()
    # A few tries (about 6 s against a dead server), then report: the user can run it again.
    policy = RetryPolicy(attempts=6, max_delay=60.0, max_wait=config.retry_max_wait)
    try:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="ev", unit_scale=True, desc="uploading", file=sys.stderr, disable=None)
    except ImportError:  # tqdm is optional: no bar
        bar = None
    start = time.monotonic()
    try:
        summary = asyncio.run(
            flush_sessions(
                root,
                dash_url,
                lambda url: flush_token(url, dash_url),
                policy,
                on_progress=(lambda events, nbytes: bar.update(events)) if bar is not None else (lambda e, b: None),
            )
        )
    finally:
        if bar is not None:
            bar.close()
    t = summary.tally
    print(
        f"ml-dash-agent: {summary.sessions} session(s), {t.events:,} events / {human_bytes(t.bytes)} uploaded "
        f"in {time.monotonic() - start:.1f}s, {t.duplicates:,} already stored (duplicates), "
        f"{t.quarantined:,} quarantined" + (f" (see {printable(root / 'quarantine')})" if t.quarantined else "")
    )
    if summary.left:
        for session, why in summary.left.items():
            print(f"ml-dash-agent: left {printable(session)}: {printable(why)}")
        print(
            f"ml-dash-agent: {len(summary.left)} session(s) left in {printable(root)}; run this command again to retry"
        )
        return 1
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="ml-dash-agent", description="ml-dash spool tools: upload what runs left behind"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fl = sub.add_parser("flush", help="upload every pending session (safe to run any time, twice, or next to a run)")
    fl.add_argument(
        "spool_dir",
        nargs="?",
        default=None,
        help="spool folder (default: $ML_DASH_SPOOL_DIR or ~/.cache/ml-dash/spool)",
    )
    fl.add_argument(
        "--dash-url",
        default=None,
        help="send every session to this server (with ML_DASH_TOKEN or its credentials entry), "
        "instead of the one each session recorded",
    )
    st = sub.add_parser("status", help="list pending sessions: experiment, events and bytes pending, age, last error")
    st.add_argument("spool_dir", nargs="?", default=None)
    sv = sub.add_parser(
        "serve",
        help="upload the runs of this spool as they write, until stopped (runs use it whenever it serves "
        "their spool, unless ML_DASH_UPLOADER=process; with ML_DASH_UPLOADER=agent they start one)",
    )
    sv.add_argument("spool_dir", nargs="?", default=None)
    sv.add_argument(
        "--idle", type=float, default=0.0, help="exit after this many seconds without a run (default 0: never)"
    )
    args = parser.parse_args(argv)
    root = _spool_dir(args.spool_dir)
    if args.command == "status":
        return _status(root)
    if args.command == "serve":
        from ml_dash._config import load_config

        from ._service import serve

        return serve(root, args.idle, load_config())
    if args.dash_url is not None:
        from ml_dash._errors import InvalidDashUrl
        from ml_dash._urls import check_dash_url

        try:
            check_dash_url(args.dash_url)
        except InvalidDashUrl as exc:
            print(f"ml-dash-agent: --dash-url: {exc}", file=sys.stderr)
            return 2
    return _flush(root, args.dash_url)


if __name__ == "__main__":
    sys.exit(main())
