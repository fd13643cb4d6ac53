"""Shared fixtures: every test gets its own store and a clean ML_DASH_* environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest

# The scale-out servers' settings (ML_DASH_TEST_WEED, ML_DASH_REQUIRE_SCALEOUT, ...) are read when
# tests/services.py is imported: import it now, before any test's _clean_env clears ML_DASH_*.
from . import services as _services  # noqa: F401


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for key in list(os.environ):
        if key.startswith("ML_DASH_"):
            monkeypatch.delenv(key)
    # Remote-mode spools of the test go to its own folder, never to the user's cache.
    monkeypatch.setenv("ML_DASH_SPOOL_DIR", str(tmp_path / "spool"))


@pytest.fixture
def dash_root(tmp_path) -> Path:
    return tmp_path / ".dash"


def run_script(code: str, cwd: Path, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (real process, real exit)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ML_DASH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition", interval: float = 0.02) -> Any:
    """Poll ``cond`` until it returns something truthy (returned); fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# -- scale-out stores: real PostgreSQL and S3-compatible servers (tests/services.py) ---------------


def _need(why):
    """Skip (or, in CI, fail) when a server cannot be started here."""
    from .services import REQUIRE

    if why:
        if REQUIRE:
            pytest.fail(f"ML_DASH_REQUIRE_SCALEOUT=1 but {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL cluster for the session, with a template database at the schema."""
    import tempfile

    from .services import PgCluster, missing_pg

    _need(missing_pg())
    from ml_dash.server.stores.postgres import apply_migrations

    cluster = PgCluster(Path(tempfile.mkdtemp(prefix="ml-dash-pg-"))).start()
    try:
        cluster.sql('CREATE DATABASE "mldash_template"')
        apply_migrations(cluster.admin_url("mldash_template"))
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def s3_server():
    """One SeaweedFS S3 gateway on loopback for the session."""
    import tempfile

    from .services import WeedS3, missing_s3

    _need(missing_s3())
    server = WeedS3(Path(tempfile.mkdtemp(prefix="ml-dash-s3-"))).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_database(pg_cluster):
    """A fresh database at the current schema; its URL carries the password (the settings' way)."""
    name = pg_cluster.new_database("mldash_template")
    try:
        yield pg_cluster.admin_url(name)
    finally:
        pg_cluster.drop_database(name)


@pytest.fixture
def pg_settings(pg_database, tmp_path):
    """Settings of a PostgreSQL store with its blobs in a folder."""
    from ml_dash.server.settings import ServerSettings

    return ServerSettings(store=pg_database, blobs=str(tmp_path / "blobs"), pool_size=4)


@pytest.fixture
def pg_s3_settings(pg_database, s3_server, tmp_path):
    """Settings of a PostgreSQL store with its blobs in the S3 server (a bucket of its own)."""
    from ml_dash.server.settings import ServerSettings

    bucket = "t" + tmp_path.name.replace("_", "-").lower()[-40:].strip("-")
    return ServerSettings(
        store=pg_database,
        blobs=f"s3://{bucket}/blobs",
        s3_endpoint=s3_server.endpoint,
        s3_access_key_id=s3_server.ACCESS_KEY,
        s3_secret_access_key=s3_server.SECRET_KEY,
        pool_size=4,
    )


STORES = ["embedded", "postgres"]


def layout_of(root: Path, settings, dest: Path) -> Path:
    """A local layout of what a server stored: its root (the embedded store), or an export of the
    PostgreSQL store into ``dest`` (what ``ml-dash server export`` writes)."""
    if settings is None:
        return root
    from ml_dash.server.limits import Limits
    from ml_dash.server.stores.portability import export_store
    from ml_dash.server.stores.postgres import PgBackend

    backend = PgBackend.open(settings, None, Limits())
    try:
        export_store(backend, dest, say=lambda _msg: None)
    finally:
        backend.close()
    return dest


def pytest_generate_tests(metafunc):
    # Every test whose fixtures ask for store_settings runs once per store. (Parametrized here, not
    # with fixture params, so that a fixture asked for at run time still resolves: to the embedded store.)
    if "store_settings" in metafunc.fixturenames:
        metafunc.parametrize("store_settings", STORES, indirect=True)


@pytest.fixture
def store_settings(request):
    """Each store in turn: None (the embedded store under the server's root) or a PostgreSQL store.
    A fixture asked for at run time (``request.getfixturevalue``) gets the embedded store."""
    if getattr(request, "param", "embedded") == "embedded":
        return None
    return request.getfixturevalue("pg_settings")


# -- the split CI runs on each Python (.ci/pythons.sh; markers registered in pyproject.toml) -------

#: Modules by what they need beyond this interpreter and its test extras, and by cost (slow: real
#: processes killed, forked, started with each start method, or measured).
_MODULE_MARKS = {
    "tests/agent/test_processes.py": ("slow",),
    "tests/agent/test_start_methods.py": ("slow",),
    "tests/server/test_durability.py": ("slow",),
    "tests/server/test_memory.py": ("slow",),
    "tests/scaleout/test_processes.py": ("slow",),
    "tests/dashboard/test_benchmark_smoke.py": ("bench",),
    "tests/readmodel/test_benchmark_smoke.py": ("bench",),
    "tests/test_benchmarks_smoke.py": ("bench",),
    "tests/integrations/test_benchmark_probe.py": ("bench", "integrations"),
    "tests/integrations/test_keras.py": ("integrations",),
    "tests/integrations/test_lightning.py": ("integrations",),
    "tests/integrations/test_transformers.py": ("integrations",),
    "tests/integrations/test_readme_frameworks.py": ("integrations",),
    "tests/test_lint.py": ("tooling",),
    "tests/test_typing.py": ("tooling",),
    "tests/test_wheel.py": ("tooling",),
}
_DEFAULT_ONLY = ("browser", "services", "integrations", "bench", "tooling")


def pytest_collection_modifyitems(config, items):
    root = Path(str(config.rootpath))
    for item in items:
        marks = set(_MODULE_MARKS.get(Path(str(item.path)).relative_to(root).as_posix(), ()))
        if "browser" in item.fixturenames:
            marks.add("browser")
        if {"pg_cluster", "s3_server"} & set(item.fixturenames) or getattr(
            getattr(item, "callspec", None), "params", {}
        ).get("store_settings") == "postgres":
            marks.add("services")
        for name in sorted(marks):
            item.add_marker(name)
        if marks & set(_DEFAULT_ONLY):
            item.add_marker("default_only")
