"""HTTP headers of the dashboard's answers: page security headers and file downloads."""

from __future__ import annotations

__all__ = ["PAGE_HEADERS", "content_disposition"]

#: On every page: scripts only from this origin, no inline script, no framing (clickjacking), no
#: external fonts or requests at all.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def content_disposition(filename: str) -> str:
    """``attachment`` with the file's name, quoted for any characters (RFC 6266 / 5987)."""
    from urllib.parse import quote

    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
