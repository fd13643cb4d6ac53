"""Schema migrations: numbered SQL files shipped in ``migrations/``, applied in order, each in its
own transaction together with its row in ``schema_migrations``.

``ml-dash server migrate`` applies what is missing; a server refuses to start on a database whose
schema is older (or newer) than the package's, with the command that fixes it. Concurrent
migrators take one advisory lock, so two of them never apply the same file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Tuple

from ._rows import one

if TYPE_CHECKING:
    import psycopg


__all__ = ["migrations", "latest_version", "current_version", "migrate", "check_schema", "SchemaError"]

_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")
_LOCK_KEY = 0x6D6C_6461_7368  # "mldash": pg_advisory_xact_lock key of migrations


class SchemaError(RuntimeError):
    """The database's schema does not match this package's (the message says what to run)."""


def migrations() -> List[Tuple[int, str, str]]:
    """(version, name, SQL) of every migration in the package, in order."""
    out = []
    for path in sorted(_DIR.iterdir()):
        m = _NAME.fullmatch(path.name)
        if m:
            out.append((int(m.group(1)), m.group(2), path.read_text(encoding="utf-8")))
    versions = [v for v, _, _ in out]
    if versions != list(range(1, len(out) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps, found {versions}")
    return out


def latest_version() -> int:
    return len(migrations())


def current_version(conn: psycopg.Connection[Any]) -> int:
    """The schema version of the database (0: nothing applied)."""
    row = one(conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone())
    if not row[0]:
        return 0
    return one(conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone())[0]


def migrate(conn: psycopg.Connection[Any]) -> List[str]:
    """Apply every missing migration (``conn`` in autocommit mode); the names applied."""
    applied = []
    for version, name, sql in migrations():
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,)).fetchone():
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied.append(f"{version:04d}_{name}")
    return applied


def check_schema(conn: psycopg.Connection[Any]) -> None:
    """Raise :class:`SchemaError` unless the database has exactly this package's schema."""
    have, want = current_version(conn), latest_version()
    if have < want:
        raise SchemaError(
            f"the database schema is at version {have}, this server needs {want}: "
            "run `ml-dash server migrate` (with the same store settings) first"
        )
    if have > want:
        raise SchemaError(
            f"the database schema is at version {have}, newer than this server ({want}): upgrade ml-dash on this host"
        )
