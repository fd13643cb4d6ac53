"""The dashboard's routes: its pages, login and logout, its static files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional
from urllib.parse import quote, urlsplit

from aiohttp import web

from ..app import Handler, State, read_auth
from ..auth import hash_token
from ..errors import ApiError
from ..index import server_dir
from . import pages
from .headers import PAGE_HEADERS
from .session import COOKIE_NAME, MAX_AGE, CookieSessions

__all__ = ["mount"]

STATIC = Path(__file__).parent / "static"


def _asset_version() -> str:
    h = hashlib.sha256()
    for p in sorted(STATIC.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()[:10]


def _html(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", headers=PAGE_HEADERS)


class _Pages:
    def __init__(self, state: State, read_only: bool) -> None:
        self.st = state
        self.read_only = read_only
        self.v = _asset_version()

    @property
    def logout(self) -> bool:
        return self.st.auth.enabled

    def _auth(self, request: web.Request) -> Optional[str]:
        """Read access, else off to the login form (and back here after it); the reader's owner."""
        try:
            return read_auth(request)
        except ApiError as exc:
            if exc.status != 401:
                raise
            raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs, safe="")) from None

    async def table(self, request: web.Request) -> web.Response:
        self._auth(request)
        return _html(pages.table_page({"readOnly": self.read_only}, self.v, self.logout))

    async def experiment(self, request: web.Request) -> web.Response:
        owner = self._auth(request)
        prefix = request.match_info["prefix"].strip("/")
        try:
            self.st.auth.require_read(owner, prefix)  # the server's read scope
            exp = await self.st.run(self.st.reads.experiment, prefix)
            params = (await self.st.run(self.st.reads.params, prefix))["data"]
        except ApiError as exc:
            if exc.status not in (400, 403, 404):
                raise
            title = {403: "Not yours to read", 404: "No such experiment"}.get(exc.status, "Not an experiment prefix")
            return _html(pages.error_page(title, exc.message, self.v, self.logout), exc.status)
        return _html(pages.experiment_page(prefix, exp, params, self.v, self.logout))

    async def compare(self, request: web.Request) -> web.Response:
        self._auth(request)
        prefixes = [p.strip("/") for p in request.query.getall("p", []) if p.strip("/")]
        prefixes = list(dict.fromkeys(prefixes))[:50]
        return _html(pages.compare_page(prefixes, self.v, self.logout))

    async def login_form(self, request: web.Request) -> web.Response:
        if not self.st.auth.enabled:
            raise web.HTTPSeeOther("/")
        return _html(pages.login_page(_safe_next(request.query.get("next")), None, self.v))

    async def login(self, request: web.Request) -> web.Response:
        if not self.st.auth.enabled:
            raise web.HTTPSeeOther("/")
        _same_origin(request)
        form = await request.post()
        token = str(form.get("token") or "").strip()
        next_url = _safe_next(str(form.get("next") or ""))
        owner = None
        if token and len(token) <= 256:
            owner = await self.st.run(self.st.index.token_owner, hash_token(token))
        if owner is None:
            msg = "That token is not valid on this server." if token else "Paste a token to log in."
            return _html(pages.login_page(next_url, msg, self.v), 401)
        resp = web.HTTPSeeOther(next_url)
        assert self.st.auth.sessions is not None  # set by mount()
        resp.set_cookie(
            COOKIE_NAME,
            self.st.auth.sessions.make(hash_token(token)),
            max_age=MAX_AGE,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=_is_https(request),
        )
        raise resp

    async def logout_(self, request: web.Request) -> web.Response:
        _same_origin(request)
        resp = web.HTTPSeeOther("/login" if self.st.auth.enabled else "/")
        resp.del_cookie(COOKIE_NAME, path="/")
        raise resp


def _is_https(request: web.Request) -> bool:
    return request.scheme == "https" or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def _same_origin(request: web.Request) -> None:
    """A form post from another site is refused (SameSite=Strict covers the cookie; this covers login)."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise ApiError(403, "forbidden", "cross-site form posts are refused")


def _safe_next(value: Optional[str]) -> str:
    """Only a path on this server: never an open redirect to another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def _cache_static(request: web.Request, response: web.StreamResponse) -> None:
    """Pages link static files with ``?v=<hash of the files>``: such a URL never changes content."""
    if request.path.startswith("/static/") and request.query.get("v") and response.status == 200:
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"


@web.middleware
async def _read_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD"):
        raise ApiError(405, "read_only", "this is a read-only dashboard: it accepts no writes")
    return await handler(request)


def mount(app: web.Application, state: State, read_only: bool = False) -> None:
    """Add the dashboard to a server app (after its API routes)."""
    state.auth.sessions = CookieSessions(
        server_dir(state.root), state.index.token_owner, secret=state.backend.shared_secret("dashboard-cookie")
    )
    p = _Pages(state, read_only)
    app.router.add_get("/", p.table)
    app.router.add_get("/e/{prefix:.+}", p.experiment)
    app.router.add_get("/compare", p.compare)
    app.router.add_get("/login", p.login_form)
    app.router.add_post("/login", p.login)
    app.router.add_post("/logout", p.logout_)
    app.router.add_static("/static/", STATIC, append_version=False)
    app.on_response_prepare.append(_cache_static)
    if read_only:
        app.middlewares.append(_read_only)
