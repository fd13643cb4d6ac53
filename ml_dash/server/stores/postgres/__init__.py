"""The scale-out store: PostgreSQL for experiments, sessions, params, logs, tokens, file entries and
metric rows (in chunks of columns), and a blob store for file bytes (an S3-compatible bucket, or a
folder every server process shares).

The server processes keep nothing of their own: any process can take any batch, and a process
killed at any moment loses nothing it acknowledged (see :mod:`._ingest` for why). psycopg 3 with a
connection pool per process; every call here runs in the server's thread pool.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, TypeVar

from ...errors import ApiError
from ...settings import ServerSettings, redact
from .. import Backend
from ._rows import one

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

    from ...._readmodel import ReadModel
    from ...batch import Batch
    from ...limits import Limits

__all__ = ["PgBackend", "connect", "apply_migrations"]

log = logging.getLogger("ml_dash.server")
T = TypeVar("T")


def _json_setup() -> None:
    import orjson
    from psycopg.types.json import set_json_dumps, set_json_loads

    set_json_dumps(orjson.dumps)
    set_json_loads(orjson.loads)


def connect(url: str, **kw: Any) -> psycopg.Connection[Any]:
    """One connection (autocommit), for the CLI's one-off work."""
    import psycopg

    _json_setup()
    return psycopg.connect(url, autocommit=True, **kw)


def apply_migrations(url: str) -> List[str]:
    """Apply the schema migrations this package has and the database lacks; the names applied."""
    from ._schema import migrate

    with connect(url) as conn:
        return migrate(conn)


def open_pool(url: str, size: int) -> ConnectionPool:
    """A pool of at most ``size`` connections, opened (it waits for the first connection)."""
    from psycopg_pool import ConnectionPool

    _json_setup()
    pool = ConnectionPool(url, min_size=1, max_size=size, open=False, timeout=10, name="ml-dash")
    pool.open(wait=True, timeout=30)
    return pool


class _Unavailable(ApiError):
    def __init__(self) -> None:
        super().__init__(
            503,
            "storage_unavailable",
            "the server's database is unavailable; retry later",
            headers={"Retry-After": "2"},
        )


def _guard(fn: Callable[..., T]) -> Callable[..., T]:
    """Map "the database is not there" (restart, failover, network) to 503 + Retry-After."""
    import functools

    import psycopg
    import psycopg_pool

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout, psycopg.errors.AdminShutdown) as exc:
            log.warning("database unavailable: %s", type(exc).__name__)
            raise _Unavailable() from None

    return wrapped


class PgIndex:
    """Tokens and the experiment list (the embedded store's :class:`ml_dash.server.index.Index` calls).

    A token's owner is remembered for :data:`TOKEN_TTL` seconds: some read routes check the token
    on the event loop, where a database round trip per request (or a wait on a database that is
    away) would hold every other request. A revoked token therefore stops working within that
    time on every process.
    """

    TOKEN_TTL = 2.0

    def __init__(self, pool: ConnectionPool, closes_pool: bool = False) -> None:
        self.pool = pool
        self._closes_pool = closes_pool  # a pool of its own (the CLI's), closed with it
        self._owners: dict[str, Any] = {}

    def add_token(self, token_hash: str, owner: str, label: Optional[str]) -> None:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO tokens (hash, owner, label, created_at) VALUES (%s, %s, %s, %s)",
                (token_hash, owner, label, time.time()),
            )

    def token_owner(self, token_hash: str) -> Optional[str]:
        now = time.monotonic()
        hit = self._owners.get(token_hash)
        if hit is not None and now - hit[1] < self.TOKEN_TTL:
            return hit[0]
        with self.pool.connection(timeout=2) as conn:
            row = conn.execute("SELECT owner FROM tokens WHERE hash = %s", (token_hash,)).fetchone()
        if row is None:
            self._owners.pop(token_hash, None)
            return None
        if len(self._owners) > 10_000:
            self._owners.clear()
        self._owners[token_hash] = (row[0], now)
        return row[0]

    def list_tokens(self) -> List[Tuple[str, str, Optional[str], float]]:
        with self.pool.connection() as conn:
            return conn.execute("SELECT hash, owner, label, created_at FROM tokens ORDER BY created_at").fetchall()

    def revoke_tokens(self, hash_prefix: str) -> List[Tuple[str, str, Optional[str], float]]:
        """Remove the tokens whose hash starts with ``hash_prefix`` (literally); the rows removed."""
        self._owners.clear()
        with self.pool.connection() as conn:
            rows = conn.execute(
                "DELETE FROM tokens WHERE starts_with(hash, %s) RETURNING hash, owner, label, created_at",
                (hash_prefix,),
            ).fetchall()
        return sorted(rows, key=lambda r: r[3])

    def experiments(self, owner: Optional[str] = None, project: Optional[str] = None) -> List[str]:
        sql, args, conds = "SELECT prefix FROM experiments", [], []
        if owner:
            conds.append("owner = %s")
            args.append(owner)
        if project:
            conds.append("project = %s")
            args.append(project)
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        with self.pool.connection() as conn:
            return [r[0] for r in conn.execute(sql + " ORDER BY prefix", tuple(args)).fetchall()]

    def close(self) -> None:
        if self._closes_pool:
            self.pool.close()


