"""Where the read commands read: a local store (the same read model as the server, in memory) or a
server's read API. Both answer the same calls with the same shapes, non-finite floats as floats."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional

if TYPE_CHECKING:
    from .._local_sink import LocalReader
    from .._readmodel import LayoutReadModel

from .._errors import NotFound, RemoteError
from .._readmodel import TableQuery
from .._values import decode_nonfinite

__all__ = ["Source", "open_source"]

_PAGE = 10_000


class Source:
    """The read calls of the CLI."""

    where: str

    def table(self, query: TableQuery) -> Dict[str, Any]:
        raise NotImplementedError

    def summary(self, prefix: str) -> Dict[str, Any]:
        raise NotImplementedError

    def experiment(self, prefix: str) -> Dict[str, Any]:
        """experiment.json; NotFound when nothing was stored under ``prefix``."""
        raise NotImplementedError

    def params(self, prefix: str) -> Dict[str, Any]:
        raise NotImplementedError

    def files(self, prefix: str) -> List[Dict[str, Any]]:
        raise NotImplementedError

    def metric_names(self, prefix: str) -> List[Optional[str]]:
        raise NotImplementedError

    def metric_rows(self, prefix: str, name: Optional[str]) -> Iterator[Dict[str, Any]]:
        """Rows ``{"index", "data", "createdAt"}`` in index order, page by page."""
        raise NotImplementedError


class LocalSource(Source):
    def __init__(self, root: Path):
        from .._readmodel import LayoutReadModel

        self.root = Path(root)
        self.where = str(root)
        self._model: LayoutReadModel = LayoutReadModel(self.root, max_age=0.0)

    def _reader(self, prefix: str) -> "LocalReader":
        from .._local_sink import LocalReader
        from .._readmodel._model import read_prefix

        reader = LocalReader(self.root, read_prefix(prefix))
        if not reader.exists():
            raise NotFound(f"no experiment {prefix!r} in {self.where}")
        return reader

    def _ask(self, fn: Callable[..., Dict[str, Any]], *args: Any) -> Dict[str, Any]:
        from .._local_sink import _local_query

        return _local_query(fn, *args)

    def table(self, query: TableQuery) -> Dict[str, Any]:
        return self._model.table(query)

    def summary(self, prefix: str) -> Dict[str, Any]:
        return self._ask(self._model.summary, prefix)

    def experiment(self, prefix: str) -> Dict[str, Any]:
        return self._reader(prefix).experiment()

    def params(self, prefix: str) -> Dict[str, Any]:
        return self._reader(prefix).params()

    def files(self, prefix: str) -> List[Dict[str, Any]]:
        return self._reader(prefix).files()

    def metric_names(self, prefix: str) -> List[Optional[str]]:
        return self._reader(prefix).metric_names()

    def metric_rows(self, prefix: str, name: Optional[str]) -> Iterator[Dict[str, Any]]:
        yield from self._reader(prefix).metric_rows(name)


class RemoteSource(Source):
    def __init__(self, url: str, token: Optional[str]):
        from ..agent._session import public_url

        self.url = url.rstrip("/")
        self.where = public_url(url)
        self._token = token

    def _get(self, route: str, params: Dict[str, Any]) -> Dict[str, Any]:
        from .._remote_read import error_from_http

        query = urllib.parse.urlencode(
            [
                (k, v)
                for k, vs in params.items()
                if vs is not None
                for v in (vs if isinstance(vs, (list, tuple)) else [vs])
            ]
        )
        req = urllib.request.Request(f"{self.url}/api/v1/{route}?{query}")
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                body: Dict[str, Any] = decode_nonfinite(json.loads(resp.read()))
                return body
        except urllib.error.HTTPError as exc:
            err = error_from_http(exc)
            if err.status == 404 and err.code == "not_found":
                raise NotFound(str(err).split(": ", 1)[-1]) from None
            raise err from None
        except (urllib.error.URLError, OSError) as exc:
            raise RemoteError(f"cannot reach the server at {self.where}: {exc}") from None

    def table(self, query: TableQuery) -> Dict[str, Any]:
        return self._get(
            "table",
            {
                "glob": query.glob,
                "q": query.q,
                "status": list(query.status) or None,
                "sort": query.sort,
                "order": query.order,
                "offset": query.offset,
                "limit": query.limit,
                "columns": ",".join(query.columns) or None,
            },
        )

    def summary(self, prefix: str) -> Dict[str, Any]:
        return self._get("summary", {"prefix": prefix})

    def experiment(self, prefix: str) -> Dict[str, Any]:
        return self._get("experiment", {"prefix": prefix})

    def params(self, prefix: str) -> Dict[str, Any]:
        self.experiment(prefix)
        return self._get("params", {"prefix": prefix}).get("data") or {}

    def files(self, prefix: str) -> List[Dict[str, Any]]:
        return self._get("files", {"prefix": prefix}).get("files") or []

    def metric_names(self, prefix: str) -> List[Optional[str]]:
        return list(self._get("metrics", {"prefix": prefix}).get("metrics") or [])

    def metric_rows(self, prefix: str, name: Optional[str]) -> Iterator[Dict[str, Any]]:
        nxt: Optional[int] = 0
        while nxt is not None:
            page = self._get("metric", {"prefix": prefix, "name": name, "start": nxt, "limit": _PAGE})
            yield from page.get("rows") or []
            nxt = page.get("next")


def open_source(root: Optional[str], url: Optional[str]) -> Source:
    """``--dash-url`` reads a server, ``--root`` a local store; with neither, ``$ML_DASH_URL`` when
    set (as the SDK does), else ``$ML_DASH_ROOT`` or ``.dash``. The token comes from
    ``$ML_DASH_TOKEN`` or the credentials file ``ml-dash login`` writes."""
    from .._config import load_config

    config = load_config()
    if url is None and root is None:
        url = config.dash_url
    if url:
        from .._urls import check_dash_url
        from ..agent._credentials import token_for

        url = check_dash_url(url)
        return RemoteSource(url, config.token or token_for(url))
    return LocalSource(Path(os.path.expanduser(root or config.dash_root)))
