"""``ml-dash server migrate`` and ``ml-dash server export``: the scale-out store's own commands.

* ``migrate`` applies the schema migrations the database lacks (the store from ``--store``,
  ``ML_DASH_SERVER_STORE`` or the settings file); with ``--from DIR`` it then imports that layout
  folder (``--to URL`` is another spelling of ``--store``).
* ``export --to DIR`` writes the scale-out store out as a ``dash_root``.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, List

if TYPE_CHECKING:
    from ..settings import ServerSettings

__all__ = ["migrate_main", "export_main", "add_store_arguments", "settings_from_args"]


def add_store_arguments(p: argparse.ArgumentParser, store_flag: str = "--store") -> None:
    p.add_argument(
        store_flag,
        dest="store",
        default=None,
        help="postgresql://USER@HOST:PORT/DB (no password here: it would show in process listings; "
        "use ML_DASH_SERVER_STORE, the settings file, PGPASSWORD or ~/.pgpass)",
    )
    p.add_argument(
        "--blobs", default=None, help="where file bytes go: s3://BUCKET/PREFIX, or a folder every process shares"
    )
    p.add_argument("--s3-endpoint", default=None, help="an S3-compatible server's URL (default: AWS)")
    p.add_argument("--settings", default=None, help="a JSON settings file, readable by its owner only")


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    from ..settings import load_settings

    return load_settings(
        {"store": args.store, "blobs": args.blobs, "s3_endpoint": args.s3_endpoint}, settings_file=args.settings
    )


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def migrate_main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(
        prog="ml-dash server migrate",
        description="Bring a PostgreSQL store's schema up to this version of ml-dash; "
        "with --from, import a local layout folder into it.",
    )
    add_store_arguments(p)
    p.add_argument("--to", dest="to", default=None, help="the same as --store")
    p.add_argument("--from", dest="src", default=None, help="a server root or dash_root to import")
    args = p.parse_args(argv)
    if args.to and args.store and args.to != args.store:
        return _fail("give the store once: --store or --to")
    args.store = args.store or args.to
    from ..settings import SettingsError, redact

    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        return _fail(str(exc))
    if settings.store is None:
        return _fail("no store: give --store postgresql://..., or set ML_DASH_SERVER_STORE")
    from .postgres import apply_migrations

    try:
        applied = apply_migrations(settings.store)
    except Exception as exc:  # the database's own message, never the URL's password
        return _fail(f"cannot migrate {redact(settings.store)}: {type(exc).__name__}: {exc}")
    print(f"schema: applied {', '.join(applied)}" if applied else "schema: up to date")
    if not args.src:
        return 0
    if settings.blobs is None:
        return _fail("--from needs --blobs (where the file bytes go)")
    from ..limits import Limits
    from .portability import import_root
    from .postgres import PgBackend

    backend = PgBackend.open(settings, None, Limits())
    try:
        counts = import_root(args.src, backend)
    finally:
        backend.close()
    print("imported: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0


def export_main(argv: List[str]) -> int:
    p = argparse.ArgumentParser(
        prog="ml-dash server export", description="Write a PostgreSQL store out as a dash_root (the local layout)."
    )
    add_store_arguments(p)
    p.add_argument("--to", dest="dest", required=True, help="the folder to write (a dash_root)")
    args = p.parse_args(argv)
    from ..settings import SettingsError

    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        return _fail(str(exc))
    if settings.store is None:
        return _fail("no store: give --store postgresql://..., or set ML_DASH_SERVER_STORE")
    from ..limits import Limits
    from .portability import export_store
    from .postgres import PgBackend

    backend = PgBackend.open(settings, None, Limits())
    try:
        counts = export_store(backend, args.dest)
    finally:
        backend.close()
    print("exported: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 0
