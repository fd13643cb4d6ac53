"""The dashboard's login cookie: a signed, expiring proof that its holder presented a valid token.

The cookie never carries the token. It holds the token's sha256 (what the index keeps), an expiry
and an HMAC over both with a per-server secret, so:

- a stolen cookie cannot write: write routes read only the ``Authorization`` header;
- revoking the token ends every cookie made from it (each request looks the hash up again);
- a cookie cannot be forged without the secret, which lives owner-only (0600) in the server's
  private folder. Whoever can read that folder can mint read cookies, as they can read the data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path
from typing import Callable, Optional

__all__ = ["COOKIE_NAME", "CookieSessions", "MAX_AGE"]

COOKIE_NAME = "ml_dash_session"
#: Seconds a login lasts.
MAX_AGE = 30 * 24 * 3600
_SECRET_FILE = "dashboard-cookie.key"


def _load_secret(folder: Path) -> bytes:
    path = folder / _SECRET_FILE
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{_SECRET_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # first writer wins when two servers start on one root at once
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_bytes()


class CookieSessions:
    """Makes and checks login cookies. ``owner_of_hash`` maps a token hash to its owner (or None).
    ``secret``: one every server process shares (the scale-out store keeps it in its database);
    None keeps it in ``folder``."""

    def __init__(self, folder: Path, owner_of_hash: Callable[[str], Optional[str]], secret: Optional[bytes] = None):
        self._secret = secret or _load_secret(folder)
        self._owner_of_hash = owner_of_hash

    def _sign(self, body: str) -> str:
        mac = hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode("ascii").rstrip("=")

    def make(self, token_hash: str, now: Optional[float] = None) -> str:
        """The cookie value for a token (given by its hash) that was just checked."""
        expires = int((time.time() if now is None else now) + MAX_AGE)
        body = f"{token_hash}.{expires}"
        return f"{body}.{self._sign(body)}"

    def owner(self, value: Optional[str]) -> Optional[str]:
        """The owner a cookie stands for; None when it is missing, forged, expired or revoked."""
        if not value or len(value) > 200:
            return None
        body, _, mac = value.rpartition(".")
        token_hash, _, expires = body.partition(".")
        if not token_hash or not expires.isdigit() or not hmac.compare_digest(mac, self._sign(body)):
            return None
        if int(expires) < time.time():
            return None
        return self._owner_of_hash(token_hash)