class PgStore:
    """Ingest (see :mod:`._ingest`)."""

    on_rollback = None

    def __init__(self, pool: ConnectionPool, limits: Limits) -> None:
        self.pool = pool
        self.limits = limits

    def ingest(self, batch: Batch, crash_before_commit: bool = False) -> Dict[str, Any]:
        from ._ingest import ingest_batch
        from ._targets import PgTargets

        return ingest_batch(self.pool, batch, self.limits, crash_before_commit, targets_for=PgTargets)

    def recover(self) -> int:
        return 0  # a transaction that did not commit left nothing behind

    def close(self) -> None:
        pass


class PgBlobs:
    """The blob interface over raw blob storage (S3 or a folder) plus the ``blobs`` table: a blob
    is listed only after its bytes are stored and checked, and a file event may link only a listed
    blob, so a file entry never points at bytes that are not there."""

    def __init__(self, pool: ConnectionPool, raw: Any) -> None:
        self.pool = pool
        self.raw = raw

    def size(self, checksum: str) -> Optional[int]:
        with self.pool.connection() as conn:
            row = conn.execute("SELECT size FROM blobs WHERE checksum = %s", (checksum,)).fetchone()
        return None if row is None else row[0]

    def upload(self, checksum: str, limit: int) -> _ListedUpload:
        return _ListedUpload(self, self.raw.upload(checksum, limit))

    def list(self, checksum: str, size: int) -> bool:
        with self.pool.connection() as conn:
            return (
                conn.execute(
                    "INSERT INTO blobs (checksum, size, created_at) VALUES (%s, %s, %s)"
                    " ON CONFLICT (checksum) DO NOTHING",
                    (checksum, size, time.time()),
                ).rowcount
                == 1
            )

    def source(self, checksum: str, size: Optional[int]) -> Any:
        src = getattr(self.raw, "source", None)
        if src is not None:
            return src(checksum, size)
        return self.raw.path(checksum)

    def close(self) -> None:
        close = getattr(self.raw, "close", None)
        if close is not None:
            close()


class _ListedUpload:
    def __init__(self, blobs: PgBlobs, upload: Any) -> None:
        self._blobs = blobs
        self._upload = upload

    @property
    def size(self) -> int:
        return self._upload.size

    def write(self, chunk: bytes) -> None:
        self._upload.write(chunk)

    def finish(self) -> bool:
        self._upload.finish()  # False: the bytes were there already (listed or not)
        return _guard(self._blobs.list)(self._upload.checksum, self._upload.size)

    def abort(self) -> None:
        self._upload.abort()


class _Guarded:
    """Every public method of ``inner`` with database outages answered 503 (see :func:`_guard`)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if callable(value) and not name.startswith("_"):
            return _guard(value)
        return value


class _GuardedReadModel(_Guarded):
    """The read model with database outages answered 503 (its routes turn QueryError into 4xx)."""


class PgBackend(Backend):
    kind = "postgres"

    def __init__(self, settings: ServerSettings, pool: ConnectionPool, raw_blobs: Any, limits: Limits) -> None:
        from ._reads import PgReads

        self.settings = settings
        self.pool = pool
        blobs = PgBlobs(pool, raw_blobs)
        super().__init__(
            _Guarded(PgStore(pool, limits)),
            _Guarded(PgReads(pool, limits.max_page, blobs)),
            _Guarded(PgIndex(pool)),
            _Guarded(blobs),
        )
        self._blobs = blobs

    @property
    def raw_blobs(self) -> Any:
        """The blob bytes' own store (S3 or a folder), for import and export, which stream to it."""
        return self._blobs.raw

    @classmethod
    def open(cls, settings: ServerSettings, root: Optional[Path], limits: Limits, check: bool = True) -> "PgBackend":
        """Connect (``settings.pool_size`` connections at most) and check the schema version."""
        from ._schema import check_schema

        assert settings.store is not None  # settings naming this store
        pool = open_pool(settings.store, settings.pool_size)
        try:
            if check:
                with pool.connection() as conn:
                    check_schema(conn)
            raw = open_raw_blobs(settings, root)
        except BaseException:
            pool.close()
            raise
        return cls(settings, pool, raw, limits)

    def describe(self) -> str:
        return f"{redact(self.settings.store)} + blobs {self.settings.blobs}"

    def read_model(self) -> ReadModel:
        from ._readmodel import PgReadModel

        return _GuardedReadModel(PgReadModel(self.pool))  # type: ignore[return-value]  # a proxy of one

    def shared_secret(self, name: str) -> bytes:
        with self.pool.connection() as conn:
            conn.execute(
                "INSERT INTO server_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_bytes(32)),
            )
            return bytes(one(conn.execute("SELECT value FROM server_secrets WHERE name = %s", (name,)).fetchone())[0])

    def close(self) -> None:
        self._blobs.close()
        self.pool.close()


def open_raw_blobs(settings: ServerSettings, root: Optional[Path]) -> Any:
    """The storage of file bytes the settings name: an S3 bucket, or a folder."""
    if not settings.blobs:
        raise ValueError(
            "the PostgreSQL store needs --blobs: s3://BUCKET/PREFIX, or a folder every server process shares"
        )
    if settings.blobs.startswith("s3://"):
        from ..s3 import S3Blobs

        blobs = S3Blobs(
            settings.blobs,
            settings.s3_endpoint,
            settings.s3_region,
            settings.s3_access_key_id,
            settings.s3_secret_access_key,
        )
        try:
            blobs.ensure_bucket()
        except BaseException:
            blobs.close()
            raise
        return blobs
    from ...blobs import BlobStore

    return BlobStore(Path(settings.blobs))
