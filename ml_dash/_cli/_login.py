"""``ml-dash login URL``: keep a token for a server in the credentials file the SDK and the agent read
(``$XDG_CONFIG_HOME/ml-dash/credentials.json``, mode 0600, keyed by URL). The token is read from
a prompt (or one line of stdin when it is not a terminal), never from the command line, where
other users could see it in the process list and it would land in the shell's history."""

from __future__ import annotations

import argparse
import sys

from ._common import reporting

HELP = "store a token for a server (read from a prompt or stdin, never from the command line)"


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="the server, e.g. http://dash.example.org:8765")
    p.add_argument("--no-verify", action="store_true", help="store it without asking the server whether it is valid")


def _read_token(url: str) -> str:
    if sys.stdin.isatty():
        import getpass

        return getpass.getpass(f"token for {url}: ").strip()
    return sys.stdin.readline().strip()


def _check(url: str, token: str) -> str:
    """'ok', 'no-auth' (the server asks for no token), or raise with what is wrong."""
    import json
    import urllib.error
    import urllib.request

    from .._errors import AuthError, RemoteError

    try:
        with urllib.request.urlopen(url + "/api/v1/info", timeout=30) as resp:
            info = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise RemoteError(
            f"cannot reach an ml-dash server at {url}: {exc} (use --no-verify to store it anyway)"
        ) from None
    if not info.get("auth_required", True):
        return "no-auth"
    req = urllib.request.Request(url + "/api/v1/table?limit=1", headers={"Authorization": f"Bearer {token}"})
    try:
        urllib.request.urlopen(req, timeout=30).close()
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise AuthError(f"the server at {url} refused this token; nothing was stored") from None
        raise RemoteError(f"the server at {url} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RemoteError(f"cannot reach {url}: {exc}") from None
    return "ok"


def store_token(url: str, token: str) -> str:
    """Write ``token`` for ``url`` into the credentials file (0600, its folder 0700); its path."""
    import json
    import os

    from ..agent._credentials import credentials_path
    from ..agent._session import public_url

    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        table = json.loads(path.read_text())
        if not isinstance(table, dict):
            table = {}
    except (OSError, ValueError):
        table = {}
    table[public_url(url)] = token
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(table, fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return str(path)


@reporting
def run(args: argparse.Namespace) -> int:
    from .._text import printable
    from .._urls import check_dash_url

    url = check_dash_url(args.url).rstrip("/")
    token = _read_token(url)
    if not token:
        print(
            "error: no token given (type it at the prompt, or pipe it: `ml-dash login URL < token-file`)",
            file=sys.stderr,
        )
        return 2
    if not args.no_verify and _check(url, token) == "no-auth":
        print(f"the server at {printable(url)} asks for no token; nothing was stored")
        return 0
    path = store_token(url, token)
    print(f"token for {printable(url)} stored in {printable(path)}")
    return 0
