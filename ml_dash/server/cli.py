"""``ml-dash server``: run the reference server; ``ml-dash server token ...``: manage its tokens."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from typing import List, Optional

__all__ = ["main"]

_DEFAULT_ROOT = ".dash-server"


def _run_parser() -> argparse.ArgumentParser:
    from .limits import Limits

    p = argparse.ArgumentParser(
        prog="ml-dash server",
        description="Run the ml-dash reference server (protocol v1). "
        "Manage tokens with `ml-dash server token create --root DIR --owner NAME`. "
        "The scale-out store: --store postgresql://... --blobs s3://BUCKET/PREFIX (see `ml-dash server migrate`).",
    )
    p.add_argument(
        "--root", default=_DEFAULT_ROOT, help=f"data folder, readable as a dash_root (default: {_DEFAULT_ROOT})"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    p.add_argument(
        "--insecure-no-auth", action="store_true", help="accept every request without a token (loopback addresses only)"
    )
    p.add_argument(
        "--tls-cert",
        default=None,
        metavar="PEM",
        help="serve https with this certificate chain (with --tls-key); else plain http",
    )
    p.add_argument("--tls-key", default=None, metavar="PEM", help="the private key of --tls-cert")
    p.add_argument(
        "--read-scope",
        choices=("team", "owner"),
        default="team",
        help="team: any valid token reads every experiment (default); owner: a token reads only its owner's",
    )
    p.add_argument("--fault-injection", action="store_true", help=argparse.SUPPRESS)  # tests only
    from .stores.cli import add_store_arguments

    add_store_arguments(p)
    p.add_argument("--pool-size", type=int, default=None, help="database connections per process (default: 8)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server processes on this port (SO_REUSEPORT; needs --store): each one stateless",
    )
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # set for each worker
    for f in dataclasses.fields(Limits):
        p.add_argument("--" + f.name.replace("_", "-"), type=int, default=None, help=f"limit (default: {f.default:,})")
    return p


def _token_parser() -> argparse.ArgumentParser:
    from .stores.cli import add_store_arguments

    p = argparse.ArgumentParser(prog="ml-dash server token", description="Manage the server's bearer tokens.")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("create", help="create a token for an owner and print it (once)")
    c.add_argument("--root", default=_DEFAULT_ROOT)
    add_store_arguments(c)
    c.add_argument("--owner", required=True, help="the first prefix segment this token may write")
    c.add_argument("--label", default=None, help="a note to recognise the token by in `token list`")
    ls = sub.add_parser("list", help="list tokens (owner, label, hash prefix; never the token)")
    ls.add_argument("--root", default=_DEFAULT_ROOT)
    add_store_arguments(ls)
    rv = sub.add_parser("revoke", help="revoke the tokens whose hash starts with HASH")
    rv.add_argument("--root", default=_DEFAULT_ROOT)
    add_store_arguments(rv)
    rv.add_argument("hash", help="a prefix of the hash shown by `token list` (at least 8 characters)")
    return p


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _token(argv: List[str]) -> int:
    from .auth import create_token, open_index
    from .settings import SettingsError
    from .stores.cli import settings_from_args

    args = _token_parser().parse_args(argv)
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.action == "create":
        try:
            token = create_token(args.root, args.owner, args.label, settings=settings)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(token)
        print(
            f"# token for owner {args.owner!r}; it is shown only this once. Use it as "
            "ML_DASH_TOKEN or Authorization: Bearer <token>.",
            file=sys.stderr,
        )
        return 0
    index = open_index(args.root, settings)
    try:
        if args.action == "list":
            for h, owner, label, created in index.list_tokens():
                print(f"{h[:12]}  {owner}  {_when(created)}  {label or ''}")
            return 0
        if len(args.hash) < 8:
            print("error: give at least 8 characters of the hash (see `ml-dash server token list`)", file=sys.stderr)
            return 2
        revoked = index.revoke_tokens(args.hash.lower())
        if not revoked:
            print(f"error: no token's hash starts with {args.hash!r}; nothing revoked", file=sys.stderr)
            return 1
        for h, owner, label, created in revoked:
            print(f"revoked {h[:12]}  {owner}  {_when(created)}  {label or ''}".rstrip())
        return 0
    finally:
        index.close()


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "token":
        return _token(argv[1:])
    if argv and argv[0] in ("migrate", "export"):
        from .stores.cli import export_main, migrate_main

        return (migrate_main if argv[0] == "migrate" else export_main)(argv[1:])
    args = _run_parser().parse_args(argv)
    from .settings import SettingsError, redact
    from .stores.cli import settings_from_args

    try:
        settings = settings_from_args(args)
        if args.pool_size is not None:
            settings = dataclasses.replace(settings, pool_size=args.pool_size)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.workers > 1 and settings.store is None:
        print("error: --workers needs --store postgresql://...: the embedded store is one process's", file=sys.stderr)
        return 2

    from .launch import LISTENING, is_loopback, serve_forever, tls_context
    from .limits import Limits

    if args.insecure_no_auth and not is_loopback(args.host):
        print(f"error: --insecure-no-auth is allowed only on a loopback address, not {args.host!r}", file=sys.stderr)
        return 2
    if args.fault_injection and not is_loopback(args.host):
        print(
            f"error: --fault-injection (tests only) is allowed only on a loopback address, not {args.host!r}",
            file=sys.stderr,
        )
        return 2
    ssl_context = None
    if bool(args.tls_cert) != bool(args.tls_key):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    if args.tls_cert:
        try:
            ssl_context = tls_context(args.tls_cert, args.tls_key)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            print(f"error: cannot use {args.tls_cert} / {args.tls_key} for TLS: {exc}", file=sys.stderr)
            return 2
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Limits) if getattr(args, f.name) is not None}
    limits = Limits(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def on_ready(url: str) -> None:
        print(LISTENING + url, flush=True)
        print(
            f"data: {args.root if settings.store is None else redact(settings.store) + ' + blobs ' + str(settings.blobs)}",
            flush=True,
        )
        if args.insecure_no_auth:
            banner = "WARNING: AUTH IS OFF (--insecure-no-auth): anyone who can reach this port can write and read."
            print(banner, flush=True)
            print("!" * len(banner) + "\n" + banner + "\n" + "!" * len(banner), file=sys.stderr, flush=True)
        else:
            where = f"--root {args.root}" if settings.store is None else "(with the same store settings)"
            print(f"get a token: ml-dash server token create {where} --owner <your-name>", flush=True)
        if ssl_context is None and not is_loopback(args.host):
            print(
                "WARNING: plain http on a network address: tokens and data cross the network in clear. "
                "Use --tls-cert/--tls-key, or bind to 127.0.0.1 behind a reverse proxy that terminates TLS.",
                file=sys.stderr,
                flush=True,
            )
        if args.read_scope == "owner":
            print("reads: a token reads only its owner's experiments (--read-scope owner)", flush=True)
        if args.fault_injection:
            print("fault injection is ON (tests only)", flush=True)

    if args.workers > 1:
        from .workers import serve_workers

        return serve_workers(argv, args.host, args.port, args.workers, LISTENING, on_ready)
    try:
        serve_forever(
            args.root,
            args.host,
            args.port,
            auth=not args.insecure_no_auth,
            fault_injection=args.fault_injection,
            limits=limits,
            on_ready=on_ready,
            settings=settings if settings.store else None,
            reuse_port=args.reuse_port,
            ssl_context=ssl_context,
            read_scope=args.read_scope,
        )
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # the store could not be opened: its own words (never a password)
        if settings.store is None:
            raise
        print(f"error: cannot open the store {redact(settings.store)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("ml-dash server stopped", flush=True)
    return 0
