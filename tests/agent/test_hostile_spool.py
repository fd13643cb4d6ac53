"""Hostile neighbours: a spool is trusted only when it is the user's own, a token goes only to a
server the user configured now, and nothing read from disk reaches the terminal unescaped.

Planted sessions are real folders on disk, written the way another local user would write them
(by hand, not through the agent), some of them really owned by another uid (``os.chown``, root
only: skipped with the reason otherwise). The victim's server is the real one on loopback; the
attacker's is a real HTTP server that records what reaches it.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import threading
import time
import urllib.request
import zlib
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from ml_dash import Experiment, SpoolNotPrivate, load_config

from .conftest import client_env, log_messages, run_agent, run_client, sessions, unexpected_stderr

FOREIGN_UID = 65534  # nobody

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a folder to another uid (os.chown) needs root")


class Attacker:
    """A real HTTP server that speaks just enough of the protocol to be sent to, and records
    every request: method, path, Authorization header, body."""

    def __init__(self) -> None:
        self.requests: List[Dict[str, Any]] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Optional[dict] = None) -> None:
                data = json.dumps(body or {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _record(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                seen.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "auth": self.headers.get("Authorization"),
                        "body": self.rfile.read(n) if n else b"",
                    }
                )

            def do_GET(self) -> None:
                self._record()
                self._answer(
                    200,
                    {
                        "protocol": 1,
                        "accept_encoding": ["identity"],
                        "auth_required": True,
                        "limits": {"max_events_per_batch": 1000, "max_decoded_bytes": 1 << 20},
                    },
                )

            def do_HEAD(self) -> None:
                self._record()
                self._answer(404)

            def do_PUT(self) -> None:
                self._record()
                self._answer(201)

            def do_POST(self) -> None:
                self._record()
                self._answer(401, {"error": {"code": "unauthorized", "message": "no"}})

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def attacker():
    a = Attacker()
    try:
        yield a
    finally:
        a.close()


def _record(payload: Dict[str, Any]) -> bytes:
    data = json.dumps(payload, separators=(",", ":")).encode()
    return b"%08x %b\n" % (zlib.crc32(data), data)


def plant(
    root: Path,
    name: str,
    url: str,
    prefix: str,
    events: List[Dict[str, Any]],
    *,
    uid: Optional[int] = None,
    mode: int = 0o700,
    state: Optional[dict] = None,
) -> Path:
    """A session folder written by hand, as another local user would: manifest and one segment."""
    folder = root / name
    folder.mkdir()
    (folder / "blobs").mkdir()
    manifest = {"v": 1, "session": name, "prefix": prefix, "url": url, "created": time.time(), "pid": 1, "host": "h"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    records = [{"seq": i, **e} for i, e in enumerate(events)]
    (folder / "seg-000000000000.jsonl").write_bytes(b"".join(_record(r) for r in records))
    (folder / "closed").write_bytes(b"")
    if state is not None:
        (folder / "state.json").write_text(json.dumps(state))
    for p in [folder, *folder.rglob("*")]:
        if uid is not None:
            os.chown(p, uid, -1)
    folder.chmod(mode)
    return folder


def _log(message: str) -> Dict[str, Any]:
    return {"kind": "log", "ts": time.time(), "level": "info", "message": message, "metadata": None}


def _file(file_id: str, secret: Path) -> Dict[str, Any]:
    data = secret.read_bytes()
    return {
        "kind": "file",
        "ts": time.time(),
        "id": file_id,
        "path": "/",
        "filename": "loot.txt",
        "checksum": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content_type": None,
        "description": None,
        "tags": [],
        "metadata": None,
    }


@pytest.fixture
def secret(tmp_path) -> Path:
    path = tmp_path / "victim-secret.txt"
    path.write_text("the victim's private key\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def own_spool(spool) -> Path:
    spool.mkdir(mode=0o700)
    return spool


def _blob_on_server(server, data: bytes) -> bool:
    req = urllib.request.Request(
        f"{server.url}/api/v1/blobs/{hashlib.sha256(data).hexdigest()}",
        method="HEAD",
        headers={"Authorization": f"Bearer {server.token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status == 200
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return False


# -- the spool folder and its session folders --------------------------------------------------------------


@pytest.mark.parametrize("foreign", [False, pytest.param(True, marks=needs_root)], ids=["mode", "owner"])
def test_flush_refuses_a_shared_spool_folder(foreign, tmp_path, server, attacker, secret):
    shared = tmp_path / "shared-spool"
    shared.mkdir()
    if foreign:
        os.chown(shared, FOREIGN_UID, -1)
        shared.chmod(0o755)
    else:
        shared.chmod(0o1777)  # like /tmp: anyone may plant a folder in it
    plant(
        shared,
        "1a2300000000-planted",
        attacker.url,
        "alice/p/planted",
        [_log("planted"), _file(str(secret), secret)],
        uid=FOREIGN_UID if os.geteuid() == 0 else None,
    )
    env = client_env(shared, server.url, server.token)
    for command in (["flush", str(shared)], ["status", str(shared)]):
        out = run_agent(command, env)
        assert out.returncode == 2, out.stdout + out.stderr
        assert "refused" in out.stderr and str(shared) in out.stderr
        assert ("chmod 700" in out.stderr) if not foreign else ("not to you" in out.stderr)
    assert attacker.requests == []
    assert log_messages(server.url, server.token, "alice/p/planted") == []


def test_a_run_refuses_a_shared_spool_folder(tmp_path, server):
    shared = tmp_path / "shared-spool"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(SpoolNotPrivate, match="chmod 700") as caught:
        Experiment(
            "alice/p/shared",
            dash_url=server.url,
            token=server.token,
            config=load_config().with_overrides(spool_dir=str(shared)),
        ).run.start()
    assert isinstance(caught.value, PermissionError)
    assert list(shared.iterdir()) == []  # nothing spooled there
    # the same in a real process, through ML_DASH_SPOOL_DIR
    proc = run_client(
        """
        from ml_dash import Experiment
        with Experiment("alice/p/shared").run as exp:
            exp.log("never")
    """,
        client_env(shared, server.url, server.token),
    )
    assert proc.returncode == 1 and "SpoolNotPrivate" in proc.stderr and "chmod 700" in proc.stderr
    assert list(shared.iterdir()) == []


@pytest.mark.parametrize("foreign", [False, pytest.param(True, marks=needs_root)], ids=["mode", "owner"])
def test_untrusted_session_folders_are_left_alone(foreign, own_spool, server, attacker, secret):
    kw = {"uid": FOREIGN_UID} if foreign else {"mode": 0o777}
    plant(
        own_spool,
        "1a2300000000-planted",
        attacker.url,
        "alice/p/planted",
        [_log("planted"), _file(str(secret), secret)],
        **kw,
    )
    # next to it, one of the victim's own sessions, aimed at the victim's server
    plant(own_spool, "1a2300000001-own", server.url, "alice/p/own", [_log("mine")])
    env = client_env(own_spool, server.url, server.token)
    status = run_agent(["status", str(own_spool)], env)
    assert status.returncode == 0 and "alice/p/own" in status.stdout and "planted" not in status.stdout
    assert "left 1a2300000000-planted alone" in status.stderr
    assert ("not to you" if foreign else "chmod 700") in status.stderr
    out = run_agent(["flush", str(own_spool)], env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 session(s), 1 events" in out.stdout and "left 1a2300000000-planted alone" in out.stderr
    assert log_messages(server.url, server.token, "alice/p/own") == ["mine"]
    assert attacker.requests == []
    assert log_messages(server.url, server.token, "alice/p/planted") == []
    assert (own_spool / "1a2300000000-planted").is_dir() and secret.exists()


def test_a_live_run_does_not_adopt_an_untrusted_session(own_spool, server):
    # Same experiment, same server: a live run adopts sessions its crashed runs left, but only its own.
    plant(own_spool, "1a2300000000-planted", server.url, "alice/p/adopt", [_log("planted")], mode=0o777)
    plant(own_spool, "1a2300000001-crashed", server.url, "alice/p/adopt", [_log("from a crashed run")])
    proc = run_client(
        """
        from ml_dash import Experiment
        with Experiment("alice/p/adopt").run as exp:
            exp.log("live")
    """,
        client_env(own_spool, server.url, server.token),
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(log_messages(server.url, server.token, "alice/p/adopt")) == ["from a crashed run", "live"]
    assert [p.name for p in sessions(own_spool)] == ["1a2300000000-planted"]


def test_blob_ids_are_names_never_paths(own_spool, server, secret, tmp_path):
    # The victim's own session, but its records name files outside the spool: they are never read
    # (nor deleted once acknowledged).
    relative = os.path.relpath(secret, own_spool / "1a2300000000-own" / "blobs")
    plant(
        own_spool,
        "1a2300000000-own",
        server.url,
        "alice/p/blobs",
        [_log("before"), _file(str(secret), secret), _file(relative, secret), _log("after")],
    )
    out = run_agent(["flush", str(own_spool)], client_env(own_spool, server.url, server.token))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 quarantined" in out.stdout
    assert log_messages(server.url, server.token, "alice/p/blobs") == ["before", "after"]
    assert not _blob_on_server(server, secret.read_bytes())
    assert secret.read_text() == "the victim's private key\n"
    [qfile] = (own_spool / "quarantine").iterdir()
    reasons = [json.loads(line)["reason"] for line in qfile.read_text().splitlines()]
    assert len(reasons) == 2 and all("not a plain name" in r for r in reasons)


# -- where the token goes ----------------------------------------------------------------------------------


def test_the_token_goes_only_to_a_server_configured_now(own_spool, server, attacker, tmp_path):
    # A session of the user's own whose manifest names another server: flushing it with
    # ML_DASH_TOKEN set (and no URL configured) must not hand that server the token.
    plant(own_spool, "1a2300000000-old", attacker.url, "alice/p/elsewhere", [_log("x")])
    env = client_env(own_spool, None, server.token)
    out = run_agent(["flush", str(own_spool)], env)
    assert out.returncode == 1
    assert attacker.requests and all(r["auth"] is None for r in attacker.requests)
    assert "no token was sent" in out.stdout and f"--dash-url {attacker.url}" in out.stdout
    # ML_DASH_URL names another server: still no token for the manifest's one
    attacker.requests.clear()
    out = run_agent(["flush", str(own_spool)], client_env(own_spool, server.url, server.token))
    assert out.returncode == 1 and all(r["auth"] is None for r in attacker.requests)
    # a "default" credentials entry is for the servers the user names, not for manifests
    creds = Path(env["XDG_CONFIG_HOME"]) / "ml-dash" / "credentials.json"
    creds.parent.mkdir(parents=True)
    creds.write_text(json.dumps({"default": "default-token"}))
    creds.chmod(0o600)
    attacker.requests.clear()
    out = run_agent(["flush", str(own_spool)], client_env(own_spool, None, None))
    assert out.returncode == 1 and attacker.requests and all(r["auth"] is None for r in attacker.requests)
    # an entry for exactly that URL is the user's configuration: its token goes there
    creds.write_text(json.dumps({attacker.url: "entry-token", "default": "default-token"}))
    attacker.requests.clear()
    out = run_agent(["flush", str(own_spool)], client_env(own_spool, None, None))
    assert out.returncode == 1 and {r["auth"] for r in attacker.requests} == {"Bearer entry-token"}
    # and --dash-url sends it, with ML_DASH_TOKEN, where the user says
    attacker.requests.clear()
    out = run_agent(["flush", str(own_spool), "--dash-url", server.url], client_env(own_spool, None, server.token))
    assert out.returncode == 0, out.stdout + out.stderr
    assert attacker.requests == [] and log_messages(server.url, server.token, "alice/p/elsewhere") == ["x"]


def _outward_address() -> Optional[str]:
    """An address of this machine that is not loopback, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # no packet is sent: this only picks the source address
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") or address == "0.0.0.0" else address


