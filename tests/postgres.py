"""PostgreSQL for the tests: a session's server (scripts/postgres_local.sh), a database per test.

A test file that needs it loads this module as a plugin, which brings its fixtures:

    pytest_plugins = ("tests.postgres",)

(importing the fixtures by name works too, but ruff's F811 then flags every test that takes one).
Its helpers may be imported as well; PYTEST_DONT_REWRITE (here) keeps pytest from warning that
a plugin imported before it was registered cannot have its asserts rewritten (it has none).

`postgres_url` starts the shared local server once per pytest worker (`up` is a no-op when it
runs; concurrent `up`s wait for each other) and never stops it: other workers and other copies
of the suite use it too. Stop it by hand with `bash scripts/postgres_local.sh down`.
`fresh_postgres_database` gives each test an empty database of its own, dropped afterwards, so
that no two tests (nor two suites running at once) ever share a study. Where PostgreSQL cannot
start (not installed and not installable, psycopg missing, the script fails), the tests that
use them are skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_LOCAL = ROOT / "scripts" / "postgres_local.sh"
HOW = "bash scripts/postgres_local.sh up"


def why_postgres_cannot_run() -> str | None:
    """Why this machine cannot run the local server (None when it can, or can install it)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg (PostgreSQL's driver) is not installed: pip install 'nntrain[sweep]'"
    installed = glob.glob("/usr/lib/postgresql/*/bin/pg_ctl") or shutil.which("pg_ctl")
    can_install = hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get")
    if not installed and not can_install:
        return "PostgreSQL's server is not installed (no pg_ctl) and cannot be installed here (not root with apt-get)"
    return None


def run_postgres_local(
    action: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """`bash scripts/postgres_local.sh ACTION`, its output captured."""
    return subprocess.run(
        ["bash", str(POSTGRES_LOCAL), action],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL (postgresql+psycopg://...) as psycopg.connect takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def database_url(url: str, database: str) -> str:
    """The same server and user, another database."""
    return url.rsplit("/", 1)[0] + "/" + database


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The storage URL of the local server, started if it is not running."""
    why = why_postgres_cannot_run()
    if why:
        pytest.skip(f"{why}, so the PostgreSQL tests cannot run: {HOW}")
    result = run_postgres_local("up")
    if result.returncode != 0:
        reason = last_line(result.stderr) or f"exit status {result.returncode}"
        pytest.skip(f"{reason} (so the PostgreSQL tests cannot run: {HOW})")
    url = last_line(result.stdout)
    if not url.startswith("postgresql+psycopg://"):
        pytest.fail(f"{HOW} succeeded but its last line is not a storage URL: {result.stdout!r}")
    return url


@pytest.fixture
def fresh_postgres_database(postgres_url: str) -> Iterator[str]:
    """The URL of an empty database of this test's own on the local server; dropped afterwards."""
    import psycopg

    name = f"nntrain_{uuid.uuid4().hex[:16]}"
    admin = libpq_url(database_url(postgres_url, "postgres"))
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(postgres_url, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            # FORCE (PostgreSQL 13+): connections a test's processes left open (a killed
            # sweeper's) are closed rather than blocking the drop.
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
