"""Bearer tokens: creation, hashing, and the write/read rules.

A token is 32 random bytes (url-safe base64 with a ``mld_`` tag); the index keeps only its sha256,
so a copy of the server root gives no token away. Tokens are never logged and never put in a URL.

Rules: a token of owner ``alice`` may write only prefixes whose first segment is ``alice``. Reads
follow the server's read scope: ``team`` (the default) lets any valid token read every experiment;
``owner`` lets a token read only its owner's. With auth disabled (``--insecure-no-auth``, loopback
only), everything is allowed.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from .._errors import InvalidPrefix
from .._names import Prefix, check_segment
from .errors import ApiError
from .index import Index

if TYPE_CHECKING:
    from .dashboard.session import CookieSessions
    from .settings import ServerSettings
    from .stores.postgres import PgIndex

__all__ = ["create_token", "hash_token", "Authenticator", "check_owner", "READ_SCOPES"]

#: "team": any valid token reads every experiment; "owner": a token reads only its owner's.
READ_SCOPES = ("team", "owner")

_TAG = "mld_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def check_owner(owner: str) -> str:
    """An owner is one safe prefix segment that does not start with '.'."""
    check_segment(owner, "owner")
    if owner.startswith("."):
        raise InvalidPrefix(f"owner {owner!r} may not start with '.'")
    return owner


def create_token(
    root: Path | str, owner: str, label: Optional[str] = None, settings: Optional[ServerSettings] = None
) -> str:
    """Create a token for ``owner`` in the server root ``root`` (or the store ``settings`` name,
    :mod:`.settings`) and return it (it is not stored)."""
    check_owner(owner)
    token = _TAG + secrets.token_urlsafe(32)
    index = open_index(root, settings)
    try:
        index.add_token(hash_token(token), owner, label)
    finally:
        index.close()
    return token


def open_index(root: Path | str, settings: Optional[ServerSettings] = None) -> Union[Index, PgIndex]:
    """The token index of the embedded store under ``root``, or of the store ``settings`` name."""
    if settings is None or settings.store is None:
        return Index(root)
    from .stores.postgres import PgIndex, open_pool

    pool = open_pool(settings.store, 1)
    return PgIndex(pool, closes_pool=True)


class Authenticator:
    """Answers "who is this" (401 when unknown) and "may they write here" (403)."""

    def __init__(self, index: Index, enabled: bool = True, read_scope: str = "team"):
        if read_scope not in READ_SCOPES:
            raise ValueError(f"read_scope must be one of {READ_SCOPES}, not {read_scope!r}")
        self.index = index
        self.enabled = enabled
        self.read_scope = read_scope
        #: The dashboard's login cookies (``dashboard.session.CookieSessions``), set when it is mounted.
        self.sessions: Optional[CookieSessions] = None

    def identify(self, authorization: Optional[str]) -> Optional[str]:
        """The token's owner; None when auth is off. Raises 401 for a missing or unknown token."""
        if not self.enabled:
            return None
        if not authorization:
            raise ApiError(
                401,
                "unauthorized",
                "this server needs a token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > 256:
            raise ApiError(
                401,
                "unauthorized",
                "the Authorization header must be 'Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        owner = self.index.token_owner(hash_token(token))
        if owner is None:
            raise ApiError(401, "unauthorized", "unknown token", headers={"WWW-Authenticate": "Bearer"})
        return owner

    def identify_read(self, authorization: Optional[str], cookie: Optional[str]) -> Optional[str]:
        """Like :meth:`identify`, for read routes (GET) only: a dashboard login cookie also counts.

        Write routes must call :meth:`identify`: a cookie rides along with any request the browser
        makes, so accepting it for writes would open them to cross-site request forgery.
        """
        if self.enabled and not authorization and cookie and self.sessions is not None:
            owner = self.sessions.owner(cookie)
            if owner is not None:
                return owner
        return self.identify(authorization)

    def readable_owner(self, owner: Optional[str]) -> Optional[str]:
        """The only owner whose experiments ``owner``'s token may read; None when it may read all."""
        return owner if self.enabled and self.read_scope == "owner" else None

    def require_read(self, owner: Optional[str], prefix: str) -> None:
        """403 when the read scope keeps ``owner`` from ``prefix`` (an owner's experiments, existing or
        not, answer the same: nothing is learnt about them)."""
        only = self.readable_owner(owner)
        if only is not None and str(prefix).strip("/").split("/", 1)[0] != only:
            raise ApiError(
                403,
                "forbidden",
                f"this server lets a token of owner {only!r} read only prefixes that start with '{only}/'",
            )

    def require_write(self, owner: Optional[str], prefix: Prefix) -> None:
        if not self.enabled:
            return
        if owner != prefix.owner:
            raise ApiError(
                403,
                "forbidden",
                f"a token of owner {owner!r} may write only prefixes that start with '{owner}/'",
            )