def test_a_token_over_plain_http_off_this_machine_is_warned_once(tmp_path, spool):
    from ml_dash.server import create_token, run_in_thread

    address = _outward_address()
    if address is None:
        pytest.skip("this machine has no address other than loopback")
    root = tmp_path / "server-root"
    token = create_token(root, "alice")
    try:
        handle = run_in_thread(root, host=address, port=0)
    except OSError as exc:
        pytest.skip(f"cannot listen on {address}: {exc}")
    try:
        code = """
            from ml_dash import Experiment
            with Experiment("alice/p/plain").run as exp:
                exp.log("over the wire")
                exp.flush()
                assert [r["message"] for r in exp.logs.read()] == ["over the wire"]
        """
        proc = run_client(code, client_env(spool, handle.url, token))
        assert proc.returncode == 0, proc.stderr
        warnings = [ln for ln in proc.stderr.splitlines() if "plain http://" in ln]
        assert len(warnings) == 1 and address in warnings[0] and token not in proc.stderr, proc.stderr
        offline = run_client(
            """
            from ml_dash import Experiment
            with Experiment("alice/p/plain2").run as exp:
                exp.log("later")
        """,
            client_env(spool, handle.url, token, offline=1),
        )
        assert offline.returncode == 0 and "plain http://" not in offline.stderr  # nothing sent, nothing said
        flushed = run_agent(["flush", str(spool)], client_env(spool, handle.url, token))
        assert flushed.returncode == 0, flushed.stdout + flushed.stderr
        assert flushed.stderr.count("plain http://") == 1
    finally:
        handle.stop()


