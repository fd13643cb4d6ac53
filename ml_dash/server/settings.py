"""Where a server keeps its data, and the secrets to get there: read in one place.

Sources, the first that sets a value wins: the command line, the environment, a settings file.

| setting | command line | environment | settings file key |
|---|---|---|---|
| store | ``--store URL`` (no password) | ``ML_DASH_SERVER_STORE`` | ``store`` |
| blobs | ``--blobs s3://bucket/prefix`` or a folder | ``ML_DASH_SERVER_BLOBS`` | ``blobs`` |
| S3 endpoint | ``--s3-endpoint URL`` | ``ML_DASH_SERVER_S3_ENDPOINT`` | ``s3_endpoint`` |
| S3 region | | ``ML_DASH_SERVER_S3_REGION`` | ``s3_region`` |
| S3 keys | never | ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` | ``s3_access_key_id``, ``s3_secret_access_key`` |
| connections per process | ``--pool-size N`` | ``ML_DASH_SERVER_POOL_SIZE`` | ``pool_size`` |

The settings file is ``--settings FILE`` or ``ML_DASH_SERVER_SETTINGS``: a JSON object, refused
unless only its owner may read it (it may hold secrets). A database password may sit in the store
URL when that URL comes from the environment or the file; on the command line it would show in
every process listing, so a URL with a password there is refused. libpq's own ``PGPASSWORD`` and
``~/.pgpass`` work too. Secrets never reach a log line: :func:`redact` is what is printed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, overload

__all__ = ["ServerSettings", "SettingsError", "load_settings", "redact", "is_database_url"]

_ENV = {
    "store": "ML_DASH_SERVER_STORE",
    "blobs": "ML_DASH_SERVER_BLOBS",
    "s3_endpoint": "ML_DASH_SERVER_S3_ENDPOINT",
    "s3_region": "ML_DASH_SERVER_S3_REGION",
    "s3_access_key_id": "AWS_ACCESS_KEY_ID",
    "s3_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "pool_size": "ML_DASH_SERVER_POOL_SIZE",
}
_SETTINGS_ENV = "ML_DASH_SERVER_SETTINGS"


class SettingsError(ValueError):
    """Settings that cannot be used (the message says what to change)."""


@dataclass(frozen=True)
class ServerSettings:
    """The store of a server; None everywhere is the embedded store under ``--root``."""

    store: Optional[str] = None
    blobs: Optional[str] = None
    s3_endpoint: Optional[str] = None
    s3_region: str = "us-east-1"
    s3_access_key_id: Optional[str] = field(default=None, repr=False)
    s3_secret_access_key: Optional[str] = field(default=None, repr=False)
    pool_size: int = 8

    def __repr__(self) -> str:  # never a password, whoever prints it
        return (
            f"ServerSettings(store={redact(self.store)!r}, blobs={self.blobs!r}, s3_endpoint={self.s3_endpoint!r},"
            f" pool_size={self.pool_size})"
        )

    __str__ = __repr__


def is_database_url(value: Optional[str]) -> bool:
    return value is not None and value.split(":", 1)[0] in ("postgresql", "postgres")


@overload
def redact(url: str) -> str: ...
@overload
def redact(url: None) -> None: ...
def redact(url: Optional[str]) -> Optional[str]:
    """``url`` with any password replaced by ``***``."""
    if not url or "://" not in url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if not any(k == "password" for k, _ in query):
            return url
    netloc = parts.netloc
    if parts.password is not None:
        user = parts.username or ""
        netloc = f"{user}:***@" + netloc.rsplit("@", 1)[1]
    shown = urllib.parse.urlencode(
        [(k, "***" if k == "password" else v) for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)]
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, shown, parts.fragment))


def _has_password(url: str) -> bool:
    return redact(url) != url


def _read_file(path: Path) -> Dict[str, Any]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SettingsError(f"settings file {path} may hold secrets: make it readable by its owner only (chmod 600)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"settings file {path} is not a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} is not a JSON object")
    unknown = set(data) - set(_ENV)
    if unknown:
        raise SettingsError(f"settings file {path}: unknown keys {sorted(unknown)}; known: {sorted(_ENV)}")
    return data


def load_settings(
    cli: Optional[Mapping[str, Any]] = None,
    env: Optional[Mapping[str, str]] = None,
    settings_file: Optional[str] = None,
) -> ServerSettings:
    """Settings from the command line (``cli``: only the values given), the environment, a file."""
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    env = os.environ if env is None else env
    store = cli.get("store")
    if store and is_database_url(store) and _has_password(store):
        raise SettingsError(
            "a password in --store would show in every process listing: put the URL in "
            "ML_DASH_SERVER_STORE or the settings file, or the password in PGPASSWORD or ~/.pgpass"
        )
    file_path = settings_file or env.get(_SETTINGS_ENV)
    from_file = _read_file(Path(file_path)) if file_path else {}
    values: Dict[str, Any] = {}
    for name, var in _ENV.items():
        for source in (cli, {name: env.get(var)} if env.get(var) else {}, from_file):
            if source.get(name) not in (None, ""):
                values[name] = source[name]
                break
    try:
        values["pool_size"] = int(values.get("pool_size", 8))
    except (TypeError, ValueError):
        raise SettingsError("pool_size must be an integer") from None
    if values["pool_size"] < 1:
        raise SettingsError("pool_size must be at least 1")
    settings = ServerSettings(
        **{f.name: values[f.name] for f in dataclasses.fields(ServerSettings) if f.name in values}
    )
    if settings.store is not None and not is_database_url(settings.store):
        raise SettingsError(
            f"--store must be a postgresql:// URL (the embedded store is the default, under --root); "
            f"got {redact(settings.store)!r}"
        )
    if settings.store is None and settings.blobs is not None:
        raise SettingsError("--blobs needs --store: the embedded store keeps its blobs under --root")
    if settings.blobs and settings.blobs.startswith("s3://"):
        bucket = urllib.parse.urlsplit(settings.blobs).netloc
        if not bucket:
            raise SettingsError(f"--blobs {settings.blobs!r} names no bucket: s3://BUCKET/PREFIX")
    return settings
