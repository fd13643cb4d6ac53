"""Server URLs: what a valid ``dash_url`` is, the one warning about tokens over plain http, and
the dashboard URL of a run.

Imports are local to the functions: ``import ml_dash`` must stay light, and only remote mode
needs any of this.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Optional, Set, Tuple

    from ._config import Config

__all__ = ["check_dash_url", "is_loopback_host", "warn_plain_http", "dashboard_url", "announce_run"]

_EXAMPLE = "http://127.0.0.1:8765"
_warned: "Set[Tuple[Optional[str], Optional[int]]]" = set()


def _shown(url: str) -> str:
    """``url`` fit for an error message: no user info (it may hold a password), no control characters."""
    from ._text import printable

    head, at, tail = url.rpartition("@")
    if at and "://" in head:
        url = head.split("://", 1)[0] + "://…@" + tail
    return printable(url)


def check_dash_url(url: str) -> str:
    """``url`` if it names a server (``http://`` or ``https://`` and a host), else :class:`InvalidDashUrl`.

    Refused on purpose: any other scheme or none (``127.0.0.1:8765``), no host, a port that is not
    a number, user info (a token or password belongs in ``ML_DASH_TOKEN``, never in a URL), a query
    or fragment, and whitespace or control characters. A path is kept (a server behind a proxy
    under ``https://host/dash``).
    """
    from urllib.parse import urlsplit

    from ._errors import InvalidDashUrl

    if not isinstance(url, str):
        raise InvalidDashUrl(f"dash_url must be a str such as {_EXAMPLE!r}, not {type(url).__name__}")
    why = None
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        parts, port_ok, why = None, False, f"its host or port cannot be read ({exc})"
    if parts is None:
        pass
    elif any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        why = "it contains whitespace or control characters"
    elif parts.scheme.lower() not in ("http", "https"):
        why = "it needs http:// or https://" + (f", not {parts.scheme}://" if "://" in url else "")
    elif not parts.hostname:
        why = "it has no host"
    elif not port_ok:
        why = "its port is not a number from 1 to 65535"
    elif parts.username is not None or parts.password is not None:
        why = "it holds user info: put the token in ML_DASH_TOKEN, never in the URL"
    elif parts.query or parts.fragment or url.endswith(("?", "#")):
        why = "it has a query or fragment"
    if why is not None:
        raise InvalidDashUrl(f"dash_url {_shown(url)!r} is not a server URL: {why} (for example {_EXAMPLE!r})")
    return url


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    host = (host or "").strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_plain_http(url: str, token: Optional[str]) -> None:
    """Say once per server, on stderr, that a token is about to travel unencrypted off this machine."""
    if not token:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or is_loopback_host(parts.hostname or ""):
        return
    key = (parts.hostname, parts.port)
    if key in _warned:
        return
    _warned.add(key)
    from ._report import warn

    warn(
        f"warning: the token is sent to {_shown(url)} over plain http://, unencrypted: anyone on the "
        "path can read it and write as you. Use https:// (a TLS server or a reverse proxy)."
    )


def dashboard_url(dash_url: str, prefix: str) -> str:
    """``{dash_url}/e/<owner>/<project>/.../<name>``, each segment percent-encoded."""
    from urllib.parse import quote

    return dash_url.rstrip("/") + "/e/" + "/".join(quote(seg, safe="") for seg in prefix.split("/"))


def announce_run(config: Config, prefix: str) -> None:
    """Print where to watch a remote run (stderr; ``ML_DASH_PRINT_URL=0`` silences it)."""
    if config.dash_url and config.print_url:
        from ._report import notice

        notice(f"{prefix} → {dashboard_url(config.dash_url, prefix)}")