def test_no_warning_on_loopback(server, spool):
    proc = run_client(
        """
        from ml_dash import Experiment
        with Experiment("alice/p/loop").run as exp:
            exp.log("x")
    """,
        client_env(spool, server.url, server.token),
    )
    assert proc.returncode == 0 and unexpected_stderr(proc.stderr) == "", proc.stderr
    assert log_messages(server.url, server.token, "alice/p/loop") == ["x"]


# -- what reaches the terminal -----------------------------------------------------------------------------

ESC = "\x1b]0;owned\x07\x1b[2J\x1b[31m\u202e"


def _no_controls(text: str) -> bool:
    return not any(ch in text for ch in "\x1b\x07\u202e")


def test_status_and_flush_escape_what_the_spool_holds(own_spool, server):
    plant(
        own_spool,
        "1a2300000000-x\x1b[2J",
        f"{server.url}/{ESC}",
        f"alice/p/{ESC}",
        [_log("x")],
        state={"last_error": f"boom{ESC}"},
    )
    env = client_env(own_spool, None, server.token)
    status = run_agent(["status", str(own_spool)], env)
    assert status.returncode == 0
    assert _no_controls(status.stdout + status.stderr), repr(status.stdout)
    assert "alice/p/\\x1b]0;owned\\x07\\x1b[2J" in status.stdout and "boom\\x1b" in status.stdout
    assert "1a2300000000-x\\x1b[2J" in status.stdout and "\\u202e" in status.stdout
    flushed = run_agent(["flush", str(own_spool)], env)
    assert flushed.returncode == 1  # the manifest's URL is no usable server: left, and said so
    assert _no_controls(flushed.stdout + flushed.stderr), repr(flushed.stdout + flushed.stderr)
    assert "left 1a2300000000-x\\x1b[2J" in flushed.stdout


def test_ml_dash_ls_escapes_folder_names(tmp_path):
    root = tmp_path / "store"
    with Experiment("alice/p/fine", dash_root=str(root)).run as exp:
        exp.log("x")
    planted = root / "alice" / "p" / f"evil{ESC}"
    planted.mkdir()
    (planted / "experiment.json").write_text((root / "alice" / "p" / "fine" / "experiment.json").read_text())
    out = run_client(
        f"""
        import sys
        from ml_dash.cli import main
        sys.exit(main(["ls", "--dash-root", {str(root)!r}]))
    """,
        client_env(tmp_path / "spool", None, None),
    )
    assert out.returncode == 0, out.stderr
    assert "alice/p/fine" in out.stdout and "evil\\x1b]0;owned" in out.stdout and _no_controls(out.stdout)
