"""The server's SQLite index: experiments, writer sessions with their acked_seq, tokens, intents.

It lives in ``<root>/.ml-dash-server/`` next to the blobs; the server refuses prefix segments that
start with ``.``, so no experiment can collide with it. WAL mode with ``synchronous=FULL``: a commit
is on disk when ``commit`` returns, which is what lets an ack mean "durable".

One connection, shared by the server's worker threads behind a lock: every statement here is short,
and the commit order of batches must be the order their data was written anyway.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple

__all__ = ["Index", "server_dir", "private_dir", "SERVER_DIR_NAME"]

SERVER_DIR_NAME = ".ml-dash-server"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    prefix TEXT PRIMARY KEY, owner TEXT NOT NULL, project TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS experiments_owner ON experiments(owner, project);
CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY, prefix TEXT NOT NULL, acked_seq INTEGER NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY, owner TEXT NOT NULL, label TEXT, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, prefix TEXT NOT NULL, plan BLOB NOT NULL,
    created_at REAL NOT NULL);
"""


def server_dir(root: Path | str) -> Path:
    """The server's private folder under ``root``."""
    return Path(root) / SERVER_DIR_NAME


def private_dir(root: Path | str) -> Path:
    """:func:`server_dir`, created if need be: a new root and the server's folder are owner-only
    (0700). An existing root keeps its mode (the server says so when others can read it)."""
    root = Path(root)
    if not root.exists():
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)  # mkdir's mode passes through the umask
    folder = server_dir(root)
    folder.mkdir(mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


class Index:
    """Typed access to the index database. Safe to call from several threads."""

    def __init__(self, root: Path | str):
        folder = private_dir(root)
        self.path = folder / "index.sqlite3"
        # Owner only: the index holds the tokens' hashes (SQLite gives its -wal and -shm files the
        # database file's mode).
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(self.path, 0o600)
        self._lock = threading.Lock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly what we say.
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=30000")
        for stmt in _SCHEMA.strip().split(";"):
            if stmt.strip():
                self._db.execute(stmt)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> List[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- tokens ------------------------------------------------------------------------------------

    def add_token(self, token_hash: str, owner: str, label: Optional[str]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO tokens(hash, owner, label, created_at) VALUES (?, ?, ?, ?)",
                (token_hash, owner, label, time.time()),
            )

    def token_owner(self, token_hash: str) -> Optional[str]:
        rows = self._query("SELECT owner FROM tokens WHERE hash = ?", (token_hash,))
        return rows[0][0] if rows else None

    def list_tokens(self) -> List[Tuple[str, str, Optional[str], float]]:
        return self._query("SELECT hash, owner, label, created_at FROM tokens ORDER BY created_at")

    def revoke_tokens(self, hash_prefix: str) -> List[Tuple[str, str, Optional[str], float]]:
        """Remove the tokens whose hash starts with ``hash_prefix`` (a literal prefix: ``_`` and ``%``
        are characters, not patterns); the rows removed, as :meth:`list_tokens` gives them."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT hash, owner, label, created_at FROM tokens WHERE substr(hash, 1, ?) = ? ORDER BY created_at",
                (len(hash_prefix), hash_prefix),
            ).fetchall()
            db.executemany("DELETE FROM tokens WHERE hash = ?", [(r[0],) for r in rows])
        return rows

    # -- sessions ----------------------------------------------------------------------------------

    def claim_session(self, session: str, prefix: str) -> Tuple[str, int]:
        """(prefix the session belongs to, its acked_seq); the first prefix a session names wins."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO sessions(session, prefix, acked_seq, created_at, updated_at)"
                " VALUES (?, ?, -1, ?, ?)",
                (session, prefix, now, now),
            )
            row = db.execute("SELECT prefix, acked_seq FROM sessions WHERE session = ?", (session,)).fetchone()
        return row[0], row[1]

    def acked_seq(self, session: str) -> Optional[int]:
        rows = self._query("SELECT acked_seq FROM sessions WHERE session = ?", (session,))
        return rows[0][0] if rows else None

    # -- intents and the commit of a batch ---------------------------------------------------------

    def add_intent(self, prefix: str, plan: bytes) -> int:
        with self._tx() as db:
            rowid = db.execute(
                "INSERT INTO intents(prefix, plan, created_at) VALUES (?, ?, ?)", (prefix, plan, time.time())
            ).lastrowid
            assert rowid is not None  # an INSERT's
            return rowid

    def intents(self) -> List[Tuple[int, str, bytes]]:
        return self._query("SELECT id, prefix, plan FROM intents ORDER BY id")

    def drop_intent(self, intent_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

    def commit_batch(
        self, session: str, acked_seq: int, intent_id: Optional[int], prefix: str, owner: str, project: str
    ) -> None:
        """One transaction: the session's new acked_seq, the experiment row, and the intent dropped."""
        now = time.time()
        with self._tx() as db:
            db.execute(
                "UPDATE sessions SET acked_seq = ?, updated_at = ? WHERE session = ? AND acked_seq < ?",
                (acked_seq, now, session, acked_seq),
            )
            db.execute(
                "INSERT INTO experiments(prefix, owner, project, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(prefix) DO UPDATE SET updated_at = excluded.updated_at",
                (prefix, owner, project, now, now),
            )
            if intent_id is not None:
                db.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

    # -- experiments -------------------------------------------------------------------------------

    def experiments(self, owner: Optional[str] = None, project: Optional[str] = None) -> List[str]:
        sql, args = "SELECT prefix FROM experiments", []
        conds = []
        if owner:
            conds.append("owner = ?")
            args.append(owner)
        if project:
            conds.append("project = ?")
            args.append(project)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        return [r[0] for r in self._query(sql + " ORDER BY prefix", tuple(args))]
