"""The SDK's read interface against a server (protocol v1 read API), synchronous and stdlib-only.

Same methods as ``ml_dash._local_sink.LocalReader``, so one test can check local and remote mode.
The token travels only in the Authorization header. Pages are followed until the requested limit
or the end; non-finite floats ("NaN", "Infinity", "-Infinity" on the wire) come back as floats.
"""

from __future__ import annotations

import http.client
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

from ._atomic import replacing
from ._errors import AuthError, InvalidPrefix, NotFound, RemoteError
from ._values import decode_nonfinite

__all__ = ["RemoteReader", "error_from_http"]

_PAGE = 10_000


def error_from_http(exc: urllib.error.HTTPError) -> RemoteError:
    """The error a server's HTTP error answer means: its code and message from the JSON body;
    :class:`AuthError` for 401 and 403."""
    code, message = None, exc.reason
    try:
        body = json.loads(exc.read() or b"{}")
        code = body["error"]["code"]
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError, OSError):
        pass
    cls = AuthError if exc.code in (401, 403) else RemoteError
    return cls(f"server answered {exc.code}: {message}", status=exc.code, code=code)


class RemoteReader:
    """Read one experiment of a server: ``RemoteReader(url, token, prefix)``."""

    def __init__(self, url: str, token: Optional[str], prefix: str, timeout: float = 60.0):
        self._base = url.rstrip("/") + "/api/v1/"
        self._token = token
        if token:
            from ._urls import warn_plain_http

            warn_plain_http(url, token)
        self._prefix = str(prefix)
        self._timeout = timeout

    def __repr__(self) -> str:  # never show the token
        return f"RemoteReader({self._base!r}, prefix={self._prefix!r})"

    # -- HTTP --------------------------------------------------------------------------------------

    def _request(self, route: str, **query: Any) -> "http.client.HTTPResponse":
        params = {"prefix": self._prefix}
        params.update({k: v for k, v in query.items() if v is not None})
        req = urllib.request.Request(self._base + route + "?" + urllib.parse.urlencode(params))
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            resp: http.client.HTTPResponse = urllib.request.urlopen(req, timeout=self._timeout)
            return resp
        except urllib.error.HTTPError as exc:
            raise error_from_http(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteError(f"cannot reach the server at {self._base}: {exc}") from None

    def _get(self, route: str, **query: Any) -> Dict[str, Any]:
        """The JSON object the server answers (every route answers one)."""
        with self._request(route, **query) as resp:
            try:
                body: Dict[str, Any] = json.loads(resp.read())
                return body
            except ValueError:
                raise RemoteError(f"the server's answer to {route} is not JSON") from None

    def _paged(self, route: str, key: str, start: int, limit: Optional[int], **query: Any) -> List[dict[str, Any]]:
        out: List[dict[str, Any]] = []
        nxt: Optional[int] = start
        while nxt is not None and (limit is None or len(out) < limit):
            want = _PAGE if limit is None else min(_PAGE, limit - len(out))
            body = self._get(route, start=nxt, limit=want, **query)
            out.extend(body.get(key) or [])
            nxt = body.get("next")
        return out

    # -- the reader interface ----------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the server stored anything under this prefix."""
        try:
            self._get("experiment")
        except RemoteError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _found(self, route: str, **query: Any) -> Dict[str, Any]:
        """``_get`` raising what local mode raises: NotFound, InvalidPrefix, ValueError."""
        try:
            return self._get(route, **query)
        except RemoteError as exc:
            message = str(exc).split(": ", 1)[-1]
            if exc.status == 404 and exc.code == "not_found":
                raise NotFound(message) from None
            if exc.status == 400 and exc.code in ("invalid_prefix", "invalid_name"):
                raise InvalidPrefix(message) from None
            if exc.status == 400 and exc.code == "bad_query":
                raise ValueError(message) from None
            raise

    def series(
        self,
        name: Optional[str],
        field: str,
        x: str = "index",
        start: Any = None,
        end: Any = None,
        buckets: int = 1000,
        after: Optional[int] = None,
        limit: Optional[int] = None,
    ) -> Dict[str, Any]:
        """``GET /api/v1/series``: one field downsampled, or the rows after an index (``after``)."""
        if after is not None:
            answer = self._found("series", name=name, field=field, x=x, after=after, limit=limit)
        else:
            answer = self._found("series", name=name, field=field, x=x, start=start, end=end, buckets=buckets)
        answer["points"] = decode_nonfinite(answer.get("points") or {})
        return answer

    def summary(self) -> Dict[str, Any]:
        """``GET /api/v1/summary``: every metric with its count and per field last/min/max; logs, files."""
        answer: Dict[str, Any] = decode_nonfinite(self._found("summary"))
        return answer

    def experiment(self) -> Dict[str, Any]:
        """The experiment's metadata and status ({} when there is no such experiment)."""
        try:
            return self._get("experiment")
        except RemoteError as exc:
            if exc.status == 404:
                return {}
            raise

    def params(self) -> Dict[str, Any]:
        """The flattened parameters ({} when none)."""
        params: Dict[str, Any] = decode_nonfinite(self._get("params").get("data") or {})
        return params

    def logs(self, start: int = 0, limit: Optional[int] = None, level: Optional[str] = None) -> List[dict[str, Any]]:
        """Log records with ``sequenceNumber >= start``, in order, at most ``limit``."""
        return [decode_nonfinite(r) for r in self._paged("logs", "logs", start, limit, level=level)]

    def metric_names(self) -> List[Optional[str]]:
        """Names of every metric with data; the unnamed metric is None."""
        return list(self._get("metrics").get("metrics") or [])

    def metric_rows(self, name: Optional[str], start: int = 0, limit: Optional[int] = None) -> List[dict[str, Any]]:
        """Rows ``{"index", "data", "createdAt"}`` with ``index >= start``, ordered by index."""
        rows = self._paged("metric", "rows", start, limit, name=name)
        for r in rows:
            r["data"] = decode_nonfinite(r.get("data") or {})
        return rows

    def files(self, path: Optional[str] = None) -> List[Dict[str, Any]]:
        """File entries, optionally only those under ``path``."""
        return list(self._get("files", path=path).get("files") or [])

    def track_topics(self) -> List[str]:
        """Topics with entries."""
        return list(self._get("tracks").get("tracks") or [])

    def track_entries(
        self, topic: str, start: Optional[float] = None, end: Optional[float] = None
    ) -> List[dict[str, Any]]:
        """Entries ``{"timestamp", ...}`` with ``start <= timestamp <= end``, in timestamp order."""
        out = []
        for e in self._paged("track", "entries", 0, None, topic=topic):
            t: Any = e.get("timestamp")  # the server always sends it
            if (start is None or t >= start) and (end is None or t <= end):
                out.append(decode_nonfinite(e))
        return out

    def download(self, entry: Dict[str, Any], dest: Path) -> Path:
        """Stream a file's bytes to ``dest`` (written to a temporary file, then renamed)."""
        dest = Path(dest)
        with replacing(dest) as out, self._request("file", id=str(entry["id"])) as resp:
            shutil.copyfileobj(resp, out, 1 << 20)
        return dest
