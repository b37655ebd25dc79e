"""scripts/postgres_local.sh: a real PostgreSQL server on this machine, for searches that span
processes (hydra.sweeper.storage=<its URL>).

The shared server (tests/postgres.py's `postgres_url`) is only ever started here, never stopped:
other workers and other copies of the suite use it at the same time. The tests that stop, start
and crash a server do so on a private one (its own directory, a free port), so nothing here can
pull the shared server from under another test.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres import HOW, last_line, run_postgres_local, why_postgres_cannot_run

# The fixtures postgres_url and fresh_postgres_database (a plugin, not an import: ruff's F811
# would flag each test that takes an imported fixture as an argument).
pytest_plugins = ("tests.postgres",)

URL = re.compile(r"postgresql\+psycopg://nntrain:nntrain@127\.0\.0\.1:(\d+)/nntrain")


def select_one(url: str) -> int:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sqlalchemy.text("SELECT 1")).scalar_one()
    finally:
        engine.dispose()


def status_pid(status_output: str) -> str:
    match = re.search(r"\(pid (\d+),", status_output)
    assert match, status_output
    return match.group(1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_up_prints_a_url_that_sqlalchemy_and_psycopg_connect_to(postgres_url: str) -> None:
    assert URL.fullmatch(postgres_url), postgres_url
    assert select_one(postgres_url) == 1


def test_a_study_made_here_is_seen_and_extended_by_another_process(
    fresh_postgres_database: str,
) -> None:
    import optuna

    study = optuna.create_study(storage=fresh_postgres_database, study_name="shared")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=1.0))
    other = (
        "import sys, optuna\n"
        "study = optuna.load_study(study_name='shared', storage=sys.argv[1])\n"
        "print(len(study.trials))\n"
        "study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=2.0))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", other, fresh_postgres_database],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1"
    assert sorted(trial.value for trial in study.trials) == [1.0, 2.0]


def test_status_says_up_and_a_second_up_is_a_no_op(postgres_url: str) -> None:
    before = run_postgres_local("status")
    assert before.returncode == 0, before.stdout + before.stderr
    assert "postgres_local: up:" in before.stdout
    assert last_line(before.stdout) == postgres_url

    again = run_postgres_local("up")
    assert again.returncode == 0, again.stderr
    assert last_line(again.stdout) == postgres_url
    assert again.stdout.strip() == postgres_url  # (the URL alone on stdout: URL=$(... up))
    assert "already up" in again.stderr

    after = run_postgres_local("status")
    assert status_pid(after.stdout) == status_pid(before.stdout)  # the same server, not a new one


@pytest.fixture
def private_server() -> Iterator[dict[str, str]]:
    """The env (NNTRAIN_PG_DIR, NNTRAIN_PG_PORT) of a server of this test's own; stopped and
    removed afterwards. Made under the system's temporary directory, not pytest's tmp_path: as
    root, the server runs as `postgres`, which cannot enter root's private pytest directories."""
    why = why_postgres_cannot_run()
    if why:
        pytest.skip(f"{why}, so the PostgreSQL tests cannot run: {HOW}")
    directory = tempfile.mkdtemp(prefix="nntrain-postgres-test-")
    env = {"NNTRAIN_PG_DIR": directory, "NNTRAIN_PG_PORT": str(free_port())}
    try:
        yield env
    finally:
        run_postgres_local("down", env=env, timeout=120)
        shutil.rmtree(directory, ignore_errors=True)


def test_down_up_and_up_after_a_crash_on_a_private_server(
    private_server: dict[str, str], tmp_path: Path
) -> None:
    import optuna

    env = private_server
    # From another working directory, by the script's absolute path.
    script = Path(__file__).resolve().parents[1] / "scripts" / "postgres_local.sh"

    def run(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(script), action],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
        )

    up = run("up")
    if up.returncode != 0:
        pytest.skip(f"{last_line(up.stderr)} (so the PostgreSQL tests cannot run: {HOW})")
    url = up.stdout.strip()
    match = URL.fullmatch(url)
    assert match and match.group(1) == env["NNTRAIN_PG_PORT"], up.stdout
    assert re.search(r"postgres_local: up in \d+ s", up.stderr), up.stderr
    optuna.create_study(storage=url, study_name="kept")

    assert run("status").returncode == 0

    down = run("down")
    assert down.returncode == 0, down.stderr
    assert re.search(r"postgres_local: down in \d+ s", down.stderr), down.stderr
    status = run("status")
    assert status.returncode == 1 and "postgres_local: down" in status.stdout, status.stdout
    again = run("down")
    assert again.returncode == 0 and "already down" in again.stderr, again.stderr

    up = run("up")
    assert up.returncode == 0 and up.stdout.strip() == url, up.stderr
    assert optuna.load_study(storage=url, study_name="kept").study_name == "kept"  # data kept

    # A crash: the postmaster SIGKILLed leaves its postmaster.pid behind.
    pid_file = Path(env["NNTRAIN_PG_DIR"]) / "data" / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), 9)
    deadline = time.monotonic() + 30
    while run("status").returncode != 1:
        assert time.monotonic() < deadline, "status still says up 30 s after kill -9"
        time.sleep(0.2)
    assert pid_file.exists()

    up = run("up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == url
    assert "stale" in up.stderr, up.stderr
    assert select_one(url) == 1
    assert optuna.load_study(storage=url, study_name="kept").study_name == "kept"


def test_up_fails_in_one_line_when_its_port_is_taken(private_server: dict[str, str]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        env = {**private_server, "NNTRAIN_PG_PORT": str(squatter.getsockname()[1])}
        result = run_postgres_local("up", env=env, timeout=120)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("postgres_local: up failed: port ")
    assert "NNTRAIN_PG_PORT" in result.stderr
