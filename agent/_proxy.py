"""Which HTTP proxy the uploads to a server go through: the standard variables, read as urllib reads them.

``HTTPS_PROXY`` or ``HTTP_PROXY`` (either case), chosen by the server URL's scheme, with ``NO_PROXY``
for the hosts that are reached directly: the choice ``urllib`` makes for the SDK's reads
(``ml_dash._remote_read``) and the read commands, so uploads and reads take the same route. A
proxy URL without a scheme is taken as ``http://``. User and password in the proxy URL become a
``Proxy-Authorization`` header and never appear in a message.

The route is found once per connection pool, in the sender's thread. aiohttp's own
``trust_env=True`` is not used: it looks the proxy up in a worker thread for every request, and
it also reads ``~/.netrc``, whose login for the server would clash with the bearer token.
"""

from __future__ import annotations

import base64
import urllib.parse
import urllib.request
from typing import Dict, NamedTuple, Optional

from ._retry import Unrecoverable

__all__ = ["Route", "DIRECT", "route_for"]


class Route(NamedTuple):
    """How to reach a server: ``proxy`` (a URL without user info) or None for a direct connection;
    ``proxy_headers`` go to the proxy with the tunnel's CONNECT (an https:// server) and
    ``request_headers`` with each request (an http:// server: the proxy reads the request itself).
    The proxy's credentials are in one of the two, never in both: an https:// server must not get them."""

    proxy: Optional[str]
    proxy_headers: Dict[str, str]
    request_headers: Dict[str, str]


DIRECT = Route(None, {}, {})


def route_for(url: str) -> Route:
    """The route to ``url`` under this process's environment.

    Raises :class:`~._retry.Unrecoverable` for a proxy that cannot be used (a scheme other than
    ``http`` or ``https``, such as ``socks5``, or no host): uploading around a proxy the
    environment names could break a site's network policy, so the upload stops and says why.
    """
    target = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    proxy = proxies.get(target.scheme)
    if not proxy:
        return DIRECT
    host = target.netloc.rpartition("@")[2]  # never the server URL's own user info
    if urllib.request.proxy_bypass_environment(host, proxies):  # type: ignore[attr-defined]  # in CPython, not in typeshed
        return DIRECT
    if "://" not in proxy:
        proxy = "http://" + proxy
    parts = urllib.parse.urlsplit(proxy)
    variable = f"{target.scheme.upper()}_PROXY"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = f"scheme {parts.scheme!r}" if parts.hostname else "no host"
        raise Unrecoverable(
            f"{variable} names a proxy ml-dash cannot use ({shown}): only http:// and https:// proxies "
            f"are supported; set {variable} to one, or add the server's host to NO_PROXY"
        )
    netloc = parts.netloc.rpartition("@")[2]
    headers: Dict[str, str] = {}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Proxy-Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    proxy = urllib.parse.urlunsplit((parts.scheme, netloc, "", "", ""))
    return Route(proxy, {}, headers) if target.scheme == "http" else Route(proxy, headers, {})
